r"""Checks for lesson 06 (masked softmax and multi-head attention). Run with `pytest -m lesson06`.

The exercises: ``softmax_vjp`` (called by ``MaskedSoftmax.backward``) in minitensor/attention/masked.py (tested
directly through ``masked_softmax``: gradcheck with fully-masked rows, the composed
twin, the vector-form Jacobian), and the lesson's own ``attention_by_hand`` and
``check_softmax_gradient`` (the lesson is executed once per module with runpy).
Only solutions of lessons 01-06 are needed.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, shapes

import minitensor as mt
from minitensor.attention import (
    MaskedSoftmax,
    causal_mask,
    masked_softmax,
    scaled_dot_product_attention,
)
from minitensor.testing import GradcheckError, gradcheck

pytestmark = pytest.mark.lesson06

# Two float64 evaluations of the same formula in a different order agree to ~1e-15.
ATOL = 1e-12


# ------------------------------------------------------------------ strategies

@st.composite
def scores_and_mask(draw, max_dims=3, dead_rows=True, live_rows=False):
    """float64 scores, a bool mask of the same shape and a softmax axis.

    ``dead_rows``: some rows along ``axis`` are forced fully masked (drawn, may be none).
    ``live_rows``: every row gets at least one allowed entry (after the dead rows are drawn,
    so the two options should not be combined).
    """
    shape = draw(shapes(min_dims=1, max_dims=max_dims, max_side=5))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    scores = draw(arrays(shape))
    mask = draw(hnp.arrays(bool, shape))
    row_shape = tuple(1 if i == axis % len(shape) else n for i, n in enumerate(shape))
    if dead_rows:
        mask &= ~draw(hnp.arrays(bool, row_shape))
    if live_rows:
        keep = draw(hnp.arrays(np.int64, row_shape, elements=st.integers(0, shape[axis] - 1)))
        np.put_along_axis(mask, keep, True, axis=axis)
    return scores, mask, axis


def dead(mask, axis):
    """True on every entry of a row (along ``axis``) that has no allowed entry."""
    return np.broadcast_to(~mask.any(axis=axis, keepdims=True), mask.shape)


def composed_masked_softmax(s, mask, axis):
    """where(mask, s, -inf), then softmax composed from primitive ops: autograd derives the backward."""
    z = mt.where(mask, s, -np.inf)
    e = (z - z.max(axis=axis, keepdims=True)).exp()
    return e / e.sum(axis=axis, keepdims=True)


def vector_form_vjp(p, pbar, axis):
    r"""$\bar s = p \odot (\bar p - \langle \bar p, p\rangle)$, the formula of the lesson."""
    return p * (pbar - (pbar * p).sum(axis=axis, keepdims=True))


def full_jacobian_vjp(p, pbar, axis):
    r"""$J^\top \bar p$ with $J = \mathrm{diag}(p) - pp^\top$ built explicitly for every row."""
    p, pbar = np.moveaxis(p, axis, -1), np.moveaxis(pbar, axis, -1)
    J = p[..., :, None] * (np.eye(p.shape[-1]) - p[..., None, :])  # (..., T, T): J_ij = dp_i/ds_j
    return np.moveaxis(np.einsum("...ij,...i->...j", J, pbar), -1, axis)


# ------------------------------------------------------------------ exercise 2: softmax_vjp

@settings(max_examples=40)
@given(scores_and_mask())
def test_masked_softmax_gradcheck_with_fully_masked_rows(case):
    scores, mask, axis = case
    assert gradcheck(lambda s: masked_softmax(s, mask, axis=axis), mt.tensor(scores, requires_grad=True))


@given(scores_and_mask(dead_rows=False, live_rows=True), st.integers(0, 2**32 - 1))
def test_masked_softmax_equals_composed_version_on_rows_with_an_allowed_entry(case, seed):
    scores, mask, axis = case
    upstream = np.random.default_rng(seed).standard_normal(scores.shape)
    results = []
    for fn in (masked_softmax, composed_masked_softmax):
        s = mt.tensor(scores, requires_grad=True)
        p = fn(s, mask, axis=axis)
        p.backward(upstream)
        results.append((p.numpy(), s.grad))
    (p_fused, g_fused), (p_composed, g_composed) = results
    np.testing.assert_allclose(p_fused, p_composed, rtol=0, atol=ATOL)
    np.testing.assert_allclose(g_fused, g_composed, rtol=0, atol=ATOL)
    assert np.all(p_fused[~mask] == 0.0) and np.all(g_fused[~mask] == 0.0)
    np.testing.assert_allclose(p_fused.sum(axis=axis), 1.0, atol=ATOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=30)
@given(case=scores_and_mask(), seed=st.integers(0, 2**32 - 1))
def test_masked_softmax_fully_masked_rows_zero_output_zero_grad_no_warnings(dtype, case, seed):
    scores, mask, axis = case
    first_row = [0] * mask.ndim
    first_row[axis] = slice(None)
    mask[tuple(first_row)] = False  # at least one fully-masked row, whatever was drawn
    upstream = np.random.default_rng(seed).standard_normal(scores.shape).astype(dtype)
    s = mt.tensor(scores.astype(dtype), requires_grad=True)
    with warnings.catch_warnings(), np.errstate(divide="raise", over="raise", invalid="raise"):
        warnings.simplefilter("error")
        p = masked_softmax(s, mask, axis=axis)
        p.backward(upstream)
    out, grad = p.numpy(), s.grad
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    gone = dead(mask, axis)
    assert gone.any()
    assert np.all(out[gone] == 0.0), "a fully-masked row attends to nothing: exactly zero weights"
    assert np.all(grad[gone] == 0.0), "a fully-masked row passes exactly zero gradient"
    assert np.all(grad[~mask] == 0.0), "a masked entry never receives gradient"
    live_sums = out.sum(axis=axis)[~gone.any(axis=axis)]
    np.testing.assert_allclose(live_sums, 1.0, atol=1e-5 if dtype == np.float32 else ATOL)


@given(scores_and_mask(), st.integers(0, 2**32 - 1))
def test_masked_softmax_backward_is_the_vector_form_of_the_jacobian(case, seed):
    scores, mask, axis = case
    upstream = np.random.default_rng(seed).standard_normal(scores.shape)
    s = mt.tensor(scores, requires_grad=True)
    p = masked_softmax(s, mask, axis=axis)
    p.backward(upstream)
    P = p.numpy()
    # the identity of the lesson: J^T pbar = p * (pbar - <pbar, p>), row by row
    np.testing.assert_allclose(vector_form_vjp(P, upstream, axis), full_jacobian_vjp(P, upstream, axis),
                               rtol=0, atol=ATOL)
    np.testing.assert_allclose(s.grad, full_jacobian_vjp(P, upstream, axis), rtol=0, atol=ATOL)
    np.testing.assert_allclose(s.grad.sum(axis=axis), 0.0, atol=ATOL)  # a shift of a row's scores changes nothing


def test_masked_softmax_backward_known_values():
    # p = (1/2, 0, 1/2) (middle entry masked), pbar = (1, 5, 3): <pbar, p> = 2
    s = mt.tensor(np.array([[0.0, 7.0, 0.0]]), requires_grad=True)
    masked_softmax(s, np.array([[True, False, True]])).backward(np.array([[1.0, 5.0, 3.0]]))
    np.testing.assert_allclose(s.grad, [[-0.5, 0.0, 0.5]], rtol=0, atol=1e-15)


@given(scores_and_mask(), st.data())
def test_masked_softmax_ignores_the_values_of_masked_scores(case, data):
    scores, mask, axis = case
    other = np.where(mask, scores, data.draw(arrays(scores.shape, -1e6, 1e6)))
    np.testing.assert_array_equal(masked_softmax(mt.tensor(scores), mask, axis=axis).numpy(),
                                  masked_softmax(mt.tensor(other), mask, axis=axis).numpy())


# ------------------------------------------------------------------ causal masking

@given(st.integers(1, 6), st.integers(0, 4), st.integers(0, 4))
def test_causal_mask_with_memory_offset_matches_the_rule(t, m, extra):
    t_k = m + t + extra  # more keys than memory + current is allowed too
    got = causal_mask(t, t_k, offset=m)
    expected = np.array([[j <= i + m for j in range(t_k)] for i in range(t)])
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=30)
@given(st.integers(2, 6), st.integers(0, 3), st.data())
def test_causal_attention_output_does_not_see_the_future(t, m, data):
    """Changing keys/values/queries after position t0 leaves outputs at positions <= t0 unchanged,
    with and without a memory of m earlier positions (offset=m)."""
    t0 = data.draw(st.integers(0, t - 2))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    q = rng.standard_normal((2, 2, t, 3))  # (B, H, T, Dh)
    kv = rng.standard_normal((2, 2, 2, m + t, 3))  # keys and values over memory + current: (2, B, H, M+T, Dh)
    q2, kv2 = q.copy(), kv.copy()
    q2[..., t0 + 1:, :] = rng.standard_normal(q2[..., t0 + 1:, :].shape)
    kv2[..., m + t0 + 1:, :] = rng.standard_normal(kv2[..., m + t0 + 1:, :].shape)  # the current future
    mask = causal_mask(t, m + t, offset=m)
    outs = [scaled_dot_product_attention(mt.tensor(a), mt.tensor(b[0]), mt.tensor(b[1]), mask=mask).numpy()
            for a, b in ((q, kv), (q2, kv2))]
    np.testing.assert_allclose(outs[0][..., :t0 + 1, :], outs[1][..., :t0 + 1, :], rtol=0, atol=ATOL)
    # without the mask the same change is visible (a sanity check that the test can fail)
    free = [scaled_dot_product_attention(mt.tensor(a), mt.tensor(b[0]), mt.tensor(b[1])).numpy()
            for a, b in ((q, kv), (q2, kv2))]
    assert np.abs(free[0][..., :t0 + 1, :] - free[1][..., :t0 + 1, :]).max() > 1e-6


# ------------------------------------------------------------------ exercise 1: attention_by_hand

@st.composite
def attention_inputs(draw):
    lead = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    t_q, t_k, d, d_v = (draw(st.integers(1, 5)) for _ in range(4))
    q, k, v = (draw(arrays((*lead, a, b))) for a, b in ((t_q, d), (t_k, d), (t_k, d_v)))
    mask = draw(st.none() | hnp.arrays(bool, (*lead, t_q, t_k)))
    return q, k, v, mask


@settings(max_examples=50)
@given(attention_inputs())
def test_attention_by_hand_matches_library(lesson, case):
    q, k, v, mask = case
    with warnings.catch_warnings(), np.errstate(divide="raise", over="raise", invalid="raise"):
        warnings.simplefilter("error")
        out, weights = lesson["attention_by_hand"](q, k, v, mask)
    ref_out, ref_w = scaled_dot_product_attention(mt.tensor(q), mt.tensor(k), mt.tensor(v), mask=mask,
                                                  return_weights=True)
    assert out.shape == ref_out.shape and weights.shape == ref_w.shape
    np.testing.assert_allclose(out, ref_out.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(weights, ref_w.numpy(), rtol=0, atol=ATOL)
    if mask is not None:
        assert np.all(weights[~mask] == 0.0)
        assert np.all(out[~mask.any(axis=-1)] == 0.0)


def test_attention_by_hand_known_values(lesson):
    q = np.zeros((2, 4))  # equal scores: a uniform average of the allowed values
    k = np.ones((3, 4))
    v = np.array([[1.0, 0.0], [3.0, 6.0], [5.0, 9.0]])
    mask = np.array([[True, True, False], [False, False, False]])
    out, weights = lesson["attention_by_hand"](q, k, v, mask)
    np.testing.assert_allclose(weights, [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(out, [[2.0, 3.0], [0.0, 0.0]], rtol=0, atol=1e-15)
    out, _ = lesson["attention_by_hand"](np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 0.0]]),
                                         np.array([[1.0], [0.0]]))
    p0 = 1 / (1 + np.exp(-2 / np.sqrt(2)))  # scores 2/sqrt(2) and 0: the 1/sqrt(d_h) is applied
    np.testing.assert_allclose(out, [[p0]], rtol=1e-14)


# ------------------------------------------------------------------ exercise 3: check_softmax_gradient

class LeakyMaskedSoftmax(MaskedSoftmax):
    """Right on allowed entries, but sends a gradient to masked ones: only a check with masks catches it."""

    @staticmethod
    def forward(ctx, scores, *, mask, axis):
        ctx.mask = mask
        return MaskedSoftmax.forward(ctx, scores, mask=mask, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        good = p * (grad - (grad * p).sum(axis=ctx.axis, keepdims=True))
        return np.where(ctx.mask, good, grad)


def leaky_masked_softmax(s, mask):
    return LeakyMaskedSoftmax.apply(s, mask=mask, axis=-1)


@settings(max_examples=25)
@given(scores_and_mask(max_dims=2))
def test_check_softmax_gradient_passes_the_library(lesson, case):
    scores, mask, axis = case
    assert lesson["check_softmax_gradient"](lambda s, m: masked_softmax(s, m, axis=axis), scores, mask) is True


def test_check_softmax_gradient_catches_wrong_backwards(lesson):
    rng = np.random.default_rng(6)
    scores = rng.standard_normal((3, 4))
    mask = np.array([[True, False, True, True], [False] * 4, [True] * 4])
    check = lesson["check_softmax_gradient"]
    with pytest.raises(GradcheckError):
        check(lesson["forgetful_masked_softmax"], scores, mask)
    with pytest.raises(GradcheckError):
        check(leaky_masked_softmax, scores, mask)
    # the check looks at float64 inputs whatever it is given
    assert check(masked_softmax, scores.astype(np.float32), mask) is True


def test_lesson_gradcheck_results(lesson):
    assert lesson["gradcheck_passed"] is True
    assert lesson["broken_caught"] is True
    assert (~lesson["gc_mask"].any(axis=-1)).any(), "the lesson's mask must contain a fully-masked row"


# ------------------------------------------------------------------ the lesson's demos

def test_demo_scaling_keeps_unit_variance(lesson):
    table = lesson["variance_table"]
    for d_h, (var_raw, var_scaled, max_raw, max_scaled, tr_raw, tr_scaled) in table.items():
        assert 0.85 < var_raw / d_h < 1.15
        assert 0.9 < var_scaled < 1.1
        assert max_scaled < max_raw and tr_scaled > tr_raw
    assert table[256][2] > 0.9 and table[256][4] < 0.15  # unscaled: nearly one-hot, little gradient


def test_demo_heads_and_masks(lesson):
    assert lesson["head_slice_ok"] and lesson["round_trip"] == 0.0
    leaks = lesson["leaks"]
    assert leaks[-10.0][0] > 1e-5 and leaks[-10.0][1] > 1e-5
    assert leaks[-200.0][0] == 0.0 and leaks[-200.0][1] > 0.0  # underflow depends on the dtype
    assert leaks[-np.inf] == [0.0, 0.0]
    np.testing.assert_allclose(lesson["big_negative"][1], 0.25)  # uniform over forbidden keys
    assert np.isnan(lesson["naive_inf"][1]).all()
    assert np.all(lesson["library"][1] == 0.0)
    np.testing.assert_allclose(lesson["library"][0], lesson["naive_inf"][0], rtol=0, atol=ATOL)


def test_demo_differences_are_tiny(lesson):
    assert lesson["by_hand_diff"] < ATOL
    assert max(lesson["jacobian_diffs"]) < ATOL
    grad = lesson["s_jac"].grad
    assert np.all(grad[~lesson["jac_mask"]] == 0.0)


def test_demo_causal_layer(lesson):
    assert lesson["causal_diffs"]["causal"] < ATOL
    assert lesson["causal_diffs"]["no mask"] > 1e-3
    assert lesson["future_grad"] == 0.0 and lesson["past_grad"] > 0.0
    expected = "x x x | x . . .\nx x x | x x . .\nx x x | x x x .\nx x x | x x x x"
    assert lesson["mask_picture"](lesson["xl_mask"], split=lesson["M_MEM"]) == expected
