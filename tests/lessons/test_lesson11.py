r"""Checks for lesson 11 (Transformer-XL evaluation speed). Run with `pytest -m lesson11`.

The exercises are the lesson's own functions (the lesson is executed once per module with
runpy): ``layer_flops`` (the FLOPs of one layer with t queries and k keys), tested against an
independent list of the layer's matrix products and against the speed-ups measured in the
README; and ``sliding_windows`` (the windows of the vanilla evaluation), tested against
hand-written windows, the library's ``vanilla_windows`` and ``vanilla_bpc``. No timings are
asserted: the lesson's live measurement is printed only.
"""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluate import vanilla_bpc, vanilla_windows
from models.gpt import GPT, GPTConfig

pytestmark = pytest.mark.lesson11


# ------------------------------------------------------------------ exercise 1: layer_flops

def products(t, k, d, d_ff, relative):
    """The (m, n, p) shapes of every matrix product of one layer (all heads together)."""
    out = [(t, d, d), (k, d, d), (k, d, d), (t, d, d),  # q; k, v over the keys; output projection
           (t, d, d_ff), (t, d_ff, d),  # FFN
           (t, d, k), (t, k, d)]  # q k^T, alpha v (summed over heads: H * d_h = d)
    if relative:
        out += [(k, d, d), (t, d, k)]  # W_{k,R} R; (q + v)^T (W_{k,R} R)
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 50), st.integers(0, 80), st.integers(1, 64), st.integers(1, 256), st.booleans())
def test_layer_flops_counts_every_product(lesson, t, extra, d, d_ff, relative):
    k = t + extra  # at least as many keys as queries
    expected = sum(2 * m * n * p for m, n, p in products(t, k, d, d_ff, relative))
    assert lesson["layer_flops"](t, k, d, d_ff, relative) == expected
    assert lesson["layer_flops"](t, k, d, d_ff) == sum(2 * m * n * p for m, n, p in products(t, k, d, d_ff, False))


def test_layer_flops_hand_values(lesson):
    layer_flops = lesson["layer_flops"]
    assert layer_flops(1, 1, 1, 1) == 16
    assert layer_flops(1, 1, 1, 1, relative=True) == 20
    assert layer_flops(2, 3, 4, 5) == 2 * 2 * 16 + 4 * 3 * 16 + 2 * 2 * 16 + 4 * 2 * 4 * 5 + 4 * 2 * 3 * 4


def test_cached_cost_is_the_derived_formula(lesson):
    per_token = lesson["cached_flops_per_token"]
    for m, seg, d, f, n, v in [(128, 128, 128, 512, 4, 76), (1024, 128, 128, 512, 4, 76), (7, 3, 8, 16, 2, 11)]:
        formula = n * (4 * d * d + 4 * d * f + 6 * (m + seg) * (d + d * d / seg)) + 2 * d * v
        assert per_token(m, seg, d=d, d_ff=f, n_layer=n, vocab=v) == pytest.approx(formula, rel=1e-12)


def test_predicted_speedup_against_the_readme(lesson):
    table, measured = lesson["speedup_table"], lesson["README_MEASURED"]
    assert [round(table[c]) for c in (128, 256, 512, 1024, 2048)] == [82, 147, 257, 449, 806]
    shares = [measured[c] / table[c] for c in (128, 256, 512, 1024, 2048)]
    assert all(share < 1 for share in shares[:-1])  # small C: a segment's fixed costs are not in the count
    assert shares[-1] > 1  # C = 2048: the vanilla model's C^2 passes at memory speed are not either
    assert all(a < b for a, b in itertools.pairwise(shares))  # the shortfall shrinks as C grows
    cs = sorted(table)
    assert all(table[a] < table[b] for a, b in itertools.pairwise(cs))


def test_speedup_tends_to_the_asymptote(lesson):
    predicted, asymptote = lesson["predicted_speedup"], lesson["asymptotic_speedup"]
    ratios = [predicted(c) / asymptote(c) for c in (1_000, 100_000, 10_000_000)]
    assert ratios[0] > ratios[1] > ratios[2] > 1
    assert ratios[2] == pytest.approx(1, abs=1e-3)
    assert predicted(2_000_000) / predicted(1_000_000) == pytest.approx(2, rel=1e-3)  # linear in C


