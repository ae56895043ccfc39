r"""minitensor/attention/relative.py: Transformer-XL's sinusoid table, rel-shift and scores.

The references here index relative distances EXPLICITLY — for query $i$ (absolute
position $M + i$) and key $j$ the distance is $i + M - j$, found in row
$K - 1 - (i + M - j)$ of the position keys — so they share no code with the
pad-and-reshape trick they check. Only causally valid entries ($j \le i + M$) are
compared: the rest is garbage by design, and a separate test pins exactly what it is.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitensor as mt
from minitensor.attention import (
    causal_mask,
    masked_softmax,
    rel_shift,
    relative_scores,
    sinusoid_positions,
)
from minitensor.testing import gradcheck

CLOSE = {"rtol": 1e-12, "atol": 1e-13}  # float64, same products summed in another order


def leaf(a):
    return mt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def valid(t, m):
    """(T, M+T) bool: True where key j is not in query i's future, j <= i + M."""
    return np.array([[j <= i + m for j in range(m + t)] for i in range(t)])


def gather_shift(x, m):
    """rel_shift by explicit relative indexing: y[..., i, j] = x[..., i, K-1-(i+M-j)] on the valid
    region, NaN elsewhere (so any comparison that strays into the garbage fails)."""
    t, k = x.shape[-2:]
    y = np.full(x.shape, np.nan)
    for i in range(t):
        for j in range(i + m + 1):
            y[..., i, j] = x[..., i, k - 1 - (i + m - j)]
    return y


def reference_terms(q, k, r, u, v):
    """The four terms of A^rel built entry by entry, NaN where j > i + M."""
    bsz, h, t, _ = q.shape
    klen = k.shape[2]
    m = klen - t
    out = {name: np.full((bsz, h, t, klen), np.nan) for name in "abcd"}
    for b in range(bsz):
        for n in range(h):
            for i in range(t):
                for j in range(i + m + 1):
                    rel = r[n, klen - 1 - (i + m - j)]  # W_{k,R} R_{i-j}: row of distance i+M-j
                    out["a"][b, n, i, j] = q[b, n, i] @ k[b, n, j]
                    out["b"][b, n, i, j] = q[b, n, i] @ rel
                    out["c"][b, n, i, j] = u[n] @ k[b, n, j]
                    out["d"][b, n, i, j] = v[n] @ rel
    return out


def reference_probs(scores, mask):
    """Plain NumPy masked softmax over the last axis (every row here has an allowed entry)."""
    s = np.where(mask, scores, -np.inf)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@st.composite
def problems(draw, max_t=4, max_m=4, max_b=2, max_h=2, max_dh=3):
    """q, k, r, u, v (float64) for relative_scores, with the memory length M (0 included)."""
    bsz, h = draw(st.integers(1, max_b)), draw(st.integers(1, max_h))
    t, m, dh = draw(st.integers(1, max_t)), draw(st.integers(0, max_m)), draw(st.integers(1, max_dh))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shapes = [(bsz, h, t, dh), (bsz, h, m + t, dh), (h, m + t, dh), (h, dh), (h, dh)]
    return [rng.standard_normal(s) for s in shapes], m


# ---------------------------------------------------------------- sinusoid_positions

