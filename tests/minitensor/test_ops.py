r"""Every differentiable op of the public API, two ways.

(a) ``mt.testing.gradcheck`` in float64 (central differences, every entry) over
    Hypothesis-drawn shapes, broadcasting pairs and non-contiguous memory layouts;
(b) the forward value against plain NumPy.

Inputs are moved away from kinks before checking (see ``tests/strategies.py``):
finite differences are only a valid reference where the function is smooth.
Then the dtype rules: float32 stays float32 (also next to Python scalars),
and mixed float32/float64 inputs get gradients in their own dtypes.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import (
    GAP,
    LAYOUTS,
    arrays,
    away_from,
    broadcastable_shapes,
    distinct,
    interleave,
    layouts,
    matmul_shapes,
    non_contiguous_arrays,
    relayout,
    shapes,
    shift_positive,
)

import minitensor as mt
import minitensor.functional as F
from minitensor.testing import TOLERANCES, gradcheck

# Forward values against NumPy: both sides are float64 and compute the same
# formula (up to reassociation), so agreement is ~1e-15; 1e-9 still catches any
# real slip (a wrong constant, a missing term) by many orders of magnitude.
FWD = {"rtol": 1e-9, "atol": 1e-12}


def leaf(a) -> mt.Tensor:
    """A float64 leaf that keeps ``a``'s memory (and so its layout)."""
    assert a.dtype == np.float64
    return mt.Tensor(a, requires_grad=True)


def check(fn, reference, *arrays_in):
    """(b) forward of ``fn`` on tensors == ``reference`` on NumPy copies; (a) gradcheck of ``fn``."""
    inputs = [leaf(a) for a in arrays_in]
    out = fn(*inputs)
    expected = np.asarray(reference(*[np.array(a) for a in arrays_in]))
    assert out.dtype == np.float64
    assert out.shape == expected.shape, (out.shape, expected.shape)
    np.testing.assert_allclose(out.numpy(), expected, **FWD)
    assert gradcheck(fn, *inputs)


def draw_array(data, shape, transform=None, label="x"):
    """Bounded values of ``shape``, optionally moved off a kink, in a drawn memory layout."""
    a = data.draw(arrays(shape), label=label)
    if transform is not None:
        a = transform(a)
    return relayout(a, data.draw(layouts(), label=f"{label} layout"))


# ====================================================================== elementwise, one input

def _gelu_tanh_np(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


_erf_np = np.vectorize(math.erf, otypes=[np.float64])  # independent of the library's erf


def _gelu_exact_np(x):
    return x * 0.5 * (1 + _erf_np(x / math.sqrt(2)))


def _nonzero(a):
    return away_from(a, 0.0, gap=0.5)  # 1/x: keep the pole at 0 far from the stencil


# name: (minitensor function, NumPy reference, input transform)
UNARY = {
    "neg": (lambda x: -x, np.negative, None),
    "exp": (mt.exp, np.exp, None),
    "exp_method": (lambda x: x.exp(), np.exp, None),
    "log": (mt.log, np.log, shift_positive),
    "tanh": (mt.tanh, np.tanh, None),
    "sqrt": (mt.sqrt, np.sqrt, shift_positive),
    "sigmoid": (mt.sigmoid, lambda x: 1 / (1 + np.exp(-x)), None),
    "relu": (F.relu, lambda x: np.maximum(x, 0), away_from),
    "relu_method": (lambda x: x.relu(), lambda x: np.maximum(x, 0), away_from),
    "gelu_tanh": (F.gelu, _gelu_tanh_np, None),
    "gelu_exact": (lambda x: F.gelu(x, approximate="none"), _gelu_exact_np, None),
    "add_scalar": (lambda x: x + 1.5, lambda x: x + 1.5, None),
    "radd_scalar": (lambda x: 1.5 + x, lambda x: 1.5 + x, None),
    "sub_scalar": (lambda x: x - 2, lambda x: x - 2, None),
    "rsub_scalar": (lambda x: 2 - x, lambda x: 2 - x, None),
    "mul_scalar": (lambda x: x * -3.0, lambda x: x * -3.0, None),
    "rmul_scalar": (lambda x: 3.0 * x, lambda x: 3.0 * x, None),
    "div_scalar": (lambda x: x / 4.0, lambda x: x / 4.0, None),
    "rdiv_scalar": (lambda x: 4.0 / x, lambda x: 4.0 / x, _nonzero),
    "rpow": (lambda x: 2.0**x, lambda x: 2.0**x, None),
}


@pytest.mark.parametrize("name", list(UNARY))
@given(data=st.data())
def test_unary_ops(name, data):
    fn, reference, transform = UNARY[name]
    x = draw_array(data, shapes(), transform)
    check(fn, reference, x)


# Non-negative integer exponents are smooth everywhere; the others need a
# positive base (fractional powers) or one away from 0 (negative powers).
POWERS = [(2, None), (3, None), (1, None), (0, None), (-1, _nonzero), (-2, _nonzero),
          (0.5, shift_positive), (-1.5, shift_positive), (1.7, shift_positive)]


@pytest.mark.parametrize("p, transform", POWERS, ids=[str(p) for p, _ in POWERS])
@given(data=st.data())
def test_pow_scalar_exponent(p, transform, data):
    x = draw_array(data, shapes(), transform)
    check(lambda t: t**p, lambda a: a**p, x)


def test_pow_zero_exponent_gradient_is_zero_even_at_zero():
    # x**0 is the constant 1 (also 0**0, as in NumPy): the gradient is 0, not 0 * inf = nan
    x = mt.tensor(np.array([0.0, -2.0, 3.0]), requires_grad=True)
    y = x**0
    np.testing.assert_array_equal(y.numpy(), [1.0, 1.0, 1.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0])


def test_pow_rejects_tensor_exponent():
    x = mt.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="pow"):
        _ = x ** mt.tensor([1.0, 2.0])


