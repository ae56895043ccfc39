r"""Longformer's banded attention: sliding window, dilation, causal band, global tokens.

Source: section 2 of ``source/seed-transformer-xl-longformer-gpt.txt`` (2.2.1 sliding
window, 2.2.2 dilated window, 2.2.3 global attention with $Q_g, K_g, V_g$).

Shapes: q, k, v (and the global projections) are (B, H, T, Dh). ``window`` is the
paper's $w$: $w$ tokens in total, $w/2$ on each side of the query, plus the query
itself (HuggingFace's ``LongformerConfig`` calls this ``attention_window``). With
dilation $d$ (one value per head, or one for all) row $i$ looks at

$$\mathcal{B}(i) = \{\, i + (j - w/2)\,d : j = 0..w \,\}$$

so its receptive field spans $d\,w$ positions. The scores of a row form a band of
$w + 1$ slots — band slot $j$ of row $i$ holds key $i + (j - w/2)d$ — reported as a
(B, H, T, w+1) array (``return_weights``). Internally rows are handled in chunks of
$c = w/4$, each chunk's scores kept as a (c, c + w) block whose diagonal strip is the band
(1.25x the band's size): O(T·w) memory either way, never (T, T).

The rules (the Longformer / HuggingFace ``LongformerSelfAttention`` convention):

* A key $j$ is never attended if it is out of range, padding
  (``key_padding_mask[b, j]`` False), or — with ``causal=True`` — in the future ($j > i$;
  the band then keeps only its left half).
* A **local** row $i$ (not global) normalises ONE softmax over its band keys AND all
  the global keys, scored with the ordinary projections: $s_{ij} = q_i^\top k_j/\sqrt{d_h}$,
  output $\sum_j p_{ij} v_j$. A band slot that points at a global key is masked in
  the band, because that key is already in the global part (no key counted twice).
  (HF scores the extra global keys with ``key_vectors`` and mixes ``value_vectors``.)
* A **global** row $i$ attends to every (non-padding) key with its own projections:
  $s_{ij} = (Q_g)_i^\top (K_g)_j/\sqrt{d_h}$, output $\sum_j p_{ij} (V_g)_j$.
* Padding positions are never global (``global_mask & key_padding_mask``); the outputs
  at padding positions are computed like any other row and mean nothing.
* If ``global_mask`` marks any position, ``q_global, k_global, v_global`` are required
  (a ValueError says so): silently reusing q, k, v would hide a missing projection.
* With ``causal=True`` the global part is causal too: a local row sees the global keys
  $j \le i$ only, and a global row sees the keys $j \le i$ only. The band keeps its
  (B, H, T, w+1) shape; its right half is simply masked.
* A row with no allowed key at all outputs zeros (see :func:`masked_softmax`).
* ``dropout=p > 0`` drops attention PROBABILITIES after the softmax, as HF drops ``attn_probs``:
  every entry of the band, to-global and from-global parts is kept with probability $1 - p$ and
  scaled by $1/(1-p)$ (inverted dropout), $o = (P \odot M / (1-p))\,V$. The keep masks are a
  :class:`BandedKeep` in the same layout as :class:`BandedWeights` (:func:`banded_dropout_mask`
  draws them: band, then to_global, then from_global, each ``uniform >= p``), so the fused op and
  the reference can be given the very same mask. ``p == 0`` draws nothing and costs nothing.

Two versions, tested equal (and equal to a dense (T, T) composition in the tests):
:func:`banded_attention_reference` loops over b, h, i and lists each row's keys
(:func:`allowed_keys`) — read it first; :func:`banded_attention` is the vectorised
:class:`BandedAttention` with the hand-derived backward.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from ..autograd import Function
from ..backend import device_of, get_array_module, to_device
from ..functional import uniform
from ..ops.linalg import matrix_product
from ..tensor import Tensor, stack
from .masked import masked_softmax

#: Attention probabilities of :func:`banded_attention` (``return_weights=True``), as arrays:
#: ``band`` (B, H, T, w+1) local rows over their band (zeros in global rows);
#: ``to_global`` (B, H, T, G) local rows over the global keys ``global_index`` (zeros in global rows);
#: ``from_global`` (B, H, G, T) global rows over all keys;
#: ``global_index`` (B, G) int positions of the global tokens, ``global_valid`` (B, G) which are real
#: (batches with fewer globals are padded); ``dilation`` (H,) ints; ``window`` w.
BandedWeights = namedtuple("BandedWeights",
                           "band to_global from_global global_index global_valid dilation window")

#: Dropout keep masks of :func:`banded_attention` (bool arrays, True = kept), in the layout of
#: :class:`BandedWeights`: ``band`` (B, H, T, w+1), ``to_global`` (B, H, T, G), ``from_global`` (B, H, G, T),
#: G the number of global slots (the most global tokens in a row of the batch; 0 without globals).
BandedKeep = namedtuple("BandedKeep", "band to_global from_global")


def banded_dropout_mask(rng: np.random.Generator, p: float, *, shape, window: int, n_global: int,
                        like=None) -> BandedKeep:
    r"""Draw the keep masks of attention-probability dropout with rate ``p`` from ``rng``.

    ``shape`` (B, H, T, Dh) of q; ``n_global`` G. Draw order (fixed, so two generators seeded alike
    give the same masks): band (B, H, T, w+1), to_global (B, H, T, G), from_global (B, H, G, T), each
    ``uniform(rng) >= p`` on ``like``'s device (:func:`minitensor.functional.uniform`:
    drawn by NumPy, copied to the GPU under CuPy)."""
    b, h, t = shape[0], shape[1], shape[2]
    like = np.zeros((), np.float64) if like is None else like
    band = uniform(rng, (b, h, t, window + 1), like) >= p
    to_g = uniform(rng, (b, h, t, n_global), like) >= p
    from_g = uniform(rng, (b, h, n_global, t), like) >= p
    return BandedKeep(band, to_g, from_g)


def band_key_index(t: int, window: int, dilation) -> np.ndarray:
    r"""(H, T, w+1) int: band slot $j$ of row $i$ in head $h$ holds key $i + (j - w/2) d_h$
    (may be out of range: those slots are masked)."""
    d = np.asarray(dilation).reshape(-1, 1, 1)
    return np.arange(t)[None, :, None] + (np.arange(window + 1)[None, None, :] - window // 2) * d


def banded_weights_to_dense(w: BandedWeights):
    """The (B, H, T, T) attention matrix of :class:`BandedWeights` — for tests and
    lessons on SMALL T only (it is exactly the T×T array banded attention avoids)."""
    band = w.band
    b, h, t, _ = band.shape
    xp = get_array_module(band)
    dense = xp.zeros((b, h, t, t), dtype=band.dtype)
    idx = xp.asarray(band_key_index(t, w.window, w.dilation))  # (H, T, w+1)
    ok = (idx >= 0) & (idx < t)
    for hh in range(h):  # loops over heads and batch are fine here: this is a test helper
        rows, slots = ok[hh].nonzero()
        dense[:, hh, rows, idx[hh][rows, slots]] += band[:, hh, rows, slots]
    for bb in range(b):
        g = w.global_index[bb][w.global_valid[bb]]
        dense[bb][:, :, g] += w.to_global[bb][:, :, : len(g)]
        dense[bb][:, g, :] = w.from_global[bb][:, : len(g), :]
    return dense


# ------------------------------------------------------------------ layout helpers
# Dilation by residues: with dilation d, row i = m d + r only ever meets keys i + (j - w/2) d,
# which are ≡ r (mod d). So one dilated head equals d UNdilated heads, each on the
# subsequence r, r + d, r + 2d, ... We reshape (T) -> (d, n) with n = ceil(T / d) and run
# the plain sliding window on length n. No loop over T, and no wasted work per residue.

def _to_sub(x, d, n):
    """(..., T, X) -> (..., d, n, X): position m*d + r goes to [r, m]; padded with zeros."""
    xp = get_array_module(x)
    t = x.shape[-2]
    if n * d != t:
        x = xp.concatenate([x, xp.zeros(x.shape[:-2] + (n * d - t, x.shape[-1]), dtype=x.dtype)], axis=-2)
    x = x.reshape(x.shape[:-2] + (n, d, x.shape[-1]))  # (..., n, d, X)
    return xp.swapaxes(x, -3, -2)  # (..., d, n, X)


def _from_sub(y, t):
    """(..., d, n, X) -> (..., T, X): the inverse of :func:`_to_sub`, padding dropped."""
    d, n = y.shape[-3], y.shape[-2]
    y = get_array_module(y).swapaxes(y, -3, -2)  # (..., n, d, X)
    return y.reshape(y.shape[:-3] + (n * d, y.shape[-1]))[..., :t, :]  # (..., T, X)


# Sliding window by chunks (as in HF's "sliding_chunks"): the n queries are cut into nc
# chunks of c rows, c a divisor of w. The keys of chunk a are the c + w positions
# [a c - w/2, a c + c + w/2): w/c + 1 consecutive chunks of the keys padded with w/2 zeros
# in front. One matmul per chunk gives a (c, c + w) block; row r's band slot j is block
# column r + j, a diagonal strip. The softmax runs on the whole block with the entries off
# the strip masked (probability exactly 0), so the backward's matmuls use the same blocks;
# :func:`_strip` reads the band out as a strided view (no copy) when the weights are asked for.
# A block computes c + w scores per row for the w + 1 we keep: c = w/4 wastes only 25 %
# (c = w would waste 100 %), while c = w/4 rows still make BLAS-sized matmuls.
_SPLIT = 4


def _chunk_len(w):
    """The query chunk length c: the largest of w/4, w/2, w that is a whole number."""
    for f in (_SPLIT, 2, 1):
        if w % f == 0:
            return w // f
    return w


def _pad_chunks(x, half, c, nc):
    """(..., n, X) keys -> (..., nc, c + w, X): chunk a holds padded positions [a c, a c + c + w)."""
    xp = get_array_module(x)
    n = x.shape[-2]
    lead = x.shape[:-2]
    k = 2 * half // c + 1  # key chunks per query chunk
    back = (nc + k - 1) * c - half - n
    xp_ = xp.concatenate([xp.zeros(lead + (half, x.shape[-1]), x.dtype), x,
                          xp.zeros(lead + (back, x.shape[-1]), x.dtype)], axis=-2)
    xp_ = xp_.reshape(lead + (nc + k - 1, c, x.shape[-1]))  # (..., nc+k-1, c, X)
    return xp.concatenate([xp_[..., m: m + nc, :, :] for m in range(k)], axis=-2)  # (..., nc, k c, X)


def _fold_chunks(g, half, c, nc, n):
    """Adjoint of :func:`_pad_chunks`: add each chunk's gradient back onto its keys."""
    xp = get_array_module(g)
    k = 2 * half // c + 1
    acc = xp.zeros(g.shape[:-3] + (nc + k - 1, c, g.shape[-1]), dtype=g.dtype)  # (..., nc+k-1, c, X)
    for m in range(k):
        acc[..., m: m + nc, :, :] += g[..., m * c: (m + 1) * c, :]
    acc = acc.reshape(g.shape[:-3] + ((nc + k - 1) * c, g.shape[-1]))
    return acc[..., half: half + n, :]  # (..., n, X)


