r"""Reductions. Their backward spreads the upstream gradient back over the
reduced axes (``_restore`` puts the reduced axes back as length 1 so that the
gradient broadcasts against the input)."""
from ..autograd import Function
from ..backend import get_array_module


def _restore(grad, in_shape, axis, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input shape."""
    if keepdims or axis is None:
        return grad.reshape([1] * len(in_shape)) if axis is None else grad
    xp = get_array_module(grad)
    return xp.expand_dims(grad, axis)


class Sum(Function):
    r"""$y = \sum_{i \in \text{axes}} x_i$: every summand gets the whole upstream gradient,
    $\bar x_i = \bar y$."""

    @staticmethod
    def forward(ctx, x, *, axis=None, keepdims=False):
        ctx.in_shape, ctx.axis, ctx.keepdims = x.shape, axis, keepdims
        return x.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        xp = get_array_module(grad)
        return xp.broadcast_to(_restore(grad, ctx.in_shape, ctx.axis, ctx.keepdims), ctx.in_shape)


class Max(Function):
    r"""$y = \max_{i \in \text{axes}} x_i$: the gradient flows to the arg-max.

    $\bar x_i = \bar y\, [x_i = y] / \#\{j : x_j = y\}$: tied maxima share it equally.
    """

    @staticmethod
    def forward(ctx, x, *, axis=None, keepdims=False):
        y = x.max(axis=axis, keepdims=keepdims)
        ctx.save_for_backward(x, y)
        ctx.axis, ctx.keepdims = axis, keepdims
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        y = _restore(y, x.shape, ctx.axis, ctx.keepdims)
        is_max = x == y
        count = is_max.sum(axis=ctx.axis, keepdims=True).astype(grad.dtype)
        return _restore(grad, x.shape, ctx.axis, ctx.keepdims) * is_max / count