# ====================================================================== elementwise, broadcasting pairs

BINARY = {
    "add": (lambda a, b: a + b, np.add, None),
    "sub": (lambda a, b: a - b, np.subtract, None),
    "mul": (lambda a, b: a * b, np.multiply, None),
    "div": (lambda a, b: a / b, np.divide, _nonzero),
    "maximum": (mt.maximum, np.maximum, None),
}


@pytest.mark.parametrize("name", list(BINARY))
@given(data=st.data())
def test_binary_ops_broadcast(name, data):
    fn, reference, b_transform = BINARY[name]
    shape_a, shape_b = data.draw(broadcastable_shapes(), label="shapes")
    a = data.draw(arrays(shape_a), label="a")
    b = data.draw(arrays(shape_b), label="b")
    if b_transform is not None:
        b = b_transform(b)
    if name == "maximum":
        a, b = interleave(a, b)  # no ties: max is not differentiable there
    a = relayout(a, data.draw(layouts(), label="a layout"))
    b = relayout(b, data.draw(layouts(), label="b layout"))
    check(fn, reference, a, b)


def test_maximum_tie_splits_gradient_in_halves():
    # documented choice: at a tie each input gets half (the mean of the one-sided derivatives)
    a, b = mt.tensor([1.0, 2.0, 3.0], requires_grad=True), mt.tensor([1.0, 5.0, 0.0], requires_grad=True)
    mt.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(b.grad, [0.5, 1.0, 0.0])


def test_maximum_with_python_scalar():
    x = mt.tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    y = mt.maximum(x, 0.0)
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.5, 2.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0])


@given(data=st.data())
def test_where_broadcasts_three_ways(data):
    shape_c, shape_a, shape_b = data.draw(broadcastable_shapes(num_shapes=3), label="shapes")
    cond = data.draw(hnp.arrays(np.bool_, shape_c), label="cond")
    a = draw_array(data, shape_a, label="a")
    b = draw_array(data, shape_b, label="b")
    check(lambda s, t: mt.where(cond, s, t), lambda s, t: np.where(cond, s, t), a, b)
    # a bool tensor as condition, a Python scalar as one branch
    check(lambda s: mt.where(mt.Tensor(cond), s, 0.25), lambda s: np.where(cond, s, 0.25), a)


def test_where_rejects_non_bool_condition():
    x = mt.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="where"):
        mt.where(np.array([1, 0]), x, x)


# ====================================================================== matmul

