r"""Masked softmax, scaled dot-product attention, heads, and the stop-gradient memory.

Shapes: queries, keys and values are laid out (B, H, T, Dh) — batch, heads,
time, features per head — unless a docstring says otherwise.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..autograd import Function
from ..backend import device_of, get_array_module, to_device
from ..tensor import Tensor, concat


class MaskedSoftmax(Function):
    r"""Softmax over ``axis`` of the scores where ``mask`` is True; masked entries get probability 0.

    Forward: $s_j \leftarrow -\infty$ where masked, then the stable softmax
    $p_j = e^{s_j - m} / \sum_k e^{s_k - m}$ with $m = \max_k s_k$. Because
    $e^{-\infty} = 0$ exactly, masked keys get exactly 0 and the others renormalise
    among themselves, in any dtype. A finite "large negative" fill is only as good
    as its size relative to the scores (-50 still leaks $\sim 10^{-22}$), and in a row
    where EVERY entry is masked any finite fill gives a uniform distribution over
    forbidden keys.

    A fully-masked row has $m = -\infty$ and $e^{s - m} = e^{\text{nan}}$; we define its
    output as all zeros (it attends to nothing) and its gradient as zero.

    Backward: as for softmax, $\bar s_j = p_j(\bar p_j - \sum_k \bar p_k p_k)$; masked
    entries have $p_j = 0$ and so receive no gradient, with no special case.
    """

    @staticmethod
    def forward(ctx, scores, *, mask, axis):
        axis = axis - scores.ndim if axis >= 0 else axis  # negative: the same axis of any leading block
        p = masked_softmax_rows(scores, mask, axis)
        ctx.save_for_backward(p)
        ctx.axis = axis
        return p

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        return softmax_vjp(p, grad, ctx.axis)


@kernels.replaceable("masked_softmax")
def masked_softmax_rows(scores, mask, axis):
    r"""$p = \mathrm{softmax}(s)$ along ``axis`` with $s_j = -\infty$ where ``mask`` is False (see :class:`MaskedSoftmax`)."""
    xp = get_array_module(scores)
    s = xp.where(mask, scores, xp.asarray(-np.inf, dtype=scores.dtype))  # -inf where masked
    m = s.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros((), dtype=m.dtype))  # fully-masked rows: any finite shift
    e = xp.exp(s - m)  # exp(-inf) = 0 at masked entries
    total = e.sum(axis=axis, keepdims=True)
    return e / xp.where(total > 0, total, xp.ones((), dtype=total.dtype))  # 0 / 1 = 0 in fully-masked rows


@kernels.replaceable("softmax_vjp")
def softmax_vjp(p, grad, axis):
    r"""$\bar s = p \odot \big(\bar p - \langle \bar p, p \rangle\big)$ along ``axis``.

    ``p`` is the softmax output, ``grad`` the upstream $\bar p$; the inner product is
    a sum over ``axis``, kept as an axis of length 1 so that it broadcasts.
    """
    # BEGIN SOLUTION lesson 06: softmax_vjp: the equation for \bar s_j in the MaskedSoftmax derivation (lesson 04 derived it too)
    return p * (grad - (grad * p).sum(axis=axis, keepdims=True))
    # END SOLUTION


def masked_softmax(scores: Tensor, mask=None, axis: int = -1) -> Tensor:
    """Softmax of ``scores`` over ``axis``, attending only where ``mask`` is True.

    ``mask`` is boolean and True where attention is ALLOWED (PyTorch's
    ``scaled_dot_product_attention`` convention), broadcastable to ``scores``;
    None allows everything. A row with no allowed entry returns zeros.
    """
    if not -scores.ndim <= axis < scores.ndim:
        raise ValueError(f"masked_softmax: axis {axis} is out of range for scores of shape {scores.shape}")
    if mask is None:
        mask = np.ones((1,) * scores.ndim, dtype=bool)
    mask = mask.data if isinstance(mask, Tensor) else mask
    mask = get_array_module(mask).asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"masked_softmax: mask must be bool (True = may attend), got dtype {mask.dtype}")
    try:
        fits = np.broadcast_shapes(mask.shape, scores.shape) == scores.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"masked_softmax: mask of shape {mask.shape} does not broadcast to scores of shape "
                         f"{scores.shape}")
    if device_of(mask) != scores.device:
        mask = to_device(mask, scores.device)
    return MaskedSoftmax.apply(scores, mask=mask, axis=axis)


def causal_mask(t_q: int, t_k: int, offset: int = 0) -> np.ndarray:
    r"""(t_q, t_k) bool mask, True where query $i$ may see key $j$: $j \le i + \text{offset}$.

    With a memory of $M$ earlier positions placed before the $T$ current ones
    (keys $[m_1..m_M, h_1..h_T]$), pass ``offset=M``: query $i$ sees the whole
    memory and the current positions up to itself.
    """
    if t_q < 0 or t_k < 0 or offset < 0:
        raise ValueError(f"causal_mask: sizes and offset must be >= 0, got t_q={t_q}, t_k={t_k}, offset={offset}")
    return np.arange(t_k)[None, :] <= np.arange(t_q)[:, None] + offset


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask=None, return_weights: bool = False):
    r"""$\mathrm{softmax}\big(q k^\top / \sqrt{d_h}\big)\, v$ with masked entries excluded.

    q (..., T_q, Dh), k (..., T_k, Dh), v (..., T_k, Dv), ``mask`` bool broadcastable to
    (..., T_q, T_k), True = allowed. Returns (..., T_q, Dv), and the attention
    probabilities (..., T_q, T_k) too when ``return_weights``.
    The $1/\sqrt{d_h}$ keeps the scores' variance near 1 whatever the head size,
    so the softmax does not saturate at initialisation.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape}, k {k.shape}, v {v.shape} do not fit "
                         "(need q (..., T_q, Dh), k (..., T_k, Dh), v (..., T_k, Dv))")
    # scaling q (..., T_q, Dh) rather than the scores (..., T_q, T_k): fewer entries when T_k > Dh
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.swapaxes(-1, -2)  # (..., T_q, T_k)
    p = masked_softmax(scores, mask)
    out = p @ v  # (..., T_q, Dv)
    return (out, p) if return_weights else out


