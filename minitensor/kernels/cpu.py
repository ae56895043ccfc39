r"""The CPU kernels: each computes its formula's numbers on cache-sized blocks spread over the cores.

Why it pays (:mod:`.threads` says more): NumPy runs each elementwise call on one
core and in one pass over memory, so a formula of five steps reads and writes
an array five times from main memory. A kernel runs the SAME steps on one block
of rows at a time (it stays in the core's cache between the steps), writes in
place into its output, takes large outputs from the buffer cache
(:mod:`.buffers`), and shares the blocks between threads. The steps are the
formula's, in the formula's order, and a reduction is never cut across blocks,
so most kernels here are bit-identical to their formulas (``exact=True``).

Each kernel has the signature of the formula it replaces (named in ``register``).
"""
from __future__ import annotations

import math

import numpy as np

from . import buffers, register, threads
from .threads import for_blocks

_GELU_K = math.sqrt(2.0 / math.pi)  # minitensor.ops.unary's constants, repeated: kernels never import ops
_GELU_C = 0.044715


@register("masked_softmax", exact=True)
def masked_softmax(scores, mask, axis):
    """:func:`minitensor.attention.masked.masked_softmax_rows`, one block of rows at a time, into one buffer.

    Every NumPy call of a block takes the interpreter lock back from the other thread, so a
    block makes few of them:

    - the mask is applied by adding 0 where allowed and $-\\infty$ where masked, in one pass
      ($s + 0 = s$, and a finite $s - \\infty = -\\infty$, as the formula's ``where``), when the
      mask is at most an eighth of the scores' size; only a masked $+\\infty$ or NaN would differ
      (NaN instead of $-\\infty$), so a block whose row sums show a NaN is done again the formula's way;
    - over the last axis a row's maximum is read at its ``argmax`` (the same value, NaN
      included; NumPy's ``max`` of short rows takes twice as long), by one indexing call;
    - the formula's two fixes (a fully masked row's shift, its zero sum) run only when needed.
    """
    # The additive mask is made at the mask's own shape: worth it when that is small beside the
    # scores (a (T, T) mask shared by many heads), not for one head's full-size mask.
    adding = mask.size * 8 <= scores.size
    if adding:
        zero, minus_inf = scores.dtype.type(0), scores.dtype.type(-np.inf)
        shift = np.broadcast_to(np.where(mask, zero, minus_inf), scores.shape)
    mask = np.broadcast_to(mask, scores.shape)  # a view: no full-size copy of a (T, T) mask
    p = buffers.empty_like(scores)
    last = axis in (-1, scores.ndim - 1)

    def block(ix):
        out = p[ix]
        for by_adding in (True, False) if adding else (False,):  # the second only after a NaN row sum
            if by_adding:
                with np.errstate(invalid="ignore"):  # +inf - inf at a masked +inf: redone below
                    np.add(scores[ix], shift[ix], out=out)
            else:
                out[...] = -np.inf
                np.copyto(out, scores[ix], where=mask[ix])  # -inf where masked
            if last:
                rows = out.reshape(-1, out.shape[-1])  # the block as a stack of rows (only read)
                m = rows[np.arange(len(rows)), rows.argmax(axis=-1)].reshape(out.shape[:-1] + (1,))
            else:
                m = out.max(axis=axis, keepdims=True)
            if not np.isfinite(m).all():
                m[~np.isfinite(m)] = 0
            out -= m
            np.exp(out, out=out)
            total = np.add.reduce(out, axis=axis, keepdims=True)
            if not (by_adding and np.isnan(total).any()):
                break
        if not (total > 0).all():
            total[~(total > 0)] = 1
        out /= total

    for_blocks(block, scores.shape, axis)
    return p


@register("softmax_vjp", exact=True)
def softmax_vjp(p, grad, axis):
    """:func:`minitensor.attention.masked.softmax_vjp` by blocks: ``p (grad - sum(grad p))`` built in place."""
    out = buffers.empty_like(p, np.result_type(p, grad))

    def block(ix):
        o, pb, gb = out[ix], p[ix], grad[ix]
        np.multiply(gb, pb, out=o)
        row = o.sum(axis=axis, keepdims=True)
        np.subtract(gb, row, out=o)
        o *= pb

    for_blocks(block, p.shape, axis)
    return out


