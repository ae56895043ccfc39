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
# # Lesson 13 — Longformer, part 2: global attention
#
# **Needs:** the exercises of lessons 02, 04 and 05 solved first (its tests and code call them).
#
# Lesson 12's window lets a token hear only $m\,w$ positions after $m$ layers. A
# classifier that reads the whole document from one token, or a reader that must match a
# question against every line of a scene, needs more: some tokens must see everything and
# be seen by everything. Longformer (the source's section 2.2.3) picks a few such
# **global** tokens per task and gives them their own projections $Q_g, K_g, V_g$. This
# lesson covers:
#
# 1. the rule of global attention, written densely (exercise 1) and checked against
#    `banded_attention`;
# 2. what one global token does to the receptive field: one layer to reach everything,
#    measured on a real `Longformer`, and a task that only a global CLS can learn;
# 3. why separate projections: what $Q_g, K_g, V_g$ change and what they cost;
# 4. which tokens are global per task: CLS for classification, the question for span
#    extraction, none for the causal LM (exercise 2);
# 5. the cost of $G$ global tokens, $O(T\,(w + G))$, measured.
#
# The primitive is `banded_attention` (`minitensor/attention/banded.py`); the heads are in
# `models/longformer/heads.py`; the tasks in `models/longformer/longdoc.py`.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` in this file is blanked out in
# the student copy: those are the exercises listed at the end.

# %%
import math
import time

import numpy as np

import minitensor as mt
from minitensor.attention import banded_attention, masked_softmax
from models.longformer import Longformer, LongformerConfig

np.set_printoptions(precision=3, suppress=True, linewidth=110)
LESSON_START = time.perf_counter()

# %% [markdown]
# ## 1. The rule
#
# Mark the global positions with a bool vector $g$. Then, for one head with scale
# $\sigma = 1/\sqrt{d_h}$:
#
# * a **local** row $i$ ($g_i$ false) attends, with the ordinary projections
#   $q, k, v$, to its window $\mathcal{B}(i)$ AND to every global key, in ONE softmax.
#   A global key that also falls inside the window is counted once;
# * a **global** row $i$ attends to EVERY key, with its own projections:
#   $s_{ij} = \sigma\,(Q_g)_i^\top (K_g)_j$, output $\sum_j p_{ij}\,(V_g)_j$.
#
# So a global token is seen by all (the global columns) and sees all (the global rows).
# The two directions use different projections: the columns use the ordinary $k, v$ of
# the global token (a local row scores it like any key), the rows use $Q_g, K_g, V_g$.
#
# **Exercise 1.** Write `global_attention_dense(q, k, v, qg, kg, vg, is_global, window)` for
# one head, arrays (T, Dh) in, (T, Dh) out, in plain NumPy with (T, T) matrices: build the
# local rows' allowed-key mask (window OR global column), softmax, mix; then overwrite the
# global rows with full attention through the global projections. Small $T$ only: this is
# the specification the O(T·w) kernel must meet.

