r"""Reverse-mode automatic differentiation: the engine every op plugs into.

An op is a :class:`Function` subclass with two static methods working on raw
arrays (NumPy or CuPy):

* ``forward(ctx, *arrays, **params) -> array``
* ``backward(ctx, grad) -> one gradient (or None) per array input``

``Function.apply`` wraps them: it unwraps :class:`~minitensor.tensor.Tensor`
inputs, runs ``forward``, and, when grad mode is on and some input requires a
gradient, records a node (the ``ctx``) that remembers the inputs.

``backward`` on a scalar loss $L$ then applies the chain rule in reverse
topological order. For every node $y = f(x_1, \dots, x_k)$ it hands the upstream
gradient $\bar y = \partial L / \partial y$ to ``f.backward``, which returns the
vector-Jacobian products $\bar x_i = \bar y \, \partial y / \partial x_i$. A tensor
used by several nodes receives the **sum** of their contributions:

$$\bar x = \sum_{y \,\in\, \text{consumers}(x)} \bar y \,\frac{\partial y}{\partial x}.$$

Broadcasting is undone here, in one place (:func:`unbroadcast`): an op may
return a gradient of its output's shape and the engine sums it back to the
input's shape. A slice's backward may return a :class:`SliceGrad`, zero outside
the slice, which the engine adds in place into the input's other contributions.

The engine trusts one rule (the contract of ``Function.backward``): every array
a backward returns is new, or a view of the ``grad`` it was given; never an
array the op saved, one of its inputs or its output, nor another gradient. In
debug mode (``MINITENSOR_DEBUG=1`` at import, :func:`set_debug` or
:class:`debug_mode`; :func:`minitensor.testing.gradcheck` always) the engine
checks it and raises :class:`AutogradContractError` naming the op.
"""
from __future__ import annotations

import contextlib
import os
import threading
import weakref

from .backend import get_array_module

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) in which no op records a graph.

    Use it for evaluation and for in-place parameter updates.
    """

    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.grad_enabled = False
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev
        return False


class AutogradContractError(RuntimeError):
    """A ``Function.backward`` returned an array that shares memory with one it must not.

    Raised only in debug mode (see :func:`set_debug`); without the check such a
    backward silently corrupts a later gradient update (``leaf.grad += ...``).
    """


def _debug_from_env():
    text = os.environ.get("MINITENSOR_DEBUG", "").strip()
    if text not in ("", "0", "1"):
        raise ValueError(f"MINITENSOR_DEBUG must be 0 or 1, got {text!r}")
    return text == "1"


_debug = _debug_from_env()  # process-wide; read once per backward pass


def is_debug_enabled() -> bool:
    """True when every backward pass checks the contract of ``Function.backward``."""
    return _debug


def set_debug(enabled: bool) -> bool:
    """Turn the backward contract check on or off (for the whole process); returns the previous setting.

    Off by default, on when the environment variable ``MINITENSOR_DEBUG=1`` is set
    at import. When on, a backward that returns an array sharing memory with a
    saved array, a forward input or output of its op, or another gradient of the
    pass raises :class:`AutogradContractError`. It costs one memory-overlap test
    per returned gradient and checked array; when off, one boolean test per node.
    """
    global _debug
    previous, _debug = _debug, bool(enabled)
    return previous


class debug_mode(contextlib.ContextDecorator):
    """Context manager (and decorator) in which backward checks its contract (``debug_mode(False)``: does not)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        self._prev = set_debug(self.enabled)
        return self

    def __exit__(self, *exc):
        set_debug(self._prev)
        return False


class Context:
    """What one recorded op remembers between its forward and backward pass."""

    __slots__ = ("fn", "parents", "needs_input_grad", "saved_tensors", "__dict__")

    def __init__(self, fn, parents, needs_input_grad):
        self.fn = fn
        self.parents = parents
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays


