r"""Binary arithmetic. Inputs may broadcast: each backward returns gradients of
the OUTPUT's shape and the engine (:func:`minitensor.autograd.unbroadcast`)
sums them back to each input's shape."""
from ..autograd import Function
from ..backend import get_array_module


class Add(Function):
    r"""$y = a + b$: $\bar a = \bar y,\ \bar b = \bar y$."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Neg(Function):
    r"""$y = -x$: $\bar x = -\bar y$."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Mul(Function):
    r"""$y = a \odot b$: $\bar a = \bar y \odot b,\ \bar b = \bar y \odot a$."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        return (grad * b if need_a else None), (grad * a if need_b else None)


class Pow(Function):
    r"""$y = x^p$ for a constant exponent $p$: $\bar x = \bar y \, p\, x^{p-1}$."""

    @staticmethod
    def forward(ctx, x, *, exponent):
        ctx.save_for_backward(x)
        ctx.exponent = exponent
        return x ** exponent

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        p = ctx.exponent
        if p == 0:  # x**0 is the constant 1; the formula would give 0 * inf = nan at x = 0
            return get_array_module(grad).zeros_like(grad)
        return grad * (p * x ** (p - 1))


class Maximum(Function):
    r"""$y = \max(a, b)$ elementwise: $\bar y$ goes to the larger input.

    At a tie both inputs are "the max" and the gradient is split in halves,
    which is the average of the two one-sided derivatives.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return get_array_module(a, b).maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        share_a = (a > b) + 0.5 * (a == b)
        return grad * share_a, grad * (1.0 - share_a)


class Where(Function):
    r"""$y = \mathrm{cond}\ ?\ a : b$: $\bar a = \bar y \odot \mathrm{cond},\ \bar b = \bar y \odot \lnot\mathrm{cond}$."""

    @staticmethod
    def forward(ctx, a, b, *, cond):
        ctx.cond = cond
        return get_array_module(a, b).where(cond, a, b)

    @staticmethod
    def backward(ctx, grad):
        xp = get_array_module(grad)
        zero = xp.zeros((), dtype=grad.dtype)
        need_a, need_b = ctx.needs_input_grad
        return (xp.where(ctx.cond, grad, zero) if need_a else None,
                xp.where(ctx.cond, zero, grad) if need_b else None)
