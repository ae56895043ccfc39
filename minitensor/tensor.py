r"""The :class:`Tensor`: an array, its gradient, and the op that made it.

Operators and methods only check their arguments and call an op's
``Function.apply``; the maths lives in :mod:`minitensor.ops`. Ops that are not
primitives are composed here: $a - b = a + (-b)$, $a / b = a \cdot b^{-1}$,
$\mathrm{mean} = \mathrm{sum} / n$, $\sqrt{x} = x^{1/2}$,
$\sigma(x) = \tfrac12(1 + \tanh\tfrac x2)$, ``stack`` and ``split``.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import autograd
from .backend import check_device, device_of, get_array_module, to_device, to_numpy
from .ops.arithmetic import Add, Maximum, Mul, Neg, Pow, Where
from .ops.linalg import MatMul
from .ops.reduce import Max, Sum
from .ops.shape import Concat, Expand, GetItem, Reshape, Transpose
from .ops.unary import Exp, Log, Tanh

float32 = np.float32
float64 = np.float64
int64 = np.int64


def _as_array(data, dtype=None):
    """An ndarray for ``data``; Python floats (and lists of them) become float32."""
    if isinstance(data, (np.ndarray, np.generic)) or device_of(data) == "cuda":
        arr = data if not isinstance(data, np.generic) else np.asarray(data)
    else:
        arr = np.asarray(data)
        if arr.dtype == np.float64:  # came from Python floats: use the framework default
            arr = arr.astype(np.float32)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"tensor: cannot make a tensor of dtype {arr.dtype} from {type(data).__name__} "
                        "(numbers and booleans only)")
    return arr


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    ``data`` is the NumPy (or CuPy) array; ``grad`` is None until a backward
    pass reaches this tensor, then an array of the same shape.
    """

    __slots__ = ("data", "grad", "_requires_grad", "_ctx", "__weakref__")
    __array_ufunc__ = None  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        self.data = _as_array(data)
        self.grad = None
        self._ctx = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _from_op(cls, array, ctx):
        """The output of an op (the fast path of ``Function.apply``): no conversion, no checks."""
        if isinstance(array, np.generic):  # NumPy reductions return scalars; keep a writeable 0-d array
            array = np.asarray(array)
        out = cls.__new__(cls)
        out.data, out.grad, out._ctx, out._requires_grad = array, None, ctx, ctx is not None
        return out

    # ---------------------------------------------------------------- properties
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        if value and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad=True needs a floating-point tensor, got dtype {self.data.dtype} "
                            "(integer tensors such as token ids have no gradient)")
        self._requires_grad = bool(value)

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: device_of(self.data))
    T = property(lambda self: self.transpose())

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = np.array2string(to_numpy(self.data), separator=", ", prefix="tensor(")
        extra = f", dtype={self.dtype}" if self.dtype != np.float32 else ""
        extra += ", requires_grad=True" if self.requires_grad else ""
        extra += f", device='{self.device}'" if self.device != "cpu" else ""
        return f"tensor({body}{extra})"

    # ------------------------------------------------------------ conversions
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied off the GPU if needed; shares memory on the CPU)."""
        return to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, shape is {self.shape}")
        return self.data.reshape(()).item()

    def detach(self) -> Tensor:
        r"""The same data with no history: the stop-gradient $\mathrm{SG}(\cdot)$.

        Nothing computed from the result sends a gradient back to ``self``.
        Like PyTorch's, the result shares memory with ``self`` (no copy).
        """
        return Tensor(self.data)

    def to(self, device) -> Tensor:
        """A copy on ``device`` ('cpu' or 'cuda'), or ``self`` if it is already there.

        The copy is a new leaf: gradients do not flow back across devices.
        """
        device = check_device(device)
        if device == self.device:
            return self
        return Tensor(to_device(self.data, device), requires_grad=self.requires_grad)

    def astype(self, dtype) -> Tensor:
        """A copy with another dtype, as a new leaf (use it on inputs, not mid-graph)."""
        return Tensor(self.data.astype(dtype), requires_grad=self.requires_grad and np.dtype(dtype).kind == "f")

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that requires grad."""
        autograd.backward(self, grad)

    # ---------------------------------------------------------- arithmetic
    def _lift(self, other) -> Tensor:
        """Wrap a constant so it keeps this tensor's dtype (2.0 * float32 stays float32)."""
        if isinstance(other, Tensor):
            return other
        xp = get_array_module(self.data)
        if isinstance(other, numbers.Number) and self.dtype.kind == "f":
            return Tensor(xp.asarray(other, dtype=self.dtype))
        return Tensor(xp.asarray(other))

    def __add__(self, other):
        return Add.apply(self, self._lift(other))

    def __radd__(self, other):
        return Add.apply(self._lift(other), self)

    def __neg__(self):
        return Neg.apply(self)

    def __sub__(self, other):
        return self + (-self._lift(other))

    def __rsub__(self, other):
        return self._lift(other) + (-self)

    def __mul__(self, other):
        return Mul.apply(self, self._lift(other))

    def __rmul__(self, other):
        return Mul.apply(self._lift(other), self)

    def __truediv__(self, other):
        if isinstance(other, numbers.Number):
            return self * (1.0 / other)
        return self * self._lift(other) ** -1

    def __rtruediv__(self, other):
        return self._lift(other) * self ** -1

    def __pow__(self, exponent):
        if not isinstance(exponent, numbers.Number):
            raise TypeError(f"pow: the exponent must be a Python number, got {type(exponent).__name__} "
                            "(for a tensor exponent use exp(b * log(a)))")
        return Pow.apply(self, exponent=exponent)

    def __rpow__(self, base):
        if not isinstance(base, numbers.Number) or base <= 0:
            raise ValueError(f"rpow: base ** tensor needs a positive number as base, got {base!r}")
        return (self * float(np.log(base))).exp()

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(self._lift(other), self)

    def _compare(self, other, name):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(getattr(get_array_module(self.data), name)(self.data, other))

    # Comparisons give bool tensors with no gradient (masks for where / indexing).
    def __lt__(self, other):
        return self._compare(other, "less")

    def __le__(self, other):
        return self._compare(other, "less_equal")

    def __gt__(self, other):
        return self._compare(other, "greater")

    def __ge__(self, other):
        return self._compare(other, "greater_equal")

    # ---------------------------------------------------------- elementwise
    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def tanh(self):
        return Tanh.apply(self)

    def sqrt(self):
        return self ** 0.5

    def sigmoid(self):
        # tanh form: never overflows, unlike 1 / (1 + exp(-x)) for large negative x
        return (1 + (self * 0.5).tanh()) * 0.5

    def relu(self):
        from .functional import relu  # noqa: PLC0415  (functional imports this module)

        return relu(self)

    # ---------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims=False):
        return Sum.apply(self, axis=_norm_axis(axis, self.ndim, "sum"), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        axis = _norm_axis(axis, self.ndim, "mean")
        count = self.size if axis is None else int(np.prod([self.shape[a] for a in axis]))
        if count == 0:
            raise ValueError(f"mean: reducing shape {self.shape} over axis {axis} averages zero elements")
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims=False):
        axis = _norm_axis(axis, self.ndim, "max")
        if self.size == 0:
            raise ValueError(f"max: tensor of shape {self.shape} is empty")
        return Max.apply(self, axis=axis, keepdims=keepdims)

    # ---------------------------------------------------------- shapes
    def reshape(self, *shape):
        shape = _shape_arg(shape)
        try:
            return Reshape.apply(self, shape=shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {self.shape} "
                             f"({self.size} elements) into {shape}") from None

    def transpose(self, *axes):
        """Permute axes: ``x.transpose()`` reverses them; ``x.transpose(0, 2, 1)`` as NumPy."""
        axes = _shape_arg(axes)
        if not axes:
            axes = tuple(range(self.ndim))[::-1]
        if sorted(a % self.ndim if self.ndim else a for a in axes) != list(range(self.ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of a tensor with {self.ndim} dims")
        return Transpose.apply(self, axes=tuple(a % self.ndim for a in axes))

    def swapaxes(self, a, b):
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return self.transpose(*axes)

    def expand(self, *shape):
        """Broadcast to ``shape`` without copying (backward sums over the copies)."""
        shape = _shape_arg(shape)
        try:
            ok = np.broadcast_shapes(self.shape, shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"expand: cannot broadcast shape {self.shape} to {shape}")
        return Expand.apply(self, shape=tuple(shape))

    def __getitem__(self, index):
        index, advanced = _normalise_index(index, self)
        try:
            return GetItem.apply(self, index=index, advanced=advanced)
        except IndexError as err:
            raise IndexError(f"getitem on a tensor of shape {self.shape}: {err}") from None


# ============================================================== helpers

def _shape_arg(shape):
    """Accept both f(2, 3) and f((2, 3))."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _norm_axis(axis, ndim, op):
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims")
    return tuple(sorted(a % ndim for a in axes)) if ndim else axes


def _normalise_index(index, tensor):
    """Unwrap tensors in an index and say whether it uses integer/bool arrays."""
    parts = index if isinstance(index, tuple) else (index,)
    out, advanced = [], False
    for part in parts:
        if isinstance(part, Tensor):
            part = part.data
        if isinstance(part, list):
            part = np.asarray(part)
        if isinstance(part, np.ndarray) or device_of(part) == "cuda":
            if part.dtype.kind not in "iub":
                raise TypeError(f"getitem: index arrays must be integer or bool, got dtype {part.dtype}")
            if device_of(part) != tensor.device:
                part = to_device(part, tensor.device)
            advanced = True
            if part.dtype == np.bool_:  # a mask selects its True positions: the same as their indices
                out.extend(part.nonzero())
                continue
        out.append(part)
    return (tuple(out) if isinstance(index, tuple) or len(out) != 1 else out[0]), advanced


# ============================================================== functions

def matmul(a, b) -> Tensor:
    """Matrix product with ``np.matmul`` semantics (1-D inputs are promoted, then squeezed)."""
    if not isinstance(a, Tensor):
        a = b._lift(a)
    if not isinstance(b, Tensor):
        b = a._lift(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    if a.ndim == 1:  # drop the promoted row axis again; vector @ vector is a scalar
        return matmul(a.reshape(1, -1), b).reshape(b.shape[:-2] + b.shape[-1:] if b.ndim > 1 else ())
    if b.ndim == 1:
        return matmul(a, b.reshape(-1, 1)).reshape(a.shape[:-1])
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are incompatible: "
                         f"inner dimensions {a.shape[-1]} and {b.shape[-2]} differ")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None
    return MatMul.apply(a, b)


def exp(x):
    return _t(x).exp()


def log(x):
    return _t(x).log()


def tanh(x):
    return _t(x).tanh()


def sqrt(x):
    return _t(x).sqrt()


def sigmoid(x):
    return _t(x).sigmoid()


def maximum(a, b) -> Tensor:
    a = a if isinstance(a, Tensor) else b._lift(a)
    b = b if isinstance(b, Tensor) else a._lift(b)
    _check_broadcast("maximum", a, b)
    return Maximum.apply(a, b)


def where(cond, a, b) -> Tensor:
    """``a`` where ``cond`` is True, else ``b`` (``cond`` is a bool array or tensor, no gradient)."""
    a = a if isinstance(a, Tensor) else b._lift(a)
    b = b if isinstance(b, Tensor) else a._lift(b)
    cond = cond.data if isinstance(cond, Tensor) else get_array_module(a.data).asarray(cond)
    if cond.dtype != np.bool_:
        raise TypeError(f"where: the condition must be bool, got dtype {cond.dtype}")
    _check_broadcast("where", a, b, cond)
    return Where.apply(a, b, cond=cond)


def concat(tensors, axis=0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    first = tensors[0].shape
    for t in tensors[1:]:
        if t.ndim != len(first) or any(s != f for i, (s, f) in enumerate(zip(t.shape, first))
                                       if i != axis % len(first)):
            raise ValueError(f"concat along axis {axis}: shapes {[t.shape for t in tensors]} differ off that axis")
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0) -> Tensor:
    """Join same-shaped tensors along a new axis (a reshape to add it, then concat)."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {[t.shape for t in tensors]}")
    ndim = tensors[0].ndim + 1
    if not -ndim <= axis < ndim:
        raise ValueError(f"stack: axis {axis} is out of range for the result's {ndim} dims")
    axis %= ndim
    shape = tensors[0].shape
    grown = [t.reshape(*shape[:axis], 1, *shape[axis:]) for t in tensors]
    return concat(grown, axis=axis)


def split(x, sections, axis=0):
    """Split along ``axis`` into equal ``sections`` (an int) or at the given indices (a list),
    as ``np.split``; each piece is a slice, so backward puts its gradient back in place."""
    n = x.shape[axis]
    if isinstance(sections, numbers.Integral):
        if sections <= 0 or n % sections:
            raise ValueError(f"split: axis {axis} of length {n} does not divide into {sections} equal sections")
        bounds = list(range(0, n + 1, n // sections))
    else:
        bounds = [0, *sections, n]
        if any(b1 > b2 for b1, b2 in zip(bounds, bounds[1:])):
            raise ValueError(f"split: indices {list(sections)} must be increasing and within 0..{n}")
    pieces = []
    for start, stop in zip(bounds, bounds[1:]):
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(start, stop)
        pieces.append(x[tuple(sl)])
    return pieces


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _check_broadcast(op, *xs):
    try:
        np.broadcast_shapes(*(x.shape for x in xs))
    except ValueError:
        raise ValueError(f"{op}: shapes {[tuple(x.shape) for x in xs]} do not broadcast") from None


# ============================================================== creation

def tensor(data, dtype=None, requires_grad=False, device="cpu") -> Tensor:
    """A new leaf tensor holding a copy of ``data``.

    Arrays keep their dtype (float64 stays float64); Python floats and lists of
    them become float32, the framework default; Python ints become int64.
    """
    data = data.data if isinstance(data, Tensor) else data
    arr = _as_array(data, dtype).copy()
    return Tensor(to_device(arr, device) if device != "cpu" else arr, requires_grad=requires_grad)


def _make(fill, shape, dtype, requires_grad, device):
    arr = fill(_shape_arg(shape), dtype=dtype)
    return Tensor(to_device(arr, device) if device != "cpu" else arr, requires_grad=requires_grad)


def zeros(*shape, dtype=float32, requires_grad=False, device="cpu") -> Tensor:
    return _make(np.zeros, shape, dtype, requires_grad, device)


def ones(*shape, dtype=float32, requires_grad=False, device="cpu") -> Tensor:
    return _make(np.ones, shape, dtype, requires_grad, device)


def full(shape, value, dtype=float32, requires_grad=False, device="cpu") -> Tensor:
    return _make(lambda s, dtype: np.full(s, value, dtype=dtype), (shape,), dtype, requires_grad, device)


def arange(start, stop=None, step=1, dtype=None, requires_grad=False, device="cpu") -> Tensor:
    """Like ``np.arange``; integer arguments give int64, float ones float32 unless ``dtype`` says otherwise."""
    arr = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is None and arr.dtype == np.float64:
        dtype = float32
    return tensor(arr, dtype=dtype, requires_grad=requires_grad, device=device)


def randn(*shape, rng=None, dtype=float32, requires_grad=False, device="cpu") -> Tensor:
    """Standard normal samples from ``rng`` (a ``np.random.Generator``; pass a seeded one)."""
    rng = np.random.default_rng() if rng is None else rng
    return _make(lambda s, dtype: rng.standard_normal(s).astype(dtype), shape, dtype, requires_grad, device)


def rand(*shape, rng=None, dtype=float32, requires_grad=False, device="cpu") -> Tensor:
    """Uniform samples in [0, 1) from ``rng``."""
    rng = np.random.default_rng() if rng is None else rng
    return _make(lambda s, dtype: rng.random(s).astype(dtype), shape, dtype, requires_grad, device)


def _like(fn, t, kwargs):
    kwargs.setdefault("dtype", t.dtype)
    kwargs.setdefault("device", t.device)
    return fn(t.shape, **kwargs)


def zeros_like(t, **kwargs):
    return _like(zeros, t, kwargs)


def ones_like(t, **kwargs):
    return _like(ones, t, kwargs)


def full_like(t, value, **kwargs):
    kwargs.setdefault("dtype", t.dtype)
    kwargs.setdefault("device", t.device)
    return full(t.shape, value, **kwargs)


def randn_like(t, rng=None, **kwargs):
    return _like(lambda s, **kw: randn(s, rng=rng, **kw), t, kwargs)
