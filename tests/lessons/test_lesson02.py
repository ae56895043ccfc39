r"""Checks for lesson 02 (tensors and broadcasting). Run with `pytest -m lesson02`.

The exercises: ``unbroadcast`` in minitensor/autograd.py and the lesson's
``Hypot.backward``. ``unbroadcast`` is tested directly against a brute-force sum
written here; the lesson is executed once per module with runpy for ``Hypot``,
``Softplus`` and the demos.

Only solutions of lessons 01-02 may be needed, so nothing here calls
``mt.testing.gradcheck``: its ``numerical_gradient`` is lesson 03's exercise.
Finite differences are computed by :func:`finite_difference_grads` below, and
``mt.testing.directional_check`` (which does not use ``numerical_gradient``)
adds a second opinion.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import broadcastable_shapes, interleave, matmul_shapes, shapes, shift_positive

import minitensor as mt
from minitensor.autograd import Context, unbroadcast
from minitensor.testing import directional_check

pytestmark = pytest.mark.lesson02


# unbroadcast only adds float64 numbers, in another order than the reference:
# agreement to a few ulps of the largest partial sum.
SUM_TOL = 1e-12
# Central differences in float64 with step 1e-6 on values of size ~1-10: truncation
# ~1e-12, rounding ~1e-16 * |s| / 1e-6 <~ 1e-8 for the sums of <= 125 terms drawn here.
FD_STEP = 1e-6
FD_RTOL, FD_ATOL = 1e-5, 1e-6

seeds = st.integers(0, 2**32 - 1)




# ------------------------------------------------------------------ references

def sum_to_shape(grad, shape):
    """Brute force: add every entry of ``grad`` into the entry of ``shape`` it was copied from.

    Output position I reads input position pi(I): drop the leading axes that
    broadcasting added, and use index 0 on every axis where the input has length 1.
    """
    grad = np.asarray(grad, dtype=np.float64)
    if len(shape) == 0:
        return np.array(grad.sum())
    lead = grad.ndim - len(shape)
    index = np.indices(grad.shape).reshape(grad.ndim, -1)[lead:]  # one row per kept axis
    source = tuple(np.zeros_like(row) if n == 1 else row for row, n in zip(index, shape))
    out = np.zeros(shape)
    np.add.at(out, source, grad.ravel())
    return out


def finite_difference_grads(f, arrays, w, h=FD_STEP):
    """Central differences of sum(w * f(*arrays)) with respect to every entry of every array."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]  # private copies we may nudge
    grads = []
    for x in arrays:
        g = np.zeros(x.shape)
        for pos in np.ndindex(x.shape):
            orig = x[pos]
            x[pos] = orig + h
            plus = np.sum(w * f(*arrays))
            x[pos] = orig - h
            minus = np.sum(w * f(*arrays))
            x[pos] = orig
            g[pos] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


def as_numpy_fn(op):
    """A NumPy-in, NumPy-out version of a Function, for finite differences."""
    return lambda *arrays: op.apply(*(mt.tensor(a) for a in arrays)).numpy()


def input_and_result(pair):
    """(the first shape, the shape both broadcast to)."""
    return pair[0], np.broadcast_shapes(*pair)


# ------------------------------------------------------------------ unbroadcast

@given(pair=broadcastable_shapes(), seed=seeds)
def test_unbroadcast_equals_brute_force_sum(pair, seed):
    small, big = input_and_result(pair)
    grad = np.random.default_rng(seed).standard_normal(big)
    before = grad.copy()
    got = unbroadcast(grad, small)
    assert np.shape(got) == small
    np.testing.assert_allclose(got, sum_to_shape(before, small), rtol=SUM_TOL, atol=SUM_TOL)
    np.testing.assert_array_equal(grad, before)  # the argument is not modified


@given(pair=broadcastable_shapes(), seed=seeds)
def test_unbroadcast_is_the_adjoint_of_broadcasting(pair, seed):
    r"""Broadcasting is a linear map E; its backward must be E^T: <E^T g, x> = <g, E x>."""
    small, big = input_and_result(pair)
    rng = np.random.default_rng(seed)
    g, x = rng.standard_normal(big), rng.standard_normal(small)
    lhs = np.sum(unbroadcast(g, small) * x)
    rhs = np.sum(g * np.broadcast_to(x, big))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


@given(shape=shapes(), seed=seeds)
def test_unbroadcast_leaves_a_matching_shape_alone(shape, seed):
    grad = np.random.default_rng(seed).standard_normal(shape)
    got = unbroadcast(grad, shape)
    assert np.shape(got) == shape
    np.testing.assert_array_equal(got, grad)


@pytest.mark.parametrize(("small", "big"), [
    ((3,), (4, 3)),  # a bias over a batch: column sums
    ((4, 1), (4, 3)),  # a per-row offset: row sums, kept as a column
    ((1, 3), (2, 4, 3)),  # a leading axis added AND an axis stretched
    ((), (2, 3)),  # a scalar: the sum of everything
    ((1, 1), (1, 1)),  # nothing to do
    ((2, 1, 3), (5, 2, 4, 3)),
])
def test_unbroadcast_examples(small, big):
    grad = np.arange(np.prod(big), dtype=np.float64).reshape(big)
    got = unbroadcast(grad, small)
    assert np.shape(got) == small
    np.testing.assert_array_equal(got, sum_to_shape(grad, small))