def _q_chunks(x, c, nc):
    """(..., n, X) -> (..., nc, c, X), zero rows appended."""
    xp = get_array_module(x)
    n = x.shape[-2]
    if nc * c != n:
        x = xp.concatenate([x, xp.zeros(x.shape[:-2] + (nc * c - n, x.shape[-1]), x.dtype)], axis=-2)
    return x.reshape(x.shape[:-2] + (nc, c, x.shape[-1]))  # (..., nc, c, X)


def _strip(block, w):
    """Strided view (..., c, w+1) of a C-contiguous (..., c, c+w) block: [r, j] -> block[r, r + j]."""
    xp = get_array_module(block)
    s = block.strides
    return xp.lib.stride_tricks.as_strided(block, shape=block.shape[:-1] + (w + 1,),
                                           strides=s[:-2] + (s[-2] + s[-1], s[-1]))


def _keep_blocks(keep, heads, d, n, c, nc, w):
    """The dropout keep masks of one dilation group in the forward's layout: the band (B, H, T, w+1)
    written onto the diagonal strip of (B, Hd, d, nc, c, c+w) blocks (False elsewhere), and the
    to-global part (B, H, T, G) as (B, Hd, d, nc, c, G)."""
    xp = get_array_module(keep.band)
    band = _q_chunks(_to_sub(keep.band[:, heads], d, n), c, nc)  # (B, Hd, d, nc, c, w+1)
    blk = xp.zeros(band.shape[:-1] + (c + w,), dtype=bool)  # (B, Hd, d, nc, c, c+w)
    _strip(blk, w)[...] = band  # block[r, r + j] = band[r, j]: distinct entries, so the write is safe
    glob = _q_chunks(_to_sub(keep.to_global[:, heads], d, n), c, nc)  # (B, Hd, d, nc, c, G)
    return blk, glob