@given(data=st.data())
def test_matmul_numpy_rules(data):
    """2-D, batched N-D with broadcasting batch dims and 1-D (promoted) operands."""
    shape_a, shape_b = data.draw(matmul_shapes(), label="shapes")
    a = draw_array(data, shape_a, label="a")
    b = draw_array(data, shape_b, label="b")
    check(lambda s, t: s @ t, np.matmul, a, b)


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3,), (3,)),            # vector . vector -> scalar
    ((3,), (3, 2)),          # row vector
    ((4, 3), (3,)),          # matrix . vector
    ((3,), (2, 3, 4)),       # vector against a batch
    ((2, 4, 3), (3,)),
    ((2, 1, 3, 4), (5, 4, 2)),  # broadcasting batch dims on both sides
    ((3, 4), (2, 4, 5)),     # 2-D against a batch: the 2-D side's grad sums over the batch
])
def test_matmul_fixed_cases(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    check(mt.matmul, np.matmul, a, b)


@given(data=st.data())
def test_matmul_folds_rows_times_matrix(data):
    """(..., K) @ (K, N) takes the folded single-GEMM path: same values and gradients."""
    lead = data.draw(shapes(min_dims=2, max_dims=3, max_side=3), label="leading dims")
    k, n = data.draw(st.integers(1, 4), label="K"), data.draw(st.integers(1, 4), label="N")
    a = draw_array(data, (*lead, k), label="a")
    b = draw_array(data, (k, n), label="b")
    check(lambda s, t: s @ t, np.matmul, a, b)


def test_rmatmul_with_numpy_left_operand():
    rng = np.random.default_rng(1)
    m, w = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    check(lambda t: m @ t, lambda t: m @ t, w)


def test_matmul_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        mt.ones(2, 3) @ mt.ones(4, 5)
    with pytest.raises(ValueError, match="batch"):
        mt.ones(2, 3, 4) @ mt.ones(3, 4, 5)


# ====================================================================== reductions

@st.composite
def shape_and_axis(draw, min_dims=0):
    """A shape and an ``axis`` argument: None, an int (maybe negative) or a tuple (maybe empty, mixed signs)."""
    shape = draw(shapes(min_dims=min_dims), label="shape")
    nd = len(shape)
    kind = draw(st.sampled_from(["none", "int", "tuple"] if nd else ["none"]), label="axis kind")
    if kind == "none":
        return shape, None
    if kind == "int":
        return shape, draw(st.integers(-nd, nd - 1), label="axis")
    picked = draw(st.lists(st.integers(0, nd - 1), max_size=nd, unique=True), label="axes")
    signs = draw(st.lists(st.booleans(), min_size=len(picked), max_size=len(picked)), label="negative")
    return shape, tuple(a - nd if neg else a for a, neg in zip(picked, signs))


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
@given(data=st.data(), keepdims=st.booleans())
def test_reductions(op, data, keepdims):
    shape, axis = data.draw(shape_and_axis(), label="shape, axis")
    # distinct values: the arg-max is unique and a 1e-6 step cannot change it
    x = draw_array(data, shape, distinct if op == "max" else None)
    reference = {"sum": np.sum, "mean": np.mean, "max": np.max}[op]
    check(lambda t: getattr(t, op)(axis=axis, keepdims=keepdims),
          lambda a: reference(a, axis=axis, keepdims=keepdims), x)


def test_max_ties_share_the_gradient():
    x = mt.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]), requires_grad=True)
    x.max(axis=1).backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [5.0, 0.0, 5.0]])


def test_mean_and_max_of_nothing_raise():
    with pytest.raises(ValueError, match="mean"):
        mt.zeros(0, 3).mean(axis=0)
    with pytest.raises(ValueError, match="max"):
        mt.zeros(0, 3).max()


def test_reduction_axis_out_of_range_raises():
    with pytest.raises(ValueError, match="axis"):
        mt.ones(2, 3).sum(axis=2)


# ====================================================================== shape ops

@st.composite
def reshape_case(draw):
    shape = draw(shapes(), label="shape")
    n = int(np.prod(shape))
    candidates = [(n,), (-1,), (1, n), (n, 1), shape[::-1], (*shape, 1), (1, *shape)]
    if len(shape) >= 2:
        candidates.append((shape[0] * shape[1], *shape[2:]))
        candidates.append((*shape[:-1], -1))
    return shape, draw(st.sampled_from(candidates), label="new shape")


@given(data=st.data())
def test_reshape(data):
    shape, new_shape = data.draw(reshape_case())
    x = draw_array(data, shape)
    check(lambda t: t.reshape(*new_shape), lambda a: a.reshape(new_shape), x)
    check(lambda t: t.reshape(new_shape), lambda a: a.reshape(new_shape), x)  # tuple form


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        mt.ones(2, 3).reshape(4)


@given(data=st.data())
def test_transpose_permutations(data):
    shape = data.draw(shapes(), label="shape")
    x = draw_array(data, shape)
    nd = len(shape)
    perm = data.draw(st.permutations(range(nd)), label="perm")
    negate = data.draw(st.lists(st.booleans(), min_size=nd, max_size=nd), label="negative")
    axes = tuple(a - nd if neg else a for a, neg in zip(perm, negate))
    check(lambda t: t.transpose(*axes), lambda a: a.transpose([p for p in perm]), x)
    check(lambda t: t.transpose(), lambda a: a.transpose(), x)  # no axes: reversed
    check(lambda t: t.T, lambda a: a.T, x)


@given(data=st.data())
def test_swapaxes(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = draw_array(data, shape)
    nd = len(shape)
    i, j = data.draw(st.integers(-nd, nd - 1), label="i"), data.draw(st.integers(-nd, nd - 1), label="j")
    check(lambda t: t.swapaxes(i, j), lambda a: np.swapaxes(a, i, j), x)


@given(data=st.data())
def test_expand(data):
    shape, other = data.draw(broadcastable_shapes(), label="shapes")
    target = np.broadcast_shapes(shape, other)
    x = draw_array(data, shape)
    check(lambda t: t.expand(*target), lambda a: np.broadcast_to(a, target), x)


def test_expand_rejects_non_broadcastable_target():
    with pytest.raises(ValueError, match="expand"):
        mt.ones(2, 3).expand(2, 4)


# ---------------------------------------------------------------------- indexing

@given(data=st.data())
def test_getitem_basic(data):
    """Ints (negative too), slices (any step, also negative), None and Ellipsis."""
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = draw_array(data, shape)
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True), label="index")
    check(lambda t: t[index], lambda a: a[index], x)