# %%
def softmax_rows(s, mask):
    s = np.where(mask, s, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(axis=-1, keepdims=True)


def global_attention_dense(q, k, v, qg, kg, vg, is_global, window):
    """One head, (T, Dh) arrays: Longformer attention with global tokens, via (T, T) masks."""
    # BEGIN SOLUTION lesson 13: global_attention_dense: the local and global rules stated above, computed densely
    t, dh = q.shape
    scale = 1.0 / math.sqrt(dh)
    offset = np.arange(t)[None, :] - np.arange(t)[:, None]
    allowed = (np.abs(offset) <= window // 2) | is_global[None, :]  # window, or a global column
    out = softmax_rows(q @ k.T * scale, allowed) @ v
    rows = softmax_rows(qg[is_global] @ kg.T * scale, np.ones((int(is_global.sum()), t), bool))
    out[is_global] = rows @ vg  # global rows: everything, with Q_g, K_g, V_g
    return out
    # END SOLUTION


rng = np.random.default_rng(0)
T, DH, W = 24, 4, 4
arrays = [rng.standard_normal((T, DH)) for _ in range(6)]
is_global = np.zeros(T, bool)
is_global[[0, 13]] = True
mine = global_attention_dense(*arrays, is_global, W)
lib = banded_attention(*(mt.tensor(a[None, None]) for a in arrays[:3]), window=W, global_mask=is_global[None],
                       q_global=mt.tensor(arrays[3][None, None]), k_global=mt.tensor(arrays[4][None, None]),
                       v_global=mt.tensor(arrays[5][None, None])).numpy()[0, 0]
print(f"dense rule vs banded_attention: max |diff| = {np.abs(mine - lib).max():.1e}")
assert np.allclose(mine, lib, atol=1e-12)

# %% [markdown]
# The kernel never builds those (T, T) masks. It keeps the band as in lesson 12 and adds
# two thin pieces: the local rows' scores against the $G$ global keys, (T, G), sharing the
# band's softmax normaliser, and the global rows' scores against all keys, (G, T). The
# band slot of a key that is global is masked, which is the "counted once" rule. The
# weights can be asked for (`return_weights=True`) in exactly that layout:

# %%
_, wts = banded_attention(*(mt.tensor(a[None, None]) for a in arrays[:3]), window=W, global_mask=is_global[None],
                          q_global=mt.tensor(arrays[3][None, None]), k_global=mt.tensor(arrays[4][None, None]),
                          v_global=mt.tensor(arrays[5][None, None]), return_weights=True)
print("band", wts.band.shape, " to_global", wts.to_global.shape, " from_global", wts.from_global.shape,
      " global positions", wts.global_index[0].tolist())
row = 6
print(f"row {row}: band weights {wts.band[0, 0, row]}, to the globals {wts.to_global[0, 0, row]}, "
      f"sum {wts.band[0, 0, row].sum() + wts.to_global[0, 0, row].sum():.6f}")

# %% [markdown]
# ## 2. One global token reaches everything in one layer
#
# Lesson 12 measured a receptive field of $m\,w$. Put a global token at position 0: in one
# layer it hears every input, and every token hears it. So after two layers any token hears
# any other through it. Measured on a 2-layer `Longformer` with $w = 4$ and 64 tokens:
# change the LAST token and count the outputs that move.

# %%
T2 = 64
cfg = LongformerConfig(vocab_size=20, d_model=16, n_layer=2, n_head=2, d_ff=32, max_len=T2,
                       attention_window=4, hidden_dropout=0.0)
model = Longformer(cfg, rng=0, dtype=np.float64).eval()
ids = np.random.default_rng(1).integers(2, 20, size=(1, T2))
poked = ids.copy()
poked[0, -1] = 2 if ids[0, -1] != 2 else 3
g = np.zeros((1, T2), bool)
g[0, 0] = True
with mt.no_grad():
    for name, gm in (("no global token", None), ("position 0 global", g)):
        moved = np.abs(model(poked, global_mask=gm).numpy()[0] - model(ids, global_mask=gm).numpy()[0]).max(-1) > 1e-12
        print(f"{name:>18}: {moved.sum():2d} of {T2} outputs move (first at {np.nonzero(moved)[0].min()})")

# %% [markdown]
# Without the global token the change reaches back $2 \cdot w/2 = 4$ positions (5 outputs
# with its own); with it, all 64. That is what a classifier needs from its CLS token, and what a question needs to
# be matched against a line 3,000 characters away.
#
# ## 3. Why separate projections
#
# A global row does a different job from a local one: CLS must summarise the document,
# question tokens must find where the answer might be, while a local row models its
# neighbourhood. With one $W_Q, W_K, W_V$ for both, the same matrices would have to serve
# two very different attention patterns. The paper (and its ablation) gives the global
# rows their own $Q_g, K_g, V_g$; when a pretrained RoBERTa is turned into a Longformer, they
# start as copies of $Q_s, K_s, V_s$ and then specialise.
#
# What this changes, in numbers: (a) three more $d \times d$ matrices per layer (+33 % of the
# attention's projection parameters); (b) nothing in the local rows, which never use them;
# (c) a global row computed with copies of the local projections equals ordinary full
# attention of that row. Checked:

# %%
enc_params = sum(p.data.size for p in model.parameters())
glob_params = sum(p.data.size for n, p in model.named_parameters() if "_global" in n)
print(f"tiny model: {glob_params:,} of {enc_params:,} parameters are Q_g, K_g, V_g")
q, k, v = arrays[:3]
tied = global_attention_dense(q, k, v, q, k, v, is_global, W)
full_row = softmax_rows(q[13] @ k.T / math.sqrt(DH), np.ones(T, bool)) @ v
print(f"copies of Q_s, K_s, V_s: global row 13 == full attention of row 13: "
      f"{np.allclose(tied[13], full_row)}; local rows unchanged: "
      f"{np.allclose(tied[~is_global], mine[~is_global])}")

# %% [markdown]
# ## 4. Which tokens are global, per task
#
# The choice is the only task-specific part of Longformer's attention:
#
# | task | global tokens | why |
# |---|---|---|
# | classification (scene → genre) | CLS, position 0 | its output feeds the classifier; it must read the whole scene |
# | span extraction (speaker QA; a character's first line) | every question token | each context token must compare itself with the question |
# | classification with a question (does NAME speak in the scene? "yes": mark NAME's first line; "no": mark CLS) | CLS and every question token | both of the above |
# | character LM | none | causal, and a global token would see the future |
#
# The heads of `models/longformer/heads.py` make these choices themselves: classification
# sets position 0, question answering sets the positions of its `question_mask`. A padding
# token is never global. **Exercise 2.** Write `task_global_mask(task, ids, pad_id, sep_id)`:
# (B, T) bool for a batch of right-padded inputs laid out as our tasks do
# (`models/longformer/longdoc.py`): for `"genre"` position 0; for `"speaker-qa"` everything from
# position 0 up to and including the first `sep_id` (start token, question, separator);
# for `"lm"` nothing. Padding is never global; an unknown task is a `ValueError`.

# %%
def task_global_mask(task, ids, pad_id, sep_id):
    """(B, T) bool: the global tokens of a batch of right-padded inputs of ``task``."""
    ids = np.asarray(ids)
    # BEGIN SOLUTION lesson 13: task_global_mask: each task's global tokens as listed above; never a padding position
    mask = np.zeros(ids.shape, bool)
    if task == "genre":
        mask[:, 0] = True
    elif task == "speaker-qa":
        is_sep = ids == sep_id
        if not is_sep.any(axis=1).all():
            raise ValueError("task_global_mask: a speaker-qa input has no separator")
        first = is_sep.argmax(axis=1)  # the first separator of each row
        mask = np.arange(ids.shape[1])[None, :] <= first[:, None]
    elif task != "lm":
        raise ValueError(f"task_global_mask: unknown task {task!r} (genre, speaker-qa, lm)")
    return mask & (ids != pad_id)
    # END SOLUTION


demo = np.array([[5, 7, 8, 3, 9, 9, 9, 1, 1], [5, 7, 3, 9, 9, 9, 9, 9, 9]])  # pad 1, separator 3
for task in ("genre", "speaker-qa", "lm"):
    print(f"{task:>11}:", task_global_mask(task, demo, pad_id=1, sep_id=3).astype(int).tolist())

# %% [markdown]
# ### Global attention at work: a marker far from CLS
#
# A task only a global CLS can solve: 256 random tokens, label 1 when a marker token appears
# somewhere in the second half, far outside any window of CLS's. One layer, $w = 8$. With
# CLS global the classifier reads every position in that one layer; without it, CLS sees
# its 4 right-hand neighbours and must guess. Trained 150 steps each, scored on 512 fresh
# sequences:

# %%
from models.longformer import LongformerForSequenceClassification

T_M, V_M, MARKER = 256, 8, 7


def marker_batch(rng, n):
    ids = rng.integers(2, MARKER, size=(n, T_M))
    ids[:, 0] = 1  # CLS
    y = rng.integers(0, 2, size=n)
    where = rng.integers(T_M // 2, T_M, size=n)  # the second half: beyond any window of CLS
    ids[np.nonzero(y)[0], where[y == 1]] = MARKER
    return ids, y


def cls_logits(model, ids, cls_global):
    if cls_global:
        return model(ids)  # the head makes position 0 global
    return model.classifier(model.longformer(ids)[:, 0])  # the same network, no global token


accuracy = {}
for cls_global in (True, False):
    mcfg = LongformerConfig(vocab_size=V_M, d_model=32, n_layer=1, n_head=2, d_ff=64, max_len=T_M,
                            attention_window=8, hidden_dropout=0.0, attention_dropout=0.0, pad_id=0)
    clf = LongformerForSequenceClassification(mcfg, 2, rng=0)
    opt = mt.optim.Adam(clf.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(150):
        ids, y = marker_batch(rng, 16)
        opt.zero_grad()
        mt.functional.cross_entropy(cls_logits(clf, ids, cls_global), y).backward()
        opt.step()
    ids, y = marker_batch(np.random.default_rng(1), 512)
    with mt.no_grad():
        accuracy["global CLS" if cls_global else "no global token"] = float(
            (cls_logits(clf.eval(), ids, cls_global).numpy().argmax(-1) == y).mean())
for name, acc in accuracy.items():
    print(f"{name:>16}: accuracy {acc:.3f} on 512 held-out sequences (chance 0.5)")

# %% [markdown]
# ## 5. What $G$ global tokens cost
#
# The band costs $T(w + 1)$ scores; $G$ global tokens add $T\,G$ (local rows to global
# keys) and $G\,T$ (global rows to every key): $O(T\,(w + 2G))$. For CLS, $G = 1$ and the
# cost is nothing; a 64-token question at $w = 64$ triples it. Measured, forward +
# backward, $T = 4096$, 4 heads, $d_h = 16$, $w = 64$:

# %%
def fwd_bwd_seconds(t, n_global, window=64, repeats=3):
    r = np.random.default_rng(n_global)
    leaves = [mt.tensor(r.standard_normal((1, 4, t, 16)).astype(np.float32), requires_grad=True) for _ in range(6)]
    gm = np.zeros((1, t), bool)
    gm[0, :n_global] = True
    extra = dict(global_mask=gm, q_global=leaves[3], k_global=leaves[4], v_global=leaves[5]) if n_global else {}
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        banded_attention(*leaves[:3], window=window, **extra).sum().backward()
        best = min(best, time.perf_counter() - t0)
    return best


base = fwd_bwd_seconds(4096, 0)
print(f"{'G':>4} {'seconds':>8} {'vs G = 0':>8} {'(w + 2G)/w':>10}")
for n_global in (0, 1, 16, 64, 128):
    s = base if n_global == 0 else fwd_bwd_seconds(4096, n_global)
    print(f"{n_global:>4} {s:8.4f} {s / base:8.2f} {(64 + 2 * n_global) / 64:10.2f}")

# %% [markdown]
# The time grows with $G$ roughly as the count says (the global parts are plain dense
# matrix products, cheaper per score than the band's blocks, so the measured growth is
# below $(w + 2G)/w$). For the tasks of this project (`python -m models train longformer
# --task first-line|speaks|genre|speaker-qa`), the README's table gives the results beside their
# baselines. On `first-line` (`<s> NAME $ scene` -> the first line NAME speaks; NAME's characters
# global) the model learnt to find the question's name among the scene's speaker headers: 0.711
# exact match on the held-out plays against 0.456 for the best baseline that ignores the
# question; with the question local (`--no-global`) 0.444, below both baselines: for answers more
# than 240 characters from the question (beyond the four windows' reach) 0.059 against 0.373. On
# `speaks` (does NAME speak in the scene? "yes" marks NAME's first line, "no" marks CLS, as BERT
# answers SQuAD 2.0), started from that first-line model, 0.765 accuracy against 0.682 for the
# play's cast prior; from the `--no-global` first-line model it marks CLS every time (0.500). A
# classifier reading CLS's vector alone never left 0.500 on it. A global token only helps a
# model that has learnt to use what it reads: on the genre task our small model scores 0.257 with
# CLS global and 0.239 with it local, because it decides from the scene's first characters either way.

# %%
print(f"\nlesson 13 ran in {time.perf_counter() - LESSON_START:.1f} s")

# %% [markdown]
# ## Exercises
#
# In the student copy two regions raise `NotImplementedError`; the lesson stops at the
# first one it meets, so do them in this order:
#
# 1. **`global_attention_dense(q, k, v, qg, kg, vg, is_global, window)`** (section 1): the
#    rule of local and global rows with (T, T) masks. It must equal `banded_attention`.
# 2. **`task_global_mask(task, ids, pad_id, sep_id)`** (section 4): the global tokens of each
#    task, padding never global.
#
# If you want more: add dilation to `global_attention_dense`; or train the first-line task twice,
# `python -m models train longformer --task first-line` and the same with `--no-global` (the
# question then reaches only its window), and compare the exact match with the README's.
#
# Check your work with `pytest -m lesson13 -x` (from the repository's root; `-x` stops at the first failure).