class Function:
    """Base class of every differentiable op (one subclass per op)."""

    @staticmethod
    def forward(ctx, *arrays, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        from .tensor import Tensor  # the tensor module imports this one

        arrays = [t.data for t in inputs]
        needs = tuple(t.requires_grad for t in inputs)
        record = any(needs) and is_grad_enabled()
        ctx = Context(cls, inputs if record else (), needs)
        try:
            out = cls.forward(ctx, *arrays, **params)
        except ValueError as err:  # e.g. NumPy's broadcast error, which names no op
            if type(err) is not ValueError:  # a subclass means something to its catcher: keep it
                raise
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"{cls.__name__}: {err} (input shapes {shapes})") from None
        return Tensor._from_op(out, ctx if record else None)


class SliceGrad:
    r"""A gradient that is zero except on ``x[index]``, where it is ``values``: what slicing
    (:class:`~minitensor.ops.shape.GetItem`, basic indexing) returns from its backward.

    The pieces of one array, such as the $Q$, $K$ and $V$ that ``split`` takes out of
    a GPT block's one projection, each hand back a gradient for the whole array. As
    full-size arrays they would be three arrays of zeros with a slice filled in, and
    two sums of them; the engine instead adds each piece's ``values`` into one array,
    in place. ``dense()`` is the full-size array, for everything else.
    """

    __slots__ = ("shape", "index", "values")

    def __init__(self, shape, index, values):
        self.shape, self.index, self.values = tuple(shape), index, values

    def dense(self):
        full = get_array_module(self.values).zeros(self.shape, dtype=self.values.dtype)
        full[self.index] = self.values
        return full


def _values(grad):
    """The array a gradient is held in (a SliceGrad's ``values``)."""
    return grad.values if isinstance(grad, SliceGrad) else grad


def _add_pending(grads, owned, key, pg):
    """Add the gradient ``pg`` to the pending gradient of tensor ``key``.

    ``owned`` holds the keys whose pending array this pass made itself (a sum, or a
    SliceGrad made dense): nothing else refers to it, so it is added into in place.
    Any other pending array may be shared (``Add`` hands its grad to both inputs) and
    is never written.
    """
    pending = grads.get(key)
    if pending is None:  # the first contribution, kept as it came (a SliceGrad stays sparse)
        grads[key] = pg
        owned.discard(key)
        return
    if isinstance(pending, SliceGrad):
        pending = pending.dense()
    elif key not in owned:  # perhaps shared: never written, the sum goes into a new array
        if not isinstance(pg, SliceGrad):
            grads[key] = pending + pg
            owned.add(key)
            return
        pending = pending.copy()
    if isinstance(pg, SliceGrad):
        pending[pg.index] += pg.values
    else:
        pending += pg
    grads[key] = pending
    owned.add(key)


def unbroadcast(grad, shape):
    r"""Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting.

    If $y = \mathrm{broadcast}(x)$ copies $x$ along an axis, every copy feeds
    $L$, so $\bar x$ is the sum of $\bar y$ over that axis. Broadcasting (1)
    prepends missing leading axes and (2) stretches axes of length 1; we undo
    (1) by summing the leading axes away and (2) by summing with ``keepdims``.
    """
    # BEGIN SOLUTION lesson 02: unbroadcast: undo broadcasting rules (1) and (2) of the docstring above
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    # END SOLUTION
    return grad


def _topological_order(root):
    """Nodes reachable from ``root``, parents before children, without recursion."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor._ctx is not None:
            for parent in tensor._ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _owner(array):
    """The array that owns ``array``'s memory (NumPy collapses view chains)."""
    return array if array.base is None else array.base