@given(data=st.data())
def test_getitem_integer_arrays(data):
    """Integer arrays on every axis; repeats (and i and i - side) select an entry twice: grads must add."""
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = draw_array(data, shape)
    index = data.draw(hnp.integer_array_indices(shape, result_shape=shapes(max_dims=2)), label="index")
    check(lambda t: t[index], lambda a: a[index], x)


@given(data=st.data())
def test_getitem_array_mixed_with_slices(data):
    """``x[:, ids]``, ``x[..., ids]``: one integer array (with repeats) after basic indices."""
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = draw_array(data, shape)
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    side = shape[axis]
    ids = data.draw(st.lists(st.integers(-side, side - 1), min_size=1, max_size=6), label="ids")
    as_tensor = data.draw(st.booleans(), label="ids as tensor")
    ids_arr = np.array(ids)
    index = (slice(None),) * axis + (mt.tensor(ids_arr) if as_tensor else ids,)
    check(lambda t: t[index], lambda a: a[(slice(None),) * axis + (ids_arr,)], x)
    if axis == len(shape) - 1:  # the same selection spelled with an Ellipsis
        check(lambda t: t[..., ids], lambda a: a[..., ids_arr], x)


def test_getitem_repeated_indices_scatter_add():
    x = mt.tensor(np.arange(4.0), requires_grad=True)
    x[[1, 1, 3, 1, -1]].backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    # entry 1 is picked three times (1 + 2 + 4), entry 3 twice (3 + 5, via 3 and -1)
    np.testing.assert_array_equal(x.grad, [0.0, 7.0, 0.0, 8.0])


@given(data=st.data())
def test_getitem_bool_mask(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    x = draw_array(data, shape)
    start = data.draw(st.integers(0, len(shape) - 1), label="mask start")
    stop = data.draw(st.integers(start + 1, len(shape)), label="mask stop")
    mask = data.draw(hnp.arrays(np.bool_, shape[start:stop]), label="mask")
    index = (slice(None),) * start + (mask,)
    check(lambda t: t[index], lambda a: a[index], x)
    if start == 0 and stop == len(shape):
        # the mask as a bool tensor from a comparison; entries kept off the threshold so
        # that a finite-difference step cannot change which entries are selected
        check(lambda t: t[t > 0.0], lambda a: a[a > 0.0], away_from(x))


def test_getitem_rejects_float_index_array():
    with pytest.raises(TypeError, match="integer or bool"):
        mt.ones(3)[np.array([0.0, 1.0])]


# ---------------------------------------------------------------------- concat, stack, split

@given(data=st.data())
def test_concat(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=3), label="sizes along axis")
    parts = []
    for i, n in enumerate(sizes):
        part_shape = list(shape)
        part_shape[axis] = n
        parts.append(draw_array(data, tuple(part_shape), label=f"part {i}"))
    check(lambda *ts: mt.concat(ts, axis=axis), lambda *arrs: np.concatenate(arrs, axis=axis), *parts)


def test_concat_gradient_only_to_inputs_that_need_it():
    a = mt.tensor(np.ones((2, 2)), requires_grad=True)
    c = mt.tensor(np.ones((2, 3)))  # a constant
    mt.concat([a, c], axis=1).sum().backward()
    np.testing.assert_array_equal(a.grad, np.ones((2, 2)))
    assert c.grad is None


def test_concat_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="concat"):
        mt.concat([mt.ones(2, 3), mt.ones(3, 3)], axis=1)


@given(data=st.data())
def test_stack(data):
    shape = data.draw(shapes(max_dims=3), label="shape")
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
    count = data.draw(st.integers(1, 3), label="count")
    parts = [draw_array(data, shape, label=f"part {i}") for i in range(count)]
    check(lambda *ts: mt.stack(ts, axis=axis), lambda *arrs: np.stack(arrs, axis=axis), *parts)


@given(data=st.data())
def test_split(data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    n = shape[axis]
    if data.draw(st.booleans(), label="equal sections"):
        sections = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]), label="sections")
    else:
        sections = sorted(data.draw(st.lists(st.integers(0, n), max_size=3), label="indices"))
    x = draw_array(data, shape)
    expected = np.split(np.array(x), sections, axis=axis)
    pieces = mt.split(leaf(x), sections, axis=axis)
    assert len(pieces) == len(expected)
    for got, want in zip(pieces, expected):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got.numpy(), want)

    def scaled_pieces(t):
        # a different weight per piece: a gradient routed to the wrong piece shows up
        return mt.concat([p * float(i + 1) for i, p in enumerate(mt.split(t, sections, axis=axis))], axis=axis)

    check(scaled_pieces, lambda a: np.concatenate(
        [p * float(i + 1) for i, p in enumerate(np.split(a, sections, axis=axis))], axis=axis), x)


