r"""Elementwise functions of one tensor, each with its local derivative."""
import math

import numpy as np

from .. import kernels
from ..autograd import Function
from ..backend import get_array_module, to_numpy


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
        y, t = gelu_tanh(x)
        ctx.save_for_backward(x, t)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, t = ctx.saved_tensors
        return gelu_tanh_backward(x, t, grad)


@kernels.replaceable("gelu_tanh")
def gelu_tanh(x):
    r"""$t = \tanh\big(k(x + c x^3)\big)$ and $y = \tfrac12 x (1 + t)$; returns ``(y, t)``."""
    t = get_array_module(x).tanh(_GELU_K * (x + _GELU_C * x ** 3))
    return 0.5 * x * (1 + t), t


@kernels.replaceable("gelu_tanh_backward")
def gelu_tanh_backward(x, t, grad):
    r"""$\bar x = \bar y \big(\tfrac12 (1 + t) + \tfrac12 x (1 - t^2)\, k (1 + 3 c x^2)\big)$."""
    du_dx = _GELU_K * (1 + 3 * _GELU_C * x * x)
    return grad * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx)


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


@kernels.replaceable("erf")
def erf(x):
    r"""The error function $\mathrm{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-s^2}\,ds$, elementwise.

    NumPy has none, so this is Python's exact ``math.erf`` entry by entry (on the host, then back
    to ``x``'s device): slow, and only the exact GELU needs it. The kernels: a fitted erf on float32
    CPU arrays (:mod:`minitensor.kernels.cpu`), CuPy's on the GPU.
    """
    values = np.vectorize(math.erf, otypes=[x.dtype])(to_numpy(x))
    return get_array_module(x).asarray(values)