class BandedAttention(Function):
    r"""Banded (sliding-window, dilated, global) attention with a hand-derived backward.

    Inputs q, k, v (B, H, T, Dh), then optionally $Q_g, K_g, V_g$ (B, H, T, Dh) when
    there are global tokens. Write $\sigma = 1/\sqrt{d_h}$, $E$ (B, G, T) the one-hot rows
    picking the G global positions, $\hat k = E k$, $\hat v = E v$ their local keys/values.

    **Local rows.** Band scores $S^b_{ij} = \sigma\, q_i^\top k_{i + (j - w/2)d}$ (B, H, T, w+1)
    and global-key scores $S^g = \sigma\, q \hat k^\top$ (B, H, T, G), masked, then ONE softmax
    over the $w + 1 + G$ entries of each row: $P = [P^b, P^g]$. Output
    $o_i = \sum_j P^b_{ij} v_{i + (j - w/2)d} + \sum_g P^g_{ig} \hat v_g$.

    **Global rows.** $\hat q = E Q_g$ (B, H, G, Dh), $S^r = \sigma \hat q K_g^\top$ (B, H, G, T),
    $P^r$ = masked softmax, $o^r = P^r V_g$, written into the global rows: $o = (1 - e) \odot o^{loc} + E^\top o^r$
    with $e = E^\top 1$ the global indicator.

    **Backward.** With $\bar o$ given, local rows get $\bar o^{loc} = (1 - e)\odot\bar o$ and
    $\bar o^r = E \bar o$. For the local softmax (both parts share one normaliser):

    $$\bar P^b_{ij} = \bar o_i^\top v_{i+(j-w/2)d},\quad \bar P^g = \bar o\,\hat v^\top,\quad
      c_i = \sum_j P^b_{ij}\bar P^b_{ij} + \sum_g P^g_{ig}\bar P^g_{ig},$$
    $$\bar S^b = P^b \odot (\bar P^b - c),\quad \bar S^g = P^g \odot (\bar P^g - c).$$

    Then, every key/value slot receiving the sum of the rows that used it:

    $$\bar q_i = \sigma\Big(\sum_j \bar S^b_{ij} k_{i+(j-w/2)d} + \sum_g \bar S^g_{ig}\hat k_g\Big),\quad
      \bar k_m \mathrel{+}= \sigma\!\!\sum_{(i,j):\, i+(j-w/2)d = m}\!\! \bar S^b_{ij} q_i,\quad
      \bar v_m \mathrel{+}= \sum_{(i,j):\, i+(j-w/2)d = m} P^b_{ij}\bar o_i,$$
    $$\bar{\hat k} = \sigma\, (\bar S^g)^\top q,\quad \bar{\hat v} = (P^g)^\top \bar o,\quad
      \bar k \mathrel{+}= E^\top \bar{\hat k},\quad \bar v \mathrel{+}= E^\top \bar{\hat v}.$$

    Everything is computed chunk by chunk on (c, c+w) blocks (band slot $j$ of row $r$ is
    block column $r + j$; every other entry is masked, so $P^{blk}$ and $\bar S^{blk}$ are 0
    there and block sums equal band sums): with $\bar S^{blk}$ the block form of $\bar S^b$,
    $\bar q^{chunk} = \sigma\bar S^{blk} K^{chunk}$ and $\bar K^{chunk} = \sigma (\bar S^{blk})^\top q^{chunk}$,
    then overlapping key chunks are folded (added) back. Global rows are plain attention:
    $\bar P^r = \bar o^r V_g^\top$, $\bar S^r = P^r\odot(\bar P^r - \langle \bar P^r, P^r\rangle)$,
    $\bar V_g = (P^r)^\top \bar o^r$, $\bar{\hat q} = \sigma \bar S^r K_g$, $\bar Q_g = E^\top\bar{\hat q}$,
    $\bar K_g = \sigma(\bar S^r)^\top \hat q$.
    Nothing here is (T, T): the largest arrays are (B, H, T, c+w) blocks and (B, H, G, T).

    **Dropout** (``keep`` a :class:`BandedKeep`, ``scale`` $s = 1/(1-p)$): with $M$ the keep mask of
    each part, the output uses $D = s\,M\odot P$ in place of $P$ (local and global rows alike). The
    softmax still sees $P$, so only the two uses of the probabilities change:

    $$\bar P = s\,M \odot (\bar o\, V^\top)\ \text{(before the softmax backward, which uses } P),\qquad
      \bar V = D^\top \bar o .$$
    """

    @staticmethod
    def forward(ctx, q, k, v, *glob, window, dilation, causal, key_ok, global_index, global_valid,
                keep=None, scale_drop=1.0):
        xp = get_array_module(q)
        t, dh = q.shape[2], q.shape[3]
        w, half, c = window, window // 2, _chunk_len(window)
        scale = 1.0 / math.sqrt(dh)
        neg_inf = xp.asarray(-np.inf, dtype=q.dtype)
        sdrop = q.dtype.type(scale_drop)  # 1/(1-p) of the dropout
        has_global = len(glob) > 0
        n_g = global_index.shape[1]
        # E (B, 1, G, T): one-hot rows of the global positions (zero rows for padded slots)
        onehot = ((xp.arange(t)[None, None, :] == global_index[:, :, None]) & global_valid[:, :, None])
        onehot = onehot.astype(q.dtype)[:, None]  # (B, 1, G, T)
        is_global = onehot.sum(axis=2)[..., None] > 0  # (B, 1, T, 1)
        k_hat = onehot @ k  # (B, H, G, Dh): local keys of the global tokens
        v_hat = onehot @ v  # (B, H, G, Dh)
        # a band key must be in range, real, and not global (global keys live in the global part)
        band_key_ok = key_ok & ~is_global[:, 0, :, 0]  # (B, T)

        out = xp.empty_like(q)
        groups = []
        dil = np.asarray(dilation)
        for d in sorted(set(dil.tolist())):  # one pass per distinct dilation, not per head
            heads = np.nonzero(dil == d)[0]
            n = -(-t // d)  # ceil(T / d): length of each residue subsequence
            nc = -(-n // c)
            # σ q: scaling the (T, Dh) queries once is cheaper than scaling (T, c+w) score blocks
            qs = _q_chunks(_to_sub(q[:, heads] * scale, d, n), c, nc)  # σ q (B, Hd, d, nc, c, Dh)
            ks = _pad_chunks(_to_sub(k[:, heads], d, n), half, c, nc)  # (B, Hd, d, nc, c+w, Dh)
            vs = _pad_chunks(_to_sub(v[:, heads], d, n), half, c, nc)  # (B, Hd, d, nc, c+w, Dh)
            # Mask of the (c, c+w) block: column r + j is band slot j of row r, so a block entry
            # is used iff 0 <= col - r <= w (<= w/2 when causal) and its key is ok. Working on
            # the whole block (25 % more entries than the band) spares copying the band out
            # and back in; entries off the strip get probability exactly 0.
            slot = xp.arange(c + w)[None, :] - xp.arange(c)[:, None]  # (c, c+w): band slot j = col - r
            on_strip = (slot >= 0) & (slot <= (half if causal else w))
            ok = _to_sub(band_key_ok[:, :, None], d, n)  # (B, d, n, 1): zero padding = not ok
            ok = _pad_chunks(ok, half, c, nc)[..., 0]  # (B, d, nc, c+w): the keys of each chunk
            ok_blk = (on_strip & ok[..., None, :])[:, None]  # (B, 1, d, nc, c, c+w)
            s_blk = xp.where(ok_blk, matrix_product(qs, xp.swapaxes(ks, -1, -2)), neg_inf)  # S^b in block form (B, Hd, d, nc, c, c+w)
            del ok_blk
            s_glob = matrix_product(qs, xp.swapaxes(k_hat[:, heads][:, :, None, None], -1, -2))  # S^g (B, Hd, d, nc, c, G)
            ok_glob = global_valid[:, None, None, None, None, :]  # (B, 1, 1, 1, 1, G)
            if causal:
                pos = (xp.arange(nc * c).reshape(nc, c)[None, :, :] * d
                       + xp.arange(d)[:, None, None])  # (d, nc, c): position of each sub row
                ok_glob = ok_glob & (global_index[:, None, None, None, None, :] <= pos[None, None, :, :, :, None])
            s_glob = xp.where(ok_glob, s_glob, neg_inf)
            # one softmax over [band, global] (both parts share the normaliser)
            m = xp.maximum(s_blk.max(axis=-1, keepdims=True),
                           s_glob.max(axis=-1, keepdims=True) if n_g else neg_inf)
            m = xp.where(xp.isfinite(m), m, xp.zeros((), dtype=q.dtype))  # empty rows: any finite shift
            s_blk -= m  # in place: the blocks are the biggest arrays we touch
            p_blk = xp.exp(s_blk, out=s_blk)  # exp(-inf) = 0 off the strip and at masked keys
            p_glob = xp.exp(s_glob - m)
            del s_blk, s_glob
            total = p_blk.sum(axis=-1, keepdims=True) + p_glob.sum(axis=-1, keepdims=True)
            inv = 1 / xp.where(total > 0, total, xp.ones((), dtype=q.dtype))  # empty row -> zeros
            p_blk *= inv  # P^b in block form, kept for the backward
            p_glob *= inv  # P^g
            keep_blk = keep_glob = None
            if keep is not None:  # dropout: D = s M ⊙ P mixes the values; P itself is kept for the softmax backward
                keep_blk, keep_glob = _keep_blocks(keep, heads, d, n, c, nc, w)
                o = (matrix_product(p_blk * keep_blk, vs) + matrix_product(p_glob * keep_glob, v_hat[:, heads][:, :, None, None])) * sdrop
            else:
                o = matrix_product(p_blk, vs) + matrix_product(p_glob, v_hat[:, heads][:, :, None, None])  # (B, Hd, d, nc, c, Dh)
            o = o.reshape(o.shape[:3] + (nc * c, dh))[..., :n, :]  # (B, Hd, d, n, Dh)
            out[:, heads] = _from_sub(o, t)  # (B, Hd, T, Dh)
            groups.append((d, heads, n, nc, qs, ks, vs, p_blk, p_glob, keep_blk, keep_glob))

        p_rows = None
        if has_global:
            qg, kg, vg = glob
            q_hat = onehot @ qg  # \hat q = E Q_g (B, H, G, Dh)
            s_rows = (q_hat @ xp.swapaxes(kg, -1, -2)) * scale  # S^r (B, H, G, T)
            ok_rows = key_ok[:, None, None, :] & global_valid[:, None, :, None]  # (B, 1, G, T)
            if causal:
                ok_rows = ok_rows & (xp.arange(t)[None, None, None, :] <= global_index[:, None, :, None])
            s_rows = xp.where(ok_rows, s_rows, neg_inf)
            m = s_rows.max(axis=-1, keepdims=True) if t else s_rows
            m = xp.where(xp.isfinite(m), m, xp.zeros((), dtype=q.dtype))
            p_rows = xp.exp(s_rows - m)
            tot = p_rows.sum(axis=-1, keepdims=True)
            p_rows /= xp.where(tot > 0, tot, xp.ones((), dtype=q.dtype))  # P^r (B, H, G, T)
            d_rows = p_rows if keep is None else p_rows * keep.from_global * sdrop  # D^r = s M^r ⊙ P^r
            out = xp.where(is_global, xp.swapaxes(onehot, -1, -2) @ (d_rows @ vg), out)  # E^T o^r in global rows
            ctx.d_rows = d_rows
            ctx.q_hat = q_hat
        ctx.save_for_backward(q, k, v, *glob)
        ctx.groups, ctx.onehot, ctx.is_global, ctx.k_hat, ctx.v_hat = groups, onehot, is_global, k_hat, v_hat
        ctx.p_rows, ctx.params = p_rows, (w, half, c, scale, has_global)
        ctx.keep, ctx.sdrop = keep, sdrop
        return out

    @staticmethod
    def backward(ctx, grad):
        xp = get_array_module(grad)
        q, k, v, *glob = ctx.saved_tensors
        _, half, c, scale, has_global = ctx.params
        t = q.shape[2]
        onehot, is_global = ctx.onehot, ctx.is_global
        g_loc = xp.where(is_global, xp.zeros((), dtype=grad.dtype), grad)  # (1 - e) ⊙ \bar o
        dq, dk, dv = xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
        dk_hat, dv_hat = xp.zeros_like(ctx.k_hat), xp.zeros_like(ctx.v_hat)
        sdrop = ctx.sdrop
        for d, heads, n, nc, qs, ks, vs, p_blk, p_glob, keep_blk, keep_glob in ctx.groups:
            go = _q_chunks(_to_sub(g_loc[:, heads], d, n), c, nc)  # \bar o (B, Hd, d, nc, c, Dh)
            k_hat = ctx.k_hat[:, heads][:, :, None, None]  # (B, Hd, 1, 1, G, Dh)
            v_hat = ctx.v_hat[:, heads][:, :, None, None]
            ds_blk = matrix_product(go, xp.swapaxes(vs, -1, -2))  # \bar P^b in block form (B, Hd, d, nc, c, c+w)
            dp_glob = matrix_product(go, xp.swapaxes(v_hat, -1, -2))  # \bar P^g (B, Hd, d, nc, c, G)
            if keep_blk is None:
                d_blk, d_glob = p_blk, p_glob
            else:  # dropout: \bar P = s M ⊙ (\bar o V^T), and the values were mixed by D = s M ⊙ P
                ds_blk *= keep_blk
                ds_blk *= sdrop
                dp_glob *= keep_glob
                dp_glob *= sdrop
                d_blk, d_glob = p_blk * keep_blk * sdrop, p_glob * keep_glob * sdrop
            dv_c = matrix_product(xp.swapaxes(d_blk, -1, -2), go)  # (B, Hd, d, nc, c+w, Dh)
            dv[:, heads] += _from_sub(_fold_chunks(dv_c, half, c, nc, n), t)
            del dv_c, d_blk
            dv_hat[:, heads] += (xp.swapaxes(d_glob, -1, -2) @ go).sum(axis=(2, 3))  # D^T \bar o
            # P^b is 0 off the strip, so block sums equal band sums and P ⊙ (...) is 0 there
            cc = (p_blk * ds_blk).sum(axis=-1, keepdims=True) + (p_glob * dp_glob).sum(axis=-1, keepdims=True)
            ds_blk -= cc
            ds_blk *= p_blk  # \bar S^b = P^b ⊙ (\bar P^b - c), in place
            ds_glob = p_glob * (dp_glob - cc)  # \bar S^g
            del dp_glob
            # qs holds σ q, so \bar k = (\bar S)^T (σ q) needs no extra σ; \bar q gets its σ here
            dq_c = (matrix_product(ds_blk, ks) + matrix_product(ds_glob, k_hat)) * scale  # (B, Hd, d, nc, c, Dh)
            dq_c = dq_c.reshape(dq_c.shape[:3] + (nc * c, dq_c.shape[-1]))[..., :n, :]  # (B, Hd, d, n, Dh)
            dq[:, heads] += _from_sub(dq_c, t)
            dk_c = matrix_product(xp.swapaxes(ds_blk, -1, -2), qs)  # (B, Hd, d, nc, c+w, Dh)
            dk[:, heads] += _from_sub(_fold_chunks(dk_c, half, c, nc, n), t)
            dk_hat[:, heads] += (xp.swapaxes(ds_glob, -1, -2) @ qs).sum(axis=(2, 3))
        onehot_t = xp.swapaxes(onehot, -1, -2)  # E^T (B, 1, T, G)
        dk += onehot_t @ dk_hat
        dv += onehot_t @ dv_hat
        if not has_global:
            return dq, dk, dv
        _, kg, vg = glob
        p_rows = ctx.p_rows
        go_r = onehot @ grad  # \bar o^r = E \bar o (B, H, G, Dh)
        dp = go_r @ xp.swapaxes(vg, -1, -2)  # \bar P^r (B, H, G, T)
        if ctx.keep is not None:
            dp *= ctx.keep.from_global * sdrop  # \bar P^r = s M^r ⊙ (\bar o^r V_g^T)
        ds = p_rows * (dp - (dp * p_rows).sum(axis=-1, keepdims=True)) * scale  # σ \bar S^r
        dvg = xp.swapaxes(ctx.d_rows, -1, -2) @ go_r  # D^r^T \bar o^r (B, H, T, Dh)
        dqg = onehot_t @ (ds @ kg)  # E^T σ \bar S^r K_g
        dkg = xp.swapaxes(ds, -1, -2) @ ctx.q_hat
        return dq, dk, dv, dqg, dkg, dvg


# ------------------------------------------------------------------ validation

def _check(q, k, v, window, dilation, global_mask, q_global, k_global, v_global, key_padding_mask, name):
    for nm, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: {nm} must be a Tensor, got {type(x).__name__}")
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"{name}: q, k, v must all be (B, H, T, Dh) of one shape, got q {q.shape}, "
                         f"k {k.shape}, v {v.shape}")
    if q.dtype.kind != "f" or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"{name}: q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    bsz, nh, t, _ = q.shape
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window <= 0 or window % 2:
        raise ValueError(f"{name}: window must be an even positive int (w tokens, w/2 on each side), got {window!r}")
    # One rule for both forms: integers only (1.5 is refused, never truncated to 1), one or one per head.
    bad_dilation = f"{name}: dilation must be an int or one int per head ({nh} heads), got {dilation!r}"
    if isinstance(dilation, (list, tuple)) and not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dilation):
        raise ValueError(bad_dilation)  # before np.asarray, which makes [True, 1] the ints [1, 1]
    dil = np.asarray(dilation)
    if dil.dtype.kind not in "iu" or dil.ndim > 1 or (dil.ndim == 1 and dil.shape[0] != nh):
        raise ValueError(bad_dilation)
    dil = np.broadcast_to(dil, (nh,))
    if (dil <= 0).any():
        raise ValueError(f"{name}: dilation must be positive, got {dilation!r}")
    xp = get_array_module(q.data)

    def as_mask(m, nm):
        m = m.data if isinstance(m, Tensor) else m
        m = get_array_module(m).asarray(m)
        if m.dtype != np.bool_:
            raise TypeError(f"{name}: {nm} must be bool, got dtype {m.dtype}")
        if m.shape != (bsz, t):
            raise ValueError(f"{name}: {nm} must have shape (B, T) = {(bsz, t)}, got {m.shape}")
        return m if device_of(m) == q.device else to_device(m, q.device)

    key_ok = xp.ones((bsz, t), dtype=bool) if key_padding_mask is None else as_mask(key_padding_mask,
                                                                                    "key_padding_mask")
    glob = None if global_mask is None else as_mask(global_mask, "global_mask") & key_ok
    projections = (q_global, k_global, v_global)
    if glob is not None and bool(glob.any()):
        if any(p is None for p in projections):
            raise ValueError(f"{name}: global_mask marks global tokens, so q_global, k_global and v_global "
                             "(Longformer's Q_g, K_g, V_g) must all be given")
        for nm, p in zip(("q_global", "k_global", "v_global"), projections):
            if not isinstance(p, Tensor) or p.shape != q.shape or p.dtype != q.dtype:
                raise ValueError(f"{name}: {nm} must be a Tensor shaped like q {q.shape} ({q.dtype}), got "
                                 f"{getattr(p, 'shape', type(p).__name__)}")
    else:
        glob = None
    return dil.astype(np.int64), key_ok, glob


