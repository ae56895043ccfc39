r"""Checks for lesson 10 (Transformer-XL relative positions). Run with `pytest -m lesson10`.

The exercises are the lesson's own functions (the lesson is executed once per module with
runpy): ``rel_shift_by_index`` (the per-row shift $y_{i,j} = x_{i,T-1-i+j}$ by explicit
indexing, NaN on the future), tested against hand-computed entries and against the library's
pad-and-reshape ``rel_shift``; and ``check_relative_scores`` (a float64 gradcheck of
``relative_scores`` over all five inputs), tested to pass on the library and to fail whenever
any one input loses its gradient.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitensor as mt
from minitensor.attention import causal_mask, rel_shift, relative_scores
from minitensor.testing import GradcheckError
from models.transformer_xl import TransformerXL, TransformerXLConfig

pytestmark = pytest.mark.lesson10


# ------------------------------------------------------------------ exercise 1: rel_shift_by_index

def test_rel_shift_by_index_known_entries(lesson):
    x = np.arange(15.0).reshape(3, 5)  # T = 3, K = 5, M = 2
    y = lesson["rel_shift_by_index"](x)
    expected = np.array([[2, 3, 4, np.nan, np.nan],
                         [6, 7, 8, 9, np.nan],
                         [10, 11, 12, 13, 14]])
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(x, np.arange(15.0).reshape(3, 5))  # the input is not modified


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(0, 6), st.lists(st.integers(1, 3), max_size=2))
def test_rel_shift_by_index_equals_the_trick(lesson, seed, t, m, lead):
    x = np.random.default_rng(seed).standard_normal((*lead, t, m + t))
    y = np.asarray(lesson["rel_shift_by_index"](x))
    assert y.shape == x.shape
    allowed = np.broadcast_to(causal_mask(t, m + t, offset=m), x.shape)
    np.testing.assert_array_equal(np.isnan(y), ~allowed)
    np.testing.assert_array_equal(y[allowed], rel_shift(mt.tensor(x)).numpy()[allowed])
    i, j = np.nonzero(causal_mask(t, m + t, offset=m))
    np.testing.assert_array_equal(y[..., i, j], x[..., i, t - 1 - i + j])  # the formula itself


# ------------------------------------------------------------------ exercise 2: check_relative_scores

def test_check_relative_scores_passes_on_the_library(lesson):
    check = lesson["check_relative_scores"]
    assert check(relative_scores) is True
    assert check(relative_scores, seed=5, m=0, t=2) is True
    assert check(relative_scores, seed=6, m=4, t=1) is True


@pytest.mark.parametrize("which", range(5))
def test_check_relative_scores_checks_every_input(lesson, which):
    """Detaching any one of q, k, r, u, v must be caught: all five are checked, entry by entry."""

    def broken(*args):
        args = list(args)
        args[which] = args[which].detach()
        return relative_scores(*args)

    with pytest.raises(GradcheckError):
        lesson["check_relative_scores"](broken, seed=3)


def test_check_relative_scores_catches_a_wrong_backward_in_the_causal_part(lesson):
    class HalfGradient(mt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, grad):
            return 0.5 * grad

    def broken(q, k, r, u, v):
        return HalfGradient.apply(relative_scores(q, k, r, u, v))

    with pytest.raises(GradcheckError):
        lesson["check_relative_scores"](broken)


def test_check_relative_scores_ignores_the_garbage_entries(lesson):
    """Only causal entries count: a function that differs only in the future passes."""

    def future_noise(q, k, r, u, v):
        t, klen = q.shape[2], k.shape[2]
        future = mt.tensor((~causal_mask(t, klen, offset=klen - t)).astype(np.float64))
        return relative_scores(q, k, r, u, v) + future * (q.sum() ** 2)  # a different gradient, future only

    assert lesson["check_relative_scores"](future_noise, m=1, t=3) is True


# ------------------------------------------------------------------ the library's four terms

@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 4), st.integers(1, 4))
def test_score_terms_structure(seed, m, t):
    cfg = TransformerXLConfig(vocab_size=9, d_model=8, n_layer=2, n_head=2, d_head=4, d_inner=16, tgt_len=t,
                              mem_len=m, dropout=0.0, init_std=0.3)
    model = TransformerXL(cfg, rng=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    mems = None
    if m:
        _, mems = model(rng.integers(0, 9, size=(1, m)))
    for layer in model.score_terms(rng.integers(0, 9, size=(1, t)), mems):
        allowed = layer["mask"]
        np.testing.assert_array_equal(allowed, causal_mask(t, m + t, offset=m))
        for name in "abcd":
            np.testing.assert_array_equal(np.isnan(layer[name][0, 0]), ~allowed)
        c, d = layer["c"], layer["d"]
        for i in range(t):
            ok = allowed[i] & allowed[0]
            np.testing.assert_allclose(c[..., i, ok], c[..., 0, ok], rtol=0, atol=1e-12)  # (c): no i
        for i in range(t - 1):
            np.testing.assert_allclose(d[..., i, :-1][..., allowed[i, :-1]],
                                       d[..., i + 1, 1:][..., allowed[i, :-1]], rtol=0, atol=1e-12)  # (d): i - j
        total = (layer["a"] + layer["b"] + c + d) / math.sqrt(cfg.d_head)
        np.testing.assert_allclose(total[..., allowed], layer["scores"][..., allowed], rtol=0, atol=1e-12)


# ------------------------------------------------------------------ the lesson's facts

def test_lesson_absolute_positions_collide(lesson):
    assert lesson["position_code_collision"] < 1e-12
    assert lesson["absolute_impostor_diff"] == 0.0
    assert lesson["abs_expansion_diff"] < 1e-12
    assert lesson["relative_impostor_diff"] > 0.05


def test_lesson_rel_shift(lesson):
    assert lesson["rel_shift_equals_steps"]
    assert lesson["garbage_is_masked"]
    shifted, m, t = lesson["shifted"], lesson["M_SH"], lesson["T_SH"]
    for i in range(t - 1):
        assert shifted[i, i + m + 1] == 0.0  # the pad of row i + 1
    assert len(lesson["rel_shift_checks"]) == 5
    for _t, _m, diff, same_nan in lesson["rel_shift_checks"]:
        assert diff == 0.0 and same_nan


def test_lesson_four_terms(lesson):
    facts = lesson["term_facts"]
    assert facts["c_rows_equal"] < 1e-12 and facts["d_toeplitz"] < 1e-12
    assert facts["sum_is_scores"] < 1e-12 and facts["nan_is_mask"]
    assert facts["b_equal_queries_shifted"] < 1e-12


def test_lesson_gradchecks(lesson):
    results = lesson["gradcheck_results"]
    assert results["relative_scores"] and results["relative_scores M=0 T=3"] and results["relative_scores M=3 T=2"]
    assert results["v detached"] is False
    assert results["no shift"] is True  # a wrong forward with a consistent backward passes a gradcheck...
    errors = lesson["forward_errors"]
    assert errors["relative_scores"] < 1e-12 and errors["no shift"] > 0.1  # ...and the forward check catches it