def test_split_rejects_unequal_sections():
    with pytest.raises(ValueError, match="split"):
        mt.split(mt.ones(5), 2)


# ====================================================================== zero-size forward (and backward)

ZERO_SIZE_CASES = {
    "add": (lambda a, b: a + b, np.add),
    "mul": (lambda a, b: a * b, np.multiply),
    "maximum": (mt.maximum, np.maximum),
    "exp_sub": (lambda a, b: mt.exp(a) - b, lambda a, b: np.exp(a) - b),
}


@pytest.mark.parametrize("name", list(ZERO_SIZE_CASES))
@given(data=st.data())
def test_zero_size_broadcasting(name, data):
    """Empty tensors broadcast like NumPy's, and backward gives empty gradients of the input shapes."""
    fn, reference = ZERO_SIZE_CASES[name]
    shape_a, shape_b = data.draw(broadcastable_shapes(min_side=0).filter(
        lambda s: 0 in np.broadcast_shapes(*s)), label="shapes")
    a, b = data.draw(arrays(shape_a), label="a"), data.draw(arrays(shape_b), label="b")
    ta, tb = leaf(a), leaf(b)
    out = fn(ta, tb)
    expected = reference(a, b)
    assert out.shape == expected.shape and out.size == 0
    out.backward(np.ones(out.shape))
    # an input that was broadcast from size 1 over an empty axis gets a zero gradient
    assert ta.grad.shape == a.shape and tb.grad.shape == b.shape
    np.testing.assert_array_equal(ta.grad, np.zeros(a.shape))
    np.testing.assert_array_equal(tb.grad, np.zeros(b.shape))


@given(data=st.data(), keepdims=st.booleans())
def test_zero_size_sum_and_shapes(data, keepdims):
    shape = data.draw(shapes(min_dims=1, min_side=0).filter(lambda s: 0 in s), label="shape")
    x = data.draw(arrays(shape), label="x")
    t = leaf(x)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    s = t.sum(axis=axis, keepdims=keepdims)
    np.testing.assert_array_equal(s.numpy(), np.sum(x, axis=axis, keepdims=keepdims))
    total = t.sum()
    assert total.item() == 0.0
    np.testing.assert_array_equal(t.reshape(-1).numpy(), x.reshape(-1))
    np.testing.assert_array_equal(t.transpose().numpy(), x.T)
    (total + s.sum()).backward()
    assert t.grad.shape == shape


