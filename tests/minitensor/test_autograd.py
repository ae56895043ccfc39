r"""Tests of the autograd engine (minitensor/autograd.py): accumulation, aliasing,
deep graphs, memory, grad modes, stop-gradient, user-defined Functions and the
one place where broadcasting is undone.

How a student writes a new op (the pattern the ``Cube`` class below follows)::

    class Cube(mt.Function):
        r'''$y = x^3$: $\bar x = 3 x^2 \bar y$.'''

        @staticmethod
        def forward(ctx, x):            # raw arrays in, a raw array out
            ctx.save_for_backward(x)    # whatever backward needs
            return x ** 3

        @staticmethod
        def backward(ctx, grad):        # the upstream gradient, shaped like the output
            (x,) = ctx.saved_tensors
            return 3 * x ** 2 * grad    # one gradient (or None) per input

    y = Cube.apply(x)                   # Tensors in, a Tensor out; the graph is recorded

``forward`` and ``backward`` are static methods on raw NumPy/CuPy arrays;
``apply`` does the wrapping and the bookkeeping. Keyword arguments of ``apply``
are passed to ``forward`` as non-differentiable parameters.
"""
import tracemalloc

import numpy as np
import pytest
from functions import Cube
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitensor as mt
from minitensor.autograd import unbroadcast


def leaf(shape, seed=0, dtype=np.float64):
    """A float64 leaf that requires grad, with seeded values."""
    return mt.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=True)


# =================================================================== accumulation

def test_leaf_used_twice_in_a_product_gets_both_contributions():
    r"""$\partial (x \cdot x) / \partial x = 2x$: the two uses of $x$ add up."""
    x = leaf((3, 2))
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)


def test_leaf_used_twice_in_a_sum_gets_gradient_two():
    x = leaf((4,))
    (x + x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(4, 2.0))


def test_diamond_graph_sums_both_paths():
    r"""$b = 2x,\ c = 3x,\ d = b c = 6x^2$ so $\bar x = 12 x$ (both paths through $b$ and $c$)."""
    x = leaf((2, 3))
    b = x * 2.0
    c = x * 3.0
    (b * c).sum().backward()
    np.testing.assert_allclose(x.grad, 12 * x.data)


def test_intermediate_used_by_several_consumers():
    r"""$h = x^2$ feeds three consumers: $L = \sum (h + 2h + h \cdot h)$, $\bar h = 3 + 2h$, $\bar x = 2x\,\bar h$."""
    x = leaf((5,), seed=1)
    h = x * x
    (h + h * 2.0 + h * h).sum().backward()
    hd = x.data ** 2
    np.testing.assert_allclose(x.grad, 2 * x.data * (3 + 2 * hd))


def test_two_backward_calls_on_separate_graphs_accumulate():
    x = leaf((3,))
    (x * 2.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2.0 + 2 * x.data)


def test_two_backward_calls_on_the_same_graph_accumulate():
    x = leaf((3,))
    loss = (x * x).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)


def test_resetting_grad_to_none_starts_afresh():
    x = leaf((3,))
    (x * 3.0).sum().backward()
    x.grad = None
    (x * 5.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 5.0))


def test_intermediate_tensors_keep_no_gradient():
    """Only leaves get ``.grad``; the gradients of intermediates are dropped once used."""
    x = leaf((3,))
    h = x * 2.0
    h.sum().backward()
    assert h.grad is None
    assert x.grad is not None


def test_gradient_has_the_leaf_dtype():
    """A float32 leaf mixed with a float64 array still gets a float32 gradient."""
    x = leaf((3,), dtype=np.float32)
    y = np.arange(3, dtype=np.float64) * x  # NumPy promotes the output to float64
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, np.arange(3, dtype=np.float32))


# =================================================================== aliasing

