r"""Ops that move or select entries without changing their values: the backward
of each routes every upstream gradient entry back to the input entry it came from."""
from .. import kernels
from ..autograd import Function, SliceGrad
from ..backend import get_array_module


@kernels.replaceable("scatter_add")
def scatter_add(target, index, values) -> None:
    """``target[index] += values`` in place, a repeated index adding every one of its values.

    (Plain ``target[index] += values`` would add only one of them: NumPy's ``add.at`` is unbuffered.)
    """
    get_array_module(target).add.at(target, index, values)


class Reshape(Function):
    r"""$y = \mathrm{reshape}(x)$: $\bar x = \mathrm{reshape}^{-1}(\bar y)$, same entries, old shape."""

    @staticmethod
    def forward(ctx, x, *, shape):
        ctx.in_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.in_shape)


class Transpose(Function):
    r"""$y = x$ with axes permuted by $\pi$: $\bar x$ is $\bar y$ permuted by $\pi^{-1}$."""

    @staticmethod
    def forward(ctx, x, *, axes):
        ctx.axes = axes
        return x.transpose(axes)

    @staticmethod
    def backward(ctx, grad):
        inverse = [0] * len(ctx.axes)
        for i, a in enumerate(ctx.axes):
            inverse[a] = i
        return grad.transpose(inverse)


class Expand(Function):
    r"""$y = \mathrm{broadcast}(x)$ to a larger shape: $\bar x$ sums $\bar y$ over the copies.

    The sum is exactly what the engine's :func:`~minitensor.autograd.unbroadcast`
    does, so the backward only passes the gradient on.
    """

    @staticmethod
    def forward(ctx, x, *, shape):
        return get_array_module(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad


class GetItem(Function):
    r"""$y = x[\text{index}]$: $\bar x$ is zero except at the selected entries.

    Basic indexing (ints, slices) selects each entry at most once, so
    $\bar x[\text{index}] = \bar y$. Integer-array indexing may select an entry
    several times (an embedding lookup of a repeated token): each selection
    contributes, so the gradient is scatter-ADDED.
    """

    @staticmethod
    def forward(ctx, x, *, index, advanced):
        ctx.in_shape, ctx.index, ctx.advanced = x.shape, index, advanced
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        if not ctx.advanced:  # zero outside the slice: the engine adds it where it belongs
            return SliceGrad(ctx.in_shape, ctx.index, grad)
        full = get_array_module(grad).zeros(ctx.in_shape, dtype=grad.dtype)
        scatter_add(full, ctx.index, grad)
        return full


class Concat(Function):
    r"""$y = [x_1 \circ x_2 \circ \dots]$ along one axis: $\bar x_i$ is $\bar y$'s slice where $x_i$ landed."""

    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis = axis
        ctx.sizes = [x.shape[axis] for x in xs]
        return get_array_module(*xs).concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        grads, start = [], 0
        axis = ctx.axis % grad.ndim
        for size, need in zip(ctx.sizes, ctx.needs_input_grad):
            if need:
                sl = [slice(None)] * grad.ndim
                sl[axis] = slice(start, start + size)
                grads.append(grad[tuple(sl)])
            else:
                grads.append(None)
            start += size
        return tuple(grads)