# ====================================================================== functional

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_family(name, data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = draw_array(data, shape)

    def reference(a):
        shifted = a - a.max(axis=axis, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return log_p if name == "log_softmax" else np.exp(log_p)

    fn = getattr(F, name)
    check(lambda t: fn(t, axis=axis), reference, x)


def test_softmax_rows_sum_to_one():
    x = mt.tensor(np.random.default_rng(2).standard_normal((3, 5)) * 4)
    np.testing.assert_allclose(F.softmax(x).numpy().sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(F.log_softmax(x).numpy()).sum(axis=-1), 1.0, rtol=1e-12)


def _cross_entropy_np(z, targets, ignore_index, reduction):
    """Plain NumPy: -log softmax(z)[target], masked rows dropped."""
    m = z.max(axis=-1, keepdims=True)
    lse = (np.log(np.exp(z - m).sum(axis=-1, keepdims=True)) + m)[..., 0]
    valid = np.ones(targets.shape, bool) if ignore_index is None else targets != ignore_index
    safe = np.where(valid, targets, 0)
    nll = np.where(valid, lse - np.take_along_axis(z, safe[..., None], axis=-1)[..., 0], 0.0)
    if reduction == "none":
        return nll
    return nll.sum() / valid.sum() if reduction == "mean" else nll.sum()


IGNORE = -100


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=st.data(), use_ignore=st.booleans())
def test_cross_entropy(reduction, data, use_ignore):
    lead = data.draw(shapes(max_dims=2), label="leading dims")
    n_classes = data.draw(st.integers(1, 5), label="classes")
    z = draw_array(data, (*lead, n_classes), label="logits")
    targets = data.draw(hnp.arrays(np.int64, lead, elements=st.integers(0, n_classes - 1)), label="targets")
    ignore_index = None
    if use_ignore:
        ignore_index = IGNORE
        drop = data.draw(hnp.arrays(np.bool_, lead), label="ignored rows")
        if reduction == "mean" and drop.all():
            drop.flat[0] = False  # the mean over no rows is undefined (tested below)
        targets = np.where(drop, IGNORE, targets)
    check(lambda t: F.cross_entropy(t, targets, ignore_index=ignore_index, reduction=reduction),
          lambda a: _cross_entropy_np(a, targets, ignore_index, reduction), z)


def test_cross_entropy_ignored_rows_get_no_gradient():
    rng = np.random.default_rng(3)
    z = mt.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    targets = np.array([2, IGNORE, 0, IGNORE])
    loss = F.cross_entropy(z, targets, ignore_index=IGNORE)
    loss.backward()
    np.testing.assert_array_equal(z.grad[[1, 3]], 0.0)
    # mean over the 2 counted rows, not all 4
    np.testing.assert_allclose(loss.item(), _cross_entropy_np(z.numpy(), targets, IGNORE, "mean"), rtol=1e-12)
    # per row the gradient is (p - onehot) / 2
    p = np.exp(z.numpy() - z.numpy().max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(z.grad[0], (p[0] - np.eye(3)[2]) / 2, rtol=1e-12)


def test_cross_entropy_errors():
    z = mt.ones(2, 3)
    with pytest.raises(IndexError, match="out of range"):
        F.cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="ignore_index"):
        F.cross_entropy(z, np.array([IGNORE, IGNORE]), ignore_index=IGNORE)
    with pytest.raises(TypeError, match="integers"):
        F.cross_entropy(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, np.array([0, 1]), reduction="avg")


def _layer_norm_np(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * (1.0 if w is None else w) + (0.0 if b is None else b)


@pytest.mark.parametrize("with_weight, with_bias", [(True, True), (True, False), (False, True), (False, False)])
@given(data=st.data())
def test_layer_norm(with_weight, with_bias, data):
    lead = data.draw(shapes(max_dims=2), label="leading dims")
    d = data.draw(st.integers(1, 5), label="features")
    x = draw_array(data, (*lead, d))
    eps = data.draw(st.sampled_from([1e-5, 0.1]), label="eps")
    arrays_in, names = [x], ["x"]
    if with_weight:
        arrays_in.append(draw_array(data, (d,), label="weight"))
        names.append("w")
    if with_bias:
        arrays_in.append(draw_array(data, (d,), label="bias"))
        names.append("b")

    def call(fn, values):
        kw = dict(zip(names, values))
        return fn(kw["x"], kw.get("w"), kw.get("b"), eps)

    check(lambda *ts: call(lambda x_, w_, b_, e: F.layer_norm(x_, w_, b_, eps=e), ts),
          lambda *arrs: call(_layer_norm_np, arrs), *arrays_in)


def test_layer_norm_rejects_wrong_weight_shape():
    with pytest.raises(ValueError, match="weight"):
        F.layer_norm(mt.ones(2, 3), mt.ones(4))


# ---------------------------------------------------------------------- dropout

@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
@given(data=st.data())
def test_dropout_gradcheck_with_fixed_mask(p, data):
    # values away from 0, so that a zero in the output can only mean "dropped"
    x = draw_array(data, shapes(), lambda a: away_from(a, 0.0, gap=0.1))
    seed = data.draw(st.integers(0, 2**16), label="seed")

    def fn(t):  # reseeded on every call: the same mask each time, as gradcheck needs
        return F.dropout(t, p, rng=np.random.default_rng(seed))

    t = leaf(x)
    out = fn(t).numpy()
    kept = out != 0
    # every entry is either dropped or the input scaled by 1 / (1 - p)
    np.testing.assert_allclose(out[kept], np.array(x)[kept] / (1 - p), rtol=1e-12)
    assert gradcheck(fn, t)
    # the gradient is exactly the mask scaled by 1 / (1 - p)
    t.grad = None
    fn(t).backward(np.ones(x.shape))
    np.testing.assert_allclose(t.grad, kept / (1 - p), rtol=1e-12)


@pytest.mark.parametrize("p, training", [(0.0, True), (0.5, False), (0.0, False)])
def test_dropout_identity_cases(p, training):
    x = mt.tensor(np.random.default_rng(4).standard_normal((3, 4)), requires_grad=True)
    y = F.dropout(x, p, training=training, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    (y * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full((3, 4), 2.0))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_preserves_expectation(p):
    r"""Each output of dropout(1) is $B / (1-p)$ with $B \sim \mathrm{Bernoulli}(1-p)$:
    mean 1 and variance $p / (1-p)$, so the sample mean of $n$ has std $\sqrt{p / ((1-p) n)}$.
    Six standard deviations: a false alarm has probability about $2 \cdot 10^{-9}$."""
    n = 200_000
    y = F.dropout(mt.ones(n, dtype=mt.float64), p, rng=np.random.default_rng(5)).numpy()
    std_of_mean = math.sqrt(p / ((1 - p) * n))
    assert abs(y.mean() - 1.0) < 6 * std_of_mean
    dropped = np.mean(y == 0)
    assert abs(dropped - p) < 6 * math.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(np.unique(y[y != 0]), [1 / (1 - p)], rtol=1e-12)


def test_dropout_seed_reproducible_and_varies():
    x = mt.ones(1000, dtype=mt.float64)
    a = F.dropout(x, 0.5, rng=np.random.default_rng(11)).numpy()
    b = F.dropout(x, 0.5, rng=np.random.default_rng(11)).numpy()
    c = F.dropout(x, 0.5, rng=np.random.default_rng(12)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(mt.ones(3), p)


# ---------------------------------------------------------------------- embedding

@given(data=st.data())
def test_embedding(data):
    vocab = data.draw(st.integers(1, 5), label="vocab")
    d = data.draw(st.integers(1, 4), label="dim")
    ids_shape = data.draw(shapes(max_dims=2), label="ids shape")
    # few rows, many lookups: repeated ids are the common case here
    ids = data.draw(hnp.arrays(np.int64, ids_shape, elements=st.integers(0, vocab - 1)), label="ids")
    weight = draw_array(data, (vocab, d), label="weight")
    check(lambda w: F.embedding(ids, w), lambda w: w[ids], weight)


def test_embedding_repeated_ids_accumulate():
    w = mt.tensor(np.zeros((4, 2)), requires_grad=True)
    ids = mt.tensor(np.array([[2, 0], [2, 2]]))
    F.embedding(ids, w).sum().backward()
    np.testing.assert_array_equal(w.grad, [[1, 1], [0, 0], [3, 3], [0, 0]])


def test_embedding_errors():
    w = mt.ones(4, 2)
    with pytest.raises(IndexError, match="out of range"):
        F.embedding(np.array([0, 4]), w)
    with pytest.raises(IndexError, match="out of range"):
        F.embedding(np.array([-1]), w)
    with pytest.raises(TypeError, match="integers"):
        F.embedding(np.array([0.0]), w)


# ====================================================================== dtypes

_rng = np.random.default_rng(6)
_X = _rng.uniform(0.5, 2.0, size=(3, 4))  # positive and tie-free: fine for log, sqrt and max
_IDS = np.array([[0, 2], [2, 1]])

# Each maps one tensor x of shape (3, 4) to a tensor; "dropout" draws its mask
# in the input's dtype, so it is compared on dtype only.
FLOAT32_CASES = {
    "add_int": lambda x: x + 1,
    "radd": lambda x: 1.5 + x,
    "sub": lambda x: x - 0.5,
    "rsub": lambda x: 0.5 - x,
    "rmul": lambda x: 2.0 * x,
    "mul_int": lambda x: x * 3,
    "div": lambda x: x / 3.0,
    "rdiv": lambda x: 2.0 / x,
    "pow": lambda x: x**2,
    "pow_frac": lambda x: x**0.5,
    "rpow": lambda x: 2.0**x,
    "neg": lambda x: -x,
    "self_mul": lambda x: x * x,
    "exp": mt.exp,
    "log": mt.log,
    "tanh": mt.tanh,
    "sqrt": mt.sqrt,
    "sigmoid": mt.sigmoid,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_exact": lambda x: F.gelu(x, approximate="none"),
    "sum": lambda x: x.sum(),
    "mean": lambda x: x.mean(axis=0),
    "max": lambda x: x.max(axis=-1),
    "reshape": lambda x: x.reshape(-1),
    "transpose": lambda x: x.T,
    "slice": lambda x: x[::2, 1:],
    "take": lambda x: x[[0, 0, 2]],
    "mask": lambda x: x[x > 1.0],
    "expand": lambda x: x[None].expand(2, 3, 4),
    "matmul": lambda x: x @ x.T,
    "matmul_fold": lambda x: x.reshape(3, 2, 2) @ x[:2, :3],
    "maximum": lambda x: mt.maximum(x, 1.0),
    "where": lambda x: mt.where(x > 1.0, x, 0.0),
    "concat": lambda x: mt.concat([x, x * 2.0], axis=1),
    "stack": lambda x: mt.stack([x, x], axis=0),
    "split": lambda x: mt.split(x, 2, axis=1)[1],
    "softmax": F.softmax,
    "log_softmax": F.log_softmax,
    "cross_entropy": lambda x: F.cross_entropy(x, np.array([0, 3, 1])),
    "cross_entropy_none": lambda x: F.cross_entropy(x, np.array([0, 3, -1]), ignore_index=-1, reduction="none"),
    "layer_norm": F.layer_norm,
    "embedding": lambda x: F.embedding(_IDS, x),
    "dropout": lambda x: F.dropout(x, 0.5, rng=np.random.default_rng(0)),
}


@pytest.mark.parametrize("name", list(FLOAT32_CASES))
def test_float32_in_float32_out(name):
    """float32 data stays float32 through every op, Python-scalar operands included, and so do
    its gradients; the values agree with the same computation in float64 to float32 accuracy."""
    fn = FLOAT32_CASES[name]
    x32 = mt.tensor(_X.astype(np.float32), requires_grad=True)
    out32 = fn(x32)
    assert out32.dtype == np.float32, f"{name}: {out32.dtype}"
    w = np.random.default_rng(1).standard_normal(out32.shape)
    out32.backward(w.astype(np.float32))
    assert x32.grad is not None and x32.grad.dtype == np.float32
    if name == "dropout":
        return
    x64 = mt.tensor(_X, requires_grad=True)
    out64 = fn(x64)
    assert out64.dtype == np.float64
    out64.backward(w)
    tol = TOLERANCES["float32"]
    np.testing.assert_allclose(out32.numpy(), out64.numpy(), rtol=tol["rtol"], atol=tol["atol"])
    np.testing.assert_allclose(x32.grad, x64.grad, rtol=tol["rtol"], atol=tol["atol"])


def test_float32_layer_norm_and_cross_entropy_with_params():
    x = mt.tensor(_X.astype(np.float32), requires_grad=True)
    w = mt.ones(4, requires_grad=True)  # factories default to float32
    b = mt.zeros(4, requires_grad=True)
    loss = F.cross_entropy(F.layer_norm(x, w, b), np.array([1, 2, 3]))
    assert loss.dtype == np.float32
    loss.backward()
    assert {x.grad.dtype, w.grad.dtype, b.grad.dtype} == {np.dtype(np.float32)}


MIXED_CASES = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": mt.maximum,
    "where": lambda a, b: mt.where(a > 1.0, a, b),
    "matmul": lambda a, b: a.reshape(4, 3) @ b.reshape(3, 4),
    "concat": lambda a, b: mt.concat([a, b], axis=0),
    "layer_norm": lambda a, b: F.layer_norm(a, b[0], b[1]),
}


@pytest.mark.parametrize("name", list(MIXED_CASES))
@pytest.mark.parametrize("order", ["f32_f64", "f64_f32"])
def test_mixed_precision_grads_keep_each_input_dtype(name, order):
    fn = MIXED_CASES[name]
    rng = np.random.default_rng(7)
    a_np, b_np = rng.uniform(0.5, 2.0, (3, 4)), rng.uniform(0.5, 2.0, (3, 4))
    da, db = (np.float32, np.float64) if order == "f32_f64" else (np.float64, np.float32)
    a = mt.tensor(a_np.astype(da), requires_grad=True)
    b = mt.tensor(b_np.astype(db), requires_grad=True)
    out = fn(a, b)
    assert out.dtype == np.float64  # NumPy promotion
    out.sum().backward()
    assert a.grad.dtype == da and b.grad.dtype == db
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    # the same gradients as an all-float64 run, to float32 accuracy
    a64, b64 = mt.tensor(a_np.astype(da).astype(np.float64), requires_grad=True), \
        mt.tensor(b_np.astype(db).astype(np.float64), requires_grad=True)
    fn(a64, b64).sum().backward()
    tol = TOLERANCES["float32"]
    np.testing.assert_allclose(a.grad, a64.grad, rtol=tol["rtol"], atol=tol["atol"])
    np.testing.assert_allclose(b.grad, b64.grad, rtol=tol["rtol"], atol=tol["atol"])


def test_python_floats_make_float32_tensors():
    assert mt.tensor([1.0, 2.0]).dtype == np.float32
    assert mt.tensor(np.array([1.0, 2.0])).dtype == np.float64  # arrays keep their dtype
    assert mt.tensor([1, 2]).dtype == np.int64


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="requires_grad"):
        mt.tensor([1, 2], requires_grad=True)


def test_gradient_accumulates_across_backward_calls():
    x = mt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0 + 2.0, 3.0 + 4.0])