@pytest.mark.parametrize("klen,d", [(1, 2), (5, 4), (7, 6), (3, 10)])
def test_sinusoid_matches_the_formula(klen, d):
    big_r = sinusoid_positions(klen, d, dtype=np.float64)
    assert isinstance(big_r, np.ndarray) and big_r.shape == (klen, d) and big_r.dtype == np.float64
    for c in range(klen):
        b = klen - 1 - c  # rows run from distance klen-1 down to 0
        for j in range(d // 2):
            angle = b / 10000 ** (2 * j / d)
            assert big_r[c, 2 * j] == pytest.approx(np.sin(angle), abs=1e-15)
            assert big_r[c, 2 * j + 1] == pytest.approx(np.cos(angle), abs=1e-15)


def test_sinusoid_order_and_dtype():
    big_r = sinusoid_positions(6, 8)
    assert big_r.dtype == np.float32
    np.testing.assert_array_equal(big_r[-1], np.tile([0.0, 1.0], 4))  # distance 0: sin 0, cos 0
    np.testing.assert_allclose(big_r[0, :2], [np.sin(5.0), np.cos(5.0)], rtol=1e-6)  # distance 5 first
    # Reversing the rows gives the ascending-distance table: row b = distance b.
    np.testing.assert_allclose(sinusoid_positions(6, 8, dtype=np.float64)[::-1][3, 2], np.sin(3 / 10000 ** (2 / 8)))


@pytest.mark.parametrize("klen,d", [(4, 3), (4, 0), (4, -2), (-1, 4)])
def test_sinusoid_rejects_bad_sizes(klen, d):
    with pytest.raises(ValueError, match="sinusoid_positions"):
        sinusoid_positions(klen, d)


# ---------------------------------------------------------------- rel_shift

@given(t=st.integers(1, 6), m=st.integers(0, 5), lead=st.lists(st.integers(1, 3), max_size=2),
       seed=st.integers(0, 2**16))
def test_rel_shift_equals_gather_on_the_valid_region(t, m, lead, seed):
    x = np.random.default_rng(seed).standard_normal((*lead, t, m + t))
    y = rel_shift(mt.tensor(x)).data
    assert y.shape == x.shape
    ok = valid(t, m)
    np.testing.assert_array_equal(y[..., ok], gather_shift(x, m)[..., ok])  # a pure copy: bit-exact
    # The valid region is exactly what the causal mask with offset M lets through.
    np.testing.assert_array_equal(ok, causal_mask(t, m + t, offset=m))


@given(t=st.integers(1, 6), m=st.integers(0, 5))
def test_rel_shift_garbage_region(t, m):
    """For j > i + M: the padding zero at j = i+M+1, then the head of row i+1."""
    k = m + t
    x = np.arange(1, t * k + 1, dtype=np.float64).reshape(t, k)  # all nonzero, all distinct
    y = rel_shift(mt.tensor(x)).data
    for i in range(t):
        for j in range(k):
            if j <= i + m:
                assert y[i, j] == x[i, k - 1 - (i + m - j)]
            elif j == i + m + 1:
                assert y[i, j] == 0.0
            else:
                assert y[i, j] == x[i + 1, j - i - m - 2]
    assert np.all(y[-1] == x[-1])  # the last query sees every key: no garbage at all


def test_rel_shift_small_example():
    x = np.arange(12.0).reshape(3, 4)  # T=3, K=4, M=1; column c = distance 3-c
    expected = [[2, 3, 0, 4],  # query 0: distances 1, 0, then garbage
                [5, 6, 7, 0],
                [8, 9, 10, 11]]
    np.testing.assert_array_equal(rel_shift(mt.tensor(x)).data, expected)


@settings(max_examples=15)
@given(t=st.integers(1, 4), m=st.integers(0, 3), lead=st.lists(st.integers(1, 2), max_size=2),
       seed=st.integers(0, 2**16))
def test_rel_shift_gradcheck(t, m, lead, seed):
    x = leaf(np.random.default_rng(seed).standard_normal((*lead, t, m + t)))
    assert gradcheck(rel_shift, x)  # garbage entries included: they are copies too


def test_rel_shift_backward_is_the_inverse_shift():
    t, m = 3, 2
    x = leaf(np.zeros((t, m + t)))
    g = np.random.default_rng(0).standard_normal((t, m + t)) * valid(t, m)  # gradient on valid entries only
    rel_shift(x).backward(g)
    expected = np.zeros((t, m + t))
    for i in range(t):
        for j in range(i + m + 1):
            expected[i, m + t - 1 - (i + m - j)] += g[i, j]
    np.testing.assert_array_equal(x.grad, expected)


@pytest.mark.parametrize("shape", [(4,), (3, 2), (2, 5, 4)])
def test_rel_shift_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"rel_shift.*" + str(shape).replace("(", r"\(").replace(")", r"\)")):
        rel_shift(mt.tensor(np.zeros(shape)))