def _leaf_grads_are_private(leaves, others):
    """No leaf's .grad shares memory with another leaf's .grad or with any array in ``others``."""
    for i, a in enumerate(leaves):
        assert a.grad is not None
        for b in leaves[i + 1:]:
            assert not np.shares_memory(a.grad, b.grad)
        for arr in others:
            assert not np.shares_memory(a.grad, arr)


def test_sum_of_two_leaves_gives_independent_gradients():
    """``Add.backward`` hands back the SAME array for both inputs; the engine must copy it."""
    a, b = leaf((2, 3), 0), leaf((2, 3), 1)
    (a + b).sum().backward()
    _leaf_grads_are_private([a, b], [a.data, b.data])
    before = b.grad.copy()
    a.grad += 1.0
    np.testing.assert_array_equal(b.grad, before)


def test_root_sum_of_leaves_with_explicit_grad_does_not_keep_the_callers_array():
    a, b = leaf((2, 3), 0), leaf((2, 3), 1)
    g = np.ones((2, 3))
    (a + b).backward(g)
    _leaf_grads_are_private([a, b], [g])
    a.grad *= 10.0
    np.testing.assert_array_equal(g, np.ones((2, 3)))
    np.testing.assert_array_equal(b.grad, np.ones((2, 3)))


def test_leaf_as_root_does_not_keep_the_callers_array():
    a = leaf((2, 2))
    g = np.full((2, 2), 3.0)
    a.backward(g)
    assert not np.shares_memory(a.grad, g)
    a.grad += 1
    np.testing.assert_array_equal(g, np.full((2, 2), 3.0))


def test_reshape_and_transpose_paths_give_independent_gradients():
    """Reshape/Transpose backward return VIEWS of the upstream gradient."""
    a, b = leaf((2, 3), 0), leaf((3, 2), 1)
    y = a.reshape(6) + b.transpose().reshape(6)
    g = np.arange(6.0)
    y.backward(g)
    _leaf_grads_are_private([a, b], [g, a.data, b.data])
    np.testing.assert_array_equal(a.grad, g.reshape(2, 3))
    np.testing.assert_array_equal(b.grad, g.reshape(2, 3).T)
    a.grad[...] = 0.0
    np.testing.assert_array_equal(b.grad, g.reshape(2, 3).T)
    np.testing.assert_array_equal(g, np.arange(6.0))


def test_expand_and_sum_paths_give_independent_gradients():
    """Sum's backward is a read-only broadcast view; Expand's is the upstream gradient itself."""
    a, b, c = leaf((1, 3), 0), leaf((2, 3), 1), leaf((2, 3), 2)
    (a.expand(2, 3) + b + c).sum().backward()
    _leaf_grads_are_private([a, b, c], [a.data, b.data, c.data])
    for t in (a, b, c):
        assert t.grad.flags.writeable
    b.grad += 1.0
    np.testing.assert_array_equal(c.grad, np.ones((2, 3)))
    np.testing.assert_array_equal(a.grad, np.full((1, 3), 2.0))


def test_concat_pieces_give_independent_gradients():
    """Concat's backward returns slices of one upstream array."""
    a, b = leaf((2, 2), 0), leaf((3, 2), 1)
    g = np.arange(10.0).reshape(5, 2)
    mt.concat([a, b], axis=0).backward(g)
    _leaf_grads_are_private([a, b], [g])
    a.grad += 100.0
    np.testing.assert_array_equal(g, np.arange(10.0).reshape(5, 2))
    np.testing.assert_array_equal(b.grad, g[2:])