def backward(root, grad=None):
    """Accumulate $\\partial\\,\\text{root} / \\partial\\,\\text{leaf}$ into every leaf's ``.grad``."""
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad (no input had requires_grad=True, "
                           "or it was computed under no_grad())")
    xp = get_array_module(root.data)
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward: output has shape {root.shape}; pass grad= of that shape "
                               "(an implicit gradient exists only for a single-element output)")
        grad = xp.ones_like(root.data)
    else:
        grad = grad.data if hasattr(grad, "_ctx") else xp.asarray(grad)
        if grad.shape != root.shape:
            raise ValueError(f"backward: grad has shape {grad.shape} but the output has shape {root.shape}")
        grad = grad.astype(root.dtype, copy=True)

    order = _topological_order(root)
    check = _ContractCheck(order) if _debug else None
    grads = {id(root): grad}  # pending gradients of non-leaf tensors, freed once consumed
    owned = set()  # keys of the pending arrays this pass made itself (see _add_pending)
    seen = _HandedOut()  # memory handed out during this pass (see _accumulate_leaf)
    seen.add(grad)
    for tensor in reversed(order):
        g = grads.pop(id(tensor), None)
        owned.discard(id(tensor))
        if g is None:
            continue
        if isinstance(g, SliceGrad):
            g = g.dense()
        ctx = tensor._ctx
        if ctx is None:
            _accumulate_leaf(tensor, g, seen)
            continue
        in_grads = ctx.fn.backward(ctx, g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        if len(in_grads) != len(ctx.parents):
            raise RuntimeError(f"{ctx.fn.__name__}.backward returned {len(in_grads)} gradients "
                               f"for {len(ctx.parents)} inputs")
        if check is not None:
            check(tensor, g, in_grads, grads)
        # One array handed to two inputs (``return h, h``) must not be kept by a leaf
        # that later updates it in place while the other input still needs it.
        owners = [id(_owner(_values(pg))) for pg in in_grads if pg is not None]
        for pg in in_grads:
            if pg is not None and owners.count(id(_owner(_values(pg)))) > 1:
                seen.add(_values(pg))
        for parent, pg in zip(ctx.parents, in_grads):
            if pg is None or not parent.requires_grad:
                continue
            if isinstance(pg, SliceGrad) and (parent._ctx is None or pg.shape != parent.shape
                                              or pg.values.dtype != parent.dtype):
                pg = pg.dense()
            if not isinstance(pg, SliceGrad):
                if pg.shape != parent.shape:
                    pg = unbroadcast(pg, parent.shape)
                if pg.dtype != parent.dtype:
                    pg = pg.astype(parent.dtype)
            if parent._ctx is None:
                _accumulate_leaf(parent, pg, seen)
            else:
                # A pending gradient is held by this dict alone until its node pops it,
                # so it needs no mark; a sum is in place only into an array this pass made.
                _add_pending(grads, owned, id(parent), pg)


def _shares_memory(a, b):
    """Whether arrays ``a`` and ``b`` overlap in memory (exactly: views of views and
    strided views count, disjoint slices of one buffer do not; NumPy or CuPy)."""
    xp = get_array_module(a)
    if get_array_module(b) is not xp:
        return False
    return bool(xp.may_share_memory(a, b)) and bool(xp.shares_memory(a, b))


def _is_array(x):
    return isinstance(x, get_array_module(x).ndarray)


class _ContractCheck:
    """Debug mode's check of the contract of ``Function.backward``, for one backward pass.

    Each array a backward returns must be new or share memory with the ``grad``
    it was given (``Add`` returns ``grad`` itself for both inputs, ``Reshape`` a
    view of it: both fine, the engine copies where needed). It must not share
    memory with (a) an array the op saved (``ctx.saved_tensors``, or an array or
    tuple/list of arrays stored as an attribute of ``ctx``) or (b) a forward
    input or the output of the op; and unless it shares memory with its
    ``grad``, not with (c) another gradient of the pass: a pending gradient of
    another tensor, or the ``.grad`` of a leaf of this graph.
    :func:`_accumulate_leaf` keeps fresh arrays as ``.grad`` and later adds into
    them in place, so breaking (a) or (b) silently corrupts forward values, and
    (c) a gradient. Overlap is exact (``shares_memory`` after the cheap bounds
    test ``may_share_memory``), so views of views are caught and disjoint slices
    of one buffer are not confused.
    """

    def __init__(self, order):
        self.tensors = {id(t): t for t in order}
        self.leaves = [t for t in order if t._ctx is None]

    def __call__(self, tensor, grad, in_grads, pending):
        ctx = tensor._ctx
        for i, pg in enumerate(in_grads):
            if pg is None:
                continue
            pg = _values(pg)
            what = self._aliased(tensor, ctx, grad, pg, pending)
            if what is not None:
                name = ctx.fn.__name__
                raise AutogradContractError(
                    f"{name}.backward broke the autograd contract: the gradient it returned for input {i} "
                    f"(of {len(in_grads)}; shape {tuple(pg.shape)}) shares memory with {what}. A backward must "
                    f"return new arrays or views of the grad it was given, never a saved or forward array nor "
                    f"another gradient: the engine may keep the array as a leaf's .grad and add into it in place. "
                    f"Return a new array, e.g. grad * y, not y itself (or y.copy()).")

    def _aliased(self, tensor, ctx, grad, pg, pending):
        """What ``pg`` aliases that it must not (a description), or None."""
        for k, saved in enumerate(ctx.saved_tensors):
            if _is_array(saved) and _shares_memory(pg, saved):
                return f"an array the op saved (ctx.saved_tensors[{k}], shape {tuple(saved.shape)})"
        for attr, value in vars(ctx).items():
            items = value if isinstance(value, (tuple, list)) else (value,)
            for k, item in enumerate(items):
                if _is_array(item) and _shares_memory(pg, item):
                    where = f"ctx.{attr}" + (f"[{k}]" if items is value else "")
                    return f"an array the op stored on ctx ({where}, shape {tuple(item.shape)})"
        for k, parent in enumerate(ctx.parents):
            if _shares_memory(pg, parent.data):
                return f"forward input {k} of the op (shape {tuple(parent.shape)})"
        if _shares_memory(pg, tensor.data):
            return f"the op's forward output (shape {tuple(tensor.shape)})"
        if _shares_memory(pg, grad):
            return None  # a view of its own grad: allowed, whatever else that grad is shared with
        for key, other in pending.items():
            other = _values(other)
            if _shares_memory(pg, other):
                owner = self.tensors.get(key)
                of = f"the output of {owner._ctx.fn.__name__}" if owner is not None else "another tensor"
                return f"another pending gradient of this backward pass ({of}, shape {tuple(other.shape)})"
        for leaf in self.leaves:
            if leaf.grad is not None and _shares_memory(pg, leaf.grad):
                return f"the .grad of a leaf tensor (shape {tuple(leaf.shape)})"
        return None


class _HandedOut:
    """The memory owners of the gradients handed out in one backward pass.

    Held through weak references: remembering an array must not keep it alive
    (intermediate gradients are freed as soon as they are consumed), and a bare
    ``id`` could be reused by a new array after the old one is freed.
    """

    def __init__(self):
        self._refs = {}

    def add(self, array):
        owner = _owner(array)
        try:
            self._refs[id(owner)] = weakref.ref(owner)
        except TypeError:  # an array type without weak references: remember the id only
            self._refs[id(owner)] = None

    def __contains__(self, owner):
        if id(owner) not in self._refs:
            return False
        ref = self._refs[id(owner)]
        return ref is None or ref() is owner


def _accumulate_leaf(leaf, g, seen):
    """``leaf.grad += g``, copying ``g`` first when its memory is not ours to keep.

    Ops may return their upstream gradient itself (``Add``) or a view of it
    (``Reshape``); keeping such an array as ``.grad`` and later updating it in
    place would silently change another gradient. Fresh arrays, and views of
    fresh arrays (``MatMul``'s weight gradient seen through ``Transpose``), are
    kept as they are: copying a transposed 1024x1024 gradient costs as much as
    a small matmul. This relies on the contract of ``Function.backward``: it
    returns new arrays or views of its incoming ``grad``, never saved inputs
    (checked in debug mode, see :class:`_ContractCheck`).
    """
    if leaf.grad is None:
        if _owner(g) in seen or not getattr(g.flags, "writeable", True):
            g = g.copy()
        seen.add(g)
        leaf.grad = g
    else:
        leaf.grad += g
