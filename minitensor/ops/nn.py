r"""Fused neural-network ops: softmax, log-softmax, cross-entropy, layer norm and dropout.

Each could be composed from primitives (``exp``, ``sum``, ``log``...); fusing
them gives one node instead of many, a numerically stable forward, and a short
hand-derived backward. ``tests/minitensor/test_fused.py`` checks every one
against its composed twin.
"""
from .. import kernels
from ..autograd import Function
from ..backend import get_array_module


class Softmax(Function):
    r"""$y_i = e^{x_i} / \sum_j e^{x_j}$ along ``axis``.

    The Jacobian is $\partial y_i / \partial x_j = y_i(\delta_{ij} - y_j)$, so
    $\bar x_j = \sum_i \bar y_i\, y_i (\delta_{ij} - y_j) = y_j\,(\bar y_j - \sum_i \bar y_i y_i)$.
    """

    @staticmethod
    def forward(ctx, x, *, axis=-1):
        e = get_array_module(x).exp(x - x.max(axis=axis, keepdims=True))  # shift: exp never overflows
        y = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    r"""$y_i = x_i - \log\sum_j e^{x_j}$ along ``axis``.

    $\partial y_i / \partial x_j = \delta_{ij} - p_j$ with $p = \mathrm{softmax}(x) = e^{y}$, so
    $\bar x_j = \bar y_j - p_j \sum_i \bar y_i$.
    """

    @staticmethod
    def forward(ctx, x, *, axis=-1):
        xp = get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        xp = get_array_module(y)
        return grad - xp.exp(y) * grad.sum(axis=ctx.axis, keepdims=True)


class CrossEntropy(Function):
    r"""Negative log-likelihood of integer targets under $p = \mathrm{softmax}(z)$ over the last axis.

    For one row, $\ell = -\log p_t = -z_t + \log\sum_j e^{z_j}$, hence

    $$\frac{\partial \ell}{\partial z_j} = p_j - [j = t], \qquad \bar z = \bar\ell\,(p - y)$$

    with $y$ the one-hot target. Rows whose target is ``ignore_index`` give no
    loss and no gradient; ``mean`` divides by the number of the other rows.
    ``targets``, ``valid`` (bool, rows that count) and ``reduction`` are
    validated by :func:`minitensor.functional.cross_entropy`.
    """

    @staticmethod
    def forward(ctx, logits, *, targets, valid, reduction):
        xp = get_array_module(logits)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        e = xp.exp(shifted)
        total = e.sum(axis=-1, keepdims=True)
        p = e / total
        # -log p_t = log(sum_j e^{z_j}) - z_t, in the shifted form that cannot overflow
        z_t = xp.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
        nll = (xp.log(total[..., 0]) - z_t) * valid
        ctx.save_for_backward(p)
        ctx.targets, ctx.valid, ctx.reduction = targets, valid, reduction
        ctx.count = int(valid.sum())
        if reduction == "none":
            return nll
        loss = nll.sum()
        return loss / ctx.count if reduction == "mean" else loss

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        xp = get_array_module(p)
        # BEGIN SOLUTION lesson 04: CrossEntropy.backward: the gradient dl/dz of the docstring above, for every row (targets in ctx.targets)
        one_hot = xp.arange(p.shape[-1]) == ctx.targets[..., None]
        d = p - one_hot
        # END SOLUTION
        weight = ctx.valid[..., None].astype(p.dtype)
        if ctx.reduction == "none":
            weight = weight * grad[..., None]
        else:
            weight = weight * (grad / ctx.count if ctx.reduction == "mean" else grad)
        return d * weight


class LayerNorm(Function):
    r"""Layer normalisation over the last axis: $y = \hat x \odot w + b$.

    With $n$ features, $\mu = \frac1n\sum_i x_i$, $\sigma^2 = \frac1n\sum_i (x_i-\mu)^2$,
    $r = (\sigma^2 + \epsilon)^{-1/2}$ and $\hat x = (x - \mu)\,r$:

    $$\bar w = \sum_{\text{rows}} \bar y \odot \hat x,\qquad \bar b = \sum_{\text{rows}} \bar y,
      \qquad g = \bar y \odot w,$$
    $$\bar x = r\,\Big(g - \tfrac1n \textstyle\sum_i g_i - \hat x\, \tfrac1n \sum_i g_i \hat x_i\Big).$$

    The two subtracted means are the paths through $\mu$ and through $\sigma^2$.
    The sums over rows of $\bar w, \bar b$ are the engine's broadcasting rule.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, *, eps):
        y, xhat, rstd = layer_norm(x, weight, bias, eps)
        ctx.save_for_backward(xhat, rstd, weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        xhat, rstd, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = layer_norm_dx(grad, xhat, rstd, weight) if need_x else None
        return gx, (grad * xhat if need_w else None), (grad if need_b else None)


@kernels.replaceable("layer_norm")
def layer_norm(x, weight, bias, eps):
    r"""$y = \hat x \odot w + b$ over the last axis; returns ``(y, xhat, rstd)``, $r$ with a kept axis."""
    xp = get_array_module(x)
    centred = x - x.mean(axis=-1, keepdims=True)  # x - mu
    rstd = 1.0 / xp.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)  # r = (sigma^2 + eps)^(-1/2)
    xhat = centred * rstd
    return xhat * weight + bias, xhat, rstd


@kernels.replaceable("layer_norm_dx")
def layer_norm_dx(grad, xhat, rstd, weight):
    r"""$\bar x = r\,\big(g - \overline{g} - \hat x\, \overline{g \hat x}\big)$ with $g = \bar y \odot w$.

    The bars are means over the last axis: the paths through $\mu$ and through $\sigma^2$.
    """
    # BEGIN SOLUTION lesson 04: layer_norm_dx: the equation for \bar x in the LayerNorm derivation above
    g = grad * weight
    return rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    # END SOLUTION


class Dropout(Function):
    r"""$y = x \odot k\,s$ for a fixed 0/1 mask $k$ (``keep``) and scale $s = 1/(1-p)$:
    $\bar x = \bar y \odot k\,s$.

    The composed form ``x * Tensor(keep * s)`` gives the same numbers, but builds a
    float mask of x's size and keeps it for backward; here the mask stays boolean
    (a quarter of float32's memory).
    """

    @staticmethod
    def forward(ctx, x, *, keep, scale):
        scale = x.dtype.type(scale)
        ctx.keep, ctx.scale = keep, scale
        return scale_keep(x, scale, keep)

    @staticmethod
    def backward(ctx, grad):
        return scale_keep(grad, ctx.scale, ctx.keep)


@kernels.replaceable("scale_keep")
def scale_keep(x, scale, keep):
    r"""$x\,s \odot k$: the kept entries of ``x``, scaled."""
    return x * scale * keep