@pytest.mark.parametrize("debug", [False, True])
def test_split_pieces_add_into_one_gradient_and_leave_a_shared_one_alone(debug):
    """The pieces of ``split`` hand back SliceGrads that the engine adds in place into one
    array; ``Add`` hands one array to two inputs, which must never be written."""
    x, c = leaf((6,), 0), leaf((6,), 1)
    w = [np.random.default_rng(k).standard_normal(6 if k == 0 else 2) for k in range(4)]
    with mt.autograd.debug_mode(debug):
        y = x * 2.0
        s = y + c  # Add: the same upstream array for y and for c
        q, k, v = mt.split(y, 3)
        loss = (s * mt.tensor(w[0])).sum() + sum(((p * mt.tensor(wi)).sum() for p, wi in zip((q, k, v), w[1:])),
                                                  mt.tensor(0.0))
        loss.backward()
    np.testing.assert_allclose(x.grad, 2.0 * (w[0] + np.concatenate(w[1:])), rtol=1e-15)
    np.testing.assert_array_equal(c.grad, w[0])


def test_a_slice_of_a_leaf_and_overlapping_slices_of_an_intermediate():
    """A SliceGrad reaching a leaf is made dense; slices that overlap each add their share."""
    x = leaf((5, 3), 0)
    y = x * 1.0
    (x[1:3].sum() + y[0:4].sum() + y[2:].sum() + y[::-2, 1].sum()).backward()
    expected = np.zeros((5, 3))
    expected[1:3] += 1
    expected[0:4] += 1
    expected[2:] += 1
    expected[::-2, 1] += 1
    np.testing.assert_array_equal(x.grad, expected)


def test_accumulating_into_a_kept_gradient_does_not_leak_into_another_leaf():
    """The first contribution kept as ``.grad`` must not be an array someone else also holds,
    or the second ``+=`` would change both."""
    a, b = leaf((3,), 0), leaf((3,), 1)
    s = a + b  # both parents receive the same upstream array
    (s * 2.0 + a).sum().backward()
    np.testing.assert_array_equal(a.grad, np.full(3, 3.0))
    np.testing.assert_array_equal(b.grad, np.full(3, 2.0))


def test_a_gradient_kept_by_a_leaf_is_not_still_pending_elsewhere():
    r"""Regression: $n = b + a$, $m = b + n$, $L = \sum (m + m)$, so $L = 4b + 2a$.

    $m$'s pending gradient is a fresh sum; Add hands it to both $b$ (a leaf, which
    used to keep it as ``.grad``) and $n$ (pending). Processing $n$ then did
    ``b.grad += ...`` in place, changing $n$'s pending gradient before $a$ got it.
    """
    a, b = leaf((2,), 0), leaf((2,), 1)
    n = b + a
    m = b + n
    (m + m).sum().backward()
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])
    np.testing.assert_array_equal(b.grad, [4.0, 4.0])


class TwiceSum(mt.Function):
    r"""$y = 2u + 2v$ whose backward returns ONE array for both inputs (legal, and a trap)."""

    @staticmethod
    def forward(ctx, u, v):
        return 2 * u + 2 * v

    @staticmethod
    def backward(ctx, grad):
        h = 2 * grad
        return h, h


def test_one_array_returned_for_two_inputs_is_not_shared():
    r"""Regression: a backward may return the SAME fresh array for two inputs.
    $y = 2a + 2(a + c)$: $\bar a = 4$, $\bar c = 2$."""
    a, c = leaf((3,), 0), leaf((3,), 1)
    TwiceSum.apply(a, a + c).sum().backward()
    np.testing.assert_array_equal(a.grad, np.full(3, 4.0))
    np.testing.assert_array_equal(c.grad, np.full(3, 2.0))


def test_layer_norm_bias_gradient_is_private():
    """LayerNorm's backward returns the upstream gradient itself for the bias."""
    x = leaf((4,), 0)
    w, b = leaf((4,), 1), leaf((4,), 2)
    g = np.arange(4.0)
    mt.functional.layer_norm(x, w, b).backward(g)
    _leaf_grads_are_private([x, w, b], [g])
    b.grad += 1
    np.testing.assert_array_equal(g, np.arange(4.0))