# ---------------------------------------------------------------- relative_scores

@given(problems())
def test_relative_scores_match_the_dense_reference(problem):
    arrays, m = problem
    q = arrays[0]
    t = q.shape[2]
    scores = relative_scores(*[mt.tensor(a) for a in arrays]).data
    ref = reference_terms(*arrays)
    ref_scores = ref["a"] + ref["b"] + ref["c"] + ref["d"]
    ok = valid(t, m)
    assert scores.shape == ref_scores.shape
    np.testing.assert_allclose(scores[..., ok], ref_scores[..., ok], **CLOSE)

    # After the causal mask the garbage is gone: the probabilities equal the reference's.
    mask = causal_mask(t, m + t, offset=m)
    p = masked_softmax(mt.tensor(scores), mask).data
    np.testing.assert_allclose(p, reference_probs(ref_scores, mask), **CLOSE)
    assert np.all(p[..., ~mask] == 0.0)
    # ... and bit for bit independent of what the garbage holds (here: NaN).
    poisoned = np.where(mask, scores, np.nan)
    np.testing.assert_array_equal(masked_softmax(mt.tensor(poisoned), mask).data, p)


@given(problems())
def test_relative_scores_terms(problem):
    arrays, m = problem
    t = arrays[0].shape[2]
    tensors = [mt.tensor(a) for a in arrays]
    terms = relative_scores(*tensors, terms=True)
    assert sorted(terms) == ["a", "b", "c", "d"]
    combined = relative_scores(*tensors).data
    total = sum(terms[name].data for name in "abcd")
    np.testing.assert_allclose(total, combined, **CLOSE)  # garbage included: rel_shift is linear
    ref = reference_terms(*arrays)
    ok = valid(t, m)
    for name in "abcd":
        assert terms[name].shape == combined.shape
        np.testing.assert_allclose(terms[name].data[..., ok], ref[name][..., ok], **CLOSE, err_msg=f"term ({name})")


@settings(max_examples=12)
@given(problems(max_t=3, max_m=3))
def test_relative_scores_gradcheck(problem):
    arrays, m = problem
    t = arrays[0].shape[2]
    keep = mt.tensor(causal_mask(t, m + t, offset=m).astype(np.float64))  # zero the garbage before reducing

    def fn(q, k, r, u, v):
        return relative_scores(q, k, r, u, v) * keep

    assert gradcheck(fn, *[leaf(a) for a in arrays])


@pytest.mark.parametrize("name", ["b", "c", "d"])
def test_relative_scores_term_gradcheck(name):
    """The terms with a broadcast (c, d) or a shift (b, d) have gradients of their own."""
    rng = np.random.default_rng(1)
    b, h, t, m, dh = 2, 2, 3, 2, 2
    arrays = [rng.standard_normal(s) for s in [(b, h, t, dh), (b, h, m + t, dh), (h, m + t, dh), (h, dh), (h, dh)]]
    keep = mt.tensor(causal_mask(t, m + t, offset=m).astype(np.float64))
    assert gradcheck(lambda *xs: relative_scores(*xs, terms=True)[name] * keep, *[leaf(a) for a in arrays])