def _dropout_keep(p, rng, mask, q, window, n_global, name):
    """Validate the dropout rate; None when p == 0, else the :class:`BandedKeep` (given or drawn)."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: dropout must be a probability in [0, 1), got {p!r}")
    if p == 0:
        if mask is not None:
            raise ValueError(f"{name}: dropout_mask was given but dropout is 0 (give the rate it was drawn with)")
        return None
    if mask is None:
        return banded_dropout_mask(np.random.default_rng() if rng is None else rng, float(p), shape=q.shape,
                                   window=window, n_global=n_global, like=q.data)
    b, h, t = q.shape[:3]
    want = BandedKeep((b, h, t, window + 1), (b, h, t, n_global), (b, h, n_global, t))
    xp = get_array_module(q.data)
    parts = []
    for nm, shape, m in zip(BandedKeep._fields, want, mask):
        m = m if device_of(m) == q.device else to_device(m, q.device)
        m = xp.asarray(m)
        if m.dtype != np.bool_ or m.shape != shape:
            raise ValueError(f"{name}: dropout_mask.{nm} must be a bool array of shape {shape}, got "
                             f"{m.dtype} {m.shape}")
        parts.append(m)
    return BandedKeep(*parts)


def _global_indices(glob, bsz):
    """(B, T) bool -> (B, G) positions (sorted) and (B, G) validity, G = most globals in a row."""
    xp = get_array_module(glob)
    if glob is None:
        return np.zeros((bsz, 0), np.int64), np.zeros((bsz, 0), bool)
    counts = glob.sum(axis=1)
    n_g = int(counts.max())
    # stable argsort of ~glob puts the global positions first, in order
    order = xp.argsort(~glob, axis=1, kind="stable")[:, :n_g]  # (B, G)
    valid = xp.arange(n_g)[None, :] < counts[:, None]  # (B, G)
    return order, valid


def banded_attention(q: Tensor, k: Tensor, v: Tensor, *, window: int, dilation=1, causal: bool = False,
                     global_mask=None, q_global=None, k_global=None, v_global=None,
                     key_padding_mask=None, return_weights: bool = False,
                     dropout: float = 0.0, rng: np.random.Generator | None = None, dropout_mask=None):
    r"""Longformer attention in O(T·w) memory; see the module docstring for every rule.

    q, k, v (B, H, T, Dh); ``window`` the even total window $w$ (``attention_window`` in HF);
    ``dilation`` int or one int per head; ``causal`` keeps only keys at or before the query;
    ``global_mask`` (B, T) bool with ``q_global, k_global, v_global`` (B, H, T, Dh) — the
    projections $Q_g, K_g, V_g$ used by the global rows; ``key_padding_mask`` (B, T) bool,
    True = real token. Returns (B, H, T, Dh), plus a :class:`BandedWeights` of arrays when
    ``return_weights`` (the probabilities BEFORE dropout).

    ``dropout`` $p \in [0, 1)$: attention-probability dropout (apply it in training only: the caller
    passes 0 in eval mode). The keep masks are drawn from ``rng`` (a ``np.random.Generator``;
    default a fresh unseeded one) by :func:`banded_dropout_mask`, or given as ``dropout_mask`` (a
    :class:`BandedKeep`, for tests). ``p == 0`` draws no mask and does no extra work.
    """
    dil, key_ok, glob = _check(q, k, v, window, dilation, global_mask, q_global, k_global, v_global,
                               key_padding_mask, "banded_attention")
    xp = get_array_module(q.data)
    gidx, gval = _global_indices(glob, q.shape[0])
    gidx, gval = xp.asarray(gidx), xp.asarray(gval)
    keep = _dropout_keep(dropout, rng, dropout_mask, q, int(window), gidx.shape[1], "banded_attention")
    extra = (q_global, k_global, v_global) if glob is not None else ()
    drop = {} if keep is None else {"keep": keep, "scale_drop": 1.0 / (1.0 - float(dropout))}
    out = BandedAttention.apply(q, k, v, *extra, window=int(window), dilation=tuple(int(x) for x in dil),
                                causal=bool(causal), key_ok=key_ok, global_index=gidx, global_valid=gval, **drop)
    if not return_weights:
        return out
    return out, _weights(q.data, k.data, v.data, *(x.data for x in extra), window=int(window), dil=dil,
                         causal=bool(causal), key_ok=key_ok, gidx=gidx, gval=gval)


def _weights(q, k, v, *glob, window, dil, causal, key_ok, gidx, gval):
    """Recompute the probabilities in band form (same Function, arrays only, O(T·w))."""
    from ..autograd import Context
    xp = get_array_module(q)
    ctx = Context(BandedAttention, (), ())
    BandedAttention.forward(ctx, q, k, v, *glob, window=window, dilation=tuple(dil.tolist()), causal=causal,
                            key_ok=key_ok, global_index=gidx, global_valid=gval)
    bsz, nh, t, _ = q.shape
    n_g = gidx.shape[1]
    band = xp.zeros((bsz, nh, t, window + 1), dtype=q.dtype)
    to_g = xp.zeros((bsz, nh, t, n_g), dtype=q.dtype)
    for d, heads, n, nc, _qs, _ks, _vs, p_blk, p_glob, _kb, _kg in ctx.groups:
        p_band = _strip(p_blk, window)
        c = p_band.shape[-2]
        pb = p_band.reshape(p_band.shape[:3] + (nc * c, window + 1))[..., :n, :]  # (B, Hd, d, n, w+1)
        pg = p_glob.reshape(p_glob.shape[:3] + (nc * c, n_g))[..., :n, :]  # (B, Hd, d, n, G)
        band[:, heads] = _from_sub(pb, t)
        to_g[:, heads] = _from_sub(pg, t)
    not_g = ~(ctx.is_global)  # (B, 1, T, 1): global rows' local weights are unused: report zeros
    band, to_g = band * not_g, to_g * not_g
    from_g = ctx.p_rows if ctx.p_rows is not None else xp.zeros((bsz, nh, n_g, t), dtype=q.dtype)
    return BandedWeights(band, to_g, from_g, gidx, gval, dil, window)


def allowed_keys(i, t, *, window, d, causal, is_global, key_ok):
    """The rule of one row, written out plainly: (keys of the local/band part, keys of the
    global part, which projections to use). Used by the reference and by tests."""
    if is_global[i]:
        keys = [j for j in range(t) if key_ok[j] and (not causal or j <= i)]
        return keys, "global"
    half = window // 2
    band = [i + (j - half) * d for j in range(window + 1)]
    band = [m for m in band if 0 <= m < t and key_ok[m] and not is_global[m] and (not causal or m <= i)]
    glob = [m for m in range(t) if is_global[m] and key_ok[m] and (not causal or m <= i)]
    return sorted(band + glob), "local"


def banded_attention_reference(q: Tensor, k: Tensor, v: Tensor, *, window: int, dilation=1, causal: bool = False,
                               global_mask=None, q_global=None, k_global=None, v_global=None,
                               key_padding_mask=None, return_weights: bool = False,
                               dropout: float = 0.0, rng: np.random.Generator | None = None, dropout_mask=None):
    """The slow, obviously-correct version: for every batch b, head h and row i, list
    the keys row i may see (:func:`allowed_keys`), softmax their scores, mix their values.
    Built from differentiable Tensor ops, so its gradients come from autograd.
    With ``return_weights`` also returns the dense (B, H, T, T) probabilities (small T only, before dropout).
    ``dropout``/``rng``/``dropout_mask`` as in :func:`banded_attention`, drawn in the same order, so a
    generator seeded alike (or the same ``dropout_mask``) drops the same entries: each kept
    probability of row i is looked up in the mask by where key j sits (band slot, global slot, or
    the global row's key)."""
    dil, key_ok, glob = _check(q, k, v, window, dilation, global_mask, q_global, k_global, v_global,
                               key_padding_mask, "banded_attention_reference")
    bsz, nh, t, dh = q.shape
    gidx, _ = _global_indices(glob, bsz)
    keep = _dropout_keep(dropout, rng, dropout_mask, q, int(window), gidx.shape[1], "banded_attention_reference")
    if keep is not None:
        keep = BandedKeep(*(np.asarray(to_device(m, "cpu")) for m in keep))
        gidx, sdrop = np.asarray(to_device(gidx, "cpu")), 1.0 / (1.0 - float(dropout))
    key_ok = np.asarray(key_ok)
    glob = np.zeros((bsz, t), bool) if glob is None else np.asarray(glob)
    scale = 1.0 / math.sqrt(dh)
    weights = np.zeros((bsz, nh, t, t), dtype=q.dtype)
    rows_b = []
    for b in range(bsz):
        rows_h = []
        for h in range(nh):
            rows = []
            for i in range(t):
                keys, kind = allowed_keys(i, t, window=window, d=int(dil[h]), causal=causal,
                                          is_global=glob[b], key_ok=key_ok[b])
                qq, kk, vv = (q_global, k_global, v_global) if kind == "global" else (q, k, v)
                if not keys:  # nothing to attend to: a zero output row
                    rows.append(q[b, h, i] * 0.0)
                    continue
                idx = np.asarray(keys)
                s = (kk[b, h, idx] @ qq[b, h, i]) * scale  # (n_keys,) scores q_i . k_j / sqrt(Dh)
                p = masked_softmax(s)  # (n_keys,)
                weights[b, h, i, idx] = p.data
                if keep is not None:  # the keep mask entry of each (row, key): same layout as the fused op
                    if kind == "global":
                        g = int(np.nonzero(gidx[b] == i)[0][0])
                        m = keep.from_global[b, h, g, idx]
                    else:
                        slot = {int(x): s_ for s_, x in enumerate(gidx[b][: int(glob[b].sum())])}
                        m = np.array([keep.to_global[b, h, i, slot[j]] if glob[b, j]
                                      else keep.band[b, h, i, (j - i) // int(dil[h]) + window // 2] for j in keys])
                    p = p * (m * sdrop).astype(q.dtype)  # D = s M ⊙ P
                rows.append(p @ vv[b, h, idx])  # (Dh,)
            rows_h.append(stack(rows, axis=0))  # (T, Dh)
        rows_b.append(stack(rows_h, axis=0))  # (H, T, Dh)
    out = stack(rows_b, axis=0)  # (B, H, T, Dh)
    return (out, weights) if return_weights else out