# Node builders for random graphs: every node has shape (2,), so any two combine.
GRAPH_OPS = (
    lambda x, y: x + y,
    lambda x, y: x * y,
    lambda x, y: -x,
    lambda x, y: x * 1.5,
    lambda x, y: x.reshape(2, 1).reshape(2),           # Reshape: views of the gradient
    lambda x, y: (x.reshape(1, 2).T @ y.reshape(1, 2)).T.sum(axis=1),  # Transpose: a leaf may keep a view
    lambda x, y: x.expand(3, 2).sum(axis=0),           # Expand + Sum: the engine's unbroadcast
    lambda x, y: mt.concat([x, y])[1:3],               # Concat + GetItem: slices of the gradient
    lambda x, y: mt.concat([x[1:], x[:1]]),            # two slices of one node: SliceGrads added in place
    lambda x, y: x[::-1] * y[0],                       # a reversed slice, and a one-entry slice
    lambda x, y: TwiceSum.apply(x, y),
)


@given(st.lists(st.tuples(st.integers(0, len(GRAPH_OPS) - 1), st.integers(0, 20), st.integers(0, 20)),
                min_size=1, max_size=8),
       st.lists(st.booleans(), min_size=8, max_size=8))
def test_random_graphs_pass_gradcheck(program, extra_outputs):
    """Random DAGs over three leaves, where nodes are reused by later nodes and summed
    into the output: every sharing and accumulation pattern the engine must get right,
    checked against central differences."""

    def fn(a, b, c):
        nodes = [a, b, c]
        for op, i, j in program:
            nodes.append(GRAPH_OPS[op](nodes[i % len(nodes)], nodes[j % len(nodes)]))
        out = nodes[-1]
        for node, use in zip(nodes[3:-1], extra_outputs):
            out = out + node if use else out
        return out

    leaves = [leaf((2,), seed=k) for k in range(3)]
    assert mt.testing.gradcheck(fn, *leaves)


# =================================================================== deep graphs and memory

def test_ten_thousand_deep_chain_of_products():
    r"""$y = 1.0001^{10000} x$: the engine's topological sort is iterative, not recursive."""
    x = mt.tensor(np.array(2.0), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001 ** 10_000, rtol=1e-10)
    np.testing.assert_allclose(y.data, 2.0 * 1.0001 ** 10_000, rtol=1e-10)


