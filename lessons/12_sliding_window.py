# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 12 — Longformer, part 1: the sliding window and dilation
#
# **Needs:** the exercises of lesson 06 solved first (its tests and code call them).
#
# Full self-attention scores every query against every key: $T^2$ scores per head and
# layer. At $T = 16{,}384$ tokens that is 268 million scores, 1 GiB of float32 per head,
# before the backward pass keeps its own copy. Longformer (the source's section 2.2) keeps
# only the keys near each query. This lesson follows its section 2.2.1–2.2.2:
#
# 1. the cost of full attention against a window of $w$ keys: $O(T^2)$ against $O(T\,w)$;
# 2. the rule of the sliding window and of the dilated window, written as a (T, T) mask
#    (exercise 1);
# 3. the receptive field of a stack of $m$ layers, $m\,w$ and with dilation $m\,d\,w$,
#    computed by composing masks (exercise 2) and measured on a real `Longformer` by
#    perturbing one token;
# 4. the band layout: the scores of row $i$ stored as $w + 1$ slots, dilation turned into
#    $d$ undilated problems, the $(c, c + w)$ blocks the vectorised kernel multiplies;
# 5. the slow loop version against the vectorised one: equal outputs and gradients,
#    and their cost beside full attention, measured here on small $T$ (the README has the
#    curves up to $T = 32{,}768$, `benchmarks/longformer_complexity.py`).
#
# The primitives are in `minitensor/attention/banded.py` (`banded_attention`,
# `banded_attention_reference`, `band_key_index`, `allowed_keys`); the encoder is
# `models/longformer/model.py`. Global attention is lesson 13.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` in this file is blanked out in
# the student copy: those are the exercises listed at the end.

# %%
import math
import time

import numpy as np

import minitensor as mt
from minitensor.attention import banded_attention, banded_attention_reference, masked_softmax
from minitensor.attention.banded import allowed_keys, band_key_index
from models.longformer import Longformer, LongformerConfig

np.set_printoptions(linewidth=110)
LESSON_START = time.perf_counter()

# %% [markdown]
# ## 1. What full attention costs, and what a window costs
#
# One head of full attention computes the scores $S = QK^\top/\sqrt{d_h}$, a $T\times T$
# array, its softmax $P$ (another $T\times T$), and $PV$. The backward needs $P$ again and
# builds $\bar P$ and $\bar S$ of the same size. Time and memory both grow as $T^2$.
#
# With a window, query $i$ scores only the $w + 1$ keys $i - w/2, \ldots, i + w/2$ ($w/2$
# on each side and itself). The scores of a head are $T \times (w + 1)$: linear in $T$.

# %%
def attention_cost(t, w, heads=4, dh=64, bytes_per=4):
    """Scores per layer and the bytes one (T, T) or (T, w+1) float32 array of all heads takes."""
    full, band = heads * t * t, heads * t * (w + 1)
    return {"T": t, "full scores": full, "band scores": band, "full MiB": full * bytes_per / 2**20,
            "band MiB": band * bytes_per / 2**20, "ratio": full / band}


print(f"{'T':>7} {'full scores':>14} {'band scores':>12} {'full MiB':>10} {'band MiB':>9} {'full/band':>9}")
for t in (1024, 4096, 16384, 32768):
    c = attention_cost(t, 512)
    print(f"{c['T']:>7} {c['full scores']:>14,} {c['band scores']:>12,} {c['full MiB']:>10,.0f} "
          f"{c['band MiB']:>9,.1f} {c['ratio']:>9.1f}")