@register("gelu_tanh", exact=False)
def gelu_tanh(x):
    """:func:`minitensor.ops.unary.gelu_tanh` in place on its two outputs, block by block."""
    t, y = buffers.empty_like(x), buffers.empty_like(x)

    def block(ix):
        xb, u, yb = x[ix], t[ix], y[ix]
        np.multiply(xb, xb, out=u)
        u *= _GELU_C
        u += 1
        u *= xb
        u *= _GELU_K  # u = k x (1 + c x^2): the formula's k (x + c x^3), rounded differently
        np.tanh(u, out=u)  # t
        np.add(u, 1, out=yb)
        yb *= xb
        yb *= 0.5

    for_blocks(block, x.shape)
    return y, t


@register("gelu_tanh_backward", exact=False)
def gelu_tanh_backward(x, t, grad):
    """:func:`minitensor.ops.unary.gelu_tanh_backward` in place, block by block."""
    d = buffers.empty_like(x, np.result_type(x, grad))

    def block(ix):
        xb, tb, db = x[ix], t[ix], d[ix]
        np.multiply(xb, xb, out=db)
        db *= 3 * _GELU_C * _GELU_K
        db += _GELU_K  # du/dx = k (1 + 3 c x^2)
        db *= xb
        db *= 1 - tb * tb  # x (1 - t^2) du/dx (1 - t^2 is a block-sized temporary)
        db += tb
        db += 1
        db *= 0.5
        db *= grad[ix]

    for_blocks(block, x.shape)
    return d


@register("layer_norm", exact=True)
def layer_norm(x, weight, bias, eps):
    """:func:`minitensor.ops.nn.layer_norm` on blocks of whole rows, ``xhat`` built in place."""
    xhat = buffers.empty_like(x)
    rstd = np.empty(x.shape[:-1] + (1,), dtype=x.dtype)
    y = buffers.empty_like(x, np.result_type(x, weight, bias))

    def block(ix):
        xb, centred, r = x[ix], xhat[ix], rstd[ix]
        np.subtract(xb, xb.mean(axis=-1, keepdims=True), out=centred)
        r[...] = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
        centred *= r
        yb = np.multiply(centred, weight, out=y[ix])
        yb += bias

    for_blocks(block, x.shape, -1)
    return y, xhat, rstd


@register("layer_norm_dx", exact=True)
def layer_norm_dx(grad, xhat, rstd, weight):
    """:func:`minitensor.ops.nn.layer_norm_dx` on blocks of whole rows, in the formula's order."""
    out = buffers.empty_like(xhat, np.result_type(grad, weight, xhat))

    def block(ix):
        o, xb = out[ix], xhat[ix]
        g = grad[ix] * weight
        np.subtract(g, g.mean(axis=-1, keepdims=True), out=o)
        g *= xb
        o -= xb * g.mean(axis=-1, keepdims=True)
        o *= rstd[ix]

    for_blocks(block, xhat.shape, -1)
    return out


@register("scale_keep", exact=True)
def scale_keep(x, scale, keep):
    """:func:`minitensor.ops.nn.scale_keep` (dropout) in one pass over blocks."""
    y = buffers.empty_like(x)
    keep = np.broadcast_to(keep, x.shape)

    def block(ix):
        yb = np.multiply(x[ix], scale, out=y[ix])
        yb *= keep[ix]

    for_blocks(block, x.shape)
    return y


@register("dropout_mask", exact=True)
def dropout_mask(rng, shape, p, like):
    """:func:`minitensor.functional.dropout_mask` without ever holding the full-size uniform array.

    The samples are drawn in chunks into one small buffer that stays in cache, and
    only the boolean mask is written out. A Generator fills an array in order, and
    drawing it in pieces continues the same stream: the mask is the formula's.
    """
    keep = np.empty(shape, dtype=bool)
    flat = keep.reshape(-1)
    dtype = like.dtype if like.dtype in (np.float32, np.float64) else np.float32
    chunk_buffer = np.empty(max(1, min(flat.size, 1 << 16)), dtype=dtype)
    for start in range(0, flat.size, chunk_buffer.size):
        chunk = chunk_buffer[: min(chunk_buffer.size, flat.size - start)]
        rng.random(out=chunk, dtype=chunk.dtype)
        np.greater_equal(chunk, p, out=flat[start:start + chunk.size])
    return keep


SCATTER_MIN_ROW = 16  # entries per row of the target, at least, for the grouped scatter_add below