def test_ten_thousand_deep_chain_of_sums_with_a_branch():
    """Deep chain plus a second use of the leaf at the end: both contributions arrive."""
    x = mt.tensor(np.array([1.0, -1.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y + 1.0
    (y * x).sum().backward()
    # d/dx [ (x + 10000) * x ] = 2x + 10000
    np.testing.assert_allclose(x.grad, 2 * x.data + 10_000)


def test_intermediate_gradients_are_freed_during_backward():
    """Backward through a 500-deep chain of ops that save nothing must hold only a few
    gradient-sized arrays at a time, not one per node.

    The chain alternates ``y + 1`` and ``-y``: Neg's backward makes a FRESH array at
    every node (Add's passes its upstream array on, so a chain of Adds alone could
    not tell freed from kept). Each tensor is 256 KiB (float64, 32 x 1024), a quarter
    of the "~1 MB" one might pick, to keep the forward graph (500 tensors) at
    128 MiB. If pending gradients were kept to the end the peak would be
    ~250 x 256 KiB = 64 MiB; freed as consumed it is ~3 x 256 KiB. The bound,
    16 tensors = 4 MiB, sits far from both. NumPy reports its allocations to tracemalloc.
    """
    depth, shape = 250, (32, 1024)
    nbytes = np.zeros(shape).nbytes
    x = mt.tensor(np.zeros(shape), requires_grad=True)
    y = x
    for _ in range(depth):
        y = -(y + 1.0)
    g = np.ones(shape)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        y.backward(g)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - baseline < 16 * nbytes, f"backward peaked at {(peak - baseline) / 2**20:.1f} MiB over the forward"
    np.testing.assert_array_equal(x.grad, g)  # (-1)^250 = 1
    expected = 0.0
    for _ in range(depth):
        expected = -(expected + 1.0)
    np.testing.assert_array_equal(y.data, np.full(shape, expected))


# =================================================================== grad modes

def test_no_grad_records_no_graph():
    x = leaf((3,))
    with mt.no_grad():
        assert not mt.is_grad_enabled()
        y = x * 2.0 + 1.0
    assert mt.is_grad_enabled()
    assert not y.requires_grad
    assert y._ctx is None
    np.testing.assert_allclose(y.data, 2 * x.data + 1)


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with mt.no_grad():
            1 / 0
    assert mt.is_grad_enabled()
    x = leaf((2,))
    assert (x * 2.0).requires_grad


def test_no_grad_nests_and_restores_the_outer_mode():
    with mt.no_grad():
        with mt.no_grad():
            assert not mt.is_grad_enabled()
        assert not mt.is_grad_enabled()
    assert mt.is_grad_enabled()


def test_no_grad_as_a_decorator():
    @mt.no_grad()
    def evaluate(t):
        assert not mt.is_grad_enabled()
        return t * t

    x = leaf((3,))
    y = evaluate(x)
    assert not y.requires_grad and y._ctx is None
    assert mt.is_grad_enabled()

    @mt.no_grad()
    def fails():
        raise KeyError("boom")

    with pytest.raises(KeyError):
        fails()
    assert mt.is_grad_enabled()


def test_result_of_ops_on_constants_records_nothing():
    a, b = mt.tensor(np.ones(3)), mt.tensor(np.ones(3))
    y = a * b + 1.0
    assert not y.requires_grad and y._ctx is None


def test_a_result_requires_grad_when_any_input_does():
    a, b = leaf((3,)), mt.tensor(np.ones(3))
    y = b * a
    assert y.requires_grad and y._ctx is not None


# =================================================================== stop-gradient

def test_detach_is_a_stop_gradient():
    r"""$L = \sum x \cdot \mathrm{SG}(x)$: only the direct branch sends a gradient, $\bar x = x$ (not $2x$)."""
    x = leaf((4,))
    d = x.detach()
    assert not d.requires_grad and d._ctx is None
    np.testing.assert_array_equal(d.data, x.data)
    (x * d).sum().backward()
    np.testing.assert_allclose(x.grad, x.data)


def test_detached_branch_of_an_intermediate_sends_nothing_upstream():
    r"""Memory with SG as in Transformer-XL: $[\mathrm{SG}(m) \circ h]$. The source of $m$
    gets no gradient through it; $h$'s source gets its own."""
    w_mem, w_h = leaf((2, 3), 0), leaf((2, 3), 1)
    mem = w_mem * 2.0
    h = w_h * 3.0
    out = mt.concat([mem.detach(), h], axis=0)
    out.sum().backward()
    assert w_mem.grad is None
    np.testing.assert_array_equal(w_h.grad, np.full((2, 3), 3.0))


def test_detached_tensor_can_be_made_a_new_leaf():
    x = leaf((3,))
    d = x.detach()
    d.requires_grad = True
    (d * 4.0).sum().backward()
    np.testing.assert_array_equal(d.grad, np.full(3, 4.0))
    assert x.grad is None


# =================================================================== explicit gradients

def test_backward_with_explicit_gradient_on_a_non_scalar():
    x = leaf((2, 3))
    g = np.random.default_rng(5).standard_normal((2, 3))
    (x * x).backward(g)
    np.testing.assert_allclose(x.grad, 2 * x.data * g)


def test_backward_accepts_a_tensor_as_gradient():
    x = leaf((2, 3))
    g = mt.tensor(np.full((2, 3), 0.5))
    (x * 4.0).backward(g)
    np.testing.assert_allclose(x.grad, np.full((2, 3), 2.0))


def test_backward_of_a_one_element_non_scalar_needs_no_gradient():
    x = leaf((1, 1))
    (x * 3.0).backward()
    np.testing.assert_array_equal(x.grad, [[3.0]])


# =================================================================== user-defined Functions

class ScaledSum(mt.Function):
    r"""$y = s\,(a + b)$ with a constant ``scale`` $s$: $\bar a = \bar b = s\,\bar y$."""

    @staticmethod
    def forward(ctx, a, b, *, scale):
        ctx.scale = scale
        return scale * (a + b)

    @staticmethod
    def backward(ctx, grad):
        return ctx.scale * grad, ctx.scale * grad


class ScaleByConstant(mt.Function):
    r"""$y = a \odot b$ where $b$ is meant to be a constant: its gradient is never
    computed. The backward trusts ``ctx.needs_input_grad`` and refuses loudly if
    asked for $\bar b$, so it can only succeed if the engine reports the flags right."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        (b,) = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        if need_b:
            raise NotImplementedError("ScaleByConstant: no gradient for the scale b")
        return (grad * b if need_a else None), None


def test_user_function_forward_and_backward():
    x = leaf((2, 3))
    y = Cube.apply(x)
    assert isinstance(y, mt.Tensor) and y.requires_grad
    assert y._ctx is not None and y._ctx.fn is Cube
    np.testing.assert_allclose(y.data, x.data ** 3)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 3 * x.data ** 2)


def test_user_function_passes_gradcheck_and_composes_with_builtin_ops():
    x = leaf((3,), seed=3)
    assert mt.testing.gradcheck(lambda t: Cube.apply(t * 2.0).tanh(), x)


def test_user_function_with_keyword_parameters():
    a, b = leaf((2,), 0), leaf((2,), 1)
    y = ScaledSum.apply(a, b, scale=3.0)
    np.testing.assert_allclose(y.data, 3.0 * (a.data + b.data))
    y.sum().backward()
    np.testing.assert_array_equal(a.grad, [3.0, 3.0])
    np.testing.assert_array_equal(b.grad, [3.0, 3.0])


def test_needs_input_grad_reflects_which_inputs_require_grad():
    a = leaf((3,), 0)
    b = mt.tensor(np.arange(3.0))  # a constant
    y = ScaleByConstant.apply(a, b)
    assert y._ctx.needs_input_grad == (True, False)
    y.sum().backward()  # would raise if the engine claimed b needs a gradient
    np.testing.assert_array_equal(a.grad, b.data)
    assert b.grad is None

    # the same Function with a b that does require grad: now the flag is set and it refuses
    y = ScaleByConstant.apply(a, leaf((3,), 1))
    assert y._ctx.needs_input_grad == (True, True)
    with pytest.raises(NotImplementedError, match="no gradient for the scale"):
        y.sum().backward()


def test_engine_skips_gradients_for_inputs_that_do_not_require_them():
    """Even if a backward returns a gradient for a constant, the constant gets none."""

    class Careless(mt.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, grad):
            return grad, grad

    a, c = leaf((2,)), mt.tensor(np.ones(2))
    Careless.apply(a, c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(a.grad, [1.0, 1.0])


def test_backward_returning_none_leaves_that_input_without_gradient():
    class OnlyFirst(mt.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * 2 + b

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad, None

    a, b = leaf((2,), 0), leaf((2,), 1)
    OnlyFirst.apply(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])
    assert b.grad is None


def test_backward_returning_the_wrong_number_of_gradients_is_reported():
    class TooFew(mt.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, grad):
            return (grad,)

    y = TooFew.apply(leaf((2,), 0), leaf((2,), 1))
    with pytest.raises(RuntimeError, match=r"TooFew\.backward returned 1 gradients for 2 inputs"):
        y.sum().backward()


def test_function_apply_records_nothing_under_no_grad():
    x = leaf((2,))
    with mt.no_grad():
        y = Cube.apply(x)
    assert not y.requires_grad and y._ctx is None


# =================================================================== integer tensors

@pytest.mark.parametrize("data", [[1, 2, 3], np.array([1, 2], np.int32), np.array([True, False])])
def test_integer_and_bool_tensors_cannot_require_grad(data):
    with pytest.raises(TypeError, match="floating-point"):
        mt.tensor(data, requires_grad=True)
    t = mt.tensor(data)
    with pytest.raises(TypeError, match="floating-point"):
        t.requires_grad = True
    assert not t.requires_grad


def test_indexing_with_an_integer_tensor_sends_gradient_only_to_the_table():
    table = leaf((4, 2))
    ids = mt.tensor([0, 3, 0])
    table[ids].sum().backward()
    np.testing.assert_array_equal(table.grad, [[2, 2], [0, 0], [0, 0], [1, 1]])
    assert ids.grad is None


# =================================================================== broadcasting

def test_broadcast_column_plus_row():
    a, b = leaf((3, 1), 0), leaf((1, 4), 1)
    g = np.random.default_rng(7).standard_normal((3, 4))
    y = a + b
    assert y.shape == (3, 4)
    y.backward(g)
    assert a.grad.shape == (3, 1) and b.grad.shape == (1, 4)
    np.testing.assert_allclose(a.grad, g.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(b.grad, g.sum(axis=0, keepdims=True))


def test_broadcast_missing_leading_axes():
    a, b = leaf((4,), 0), leaf((2, 3, 4), 1)
    g = np.random.default_rng(8).standard_normal((2, 3, 4))
    (a + b).backward(g)
    assert a.grad.shape == (4,) and b.grad.shape == (2, 3, 4)
    np.testing.assert_allclose(a.grad, g.sum(axis=(0, 1)))
    np.testing.assert_allclose(b.grad, g)


def test_broadcast_product_column_times_row():
    r"""$y_{ij} = a_i b_j$: $\bar a_i = \sum_j \bar y_{ij} b_j$, $\bar b_j = \sum_i \bar y_{ij} a_i$."""
    a, b = leaf((3, 1), 0), leaf((1, 4), 1)
    (a * b).sum().backward()
    np.testing.assert_allclose(a.grad, np.full((3, 1), b.data.sum()))
    np.testing.assert_allclose(b.grad, np.full((1, 4), a.data.sum()))


def test_broadcast_against_a_scalar_tensor():
    s, x = leaf((), 0), leaf((2, 3), 1)
    (s * x).sum().backward()
    assert s.grad.shape == ()
    np.testing.assert_allclose(s.grad, x.data.sum())


def test_unbroadcast_directly():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(unbroadcast(g, (3, 1)), g.sum(axis=(0, 2))[:, None])
    np.testing.assert_array_equal(unbroadcast(g, (1, 1, 4)), g.sum(axis=(0, 1), keepdims=True))
    np.testing.assert_array_equal(unbroadcast(g, ()), g.sum())
    assert unbroadcast(g, (2, 3, 4)) is g


@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4),
       st.integers(0, 2**16))
def test_broadcast_gradient_matches_the_jacobian_transpose(shapes, seed):
    r"""Broadcasting is linear, $y = Bx$, so $\bar x_k = \langle \bar y, B e_k \rangle$:
    broadcast each unit vector $e_k$ and take its inner product with $\bar y$.
    An independent, entry-by-entry reference for the engine's unbroadcast."""
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    rng = np.random.default_rng(seed)
    a = mt.tensor(rng.standard_normal(sa), requires_grad=True)
    b = mt.tensor(rng.standard_normal(sb), requires_grad=True)
    g = rng.standard_normal(out_shape)
    (a + b).backward(g)
    for t in (a, b):
        expected = np.zeros(t.shape)
        for k in np.ndindex(t.shape):
            e = np.zeros(t.shape)
            e[k] = 1.0
            expected[k] = np.sum(g * np.broadcast_to(e, out_shape))
        assert t.grad.shape == t.shape
        np.testing.assert_allclose(t.grad, expected, rtol=1e-12, atol=1e-12)