def test_garbage_gets_no_gradient_through_the_mask():
    """Masked softmax after the scores: the inputs' gradients equal those of the dense reference path."""
    rng = np.random.default_rng(2)
    b, h, t, m, dh = 1, 2, 3, 2, 3
    arrays = [rng.standard_normal(s) for s in [(b, h, t, dh), (b, h, m + t, dh), (h, m + t, dh), (h, dh), (h, dh)]]
    mask = causal_mask(t, m + t, offset=m)
    w = rng.standard_normal((b, h, t, m + t))
    ours = [leaf(a) for a in arrays]
    (masked_softmax(relative_scores(*ours), mask) * mt.tensor(w)).sum().backward()

    # The same scores gathered entry by entry (explicit relative indexing, autograd through getitem).
    theirs = [leaf(a) for a in arrays]
    q, k, r, u, v = theirs
    klen = m + t
    rows = []
    for i in range(t):
        cols = []
        for j in range(klen):
            if j <= i + m:
                rel = r[:, klen - 1 - (i + m - j)]  # (H, Dh)
                cols.append(((q[:, :, i] + u) * k[:, :, j]).sum(axis=-1)  # (a) + (c)
                            + ((q[:, :, i] + v) * rel).sum(axis=-1))  # (b) + (d)
            else:
                cols.append(mt.tensor(np.zeros((b, h))))  # any value: the mask hides it
        rows.append(mt.stack(cols, axis=-1))  # (B, H, K)
    dense = mt.stack(rows, axis=-2)  # (B, H, T, K)
    (masked_softmax(dense, mask) * mt.tensor(w)).sum().backward()
    for name, a, c in zip("qkruv", ours, theirs):
        np.testing.assert_allclose(a.grad, c.grad, **CLOSE, err_msg=f"gradient of {name}")


def test_position_terms_depend_only_on_distance():
    """With R from sinusoid_positions projected by one W_{k,R}, and equal queries, (b) + (d) at
    (i, j) is a function of i + M - j alone: what 'relative' means."""
    rng = np.random.default_rng(3)
    h, dh, t, m, d = 2, 3, 4, 3, 8
    klen = m + t
    w_kr = rng.standard_normal((h * dh, d))
    r = (sinusoid_positions(klen, d, dtype=np.float64) @ w_kr.T).reshape(klen, h, dh).transpose(1, 0, 2)  # (H, K, Dh)
    q = np.broadcast_to(rng.standard_normal((1, h, 1, dh)), (1, h, t, dh))
    k = rng.standard_normal((1, h, klen, dh))
    u, v = rng.standard_normal((h, dh)), rng.standard_normal((h, dh))
    terms = relative_scores(*[mt.tensor(np.ascontiguousarray(a)) for a in (q, k, r, u, v)], terms=True)
    pos = terms["b"].data + terms["d"].data
    for i in range(t):
        for j in range(i + m + 1):
            dist = i + m - j
            np.testing.assert_allclose(pos[0, :, i, j], pos[0, :, t - 1, klen - 1 - dist], **CLOSE)


def test_float32_in_float32_out():
    rng = np.random.default_rng(4)
    shapes = [(1, 2, 3, 4), (1, 2, 5, 4), (2, 5, 4), (2, 4), (2, 4)]
    scores = relative_scores(*[mt.tensor(rng.standard_normal(s).astype(np.float32)) for s in shapes])
    assert scores.dtype == np.float32 and scores.shape == (1, 2, 3, 5)


GOOD = {"q": (2, 2, 3, 4), "k": (2, 2, 5, 4), "r": (2, 5, 4), "u": (2, 4), "v": (2, 4)}


@pytest.mark.parametrize("arg,shape,words", [
    ("q", (2, 3, 4), "dims"),
    ("k", (2, 3, 5, 4), "batch, heads and head size"),
    ("k", (2, 2, 5, 3), "batch, heads and head size"),
    ("k", (2, 2, 2, 4), "fewer than"),
    ("r", (2, 4, 4), "one position key per distance"),
    ("r", (1, 5, 4), "one position key per distance"),
    ("u", (2, 3), "u and v"),
    ("v", (4, 2), "u and v"),
])
def test_relative_scores_shape_errors(arg, shape, words):
    shapes = dict(GOOD, **{arg: shape})
    with pytest.raises(ValueError, match="relative_scores") as err:
        relative_scores(*[mt.tensor(np.zeros(s)) for s in shapes.values()])
    assert words in str(err.value) and f"{arg} {shape}" in str(err.value)


def test_relative_scores_dtype_error():
    arrays = [np.zeros(s) for s in GOOD.values()]
    arrays[2] = arrays[2].astype(np.float32)
    with pytest.raises(TypeError, match="r float32"):
        relative_scores(*[mt.tensor(a) for a in arrays])