@register("scatter_add", exact=True)
def scatter_add(target, index, values):
    """:func:`minitensor.ops.shape.scatter_add` for an embedding's gradient: one array of row ids.

    ``np.add.at`` adds the rows one at a time, in order, and takes about a
    millisecond per 2,000 rows of 128. Here the rows are sorted by id (a stable
    sort keeps their order) and each id's rows are summed by one ``sum`` over
    axis 0, which also adds row after row, in order, starting from the target's
    row: the same additions, so the same numbers. Other indices, rows shorter
    than ``SCATTER_MIN_ROW`` (NumPy may then sum pairwise) and ids out of range
    (for ``add.at``'s error) go to ``np.add.at``; so does an index with more
    distinct ids than an eighth of its length, where the loop over ids would cost more.
    """
    rows = math.prod(target.shape[1:])
    ok = isinstance(index, np.ndarray) and index.dtype.kind in "iu" and target.ndim >= 1 and index.size \
        and values.shape == index.shape + target.shape[1:] and values.dtype == target.dtype \
        and rows >= SCATTER_MIN_ROW and target.flags.c_contiguous
    if ok:
        ids = index.reshape(-1).astype(np.int64)
        ids[ids < 0] += target.shape[0]
        ok = ids.min() >= 0 and ids.max() < target.shape[0]
    if ok:
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ok = len(starts) <= max(1, ids.size // 8)
    if not ok:
        np.add.at(target, index, values)
        return
    flat = target.reshape(target.shape[0], rows)  # a view: target is contiguous
    # each id's target row, then its values in order: summing a run over axis 0 is the add.at order
    runs = np.empty((ids.size + len(starts), rows), dtype=target.dtype)
    heads = starts + np.arange(len(starts))
    is_head = np.zeros(len(runs), dtype=bool)
    is_head[heads] = True
    runs[heads] = flat[ids[starts]]
    runs[~is_head] = values.reshape(ids.size, rows)[order]
    ends = np.r_[heads[1:], len(runs)]
    for i, head, end in zip(ids[starts], heads, ends):
        runs[head:end].sum(axis=0, out=flat[i])


register("matmul", exact=False)(threads.matmul)  # split over the threads, BLAS on one thread each
register("matmul_pair", exact=False)(threads.matmul_pair)  # two products side by side, one thread each

# Numerical Recipes' Chebyshev fit of erfc (``erfcc``): $\mathrm{erfc}(a) = t\,e^{-a^2 + P(t)}$, $t = 1/(1 + a/2)$,
# $P$ of degree 9 with these coefficients (lowest first), a relative error under 1.2e-7 for every $a \ge 0$.
_ERFC_FIT = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
             -0.82215223, 0.17087277)
# erf's Maclaurin series $\frac{2}{\sqrt\pi} \sum_n (-1)^n a^{2n+1} / (n!\,(2n+1))$: below a = 1/2 eight terms
# leave a relative error under 1e-10 (1 - erfc would lose the digits of a small erf).
_ERF_SERIES = tuple((-1) ** n / (math.factorial(n) * (2 * n + 1)) * 2 / math.sqrt(math.pi) for n in range(8))


@register("erf", exact=False)
def erf(x):
    """:func:`minitensor.ops.unary.erf` for float32 arrays without a Python call per entry: the series for
    magnitudes below 1/2, 1 - erfc by the fit above, in float64, within one float32 ulp of ``math.erf``
    (tested). Other dtypes take the formula (float64 needs more digits than the fit has)."""
    if x.dtype != np.float32:
        from . import formula  # noqa: PLC0415  (the package imports this module)

        return formula("erf")(x)
    a = np.abs(x, dtype=np.float64).reshape(-1)  # 1-D: a 0-d array's arithmetic would give scalars
    t = 0.5 * a
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * _ERFC_FIT[-1]
    for c in reversed(_ERFC_FIT[1:-1]):  # Horner, in place
        poly += c
        poly *= t
    poly += _ERFC_FIT[0]
    poly -= a * a
    np.exp(poly, out=poly)
    poly *= t
    out = np.subtract(1.0, poly, out=poly)
    small = a < 0.5
    a2 = a[small] ** 2
    series = np.full_like(a2, _ERF_SERIES[-1])
    for c in reversed(_ERF_SERIES[:-1]):
        series = series * a2 + c
    out[small] = a[small] * series
    return np.copysign(out.reshape(x.shape), x).astype(np.float32)
