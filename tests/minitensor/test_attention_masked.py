r"""minitensor/attention/masked.py: masked softmax, causal masks, attention, heads, memory.

masked_softmax is hand-derived, so besides its gradcheck it must equal the composed
version (``where(mask, s, -inf)`` then a softmax from exp/sum) on every row that has
at least one allowed entry; rows with none are defined as zeros with zero gradient.
"""
import gc
import math
import warnings
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, layouts, relayout, shapes

import minitensor as mt
from minitensor.attention import (
    causal_mask,
    concat_memory,
    masked_softmax,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)

TWIN = {"rtol": 1e-10, "atol": 1e-12}


def leaf(a):
    return mt.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def composed_masked_softmax(s, mask, axis=-1):
    """The same function from primitive ops: -inf where masked, then exp / sum."""
    shifted = mt.where(mask, s, -np.inf)
    shifted = shifted - mt.tensor(np.where(np.isfinite(m := shifted.data.max(axis=axis, keepdims=True)), m, 0.0))
    e = shifted.exp()
    return e / e.sum(axis=axis, keepdims=True)


@st.composite
def scores_and_masks(draw):
    shape = draw(shapes(min_dims=1, max_dims=3), label="shape")
    s = relayout(draw(arrays(shape), label="scores"), draw(layouts(), label="layout"))
    mask_shape = draw(st.sampled_from([shape, shape[-1:], (1,) * len(shape)]), label="mask shape")
    mask = draw(hnp.arrays(np.bool_, mask_shape), label="mask")
    return s, mask


@given(scores_and_masks())
def test_masked_softmax_gradcheck(case):
    s, mask = case
    assert mt.testing.gradcheck(lambda t: masked_softmax(t, mask), leaf(s))


@given(scores_and_masks(), st.data())
def test_masked_softmax_equals_composed_on_rows_with_an_allowed_entry(case, data):
    s, mask = case
    axis = data.draw(st.integers(-s.ndim, s.ndim - 1), label="axis")
    full_mask = np.broadcast_to(mask, s.shape)
    live = full_mask.any(axis=axis, keepdims=True)  # rows with at least one allowed key
    upstream = np.random.default_rng(0).standard_normal(s.shape)
    x1, x2 = leaf(s), leaf(s)
    p = masked_softmax(x1, mask, axis=axis)
    p.backward(upstream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the composed twin produces nan in dead rows; we compare live ones
        q = composed_masked_softmax(x2, full_mask, axis=axis)
        q.backward(np.where(np.broadcast_to(live, s.shape), upstream, 0.0))
    keep = np.broadcast_to(live, s.shape)
    np.testing.assert_allclose(p.data[keep], q.data[keep], **TWIN)
    np.testing.assert_allclose(x1.grad[keep], x2.grad[keep], **TWIN)
    # masked entries get exactly probability 0 and gradient 0; dead rows are all zeros
    assert np.all(p.data[~full_mask] == 0.0) and np.all(x1.grad[~full_mask] == 0.0)
    np.testing.assert_allclose(p.data.sum(axis=axis, keepdims=True), live.astype(float), atol=1e-12)


def test_fully_masked_row_is_zero_with_zero_gradient_and_no_warning():
    s = leaf([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = np.array([[True, False, True], [False, False, False]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = masked_softmax(s, mask)
        (p * mt.tensor(np.arange(6.0).reshape(2, 3))).sum().backward()
    np.testing.assert_array_equal(p.data[1], 0.0)
    np.testing.assert_array_equal(s.grad[1], 0.0)
    e = np.exp([1.0, 3.0])
    np.testing.assert_allclose(p.data[0], [e[0] / e.sum(), 0.0, e[1] / e.sum()])
    assert np.isfinite(s.grad).all()


def test_minus_inf_is_exact_where_a_large_negative_number_leaks():
    s = np.array([0.0, 30.0, 0.0], dtype=np.float32)
    mask = np.array([True, False, True])
    exact = masked_softmax(mt.tensor(s), mask).data
    np.testing.assert_array_equal(exact, np.array([0.5, 0.0, 0.5], dtype=np.float32))
    # the "-1e4" trick: the masked key still gets weight when its score is large
    leak = mt.functional.softmax(mt.tensor(np.where(mask, s, s - 1e4).astype(np.float32))).data
    assert exact[1] == 0.0 and leak.dtype == np.float32


def test_huge_scores_are_stable_in_float32():
    s = mt.tensor(np.array([[1e4, 1e4 + 1.0, -1e4]], dtype=np.float32))
    p = masked_softmax(s, np.array([True, True, False]))
    np.testing.assert_allclose(p.data, [[1 / (1 + math.e), math.e / (1 + math.e), 0.0]], rtol=1e-6)
    assert p.dtype == np.float32


def test_masked_softmax_rejects_bad_masks():
    s = mt.zeros(2, 3)
    with pytest.raises(TypeError, match="mask must be bool"):
        masked_softmax(s, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"mask of shape \(4,\) does not broadcast to scores of shape \(2, 3\)"):
        masked_softmax(s, np.ones(4, bool))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        masked_softmax(s, None, axis=2)


def test_no_mask_is_plain_softmax():
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_allclose(masked_softmax(leaf(x)).data, mt.functional.softmax(leaf(x)).data, **TWIN)


# ------------------------------------------------------------------ causal masks

@given(st.integers(0, 6), st.integers(0, 6))
def test_causal_mask_with_memory_offset(t, m):
    mask = causal_mask(t, m + t, offset=m)
    assert mask.shape == (t, m + t) and mask.dtype == np.bool_
    for i in range(t):
        for j in range(m + t):
            assert mask[i, j] == (j <= i + m)  # the memory, then the current segment up to i


def test_causal_mask_is_lower_triangular_and_checks_args():
    np.testing.assert_array_equal(causal_mask(3, 3), np.tril(np.ones((3, 3), bool)))
    with pytest.raises(ValueError, match="causal_mask"):
        causal_mask(2, 2, offset=-1)


# ------------------------------------------------------------------ attention and heads

def numpy_attention(q, k, v, mask):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    s = np.where(mask, s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v, p


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), st.integers(0, 3), st.integers(1, 4), st.data())
def test_sdpa_matches_numpy_and_gradchecks(b, h, t, m, dh, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 99), label="seed"))
    q = rng.standard_normal((b, h, t, dh))
    k, v = rng.standard_normal((2, b, h, m + t, dh))
    mask = causal_mask(t, m + t, offset=m)
    out, p = scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), mask, return_weights=True)
    ref_out, ref_p = numpy_attention(q, k, v, mask)
    np.testing.assert_allclose(out.data, ref_out, **TWIN)
    np.testing.assert_allclose(p.data, ref_p, **TWIN)
    assert mt.testing.gradcheck(lambda *x: scaled_dot_product_attention(*x, mask), leaf(q), leaf(k), leaf(v))


