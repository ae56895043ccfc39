r"""Checks for lesson 03 (gradient checking). Run with `pytest -m lesson03`.

The exercises: ``numerical_gradient`` in minitensor/testing.py and the lesson's
``relative_error``. ``numerical_gradient`` is tested directly against derivatives
known in closed form; the lesson is executed once per module with runpy for
``relative_error``, its wrong backwards and its error-versus-step experiment.
Only solutions of lessons 01-03 are needed.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import shapes

import minitensor as mt
from minitensor.backend import get_array_module
from minitensor.testing import GradcheckError, directional_check, gradcheck, numerical_gradient

pytestmark = pytest.mark.lesson03


EPS = 1e-6
# Central differences with EPS on values of size <~ 20 (e^3): truncation ~1e-12 * |f'''|,
# rounding ~1e-16 * |s| / EPS <~ 1e-8 for the sums of <= 64 terms drawn here.
RTOL, ATOL = 1e-6, 1e-7

seeds = st.integers(0, 2**32 - 1)




# ------------------------------------------------------------------ numerical_gradient

# name: (f on tensors, f' in closed form on arrays); all elementwise
ELEMENTWISE = {
    "exp": (lambda x: x.exp(), np.exp),
    "tanh": (lambda x: x.tanh(), lambda x: 1 - np.tanh(x) ** 2),
    "cube": (lambda x: x * x * x, lambda x: 3 * x**2),
    "log(1 + x^2)": (lambda x: (x * x + 1).log(), lambda x: 2 * x / (1 + x**2)),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
}


@given(shape=shapes(max_dims=3, max_side=4), name=st.sampled_from(sorted(ELEMENTWISE)), seed=seeds)
def test_numerical_gradient_matches_known_derivatives(shape, name, seed):
    f, df = ELEMENTWISE[name]
    rng = np.random.default_rng(seed)
    x_np = rng.uniform(-3, 3, shape)
    w = rng.standard_normal(shape)
    got = numerical_gradient(f, [mt.tensor(x_np, requires_grad=True)], 0, w, EPS)
    assert got.shape == shape and got.dtype == np.float64
    np.testing.assert_allclose(got, w * df(x_np), rtol=RTOL, atol=ATOL)


@given(rows=st.integers(1, 4), inner=st.integers(1, 4), cols=st.integers(1, 4), seed=seeds)
def test_numerical_gradient_of_a_matrix_product(rows, inner, cols, seed):
    r"""$s = \sum W \odot (A B)$: $\partial s / \partial A = W B^\top$, $\partial s / \partial B = A^\top W$."""
    rng = np.random.default_rng(seed)
    A, B, W = rng.standard_normal((rows, inner)), rng.standard_normal((inner, cols)), rng.standard_normal((rows, cols))
    inputs = [mt.tensor(A, requires_grad=True), mt.tensor(B, requires_grad=True)]
    np.testing.assert_allclose(numerical_gradient(lambda a, b: a @ b, inputs, 0, W, EPS), W @ B.T, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(numerical_gradient(lambda a, b: a @ b, inputs, 1, W, EPS), A.T @ W, rtol=RTOL, atol=ATOL)


@given(shape=shapes(max_dims=3, max_side=4), seed=seeds)
def test_numerical_gradient_picks_the_input_and_restores_every_input(shape, seed):
    rng = np.random.default_rng(seed)
    a_np, b_np, w = rng.uniform(-2, 2, shape), rng.uniform(-2, 2, shape), rng.standard_normal(shape)
    a, b = mt.tensor(a_np, requires_grad=True), mt.tensor(b_np, requires_grad=True)
    a_data, b_data = a.data, b.data

    def f(x, y):
        return x * y.exp()

    np.testing.assert_allclose(numerical_gradient(f, [a, b], 0, w, EPS), w * np.exp(b_np), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(numerical_gradient(f, [a, b], 1, w, EPS), w * a_np * np.exp(b_np), rtol=RTOL, atol=ATOL)
    # the inputs are nudged in place and must be put back exactly, in the same arrays
    assert a.data is a_data and b.data is b_data
    np.testing.assert_array_equal(a.numpy(), a_np)
    np.testing.assert_array_equal(b.numpy(), b_np)


@given(shape=shapes(max_dims=2, max_side=4), eps=st.sampled_from([0.5, 0.1, 0.01]), seed=seeds)
def test_numerical_gradient_is_the_central_difference_with_the_given_step(shape, eps, seed):
    r"""For $x^3$ the central difference is exactly $3x^2 + \epsilon^2$ (the forward one would
    be $3x^2 + 3x\epsilon + \epsilon^2$): with a large step, the formula and the step show."""
    rng = np.random.default_rng(seed)
    x_np, w = rng.uniform(-2, 2, shape), rng.standard_normal(shape)
    got = numerical_gradient(lambda x: x * x * x, [mt.tensor(x_np, requires_grad=True)], 0, w, eps)
    np.testing.assert_allclose(got, w * (3 * x_np**2 + eps**2), rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ gradcheck catches wrong backwards

class ExpOffByOnePercent(mt.Function):
    """exp with a backward 1 % too large: the kind of bug a loose check would let through."""

    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y * 1.01


class MulWrongSecond(mt.Function):
    r"""$a \odot b$ whose gradient for $b$ is $\bar y \odot b$ instead of $\bar y \odot a$."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return grad * b, grad * b