# ------------------------------------------------------------------ exercise 2: sliding_windows

def test_sliding_windows_by_hand(lesson):
    windows, targets = lesson["sliding_windows"](6, 2)
    np.testing.assert_array_equal(windows, [[0, 1], [1, 2], [2, 3], [3, 4]])
    np.testing.assert_array_equal(targets, [2, 3, 4, 5])
    windows, targets = lesson["sliding_windows"](3, 3)
    assert windows.shape == (0, 3) and targets.shape == (0,)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 60), st.integers(1, 20))
def test_sliding_windows_match_the_library(lesson, n, c):
    windows, targets = lesson["sliding_windows"](n, c)
    assert windows.shape == (max(n - c, 0), c) and np.issubdtype(windows.dtype, np.integer)
    np.testing.assert_array_equal(targets, np.arange(c, n))
    for row, t in zip(windows, targets):
        np.testing.assert_array_equal(row, np.arange(t - c, t))  # the C positions right before t
    if n > c:
        _first, starts = vanilla_windows(n, c)
        np.testing.assert_array_equal(windows[1:, 0], starts)  # the library's windows after its first pass


def test_sliding_logprobs_equal_vanilla_bpc(lesson):
    gpt = GPT(GPTConfig(vocab_size=9, n_ctx=8, d_model=16, n_layer=2, n_head=2, embd_pdrop=0.0, attn_pdrop=0.0,
                        resid_pdrop=0.0), rng=4, dtype=np.float64).eval()
    ids = np.random.default_rng(5).integers(0, 9, size=41)
    lp = lesson["sliding_logprobs"](gpt, ids, 8, windows_per_batch=5)
    assert lp.shape == (41 - 8,)
    library = vanilla_bpc(gpt, ids, context=8, include_first=False)  # targets C+1 .. n-1
    assert library.n_predicted == len(lp) - 1
    assert -lp[1:].sum() == pytest.approx(library.nats, rel=1e-12)


# ------------------------------------------------------------------ the lesson's facts

@pytest.mark.parametrize(("c", "seg"), [(24, 8), (10, 4), (5, 7)])
def test_one_layer_cache_equals_the_sliding_window(lesson, c, seg):
    model = lesson["tiny_xl"](11, seg, mem_len=c, n_layer=1, same_length=True, init_std=0.3, seed=c)
    ids = np.random.default_rng(seg).integers(0, 11, size=50)
    cached = lesson["cached_logprobs"](model, ids, seg)[c - 1:]
    sliding = lesson["sliding_logprobs"](model, ids, c)
    np.testing.assert_allclose(cached, sliding, rtol=0, atol=1e-10)


def test_lesson_identities(lesson):
    assert lesson["identity_full"] < 1e-10 and lesson["identity_growing"] < 1e-10  # any depth, memory covers all
    assert lesson["identity_one_layer"] < 1e-10  # one layer, mem_len = C
    diff = lesson["two_layer_diff"]
    assert diff[0] < 1e-10 and diff[1:].max() > 0.05  # two layers: the cache sees further than C
    assert lesson["bpc_library"] == pytest.approx(lesson["bpc_loop"], rel=1e-12)
    assert lesson["gpt_shared_state_diff"] > 0.1  # absolute positions: no state survives a slide


def test_lesson_live_measurement_shape(lesson):
    live = lesson["live"]
    assert sorted(live) == [32, 64, 128]
    for row in live.values():
        assert row["cached"] > 0 and row["vanilla"] > 0
        assert row["speedup"] == pytest.approx(row["cached"] / row["vanilla"])
    predicted = [live[c]["predicted"] for c in (32, 64, 128)]
    assert predicted[0] < predicted[1] < predicted[2]


def test_lesson_memory_carries_no_graph(lesson):
    assert lesson["memory_is_plain"]
    assert lesson["logits"].requires_grad  # the graph was on
    assert lesson["rss_after"] - lesson["rss_before"] < 8.0  # MiB over 2,000 segments