def test_checker_catches_a_wrong_backward():
    """The gradchecks above mean something only if a wrong backward fails them."""

    class BadSquare(mt.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x  # should be 2 x

    x = mt.tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    with pytest.raises(mt.testing.GradcheckError):
        gradcheck(BadSquare.apply, x)



# ====================================================================== the shared strategies themselves

@given(a=arrays(shapes()), layout=st.sampled_from(LAYOUTS))
def test_relayout_keeps_values(a, layout):
    b = relayout(a, layout)
    assert b.shape == a.shape and b.flags.writeable
    np.testing.assert_array_equal(b, a)


@given(a=non_contiguous_arrays(shapes(min_dims=1)))
def test_non_contiguous_arrays_really_are(a):
    assert a.size <= 1 or not a.flags.c_contiguous


@given(a=arrays(shapes(min_dims=1)), b=arrays(shapes(min_dims=1)))
def test_kink_helpers_keep_their_distance(a, b):
    tol = 1e-9  # rounding of the shifted values
    assert np.all(np.abs(away_from(a)) >= GAP - tol)
    assert np.all(shift_positive(a) > 0)
    d = np.sort(distinct(a).ravel())
    assert np.all(np.diff(d) >= GAP - tol)
    assert np.array_equal(np.argsort(distinct(a).ravel(), kind="stable"), np.argsort(a.ravel(), kind="stable"))
    ia, ib = interleave(a.ravel()[:, None], b.ravel()[None, :])  # every pair meets
    assert np.all(np.abs(ia - ib) >= GAP - tol)