# --------------------------------------------- gradients through broadcasting ops

BINARY = {
    # name: (forward on tensors, (da, db) of a (*) b given the upstream w, as full-size arrays)
    "add": (lambda a, b: a + b, lambda A, B, w: (w, w)),
    "sub": (lambda a, b: a - b, lambda A, B, w: (w, -w)),
    "mul": (lambda a, b: a * b, lambda A, B, w: (w * B, w * A)),
    "div": (lambda a, b: a / b, lambda A, B, w: (w / B, -w * A / B**2)),
    "maximum": (mt.maximum, lambda A, B, w: (w * (A > B), w * (A < B))),
}


@given(pair=broadcastable_shapes(), op=st.sampled_from(sorted(BINARY)), seed=seeds)
def test_broadcasting_binary_ops_give_input_shaped_gradients(pair, op, seed):
    forward, local = BINARY[op]
    rng = np.random.default_rng(seed)
    a_np, b_np = rng.uniform(-3, 3, pair[0]), rng.uniform(-3, 3, pair[1])
    if op == "div":
        b_np = shift_positive(b_np)  # away from the pole at 0
    if op == "maximum":
        a_np, b_np = interleave(a_np, b_np)  # no ties, wherever they broadcast against each other
    a, b = mt.tensor(a_np, requires_grad=True), mt.tensor(b_np, requires_grad=True)
    out = forward(a, b)
    w = rng.standard_normal(out.shape)
    (out * w).sum().backward()

    A, B = np.broadcast_arrays(a_np, b_np)
    da, db = local(A, B, w)
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    np.testing.assert_allclose(a.grad, sum_to_shape(da, a.shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad, sum_to_shape(db, b.shape), rtol=1e-10, atol=1e-12)


@given(pair=broadcastable_shapes(num_shapes=3), seed=seeds)
def test_where_and_expand_gradients_are_sums_over_the_copies(pair, seed):
    rng = np.random.default_rng(seed)
    big = np.broadcast_shapes(*pair)
    a_np, b_np = rng.standard_normal(pair[0]), rng.standard_normal(pair[1])
    cond = rng.random(pair[2]) < 0.5
    a, b = mt.tensor(a_np, requires_grad=True), mt.tensor(b_np, requires_grad=True)
    w = rng.standard_normal(big)
    (mt.where(cond, a, b) * w).sum().backward()
    full_cond = np.broadcast_to(cond, big)
    np.testing.assert_allclose(a.grad, sum_to_shape(w * full_cond, a.shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad, sum_to_shape(w * ~full_cond, b.shape), rtol=1e-10, atol=1e-12)

    x = mt.tensor(a_np, requires_grad=True)
    (x.expand(*big) * w).sum().backward()
    assert x.grad.shape == x.shape
    np.testing.assert_allclose(x.grad, sum_to_shape(w, x.shape), rtol=1e-10, atol=1e-12)


@given(pair=matmul_shapes(), seed=seeds)
def test_matmul_gradients_with_broadcast_batch_axes(pair, seed):
    r"""$\bar A = \bar Y B^\top$ and $\bar B = A^\top \bar Y$ per batch entry, summed over the
    batch axes an operand was broadcast along (1-D operands are promoted as np.matmul does)."""
    rng = np.random.default_rng(seed)
    a_np, b_np = rng.standard_normal(pair[0]), rng.standard_normal(pair[1])
    a, b = mt.tensor(a_np, requires_grad=True), mt.tensor(b_np, requires_grad=True)
    out = a @ b
    w = rng.standard_normal(out.shape)
    out.backward(w)

    # Promote 1-D operands to matrices as np.matmul does: (K,) -> (1, K) on the left, (K, 1) on the right.
    A = a_np.reshape(1, -1) if a_np.ndim == 1 else a_np
    B = b_np.reshape(-1, 1) if b_np.ndim == 1 else b_np
    batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    W = w.reshape(*batch, A.shape[-2], B.shape[-1])  # the upstream gradient with promoted axes put back
    A_b = np.broadcast_to(A, (*batch, *A.shape[-2:]))
    B_b = np.broadcast_to(B, (*batch, *B.shape[-2:]))
    dA = sum_to_shape(W @ np.swapaxes(B_b, -1, -2), A.shape).reshape(a_np.shape)
    dB = sum_to_shape(np.swapaxes(A_b, -1, -2) @ W, B.shape).reshape(b_np.shape)
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    np.testing.assert_allclose(a.grad, dA, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b.grad, dB, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ the lesson's demos

def test_lesson_demos_agree(lesson):
    assert lesson["tanh_vjp_gap"] < 1e-12
    assert set(lesson["matmul_gaps"]) and max(lesson["matmul_gaps"].values()) < 1e-12
    assert len(lesson["unbroadcast_gaps"]) == 5 and max(lesson["unbroadcast_gaps"].values()) < SUM_TOL
    assert lesson["batched_matmul_gap"] < 1e-12
    assert lesson["softplus_twin_gap"] < 1e-12
    assert lesson["hypot_twin_gap"] < 1e-12


def test_lesson_bias_gradient_is_the_column_sums(lesson):
    W = lesson["W_upstream"]
    assert lesson["bias_grad"].shape == (W.shape[1],)
    np.testing.assert_allclose(lesson["bias_grad"], W.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(lesson["row_offset"].grad, W.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(lesson["X"].grad, W)


def test_lesson_unbroadcast_by_loops_is_the_definition(lesson):
    grad = np.arange(60, dtype=np.float64).reshape(5, 1, 4, 3)
    for small in [(4, 3), (1, 3), (4, 1), (), (1, 1, 1, 1)]:
        np.testing.assert_array_equal(lesson["unbroadcast_by_loops"](grad, small), sum_to_shape(grad, small))


# ------------------------------------------------------------------ Softplus (worked example)

def test_softplus_forward_is_stable_and_right(lesson):
    softplus = lesson["softplus"]
    x = np.array([-800.0, -30.0, -1.0, 0.0, 1e-8, 1.0, 30.0, 800.0])
    y = softplus(mt.tensor(x)).numpy()
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, np.logaddexp(0.0, x), rtol=1e-14, atol=0)


@given(shape=shapes(max_dims=3), seed=seeds)
def test_softplus_gradient_matches_finite_differences(lesson, shape, seed):
    rng = np.random.default_rng(seed)
    x_np = rng.uniform(-5, 5, shape)
    w = rng.standard_normal(shape)
    x = mt.tensor(x_np, requires_grad=True)
    (lesson["softplus"](x) * w).sum().backward()
    (numeric,) = finite_difference_grads(as_numpy_fn(lesson["Softplus"]), [x_np], w)
    np.testing.assert_allclose(x.grad, numeric, rtol=FD_RTOL, atol=FD_ATOL)
    # far outside the range where log(1 + e^x) can be evaluated naively
    big = mt.tensor(np.array([-800.0, 800.0]), requires_grad=True)
    lesson["softplus"](big).sum().backward()
    np.testing.assert_array_equal(big.grad, [0.0, 1.0])


# ------------------------------------------------------------------ Hypot (the exercise)

@given(pair=broadcastable_shapes(max_dims=3), seed=seeds)
def test_hypot_gradients_match_finite_differences_and_have_input_shapes(lesson, pair, seed):
    rng = np.random.default_rng(seed)
    a_np = rng.uniform(-3, 3, pair[0])
    b_np = rng.uniform(-3, 3, pair[1])
    b_np = np.where(b_np < 0, b_np - 0.5, b_np + 0.5)  # |b| >= 0.5: y >= 0.5, away from the cone's tip
    a, b = mt.tensor(a_np, requires_grad=True), mt.tensor(b_np, requires_grad=True)
    out = lesson["hypot"](a, b)
    np.testing.assert_allclose(out.numpy(), np.hypot(a_np, b_np), rtol=1e-15)
    w = rng.standard_normal(out.shape)
    (out * w).sum().backward()
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    numeric_a, numeric_b = finite_difference_grads(as_numpy_fn(lesson["Hypot"]), [a_np, b_np], w)
    np.testing.assert_allclose(a.grad, numeric_a, rtol=FD_RTOL, atol=FD_ATOL)
    np.testing.assert_allclose(b.grad, numeric_b, rtol=FD_RTOL, atol=FD_ATOL)


def test_hypot_passes_the_directional_check(lesson):
    rng = np.random.default_rng(7)
    a = mt.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    b = mt.tensor(rng.uniform(0.5, 2.0, (3, 1)), requires_grad=True)
    assert directional_check(lesson["hypot"], a, b, n_directions=5)


def test_hypot_backward_returns_output_shaped_gradients_and_none_when_not_needed(lesson):
    Hypot = lesson["Hypot"]
    rng = np.random.default_rng(3)
    a, b, grad = rng.standard_normal((3, 4)), rng.uniform(0.5, 2.0, 4), rng.standard_normal((3, 4))
    y = np.hypot(a, b)
    for needs in [(True, True), (True, False), (False, True)]:
        ctx = Context(Hypot, (), needs)
        Hypot.forward(ctx, a, b)
        ga, gb = Hypot.backward(ctx, grad)
        if needs[0]:
            np.testing.assert_allclose(ga, grad * a / y, rtol=1e-14)  # (3, 4): the engine sums, not the op
        else:
            assert ga is None
        if needs[1]:
            np.testing.assert_allclose(gb, grad * b / y, rtol=1e-14)
        else:
            assert gb is None


def test_hypot_only_sends_gradient_where_asked(lesson):
    a = mt.tensor(np.array([[3.0, -1.0], [0.5, 2.0]]), requires_grad=True)
    b = mt.tensor(np.array([4.0, 1.0]))  # a constant
    lesson["hypot"](a, b).sum().backward()
    assert b.grad is None
    np.testing.assert_allclose(a.grad, a.numpy() / np.hypot(a.numpy(), b.numpy()), rtol=1e-14)