# %% [markdown]
# With 4 heads and $w = 512$ the band is 32 times smaller than the full matrix at
# $T = 16{,}384$ and 64 times at $32{,}768$: the ratio is $T/(w+1)$, and it grows without
# bound. A (T, T) array is exactly what the banded code must never build.
#
# ## 2. The rule: which keys row $i$ sees
#
# Sliding window (2.2.1): keys $i - w/2, \ldots, i + w/2$. Dilated window (2.2.2): the same
# $w + 1$ keys spread out with gaps of $d$,
#
# $$\mathcal{B}(i) = \{\, i + (j - w/2)\,d \;:\; j = 0, \ldots, w \,\},$$
#
# keeping only those inside $[0, T)$. In a causal model (a language model, section 2.3's
# character LM) only $j \le w/2$ remains: the keys at or before the query.
#
# **Exercise 1.** Write `band_mask(t, window, dilation=1, causal=False)`: the (T, T) bool
# array, True where query $i$ may see key $j$. It is the dense form of the band, for small
# $T$ only: we use it to check things, never to compute attention.

# %%
def band_mask(t, window, dilation=1, causal=False):
    """(t, t) bool: True where query i sees key j under the (dilated, maybe causal) window."""
    # BEGIN SOLUTION lesson 12: band_mask: the window and dilation rule derived above, as a (T, T) boolean mask
    i = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    offset = j - i  # key minus query
    half_span = (window // 2) * dilation
    mask = (np.abs(offset) <= half_span) & (offset % dilation == 0)
    if causal:
        mask &= offset <= 0
    return mask
    # END SOLUTION


for d in (1, 2):
    m = band_mask(12, 4, dilation=d)
    print(f"w = 4, d = {d}: row 6 sees keys {np.nonzero(m[6])[0].tolist()}")
    print("\n".join("".join("#" if x else "." for x in row) for row in m), "\n")
print("causal, w = 4: row 6 sees", np.nonzero(band_mask(12, 4, causal=True)[6])[0].tolist())

# %% [markdown]
# The library states the same rule twice: `band_key_index` gives the key of every band
# slot (what the fast kernel uses), and `allowed_keys` lists a row's keys plainly (what the
# slow reference uses). Your mask must agree with both.

# %%
t_chk, w_chk = 20, 6
for d in (1, 3):
    for causal in (False, True):
        mine = band_mask(t_chk, w_chk, d, causal)
        idx = band_key_index(t_chk, w_chk, [d])[0]  # (T, w+1)
        from_slots = np.zeros((t_chk, t_chk), bool)
        for i in range(t_chk):
            keys = idx[i][(idx[i] >= 0) & (idx[i] < t_chk)]  # slots inside [0, T)
            from_slots[i, keys[keys <= i] if causal else keys] = True
        from_rows = np.zeros((t_chk, t_chk), bool)
        for i in range(t_chk):
            keys, _ = allowed_keys(i, t_chk, window=w_chk, d=d, causal=causal,
                                   is_global=np.zeros(t_chk, bool), key_ok=np.ones(t_chk, bool))
            from_rows[i, keys] = True
        assert (mine == from_slots).all() and (mine == from_rows).all(), (d, causal)
print("band_mask agrees with band_key_index and allowed_keys (d = 1, 3; causal and not)")

# %% [markdown]
# ## 3. The receptive field of a stack
#
# One layer lets token $i$ gather from $[i - w/2, i + w/2]$. The next layer gathers from
# tokens that each gathered from their own window, so after $m$ layers token $i$ has heard
# from $[i - m w/2, i + m w/2]$: a receptive field of $m\,w$ (+1 for itself). With
# dilation $d$ in every layer the span is $m\,d\,w$, but with holes: only keys
# $\equiv i \pmod d$ are ever reached. That is why the paper dilates only some heads of
# the upper layers and keeps the lower layers undilated: the lower layers fill the gaps
# locally, the upper layers reach far.
#
# In masks: token $i$ depends on token $j$ after two layers iff there is a $k$ with
# $M_1[i, k]$ and $M_2[k, j]$, the boolean product $M_1 M_2$; the residual connection
# keeps $i$ itself, and the band already contains $i$.
#
# **Exercise 2.** Write `receptive_field(masks)`: given the (T, T) masks of the layers
# from the bottom up, return the (T, T) bool array "output $i$ of the top layer depends
# on input $j$". Use integer matrix products and threshold them (never a Python loop over
# positions).

# %%
def receptive_field(masks):
    """(T, T) bool: True where the stack's output i can depend on input j."""
    # BEGIN SOLUTION lesson 12: receptive_field: compose the layers' masks as described above, bottom layer first
    reach = np.eye(masks[0].shape[0], dtype=np.int64)
    for m in masks:  # bottom layer first: output_i <- layer_top ... <- layer_1 <- input_j
        reach = (m.astype(np.int64) @ reach > 0).astype(np.int64)
    return reach.astype(bool)
    # END SOLUTION


T_RF, W_RF = 96, 8
for layers, dil in (([1, 1, 1], "all d = 1"), ([2, 2, 2], "all d = 2"), ([1, 1, 4], "d = 1, 1, 4")):
    field = receptive_field([band_mask(T_RF, W_RF, d) for d in layers])
    seen = np.nonzero(field[T_RF // 2])[0]
    span = seen.max() - seen.min()
    holes = span + 1 - len(seen)
    print(f"{dil:>12}: row {T_RF // 2} reaches {seen.min()}..{seen.max()} (span {span}, "
          f"sum of layer spans {sum(W_RF * d for d in layers)}), {holes} unreachable positions inside")

# %% [markdown]
# Three undilated layers with $w = 8$ reach $3 \cdot 8 = 24$ positions; dilation 2 in every
# layer doubles the span to 48 but leaves every odd offset unreachable; dilating only the
# top layer (4) spans $8 + 8 + 32 = 48$ with no hole, because the two layers below cover
# each gap of 4.
#
# The same thing on a real model: a 3-layer `Longformer` with $w = 8$. Change one input
# token and see which outputs move. Attention is dense inside the window, so every
# position the masks say is reachable does change (up to rounding in float64).

# %%
cfg = LongformerConfig(vocab_size=20, d_model=16, n_layer=3, n_head=2, d_ff=32, max_len=T_RF,
                       attention_window=W_RF, dilation=1, hidden_dropout=0.0)
model = Longformer(cfg, rng=0, dtype=np.float64).eval()
ids = np.random.default_rng(1).integers(2, 20, size=(1, T_RF))
with mt.no_grad():
    base = model(ids).numpy()[0]
    poked = ids.copy()
    poked[0, T_RF // 2] = 2 if ids[0, T_RF // 2] != 2 else 3
    moved = np.abs(model(poked).numpy()[0] - base).max(axis=-1) > 1e-12
predicted = receptive_field([band_mask(T_RF, W_RF)] * 3)[:, T_RF // 2]
print("outputs that moved:", np.nonzero(moved)[0].min(), "..", np.nonzero(moved)[0].max(),
      f"({moved.sum()} positions); predicted by the masks: {predicted.sum()} positions")
assert (moved == predicted).all()

# %% [markdown]
# **Does the layout matter in training?** The paper's Table 4 trains its character LM with
# the same total window in different layouts: windows growing with depth beat a fixed window
# and shrinking windows (1.21 against 1.23 and 1.24 bpc on text8), and dilating two heads of
# the upper layers helps a little more (1.20). `benchmarks/longformer_window_ablation.py`
# repeats it at our scale, four causal layers whose windows always sum to 320 (mean test
# bpc of two seeds): growing (32, 64, 96, 128) 3.130, growing with two dilated heads in
# layers 3 and 4 3.123, shrinking 3.175, fixed 3.263 (the README has the table). Growing
# windows win here too: the lower layers gather the neighbourhood a character needs, the
# upper ones the longer reach. The dilated heads extend the reach from 160 to 272
# characters for the same cost, but their gain is within what a seed moves.
#
# ## 4. The band layout
#
# Row $i$'s scores live in a row of $w + 1$ slots; slot $j$ holds key $i + (j - w/2)d$
# (`band_key_index`). Slots that point outside $[0, T)$ exist but are masked: every row
# has the same length, which is what lets the whole band be one (B, H, T, w+1) array.

# %%
print("band_key_index(T=8, w=4, d=1): slot j of row i holds key")
print(band_key_index(8, 4, [1])[0])

# %% [markdown]
# **Dilation is $d$ undilated problems.** Row $i = m d + r$ only meets keys
# $i + (j - w/2) d \equiv r \pmod d$. So split the sequence into its $d$ residue
# classes $r, r + d, r + 2d, \ldots$: on each, the dilated window is a plain window of the
# same $w$. The kernel reshapes (T) to (d, T/d) and runs the undilated code once: no loop
# over positions, no wasted work. Checked on numbers:

# %%
rng = np.random.default_rng(0)
B, H, T, DH, W, D = 1, 1, 24, 4, 4, 3
q, k, v = (mt.tensor(rng.standard_normal((B, H, T, DH))) for _ in range(3))
dilated = banded_attention(q, k, v, window=W, dilation=D).numpy()
by_residue = np.zeros_like(dilated)
for r in range(D):
    sub = slice(r, None, D)
    by_residue[:, :, sub] = banded_attention(mt.tensor(q.numpy()[:, :, sub]), mt.tensor(k.numpy()[:, :, sub]),
                                             mt.tensor(v.numpy()[:, :, sub]), window=W).numpy()
print(f"dilation {D} == {D} undilated windows on the residue classes: "
      f"max |diff| = {np.abs(dilated - by_residue).max():.1e}")

# %% [markdown]
# **Blocks instead of a gather.** Copying each row's $w + 1$ keys into a (T, w+1, d_h)
# array would cost $w$ times the memory of $K$. Instead the kernel cuts the queries into
# chunks of $c = w/4$ rows; the keys any row of chunk $a$ can see are the $c + w$
# consecutive positions $[ac - w/2,\, ac + c + w/2)$. One matrix product per chunk gives a
# $(c, c + w)$ block of scores, and row $r$'s band slot $j$ is block column $r + j$: a
# diagonal strip. Entries off the strip are set to $-\infty$ before the softmax, so they
# get probability exactly 0 and the backward can use the same blocks. The block is
# $(c + w)/(w + 1) \approx 1.25\times$ the band: still $O(T\,w)$.

# %%
c_demo, w_demo = 2, 4
slot = np.arange(c_demo + w_demo)[None, :] - np.arange(c_demo)[:, None]
on_strip = (slot >= 0) & (slot <= w_demo)
print(f"a ({c_demo}, {c_demo + w_demo}) block, w = {w_demo}: band slot j of row r is column r + j")
print("\n".join(" ".join(f"{s:2d}" if ok else " ." for s, ok in zip(row, oks)) for row, oks in zip(slot, on_strip)))

# %% [markdown]
# ## 5. Loop against vectorised, and both against full attention
#
# `banded_attention_reference` loops over batch, head and row, lists the keys with
# `allowed_keys`, and attends with ordinary autograd ops: slow, and obviously right.
# `banded_attention` is the vectorised `BandedAttention` with the hand-derived backward of
# its docstring. They must agree in the outputs AND in every gradient, with global tokens
# and padding in play (lesson 13 explains the global part):

# %%
rng = np.random.default_rng(2)
B, H, T, DH, W = 2, 2, 40, 4, 6
leaves = [mt.tensor(rng.standard_normal((B, H, T, DH)), requires_grad=True) for _ in range(6)]
glob = np.zeros((B, T), bool)
glob[:, 0] = True
glob[1, 17] = True
pad = np.ones((B, T), bool)
pad[1, 33:] = False
kw = dict(window=W, dilation=[1, 2], global_mask=glob, key_padding_mask=pad)
proj = dict(q_global=leaves[3], k_global=leaves[4], v_global=leaves[5])
probe = rng.standard_normal((B, H, T, DH))
grads = []
for fn in (banded_attention_reference, banded_attention):
    for x in leaves:
        x.grad = None
    out = fn(*leaves[:3], **kw, **proj)
    (out * mt.tensor(probe)).sum().backward()
    grads.append((out.numpy(), [x.grad.copy() for x in leaves]))
(o_ref, g_ref), (o_vec, g_vec) = grads
print(f"outputs: max |diff| = {np.abs(o_ref - o_vec).max():.1e}")
for name, a, b in zip(("q", "k", "v", "q_g", "k_g", "v_g"), g_ref, g_vec):
    print(f"  d{name:<3}: max |diff| = {np.abs(a - b).max():.1e}")
    assert np.allclose(a, b, atol=1e-10)

# %% [markdown]
# And what each costs, forward + backward, one head group of 4 heads, $d_h = 16$, $w = 32$.
# Full attention here is the composed dense version: (T, T) scores through
# `masked_softmax` with the band as its mask, which computes the same numbers. Small $T$
# only, so that the lesson runs in seconds; `benchmarks/longformer_complexity.py` takes it
# to 32k and measures peak memory too.

# %%
def full_attention(q, k, v, mask):
    s = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T, T)
    return masked_softmax(s, mask) @ v


def seconds(fn, repeats=3):
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def fwd_bwd(attn):
    def run():
        xs = [mt.tensor(a, requires_grad=True) for a in arrays]
        attn(*xs).sum().backward()
    return run


W_T = 32
print(f"{'T':>6} {'loop s':>9} {'banded s':>9} {'full s':>9} {'full/banded':>11}")
timings = {}
for T in (128, 512, 2048):
    arrays = [np.random.default_rng(T).standard_normal((1, 4, T, 16)).astype(np.float32) for _ in range(3)]
    mask = band_mask(T, W_T)
    loop_s = seconds(fwd_bwd(lambda q, k, v: banded_attention_reference(q, k, v, window=W_T)), 1) if T <= 128 else None
    band_s = seconds(fwd_bwd(lambda q, k, v: banded_attention(q, k, v, window=W_T)))
    full_s = seconds(fwd_bwd(lambda q, k, v: full_attention(q, k, v, mask)))
    timings[T] = (loop_s, band_s, full_s)
    loop_txt = f"{loop_s:9.3f}" if loop_s is not None else f"{'-':>9}"
    print(f"{T:>6} {loop_txt} {band_s:9.4f} {full_s:9.4f} {full_s / band_s:11.1f}")

# %% [markdown]
# The loop pays Python's overhead for every row and head (and its autograd graph has a
# node per row): it is there to be read, not run. The banded time grows linearly in $T$,
# the full one quadratically, so their ratio roughly doubles each time $T$ doubles once
# $T \gg w$. On this 2-core machine at $T = 16{,}384$, $d = 256$, 4 heads, $w = 512$ the
# README's table gives the measured figures and the comparison with Hugging Face's
# `LongformerSelfAttention`.

# %%
print(f"\nlesson 12 ran in {time.perf_counter() - LESSON_START:.1f} s")

# %% [markdown]
# ## Exercises
#
# In the student copy two regions raise `NotImplementedError`; the lesson stops at the
# first one it meets, so do them in this order:
#
# 1. **`band_mask(t, window, dilation, causal)`** (section 2): the dense (T, T) form of the
#    window rule. It must agree with `band_key_index` and `allowed_keys`.
# 2. **`receptive_field(masks)`** (section 3): what the top of a stack of layers can hear,
#    by boolean matrix products. Three undilated layers with $w = 8$ must reach 24
#    positions, and the prediction must match the perturbed `Longformer` exactly.
#
# If you want more: find the smallest stack of layers with windows $w_\ell$ and
# dilations $d_\ell$ (each $d_\ell \in \{1, 2, 4\}$, $w_\ell = 8$) whose receptive field
# covers 256 positions without holes; or time the loop reference at $T = 256$ and
# explain, from its structure, how its time will grow.
#
# Check your work with `pytest -m lesson12 -x` (from the repository's root; `-x` stops at the first failure).