def float64_tensor(rng, shape):
    return mt.tensor(rng.standard_normal(shape), requires_grad=True)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 5), (7,)])
def test_gradcheck_passes_the_right_backward_and_catches_the_lessons_wrong_ones(lesson, shape):
    rng = np.random.default_rng(sum(shape))
    x = float64_tensor(rng, shape)
    assert gradcheck(lesson["GoodTanh"].apply, x)
    with pytest.raises(GradcheckError):
        gradcheck(lesson["BadTanh"].apply, x)
    with pytest.raises(GradcheckError):
        gradcheck(lesson["ForgetfulFlip"].apply, x)


def test_gradcheck_catches_small_and_partial_errors():
    rng = np.random.default_rng(1)
    x = float64_tensor(rng, (3, 4))
    with pytest.raises(GradcheckError):
        gradcheck(ExpOffByOnePercent.apply, x)
    a, b = float64_tensor(rng, (3, 4)), float64_tensor(rng, (3, 4))
    assert gradcheck(MulWrongSecond.apply, a, b.detach())  # the right half alone passes
    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(MulWrongSecond.apply, a, b)


def test_directional_check_catches_a_wrong_backward_on_big_inputs(lesson):
    rng = np.random.default_rng(2)
    X, W = float64_tensor(rng, (16, 32)), float64_tensor(rng, (32, 8))
    assert directional_check(lambda X, W: lesson["GoodTanh"].apply(X @ W), X, W)
    with pytest.raises(GradcheckError):
        directional_check(lambda X, W: lesson["BadTanh"].apply(X @ W), X, W)


def test_lesson_checks_came_out_as_the_text_says(lesson):
    assert lesson["layer_ok"] is True
    assert lesson["tanh_errors"]["GoodTanh"] < 1e-7
    assert lesson["tanh_errors"]["BadTanh"] > 1e-2
    assert lesson["bad_tanh_caught"] and lesson["flip_caught"]
    # weights of all ones are blind to the forgotten flip; random weights are not
    assert lesson["flip_error_ones"] < 1e-8
    assert lesson["flip_error_random"] > 1e-1
    assert lesson["directional_ok"] is True and lesson["directional_caught"]


# ------------------------------------------------------------------ the error-versus-step experiment

def test_difference_formulas(lesson):
    f, x = np.sin, 0.3
    assert lesson["forward_difference"](f, x, 1e-3) == pytest.approx((np.sin(x + 1e-3) - np.sin(x)) / 1e-3, rel=1e-15)
    assert lesson["central_difference"](f, x, 1e-3) == pytest.approx(np.cos(x), rel=1e-6)


def test_experiment_numbers_are_what_they_claim(lesson):
    """Recompute one entry of the table independently."""
    grid, errors = lesson["EPS_GRID"], lesson["errors"]
    assert grid[0] == pytest.approx(1e-1) and grid[-1] == pytest.approx(1e-12) and len(grid) == 12
    k = int(np.argmin(np.abs(grid - 1e-3)))
    x = np.linspace(0.5, 1.5, 101)
    central = (np.exp(x + 1e-3) - np.exp(x - 1e-3)) / 2e-3
    assert errors["float64", "central"][k] == pytest.approx(np.median(np.abs(central - np.exp(x)) / np.exp(x)), rel=1e-6)


