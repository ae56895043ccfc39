r"""Transformer-XL's relative positions: the sinusoid table $R$, the rel-shift trick,
and the attention scores with the four terms (a)–(d).

With a memory of $M$ cached positions before the $T$ current ones, query $i$
(absolute position $M + i$) meets key $j$ (absolute position $j$, memory first) at
the relative distance $(M + i) - j$. Every distance from $K - 1$ down to $0$
($K = M + T$) can occur, so one row of position keys per distance suffices:
the $K \times K$ grid of $R_{i-j}$ is never built.

Shapes: q (B, H, T, Dh), k (B, H, K, Dh), position keys r (H, K, Dh),
biases u, v (H, Dh); scores (B, H, T, K).
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..tensor import Tensor, concat


def sinusoid_frequencies(d: int) -> np.ndarray:
    r"""The $d/2$ frequencies $1 / 10000^{2j/d}$, $j = 0 \ldots d/2 - 1$, of :func:`sinusoid_positions`
    (float64; Hugging Face stores them as the buffer ``pos_emb.inv_freq``)."""
    return 1.0 / 10000.0 ** (np.arange(0, d, 2, dtype=np.float64) / d)


def sinusoid_positions(klen: int, d: int, dtype=np.float32) -> np.ndarray:
    r"""The (not trainable) relative position table $R$ of shape (klen, d).

    Row $c$ encodes the distance $b = \text{klen} - 1 - c$: the rows run from the
    longest distance down to 0, the order of the original implementation's
    ``pos_seq = arange(klen - 1, -1, -1)``, which is the order :func:`rel_shift` expects
    (column $c$ of $q\,r^\top$ is distance $K - 1 - c$).

    Each row follows the source's formula, sine and cosine INTERLEAVED:

    $$r_{b,2j} = \sin\!\big(b / 10000^{2j/d}\big), \qquad r_{b,2j+1} = \cos\!\big(b / 10000^{2j/d}\big).$$

    The original code instead concatenates all sines, then all cosines. That is the
    same set of features in another column order; since $R$ is only ever seen through
    the learnt projection $W_{k,R}$, either order works for a model trained and evaluated
    with the same one. We follow the formula. A checkpoint trained with the other order
    (Hugging Face's, the original's) has its $W_{k,R}$ columns permuted to match on
    loading (``models.transformer_xl.load_hf_checkpoint``).

    A plain NumPy array (move it with :func:`minitensor.backend.to_device`): $R$ is a
    constant, never a parameter.
    """
    if d <= 0 or d % 2:
        raise ValueError(f"sinusoid_positions: d must be a positive even number (sin/cos pairs), got d={d}")
    if klen < 0:
        raise ValueError(f"sinusoid_positions: klen must be >= 0, got {klen}")
    b = np.arange(klen - 1, -1, -1, dtype=np.float64)  # distances klen-1, ..., 1, 0
    inv_freq = sinusoid_frequencies(d)  # (d/2,)
    angle = b[:, None] * inv_freq[None, :]  # (klen, d/2): b / 10000^{2j/d}
    out = np.empty((klen, d), dtype=np.float64)
    out[:, 0::2] = np.sin(angle)  # r_{b,2j}
    out[:, 1::2] = np.cos(angle)  # r_{b,2j+1}
    return out.astype(dtype)  # computed in float64 so a float32 table is correctly rounded


def rel_shift(x: Tensor) -> Tensor:
    r"""Realign scores from "column = distance" to "column = key" with the pad-and-reshape trick.

    Input x (..., T, K), $K \ge T$, whose column $c$ holds the score for relative
    distance $K - 1 - c$ (the order of :func:`sinusoid_positions`). Output (..., T, K)
    whose entry $(i, j)$ holds the score for the distance between query $i$ (absolute
    position $M + i$, $M = K - T$) and key $j$:

    $$y_{i,j} = x_{i,\;K-1-(i+M-j)} = x_{i,\;T-1-i+j} \qquad (j \le i + M).$$

    The trick: prepend a zero column, (..., T, K+1); read the same memory as
    (..., K+1, T); drop the first row of T entries; read the rest as (..., T, K).
    Dropping T entries from a row length of K+1 moves row $i$ left by $T - i$
    places, exactly the per-row shift wanted, with no gather and no index arrays.

    Entries with $j > i + M$ (keys in the future of query $i$) are GARBAGE that the
    causal mask must hide: $y_{i,\,i+M+1} = 0$ (the padding), and for
    $j \ge i + M + 2$, $y_{i,j} = x_{i+1,\; j-i-M-2}$ (the start of the next row).
    The last row ($i = T - 1$) has no garbage.

    Composed from concat, reshape and slicing, so the engine derives the backward
    (the inverse shift: each output gradient goes back to the entry it was read from,
    the padding's gradient is dropped).
    """
    if x.ndim < 2:
        raise ValueError(f"rel_shift: x must have at least 2 dims (..., T, K), got shape {x.shape}")
    *lead, t, k = x.shape
    if k < t:
        raise ValueError(f"rel_shift: x of shape {x.shape} has K={k} < T={t} (keys are the M >= 0 memory "
                         "positions followed by the T current ones)")
    xp = get_array_module(x.data)
    pad = Tensor(xp.zeros((*lead, t, 1), dtype=x.dtype))  # constant, no gradient
    padded = concat([pad, x], axis=-1)  # (..., T, K+1): a zero before each row
    folded = padded.reshape(*lead, k + 1, t)  # (..., K+1, T): the same entries, rows of T
    dropped = folded[..., 1:, :]  # (..., K, T): drop the first T entries, shifting row i by T - i
    return dropped.reshape(*lead, t, k)  # (..., T, K)


def _check_shapes(q, k, r, u, v):
    def fail(msg):
        raise ValueError(f"relative_scores: {msg}; got q {q.shape}, k {k.shape}, r {r.shape}, "
                         f"u {u.shape}, v {v.shape} (expected q (B, H, T, Dh), k (B, H, M+T, Dh), "
                         "r (H, M+T, Dh), u (H, Dh), v (H, Dh))")

    if q.ndim != 4 or k.ndim != 4 or r.ndim != 3 or u.ndim != 2 or v.ndim != 2:
        fail("wrong number of dims")
    b, h, t, dh = q.shape
    if k.shape[0] != b or k.shape[1] != h or k.shape[3] != dh:
        fail("k must share q's batch, heads and head size")
    klen = k.shape[2]
    if klen < t:
        fail(f"k has {klen} positions, fewer than q's T={t} (keys are M memory positions then the T current ones)")
    if r.shape != (h, klen, dh):
        fail(f"r must be (H, M+T, Dh) = {(h, klen, dh)}, one position key per distance M+T-1 .. 0")
    if u.shape != (h, dh) or v.shape != (h, dh):
        fail(f"u and v must be (H, Dh) = {(h, dh)}")
    if len({q.dtype, k.dtype, r.dtype, u.dtype, v.dtype}) != 1:
        raise TypeError(f"relative_scores: dtypes differ: q {q.dtype}, k {k.dtype}, r {r.dtype}, "
                        f"u {u.dtype}, v {v.dtype}")


def relative_scores(q: Tensor, k: Tensor, r: Tensor, u: Tensor, v: Tensor, terms: bool = False):
    r"""Transformer-XL's attention scores $A^{\text{rel}}$ for a query block and its keys.

    $$A_{i,j} = \underbrace{q_i^\top k_j}_{(a)} + \underbrace{q_i^\top W_{k,R} R_{i-j}}_{(b)}
              + \underbrace{u^\top k_j}_{(c)} + \underbrace{v^\top W_{k,R} R_{i-j}}_{(d)}$$

    q (B, H, T, Dh): queries of the current segment. k (B, H, M+T, Dh): keys of the
    memory then the segment. r (H, M+T, Dh): the position keys $W_{k,R} R$, one per
    distance, rows ordered from distance $M+T-1$ down to 0 (as :func:`sinusoid_positions`).
    u, v (H, Dh): the global content and position biases, one per head.

    Returns (B, H, T, M+T). Computed as the original does, two matrix products instead
    of four: $(a)+(c) = (q + u)\,k^\top$ and $(b)+(d) = \mathrm{rel\_shift}\big((q + v)\,r^\top\big)$.
    Entries with $j > i + M$ are garbage (see :func:`rel_shift`): always apply
    ``causal_mask(T, M+T, offset=M)`` before the softmax.

    NOT scaled: the caller multiplies by $1/\sqrt{d_h}$ (as the original scales
    ``attn_score`` after summing), which keeps the four terms here exactly the
    paper's and inspectable.

    ``terms=True`` returns ``{"a", "b", "c", "d"}`` instead, each (B, H, T, M+T) and
    computed on its own (the same rel-shift for (b) and (d)); they sum to the scores.
    """
    _check_shapes(q, k, r, u, v)
    b_, h, t, dh = q.shape
    klen = k.shape[2]
    k_t = k.swapaxes(-1, -2)  # (B, H, Dh, M+T)
    r_t = r.swapaxes(-1, -2)  # (H, Dh, M+T): column c is distance M+T-1-c
    u_ = u.reshape(h, 1, dh)  # (H, 1, Dh): broadcasts over batch and queries
    v_ = v.reshape(h, 1, dh)  # (H, 1, Dh)
    if not terms:
        ac = (q + u_) @ k_t  # (a) + (c): (q_i + u)^T k_j, (B, H, T, M+T)
        bd = rel_shift((q + v_) @ r_t)  # (b) + (d): (q_i + v)^T W_{k,R} R_{i-j}, (B, H, T, M+T)
        return ac + bd
    full = (b_, h, t, klen)
    return {
        "a": q @ k_t,  # (a): q_i^T k_j
        "b": rel_shift(q @ r_t),  # (b): q_i^T W_{k,R} R_{i-j}
        "c": (u_ @ k_t).expand(*full),  # (c): u^T k_j, the same for every query, (B, H, 1, M+T) -> full
        # (d): v^T W_{k,R} R_{i-j}; expanded to T rows BEFORE the shift, since the shift differs per row
        "d": rel_shift((v_ @ r_t).expand(*full)),
    }
