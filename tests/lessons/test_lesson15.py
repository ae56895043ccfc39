r"""Checks for lesson 15 (data parallelism). Run with `pytest -m lesson15`.

The exercises are the two phases of the ring allreduce, simulated on an (N, N, m) array of chunks:
``reduce_scatter`` (rank r ends with the complete sum of chunk (r + 1) % N) and ``all_gather`` (every
rank ends with every complete chunk), tested over random N and chunk sizes against NumPy's sum, and on
cases by hand (the partial sums phase 1 leaves behind included).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.lesson15


def complete_after_phase_1(n, m, seed):
    rng = np.random.default_rng(seed)
    chunks = rng.integers(-50, 50, size=(n, n, m)).astype(np.float64)  # integers: sums exact in any order
    return chunks, chunks.sum(axis=0)  # chunks[r, c]: rank r's chunk c; the allreduce's chunk c


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_reduce_scatter_leaves_each_rank_one_complete_chunk(lesson, n, m, seed):
    chunks, total = complete_after_phase_1(n, m, seed)
    before = chunks.copy()
    out = lesson["reduce_scatter"](chunks)
    np.testing.assert_array_equal(chunks, before)  # the input is left as it was
    assert out.shape == (n, n, m)
    for r in range(n):
        np.testing.assert_array_equal(out[r, (r + 1) % n], total[(r + 1) % n])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_all_gather_after_reduce_scatter_is_the_allreduce(lesson, n, m, seed):
    chunks, total = complete_after_phase_1(n, m, seed)
    out = lesson["all_gather"](lesson["reduce_scatter"](chunks))
    for r in range(n):
        np.testing.assert_array_equal(out[r], total)


def test_all_gather_alone_spreads_the_complete_chunks(lesson):
    n, m = 4, 2
    chunks = np.full((n, n, m), -1.0)  # stale everywhere, but rank r holds chunk (r + 1) % n complete
    for r in range(n):
        chunks[r, (r + 1) % n] = 10.0 * ((r + 1) % n)
    before = chunks.copy()
    out = lesson["all_gather"](chunks)
    np.testing.assert_array_equal(chunks, before)
    for r in range(n):
        np.testing.assert_array_equal(out[r], np.repeat(10.0 * np.arange(n), m).reshape(n, m))


def test_reduce_scatter_by_hand_three_ranks(lesson):
    # ranks hold [1, 2, 3] * (r + 1) in 3 chunks of one number: sums 6, 12, 18
    chunks = np.array([[[1.0], [2.0], [3.0]], [[2.0], [4.0], [6.0]], [[3.0], [6.0], [9.0]]])
    out = lesson["reduce_scatter"](chunks)
    # step 0: r sends chunk r;       rank 1 += rank 0's c0, rank 2 += rank 1's c1, rank 0 += rank 2's c2
    # step 1: r sends chunk r - 1;   rank 1 += rank 0's c2 (3 + 9 = 12) ... -> rank r complete at c (r + 1) % 3
    assert out[0, 1, 0] == 12.0 and out[1, 2, 0] == 18.0 and out[2, 0, 0] == 6.0
    # the partial sums left behind: rank 0's c0 is never added to, rank 1's c0 got rank 0's (2 + 1),
    # rank 2's c1 got rank 1's (6 + 4) and rank 0's c2 got rank 2's (3 + 9)
    assert out[0, 0, 0] == 1.0 and out[1, 0, 0] == 3.0 and out[2, 1, 0] == 10.0 and out[0, 2, 0] == 12.0


def test_ring_allreduce_sums_every_rank_and_refuses_uneven_chunks(lesson):
    arrays = [np.arange(6.0) * (r + 1) for r in range(3)]
    for got in lesson["ring_allreduce"](arrays):
        np.testing.assert_array_equal(got, sum(arrays))
    with pytest.raises(ValueError, match="do not cut into 4 equal chunks"):
        lesson["ring_allreduce"]([np.arange(6.0)] * 4)