def test_truncation_error_follows_taylor_for_large_steps(lesson):
    r"""Relative errors of exp: $h/2$ (forward) and $h^2/6$ (central), up to higher-order terms."""
    grid, errors = lesson["EPS_GRID"], lesson["errors"]
    large = grid >= 1e-3
    np.testing.assert_allclose(errors["float64", "forward"][large], grid[large] / 2, rtol=0.1)
    np.testing.assert_allclose(errors["float64", "central"][large], grid[large] ** 2 / 6, rtol=0.1)


def test_central_differences_beat_forward_differences(lesson):
    errors = lesson["errors"]
    for dtype in ("float32", "float64"):
        # theory: best errors 0.5 (3u)^(2/3) vs 2 sqrt(u), a factor 30 (float32) to 1000 (float64)
        assert errors[dtype, "central"].min() * 5 < errors[dtype, "forward"].min(), dtype


def test_float64_beats_float32_and_rounding_wins_for_tiny_steps(lesson):
    grid, errors = lesson["EPS_GRID"], lesson["errors"]
    assert errors["float64", "central"].min() < 1e-9
    assert errors["float64", "central"].min() * 1e4 < errors["float32", "central"].min()
    for key, errs in errors.items():
        assert errs[-1] > 100 * errs.min(), key  # the smallest step is far past the optimum
    # in float32, x + h == x for h <= 1e-8 and x in [0.5, 1.5]: the computed derivative is 0
    np.testing.assert_array_equal(errors["float32", "central"][grid <= 1e-8], 1.0)


def test_best_steps_are_where_the_theory_puts_them(lesson):
    """Within a decade (the grid's spacing) of (3u)^(1/3) for central and 2 sqrt(u) for forward."""
    for key, h in lesson["best_eps"].items():
        u = float(np.finfo(key[0]).eps) / 2
        predicted = (3 * u) ** (1 / 3) if key[1] == "central" else 2 * np.sqrt(u)
        assert lesson["predicted_eps"][key] == pytest.approx(predicted)
        assert abs(np.log10(h) - np.log10(predicted)) <= 1.0, (key, h, predicted)
    assert lesson["best_eps"]["float64", "central"] > lesson["best_eps"]["float64", "forward"]


def test_sum_of_many_terms_defeats_float32(lesson):
    demo = lesson["sum_demo"]
    assert demo["float32", 1e-6] > 0.1
    assert demo["float64", 1e-6] < 1e-6


# ------------------------------------------------------------------ relative_error (the lesson's exercise)

def reference_relative_error(a, n):
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(n), initial=0.0))
    return 0.0 if scale == 0 else float(np.max(np.abs(a - n)) / scale)


@given(shape=shapes(max_dims=3), seed=seeds, noise=st.sampled_from([0.0, 1e-9, 1e-3, 1.0]))
def test_relative_error_matches_its_definition(lesson, shape, seed, noise):
    rel = lesson["relative_error"]
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 4)
    n = a + noise * np.abs(a).max() * rng.standard_normal(shape)
    got = rel(a, n)
    assert isinstance(got, float)
    assert got == pytest.approx(reference_relative_error(a, n), rel=1e-12, abs=1e-300)
    assert rel(n, a) == pytest.approx(got, rel=1e-12, abs=1e-300)  # symmetric
    assert rel(a * 2.0**-20, n * 2.0**-20) == pytest.approx(got, rel=1e-12, abs=1e-300)  # scale-free
    assert 0.0 <= got <= 2.0


def test_relative_error_special_cases(lesson):
    rel = lesson["relative_error"]
    assert rel([1.0, 2.0], [1.0, 2.002]) == pytest.approx(0.002 / 2.002, rel=1e-12)
    assert rel(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0
    assert rel([0.0, 1e-30], [0.0, 1e-30]) == 0.0
    assert rel([1.0, -3.0], [0.0, 0.0]) == 1.0
    assert rel([1.0, -3.0], [-1.0, 3.0]) == 2.0
    assert rel(5.0, 4.0) == pytest.approx(0.2)


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda x: x.tanh(), mt.randn(3, rng=np.random.default_rng(0), requires_grad=True))
