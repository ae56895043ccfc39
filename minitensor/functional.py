r"""Neural-network functions (``import minitensor.functional as F``).

Each checks its arguments, then calls a fused op of :mod:`minitensor.ops` or
composes primitives.
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .backend import device_of, get_array_module, to_device
from .ops.linalg import Affine
from .ops.nn import CrossEntropy, Dropout, LayerNorm, LogSoftmax, Softmax
from .ops.unary import GELUErf, GELUTanh, ReLU
from .tensor import Tensor


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""$y = x W^\top + b$ for ``x`` (..., in), ``weight`` (out, in), ``bias`` (out,) or None."""
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not fit a weight of shape {weight.shape} "
                         "(expected x (..., in) and weight (out, in))")
    if bias is None:
        return Affine.apply(x, weight)
    if bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
    return Affine.apply(x, weight, bias)


def relu(x: Tensor) -> Tensor:
    return ReLU.apply(x)


def gelu(x: Tensor, approximate: str = "tanh") -> Tensor:
    """GELU: ``approximate='tanh'`` is the form GPT-1 uses, ``'none'`` the exact $x\\,\\Phi(x)$."""
    if approximate == "tanh":
        return GELUTanh.apply(x)
    if approximate == "none":
        return GELUErf.apply(x)
    raise ValueError(f"gelu: approximate must be 'tanh' or 'none', got {approximate!r}")


def _check_axis(op, x, axis):
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor of shape {x.shape}")


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    _check_axis("softmax", x, axis)
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    _check_axis("log_softmax", x, axis)
    return LogSoftmax.apply(x, axis=axis)


def _int_array(op, what, ids, device):
    data = ids.data if isinstance(ids, Tensor) else ids
    xp = get_array_module(data)
    data = xp.asarray(data)
    if data.dtype.kind not in "iu":
        raise TypeError(f"{op}: {what} must be integers, got dtype {data.dtype}")
    return to_device(data, device)


def cross_entropy(logits: Tensor, targets, ignore_index: int | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy of ``logits`` (..., C) against integer ``targets`` (...).

    ``ignore_index``: rows with this target give no loss and no gradient.
    ``reduction``: 'mean' (over the rows that count), 'sum' or 'none'.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if logits.ndim < 1:
        raise ValueError("cross_entropy: logits must have a class axis (shape (..., C))")
    t = _int_array("cross_entropy", "targets", targets, logits.device)
    if t.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets of shape {t.shape} do not match logits of shape {logits.shape} "
                         f"(expected {logits.shape[:-1]})")
    n_classes = logits.shape[-1]
    valid = t != ignore_index if ignore_index is not None else get_array_module(t).ones(t.shape, dtype=bool)
    bad = valid & ((t < 0) | (t >= n_classes))
    if bad.any():
        raise IndexError(f"cross_entropy: target {int(t[bad][0])} is out of range for {n_classes} classes")
    if reduction == "mean" and not valid.any():
        raise ValueError("cross_entropy: every target equals ignore_index; the mean over no targets is undefined")
    safe = t * valid  # ignored rows point at class 0; their loss and gradient are masked out
    return CrossEntropy.apply(logits, targets=safe, valid=valid, reduction=reduction)


def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the last axis, then scale by ``weight`` and shift by ``bias`` (both of shape (D,))."""
    d = x.shape[-1:]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != d:
            raise ValueError(f"layer_norm: {name} has shape {p.shape} but the last axis of x is {d}")
    xp = get_array_module(x.data)
    weight = weight if weight is not None else Tensor(xp.ones(d, dtype=x.dtype))
    bias = bias if bias is not None else Tensor(xp.zeros(d, dtype=x.dtype))
    return LayerNorm.apply(x, weight, bias, eps=eps)


def dropout(x: Tensor, p: float, training: bool = True, rng: np.random.Generator | None = None) -> Tensor:
    r"""Zero each entry with probability ``p`` and scale the rest by $1/(1-p)$ (the expectation is unchanged).

    Identity when not training or ``p == 0``. ``rng`` draws the mask: pass a
    seeded ``np.random.default_rng(seed)`` for reproducible runs.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    rng = np.random.default_rng() if rng is None else rng
    keep = dropout_mask(rng, x.shape, p, x.data)
    return Dropout.apply(x, keep=keep, scale=1.0 / (1.0 - p))


def uniform(rng: np.random.Generator, shape, like):
    """Uniform [0, 1) samples of ``shape`` with ``like``'s dtype (float32 for a non-float), on ``like``'s device.

    Drawn from the NumPy ``rng`` so that a seed gives the same numbers on every
    device; on the GPU they are then copied over.
    """
    dtype = like.dtype if like.dtype in (np.float32, np.float64) else np.float32
    return to_device(rng.random(shape, dtype=dtype), device_of(like))


@kernels.replaceable("dropout_mask")
def dropout_mask(rng: np.random.Generator, shape, p: float, like):
    """The keep mask of dropout, True with probability ``1 - p``: ``uniform(rng, shape, like) >= p``."""
    return uniform(rng, shape, like) >= p


def embedding(ids, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (V, D) picked by integer ``ids`` (any shape): result (..., D).

    Backward scatter-adds into the rows, so a repeated id collects every use.
    """
    ids = _int_array("embedding", "ids", ids, weight.device)
    vocab = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        bad = ids[(ids < 0) | (ids >= vocab)]
        raise IndexError(f"embedding: id {int(bad[0])} is out of range for a table of {vocab} rows")
    return weight[ids]
