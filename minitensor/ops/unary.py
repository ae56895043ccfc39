r"""Elementwise functions of one tensor, each with its local derivative."""
import math

from .. import buffers
from ..autograd import Function
from ..backend import erf, get_array_module
from ..parallel import for_blocks


class Exp(Function):
    r"""$y = e^x$: $\bar x = \bar y \odot y$ (the output is its own derivative)."""

    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


class Log(Function):
    r"""$y = \ln x$: $\bar x = \bar y / x$."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return get_array_module(x).log(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / x


class Tanh(Function):
    r"""$y = \tanh x$: $\bar x = \bar y\,(1 - y^2)$."""

    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


class ReLU(Function):
    r"""$y = \max(x, 0)$: $\bar x = \bar y \odot [x > 0]$ (we take 0 as the derivative at 0)."""

    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).maximum(x, 0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (y > 0)


_GELU_K = math.sqrt(2.0 / math.pi)  # from matching the Gaussian CDF's slope at 0
_GELU_C = 0.044715  # the cubic coefficient of the tanh fit (Hendrycks & Gimpel, 2016)


class GELUTanh(Function):
    r"""GELU in the tanh form that GPT-1 uses.

    With $u = k(x + c x^3)$, $k = \sqrt{2/\pi}$, $c = 0.044715$ and $t = \tanh u$:

    $$y = \tfrac12 x (1 + t), \qquad
      \frac{dy}{dx} = \tfrac12 (1 + t) + \tfrac12 x (1 - t^2)\, k (1 + 3 c x^2).$$
    """

    @staticmethod
    def forward(ctx, x):
        xp = get_array_module(x)
        t, y = buffers.empty_like(x), buffers.empty_like(x)

        def block(ix):  # in place on the two outputs; blocks stay in cache between the steps
            xb, u, yb = x[ix], t[ix], y[ix]
            xp.multiply(xb, xb, out=u)
            u *= _GELU_C
            u += 1
            u *= xb
            u *= _GELU_K  # u = k x (1 + c x^2) = k (x + c x^3)
            xp.tanh(u, out=u)  # t
            xp.add(u, 1, out=yb)
            yb *= xb
            yb *= 0.5

        for_blocks(block, x.shape, None, xp)
        ctx.save_for_backward(x, t)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, t = ctx.saved_tensors
        xp = get_array_module(x)
        d = buffers.empty_like(x, xp.result_type(x, grad))

        def block(ix):
            xb, tb, db = x[ix], t[ix], d[ix]
            xp.multiply(xb, xb, out=db)
            db *= 3 * _GELU_C * _GELU_K
            db += _GELU_K  # du/dx = k (1 + 3 c x^2)
            db *= xb
            db *= 1 - tb * tb  # sech^2 u = 1 - t^2 (a block-sized temporary)
            db += tb
            db += 1
            db *= 0.5  # dy/dx = (1 + t + x (1 - t^2) du/dx) / 2
            db *= grad[ix]

        for_blocks(block, x.shape, None, xp)
        return d


class GELUErf(Function):
    r"""Exact GELU $y = x\,\Phi(x)$ with the Gaussian CDF $\Phi(x) = \tfrac12\,(1 + \mathrm{erf}(x/\sqrt2))$.

    $$\frac{dy}{dx} = \Phi(x) + x\,\varphi(x), \qquad \varphi(x) = \frac{e^{-x^2/2}}{\sqrt{2\pi}}.$$
    """

    @staticmethod
    def forward(ctx, x):
        cdf = 0.5 * (1 + erf(x / math.sqrt(2.0)))
        ctx.save_for_backward(x, cdf)
        return x * cdf

    @staticmethod
    def backward(ctx, grad):
        x, cdf = ctx.saved_tensors
        pdf = get_array_module(x).exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return grad * (cdf + x * pdf)