def test_causal_attention_output_ignores_future_tokens():
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((3, 1, 2, 6, 4))
    k2, v2 = k.copy(), v.copy()
    k2[..., 4:, :] += 10.0  # change the last two positions only
    v2[..., 4:, :] -= 5.0
    mask = causal_mask(6, 6)
    a = scaled_dot_product_attention(leaf(q), leaf(k), leaf(v), mask).data
    b = scaled_dot_product_attention(leaf(q), leaf(k2), leaf(v2), mask).data
    np.testing.assert_array_equal(a[..., :4, :], b[..., :4, :])
    assert not np.allclose(a[..., 4:, :], b[..., 4:, :])


def test_sdpa_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention: q \(1, 2, 3\), k \(1, 4, 5\)"):
        scaled_dot_product_attention(mt.zeros(1, 2, 3), mt.zeros(1, 4, 5), mt.zeros(1, 4, 5))


def test_split_and_merge_heads_are_inverse_and_slice_features():
    x = np.arange(2 * 3 * 8, dtype=np.float64).reshape(2, 3, 8)
    heads = split_heads(leaf(x), 4)
    assert heads.shape == (2, 4, 3, 2)
    np.testing.assert_array_equal(heads.data[1, 2, 0], x[1, 0, 4:6])  # head 2 owns features 4..5
    np.testing.assert_array_equal(merge_heads(heads).data, x)
    assert mt.testing.gradcheck(lambda t: merge_heads(split_heads(t, 2) * 2.0), leaf(x[:1, :2, :4]))
    with pytest.raises(ValueError, match="width 8 is not divisible by 3 heads"):
        split_heads(leaf(x), 3)


# ------------------------------------------------------------------ stop-gradient memory

def test_concat_memory_stops_the_gradient():
    rng = np.random.default_rng(0)
    w = leaf(rng.standard_normal((3, 3)))
    prev = leaf(rng.standard_normal((2, 4, 3)))
    mem = prev @ w  # a memory computed from parameters: SG must cut both
    h = leaf(rng.standard_normal((2, 5, 3)))
    out = concat_memory(mem, h)
    assert out.shape == (2, 9, 3)
    np.testing.assert_array_equal(out.data[:, :4], mem.data)
    (out * out).sum().backward()
    assert w.grad is None and prev.grad is None  # no gradient ever reaches the memory's graph
    np.testing.assert_allclose(h.grad, 2 * h.data)


def test_concat_memory_does_not_keep_the_old_graph_alive():
    x = leaf(np.ones((1, 2, 3)))
    mem = x * 2.0
    alive = weakref.ref(mem)  # the tensor, and through its _ctx the op and graph that made it
    out = concat_memory(mem, leaf(np.ones((1, 1, 3))))
    del mem
    gc.collect()
    assert alive() is None  # only the data was kept
    assert out.shape == (1, 3, 3)


def test_concat_memory_none_and_errors():
    h = leaf(np.ones((2, 3, 4)))
    assert concat_memory(None, h) is h
    with pytest.raises(ValueError, match=r"memory of shape \(2, 3, 5\) does not fit hidden states of shape \(2, 3, 4\)"):
        concat_memory(np.ones((2, 3, 5)), h)
    with pytest.raises(TypeError, match="memory dtype float32 differs"):
        concat_memory(np.ones((2, 1, 4), np.float32), h)


@given(st.integers(1, 2), st.integers(0, 3), st.integers(1, 3), st.integers(1, 3))
def test_concat_memory_gradcheck(b, m, t, d):
    rng = np.random.default_rng(b * 100 + m * 10 + t)
    mem = rng.standard_normal((b, m, d))
    h = leaf(rng.standard_normal((b, t, d)))
    assert mt.testing.gradcheck(lambda x: concat_memory(mem, x) * 2.0, h)