def split_heads(x: Tensor, n_head: int) -> Tensor:
    """(B, T, D) -> (B, H, T, D/H): each head gets its own slice of the features."""
    b, t, d = x.shape
    if d % n_head:
        raise ValueError(f"split_heads: model width {d} is not divisible by {n_head} heads")
    return x.reshape(b, t, n_head, d // n_head).transpose(0, 2, 1, 3)  # (B, H, T, Dh)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, H*Dh): the inverse of :func:`split_heads`."""
    b, h, t, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * dh)  # (B, T, H, Dh) -> (B, T, D)


def concat_memory(mem, h: Tensor, axis: int = -2) -> Tensor:
    r"""$\tilde h = [\mathrm{SG}(m) \circ h]$: the cached memory, then the current segment, along time.

    ``mem`` (B, M, d) — the previous segment's hidden states — is detached, so no
    gradient ever reaches it and the graph that computed it is not kept alive:
    backpropagation stops at the segment boundary (truncated BPTT). ``h`` is
    (B, T, d); the result is (B, M + T, d). ``mem=None`` (the first segment) gives ``h``.
    """
    if mem is None:
        return h
    # BEGIN SOLUTION lesson 09: concat_memory: SG(m) of the docstring: m's values in a Tensor that no gradient and no graph can reach
    mem = Tensor(mem.data if isinstance(mem, Tensor) else get_array_module(mem).asarray(mem))  # SG(m)
    # END SOLUTION
    ax = axis % h.ndim
    if mem.ndim != h.ndim or any(a != b for i, (a, b) in enumerate(zip(mem.shape, h.shape)) if i != ax):
        raise ValueError(f"concat_memory: memory of shape {mem.shape} does not fit hidden states of shape {h.shape} "
                         f"(they may differ only along axis {axis}, the time axis)")
    if mem.dtype != h.dtype:
        raise TypeError(f"concat_memory: memory dtype {mem.dtype} differs from hidden states dtype {h.dtype}")
    return concat([mem, h], axis=ax)
