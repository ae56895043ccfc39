r"""Tests of the gradient checker itself (minitensor/testing.py).

A checker that never fails proves nothing, so besides "correct ops pass" this
file shows that a deliberately wrong backward is CAUGHT, and that the error says
where (the worst entry), by how much (analytic vs numeric, relative error).
"""
import re

import numpy as np
import pytest
from functions import Cube  # correct: the control for the wrong ops below

import minitensor as mt
import minitensor.functional as F
from minitensor.testing import (
    TOLERANCES,
    GradcheckError,
    directional_check,
    gradcheck,
    numerical_gradient,
)


def leaf(shape, seed=0, dtype=np.float64):
    return mt.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=True)


# ------------------------------------------------------------ deliberately wrong ops

class WrongFactorTanh(mt.Function):
    r"""$y = \tanh x$ with a backward off by a factor 1.5: $\bar x = 1.5\,(1 - y^2)\,\bar y$."""

    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return 1.5 * (1 - y * y) * grad


class WrongSignMul(mt.Function):
    r"""$y = a \odot b$ whose gradient for $b$ has the wrong sign ($\bar b = -\bar y\, a$)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return grad * b, -grad * a


class OneBadEntry(mt.Function):
    r"""The identity, whose backward is wrong at a single entry (adds ``DELTA`` there)."""

    BAD, DELTA = (1, 2), 0.75

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        g = grad.copy()
        g[OneBadEntry.BAD] += OneBadEntry.DELTA
        return g


def parse_failure(message):
    """(index, analytic, numeric, relative error) out of a GradcheckError message."""
    m = re.search(r"at index \(([\d, ]*)\): analytic (\S+) vs numeric (\S+) \(relative error (\S+?);", message)
    assert m, f"unexpected message format: {message}"
    index = tuple(int(i) for i in m.group(1).split(",") if i.strip())
    return index, float(m.group(2)), float(m.group(3)), float(m.group(4))


# ------------------------------------------------------------ correct ops pass

@pytest.mark.parametrize("name, fn, shapes", [
    ("mul-add", lambda a, b: a * b + a, [(2, 3), (2, 3)]),
    ("broadcast-div", lambda a, b: a / (b * b + 1.0), [(3, 1), (1, 4)]),
    ("matmul", lambda a, b: a @ b, [(2, 3), (3, 4)]),
    ("exp-log", lambda a: (a * a + 0.5).log() + a.exp(), [(2, 3)]),
    ("softmax", lambda a: F.softmax(a, axis=-1), [(3, 4)]),
    ("log-softmax", lambda a: F.log_softmax(a, axis=0), [(3, 4)]),
    ("layer-norm", lambda x, w, b: F.layer_norm(x, w, b), [(2, 5), (5,), (5,)]),
    ("reshape-transpose", lambda a: a.reshape(3, 2).transpose() * 2.0, [(2, 3)]),
    ("user-function", lambda a: Cube.apply(a), [(2, 2)]),
])
def test_gradcheck_passes_on_correct_ops(name, fn, shapes):
    inputs = [leaf(s, seed=i) for i, s in enumerate(shapes)]
    assert gradcheck(fn, *inputs) is True


def test_gradcheck_leaves_the_inputs_unchanged():
    """The finite differences perturb the data in place; every entry must be put back."""
    a, b = leaf((2, 3), 0), leaf((3, 2), 1)
    before = a.data.copy(), b.data.copy()
    gradcheck(lambda x, y: (x @ y).tanh(), a, b)
    directional_check(lambda x, y: (x @ y).tanh(), a, b)
    np.testing.assert_array_equal(a.data, before[0])
    np.testing.assert_array_equal(b.data, before[1])


def test_gradcheck_checks_only_inputs_that_require_grad():
    """A constant input (no requires_grad, any dtype) is fine and is not perturbed."""
    x = leaf((2, 3))
    const = mt.tensor(np.arange(6, dtype=np.int64).reshape(2, 3))
    assert gradcheck(lambda t, c: t * c, x, const)


# ------------------------------------------------------------ wrong backwards are caught

def test_gradcheck_catches_a_backward_off_by_a_factor():
    with pytest.raises(GradcheckError, match=r"gradcheck failed for input 0 at index .*analytic .* vs numeric"):
        gradcheck(WrongFactorTanh.apply, leaf((3, 2)))


def test_gradcheck_error_is_an_assertion_error():
    """So a failing gradcheck inside a plain test reads as a test failure."""
    assert issubclass(GradcheckError, AssertionError)


def test_gradcheck_catches_a_wrong_sign_and_names_the_input():
    """Input 0's gradient is right; input 1's has the wrong sign: the message names input 1."""
    a, b = leaf((2, 2), 0), leaf((2, 2), 1)
    with pytest.raises(GradcheckError, match=r"input 1") as info:
        gradcheck(WrongSignMul.apply, a, b)
    _, analytic, numeric, rel = parse_failure(str(info.value))
    np.testing.assert_allclose(analytic, -numeric, rtol=1e-4)
    np.testing.assert_allclose(rel, 2.0, rtol=1e-4)  # |(-n) - n| / |n|


def test_gradcheck_message_names_the_worst_entry_and_both_values():
    x = leaf((3, 4))
    with pytest.raises(GradcheckError) as info:
        gradcheck(OneBadEntry.apply, x)
    message = str(info.value)
    index, analytic, numeric, rel = parse_failure(message)
    assert index == OneBadEntry.BAD
    np.testing.assert_allclose(analytic - numeric, OneBadEntry.DELTA, rtol=1e-4)
    np.testing.assert_allclose(rel, abs(analytic - numeric) / abs(numeric), rtol=1e-2)
    assert "1 of 12 entries differ" in message
    assert f"atol={TOLERANCES['float64']['atol']}" in message


def test_gradcheck_reports_the_worst_of_several_bad_entries():
    """Two wrong entries, off by 0.3 and by 0.9: the message names the 0.9 one and counts both."""

    class TwoBadEntries(mt.Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, grad):
            g = grad.copy()
            g[0, 1] += 0.3
            g[2, 3] -= 0.9
            return g

    with pytest.raises(GradcheckError) as info:
        gradcheck(TwoBadEntries.apply, leaf((3, 4), seed=4))
    index, analytic, numeric, _ = parse_failure(str(info.value))
    assert index == (2, 3)
    np.testing.assert_allclose(analytic - numeric, -0.9, rtol=1e-4)
    assert "2 of 12 entries differ" in str(info.value)


def test_gradcheck_factor_error_has_the_expected_relative_error():
    """Factor 1.5 on tanh: every entry's analytic value is 1.5 x the numeric one."""
    with pytest.raises(GradcheckError) as info:
        gradcheck(WrongFactorTanh.apply, leaf((4, 3), seed=3))
    _, analytic, numeric, rel = parse_failure(str(info.value))
    np.testing.assert_allclose(analytic, 1.5 * numeric, rtol=1e-4)
    np.testing.assert_allclose(rel, 0.5, rtol=1e-3)


