r"""Fused neural-network ops: softmax, log-softmax, cross-entropy, layer norm and dropout.

Each could be composed from primitives (``exp``, ``sum``, ``log``...); fusing
them gives one node instead of many, a numerically stable forward, and a short
hand-derived backward. ``tests/minitensor/test_fused.py`` checks every one
against its composed twin.
"""
from .. import buffers
from ..autograd import Function
from ..backend import get_array_module
from ..parallel import for_blocks


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
        # BEGIN SOLUTION lesson 04: CrossEntropy.backward: d = p - one_hot(targets)
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
        xp = get_array_module(x)
        xhat = buffers.empty_like(x)
        rstd = xp.empty(x.shape[:-1] + (1,), dtype=x.dtype)
        y = buffers.empty_like(x, xp.result_type(x, weight, bias))

        def block(ix):  # one block of rows, in cache across the steps (minitensor.parallel)
            xb, centred = x[ix], xhat[ix]
            xp.subtract(xb, xb.mean(axis=-1, keepdims=True), out=centred)
            r = rstd[ix]
            r[...] = 1.0 / xp.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
            centred *= r  # now xhat
            yb = xp.multiply(centred, weight, out=y[ix])
            yb += bias

        for_blocks(block, x.shape, -1, xp)
        ctx.save_for_backward(xhat, rstd, weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        xhat, rstd, weight = ctx.saved_tensors
        xp = get_array_module(grad)
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = None
        if need_x:
            gx = buffers.empty_like(xhat, xp.result_type(grad, weight, xhat))
            for_blocks(lambda ix: layer_norm_dx(grad[ix], xhat[ix], rstd[ix], weight, gx[ix]), xhat.shape, -1, xp)
        return gx, (grad * xhat if need_w else None), (grad if need_b else None)


def layer_norm_dx(grad, xhat, rstd, weight, out):
    r"""$\bar x = r\,(g - \overline{g} - \hat x\, \overline{g \hat x})$ with $g = \bar y \odot w$, into ``out``.

    Means are over the last axis. :class:`LayerNorm` calls it on one block of
    rows at a time; ``out`` (the shape of ``xhat``) may be used as scratch space.
    """
    # BEGIN SOLUTION lesson 04: layer_norm_dx: out = rstd (g - mean(g) - xhat mean(g xhat)) with g = grad * weight
    xp = get_array_module(grad)
    g = grad * weight
    xp.multiply(g, xhat, out=out)
    proj = out.mean(axis=-1, keepdims=True)  # (1/n) sum_i g_i xhat_i, the path through sigma^2
    xp.multiply(xhat, proj, out=out)
    out -= g
    out += g.mean(axis=-1, keepdims=True)  # the path through mu
    out *= -rstd  # r (g - mean(g) - xhat mean(g xhat)), built in place
    # END SOLUTION


class Dropout(Function):
    r"""$y = x \odot k\,s$ for a fixed 0/1 mask $k$ (``keep``) and scale $s = 1/(1-p)$:
    $\bar x = \bar y \odot k\,s$.

    The composed form ``x * Tensor(keep * s)`` gives the same numbers, but builds a
    float mask of x's size and keeps it for backward; here the mask stays boolean
    (a quarter of float32's memory) and each pass writes one buffer.
    """

    @staticmethod
    def forward(ctx, x, *, keep, scale):
        xp = get_array_module(x)
        scale = x.dtype.type(scale)
        ctx.keep, ctx.scale = keep, scale
        return _scale_keep(xp, x, scale, keep)

    @staticmethod
    def backward(ctx, grad):
        return _scale_keep(get_array_module(grad), grad, ctx.scale, ctx.keep)


def _scale_keep(xp, x, scale, keep):
    """``x * scale * keep`` in one pass over cache-sized blocks (:mod:`minitensor.parallel`)."""
    y = buffers.empty_like(x)
    keep = xp.broadcast_to(keep, x.shape)

    def block(ix):
        yb = xp.multiply(x[ix], scale, out=y[ix])
        yb *= keep[ix]

    for_blocks(block, x.shape, None, xp)
    return y