# ------------------------------------------------------------ refusals

def test_gradcheck_refuses_float32_inputs():
    x = leaf((2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match=r"input 0 has dtype float32; use float64"):
        gradcheck(lambda t: t * t, x)
    with pytest.raises(TypeError, match=r"float64"):
        directional_check(lambda t: t * t, x)


def test_gradcheck_refuses_when_nothing_requires_grad():
    x = mt.tensor(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"no input has requires_grad=True"):
        gradcheck(lambda t: t * t, x)
    with pytest.raises(ValueError, match=r"no input has requires_grad=True"):
        directional_check(lambda t: t * t, x)


def test_gradcheck_refuses_a_function_that_returns_no_tensor():
    with pytest.raises(TypeError, match=r"fn must return a Tensor"):
        gradcheck(lambda t: t.data * 2, leaf((2,)))


# ------------------------------------------------------------ directional check

def big_mlp(x, w1, w2):
    """A two-layer net on a batch: 480 + 240 + 120 parameters, too many to check entry by entry cheaply."""
    return F.gelu(x @ w1) @ w2


def test_directional_check_passes_on_a_big_correct_op():
    x, w1, w2 = leaf((16, 30), 0), leaf((30, 8), 1), leaf((8, 15), 2)
    assert directional_check(big_mlp, x, w1, w2, n_directions=4) is True


def test_directional_check_catches_a_wrong_factor():
    x = leaf((20, 30), 0)
    with pytest.raises(GradcheckError, match=r"random direction 0.*analytic .* vs numeric .*relative error"):
        directional_check(WrongFactorTanh.apply, x)


def test_directional_check_catches_a_wrong_sign_in_one_input():
    a, b = leaf((10, 12), 0), leaf((10, 12), 1)
    with pytest.raises(GradcheckError, match=r"random direction"):
        directional_check(WrongSignMul.apply, a, b)


# ------------------------------------------------------------ why float64

def test_float32_central_differences_are_far_less_accurate_than_float64():
    r"""Central differences in float32 with $\epsilon = 10^{-3}$ carry a rounding error
    of about $10^{-7}/\epsilon \approx 10^{-4}$ relative; float64 with $\epsilon = 10^{-6}$
    about $10^{-16}/10^{-6} = 10^{-10}$. Measured on $\tanh$ against its exact derivative."""
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1.0, 1.0, (4, 5))
    w = rng.standard_normal((4, 5))
    errors = {}
    for dtype, eps in ((np.float32, 1e-3), (np.float64, 1e-6)):
        x = mt.tensor(x0.astype(dtype), requires_grad=True)
        exact = w * (1 - np.tanh(x.data.astype(np.float64)) ** 2)  # at the point actually stored
        numeric = numerical_gradient(lambda t: t.tanh(), [x], 0, w, eps)
        errors[dtype] = np.max(np.abs(numeric - exact))
    assert errors[np.float64] < 1e-8
    assert errors[np.float32] > 1e-6
    assert errors[np.float32] > 1000 * errors[np.float64]
