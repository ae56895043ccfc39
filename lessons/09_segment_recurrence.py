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
# # Lesson 09 — Transformer-XL, part 1: segment recurrence
#
# **Needs:** the exercises of lessons 02, 04, 05 and 06 solved first (its tests and code call them).
#
# A Transformer language model is trained on segments of a fixed length $L$: the
# corpus is cut into pieces and each piece is a separate example. Nothing flows
# from one piece to the next, so a token near the start of a segment is predicted
# from almost no context, however long the text before it was. Transformer-XL
# (Dai et al., 2019; the source's section 1.2.1) keeps the hidden states of the
# previous segment as a *memory* and lets the next segment attend to them. This
# lesson takes that mechanism apart:
#
# 1. context fragmentation: a vanilla model trained on fixed segments cannot use
#    context across a segment boundary; we show it on a task that needs it;
# 2. the cache $\tilde h = [\mathrm{SG}(m) \circ h]$: queries from the segment only,
#    keys and values from memory and segment, and the memory-aware causal mask;
# 3. how far back a prediction can see: the longest dependency grows like $O(N \cdot L)$
#    with the depth $N$, computed layer by layer and checked by perturbing a token;
# 4. the stop-gradient SG and truncated backpropagation through time: no gradient
#    reaches the memory, and the memory keeps no computation graph alive.
#
# The model is `models/transformer_xl/model.py` (`TransformerXL`, its `forward(ids, mems)
# -> (logits, new_mems)`), the memory concatenation and the masks are in
# `minitensor/attention/masked.py` (`concat_memory`, `causal_mask`). Relative
# positions, which make the memory usable at all, are lesson 10; here we use them
# without looking inside. Docstrings are the single source; we print them.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` (here and in
# `minitensor/attention/masked.py`) is blanked out in the student copy: those are
# the exercises listed at the end.

# %%
import gc
import inspect
import math
import textwrap
import time
import weakref

import numpy as np

import minitensor as mt
from minitensor.attention import causal_mask, concat_memory, masked_softmax
from minitensor.optim import Adam
from models.transformer_xl import TransformerXL, TransformerXLConfig, attention_mask

np.set_printoptions(precision=3, suppress=True, linewidth=110)
LESSON_START = time.perf_counter()


def show(obj, source=False):
    """Print a library object's docstring (or its source code) under a title."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    print(f"--- {name} ({'source' if source else 'docstring'}) ---")
    print(textwrap.dedent(inspect.getsource(obj)) if source else inspect.getdoc(obj))


def tiny_xl(vocab, seg_len, mem_len, n_layer=2, seed=0, d=32, dtype=np.float64):
    """A small Transformer-XL without dropout: seconds to train on two cores."""
    cfg = TransformerXLConfig(vocab_size=vocab, d_model=d, n_layer=n_layer, n_head=2, d_head=d // 2,
                              d_inner=2 * d, tgt_len=seg_len, mem_len=mem_len, dropout=0.0)
    return TransformerXL(cfg, rng=seed, dtype=dtype)


def segments(stream, seg_len):
    """Cut a (B, n L + 1) stream into (inputs, targets) pairs of L tokens, in order."""
    n_seg = (stream.shape[1] - 1) // seg_len
    return [(stream[:, s * seg_len:(s + 1) * seg_len], stream[:, s * seg_len + 1:(s + 1) * seg_len + 1])
            for s in range(n_seg)]


# %% [markdown]
# ## 1. Context fragmentation
#
# A language model factorises $P(x_1, \ldots, x_T) = \prod_t P(x_t \mid x_{<t})$. A vanilla
# Transformer trained on segments of length $L$ never sees more than its own segment, so
# what it actually learns is
#
# $$
# P(x_t \mid x_{<t}) \;\approx\; P\big(x_t \mid x_{s(t)}, \ldots, x_{t-1}\big),
# \qquad s(t) = L \lfloor t / L \rfloor ,
# $$
#
# the first token of a segment is predicted from nothing, the second from one token,
# and so on: the context is *fragmented* at every boundary, whatever the data.
#
# A task that makes this visible: each row of the stream repeats a random pattern of
# $P = 5$ tokens ($V = 8$ symbols), so $x_{t} = x_{t-P}$ and every token is predictable
# from the one $P$ places back, except the first $P$ of the stream. Segments are
# $L = 8$ long. The target of input position $i$ is $x_{i+1}$, whose copy sits at
# $i + 1 - P$: inside the segment for $i \ge P - 1 = 4$, in the previous segment for
# $i < 4$. We train the same small model twice on the same streams, segment after
# segment: once with no memory (`mem_len = 0`: the vanilla model) and once with a
# memory of $M = L$ positions, then measure the loss at each position of each segment.
# The vanilla model can do no better than $\ln V = 2.08$ nats on positions $0..3$ of every
# segment; with the memory those positions are predictable from the second segment on.

# %%
V_FRAG, L_FRAG, PERIOD, BATCH_FRAG, N_SEG_FRAG = 8, 8, 5, 16, 4
STEPS_FRAG = 80


def periodic_stream(rng, batch, length):
    """Rows that repeat a random pattern of PERIOD tokens: x_t = x_{t - PERIOD}."""
    pattern = rng.integers(0, V_FRAG, size=(batch, PERIOD))
    return np.tile(pattern, length // PERIOD + 1)[:, :length]


def per_position_loss(model, stream, seg_len):
    """(n_seg, L) mean cross-entropy in nats at each position of each segment, memory carried."""
    model.eval()
    mems, rows = None, []
    with mt.no_grad():
        for x, y in segments(stream, seg_len):
            logits, mems = model(x, mems)
            z = logits.numpy()
            logp = z - z.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
            rows.append(-np.take_along_axis(logp, y[..., None], -1)[..., 0].mean(0))
    model.train()
    return np.array(rows)


def train_on_segments(mem_len, seed=0):
    model = tiny_xl(V_FRAG, L_FRAG, mem_len, seed=seed)
    opt = Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed + 1)
    for _ in range(STEPS_FRAG):
        mems = None  # a fresh stream: the memory starts empty
        for x, y in segments(periodic_stream(rng, BATCH_FRAG, N_SEG_FRAG * L_FRAG + 1), L_FRAG):
            loss, mems = model.loss(x, y, mems)  # mems: the previous segment's states, carried
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


test_stream = periodic_stream(np.random.default_rng(99), 64, N_SEG_FRAG * L_FRAG + 1)
vanilla = train_on_segments(mem_len=0)
xl = train_on_segments(mem_len=L_FRAG)
frag_vanilla = per_position_loss(vanilla, test_stream, L_FRAG)
frag_xl = per_position_loss(xl, test_stream, L_FRAG)
print(f"loss (nats) by position i within the segment; ln V = {math.log(V_FRAG):.3f}")
print("segment |" + "".join(f"{i:>6d}" for i in range(L_FRAG)) + "   <- position i")
for name, table in (("vanilla", frag_vanilla), ("XL M=L", frag_xl)):
    for s, row in enumerate(table):
        print(f"{name} {s} |" + "".join(f"{v:6.2f}" for v in row))
cross = slice(0, PERIOD - 1)  # positions whose target's copy lies in the previous segment
print(f"positions 0..{PERIOD - 2}, segments 1..: vanilla {frag_vanilla[1:, cross].mean():.3f}, "
      f"XL {frag_xl[1:, cross].mean():.3f} nats")

# %% [markdown]
# The vanilla rows stay at $\ln V$ on positions $0..3$ in *every* segment: the model is
# no worse than it could be, it simply never has the information. In its first segment
# Transformer-XL is in the same situation (its memory is empty), from the second on it
# copies from the memory.
#
# That the vanilla model's first positions ignore the previous segment is not a
# question of training: the logits of segment $\tau$ are a function of segment $\tau$
# alone. Replace the previous segment by other tokens: nothing moves.

# %%
x0 = test_stream[:2, :L_FRAG]
x1 = test_stream[:2, L_FRAG:2 * L_FRAG]
other = (x0 + 3) % V_FRAG
with mt.no_grad():
    vanilla.eval()
    xl.eval()
    _, m_a = vanilla(x0)
    _, m_b = vanilla(other)
    vanilla_mem_len = m_a[0].shape[1]  # mem_len = 0: the vanilla model keeps nothing
    vanilla_cross_boundary_change = float(np.abs(vanilla(x1, m_a)[0].numpy() - vanilla(x1, m_b)[0].numpy()).max())
    _, m_a = xl(x0)
    _, m_b = xl(other)
    xl_cross_boundary_change = float(np.abs(xl(x1, m_a)[0].numpy() - xl(x1, m_b)[0].numpy()).max())
print(f"change of segment-1 logits when segment 0 is replaced: vanilla {vanilla_cross_boundary_change:.1e}, "
      f"XL {xl_cross_boundary_change:.2f}")
print(f"the vanilla model's memory holds {vanilla_mem_len} positions; XL's {m_a[0].shape[1]}")

# %% [markdown]
# ## 2. The cache: $\tilde h = [\mathrm{SG}(m) \circ h]$
#
# Write $h_\tau^{n-1} \in \mathbb R^{L \times d}$ for the input of layer $n$ on segment
# $\tau$ (so $h^0$ is the embedding). Layer $n$ on segment $\tau + 1$ computes
#
# $$
# \begin{aligned}
# \tilde h_{\tau+1}^{n-1} &= \big[\,\mathrm{SG}(h_\tau^{n-1}) \circ h_{\tau+1}^{n-1}\big] && (M + L) \times d\\
# q_{\tau+1}^n,\ k_{\tau+1}^n,\ v_{\tau+1}^n &= h_{\tau+1}^{n-1} W_q^\top,\ \
#   \tilde h_{\tau+1}^{n-1} W_k^\top,\ \ \tilde h_{\tau+1}^{n-1} W_v^\top\\
# h_{\tau+1}^n &= \text{Transformer-Layer}\big(q_{\tau+1}^n, k_{\tau+1}^n, v_{\tau+1}^n\big)
# \end{aligned}
# $$
#
# $\circ$ is concatenation along time, $\mathrm{SG}$ the stop-gradient. Only the current
# segment asks questions ($q$ has $L$ rows); memory and segment both answer ($k, v$ have
# $M + L$ rows), so the score matrix is $L \times (M + L)$. The memory of layer $n$ is
# the *input* of layer $n$ on the previous segment(s): one array per layer, and the
# output of the last layer is never needed. With $M > L$ the memory keeps the last $M$
# positions of $[\text{old memory} \circ h]$, several segments' worth.
#
# The mask: query $i$ sits at absolute position $M + i$ of the key axis, so it may see
# key $j$ iff $j \le i + M$: the whole memory, then the segment up to itself. That is
# `causal_mask(L, M + L, offset=M)`.

# %%
show(concat_memory)
show(causal_mask)
L_DEMO, M_DEMO = 4, 3
xl_mask = causal_mask(L_DEMO, M_DEMO + L_DEMO, offset=M_DEMO)
print(f"memory-aware causal mask, L = {L_DEMO} queries x M + L = {M_DEMO + L_DEMO} keys "
      f"(1 = may attend; the first {M_DEMO} columns are the memory):")
print(xl_mask.astype(int))
mask_matches_model = bool(np.array_equal(xl_mask, attention_mask(L_DEMO, M_DEMO, False, M_DEMO)))
print("equals the model's attention_mask:", mask_matches_model)


# %% [markdown]
# One layer written out, with single-head attention and no positions (lesson 10 adds
# them), to see the shapes. `detach_memory=False` is the variant *without* SG, which
# we need in section 4 for comparison.

# %%
def memory_layer(h, mem, w_q, w_k, w_v, detach_memory=True):
    r"""One attention layer over $[\mathrm{SG}(m) \circ h]$ with a residual: h (B, L, d), mem (B, M, d) or None."""
    t = h.shape[1]
    if detach_memory:
        h_tilde = concat_memory(mem, h)  # [SG(m) o h], (B, M+L, d)
    else:
        h_tilde = h if mem is None else mt.concat([mem, h], axis=1)  # [m o h]: the graph of m stays attached
    m = h_tilde.shape[1] - t
    q = h @ w_q  # queries: the current segment only, (B, L, d)
    k = h_tilde @ w_k  # keys: memory and segment, (B, M+L, d)
    v = h_tilde @ w_v  # values, (B, M+L, d)
    scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(h.shape[-1]))  # (B, L, M+L)
    p = masked_softmax(scores, causal_mask(t, m + t, offset=m))
    return h + p @ v  # (B, L, d)


rng = np.random.default_rng(0)
D_DEMO = 6
w_demo = [mt.tensor(rng.standard_normal((D_DEMO, D_DEMO)) / math.sqrt(D_DEMO), requires_grad=True)
          for _ in range(3)]
h_prev = mt.tensor(rng.standard_normal((1, L_DEMO, D_DEMO)))
h_cur = mt.tensor(rng.standard_normal((1, L_DEMO, D_DEMO)))
mem_demo = h_prev.numpy()[:, -M_DEMO:]  # the last M positions of the previous segment's layer input
out_demo = memory_layer(h_cur, mem_demo, *w_demo)
print(f"h {h_cur.shape}, memory {mem_demo.shape} -> h~ {concat_memory(mem_demo, h_cur).shape}, "
      f"q {(h_cur @ w_demo[0]).shape}, k and v {(concat_memory(mem_demo, h_cur) @ w_demo[1]).shape}, "
      f"output {out_demo.shape}")

# %% [markdown]
# A check that the memory is exactly "the previous segment, without recomputing it":
# with $M = L$, two segments processed one after the other, memory carried, give the
# same logits for the second segment as one forward pass over both segments at once
# (whose second half sees the first half through ordinary causal attention). Relative
# positions make the distances the same in both computations. From the third segment
# on the two differ: the memory holds one segment, the long forward pass sees all.

# %%
show(TransformerXL.forward)
chk = tiny_xl(11, 5, 5, n_layer=3, seed=3)
chk.eval()
ids = np.random.default_rng(4).integers(0, 11, size=(2, 10))
with mt.no_grad():
    logits_0, mems_0 = chk(ids[:, :5])
    logits_1, mems_1 = chk(ids[:, 5:], mems_0)
    logits_both, _ = chk(ids)
two_segment_diff = float(np.abs(logits_1.numpy() - logits_both.numpy()[:, 5:]).max())
print(f"memory: {len(mems_0)} arrays (one per layer input) of shape {mems_0[0].shape}, type {type(mems_0[0]).__name__}")
print(f"segment 2 with memory vs positions 5..9 of one pass over both: max |diff| = {two_segment_diff:.1e}")


# %% [markdown]
# ## 3. How far back can a prediction see?
#
# In a vanilla model position $i$ of a segment depends on tokens $i, i-1, \ldots, 0$ of
# its segment: a reach of $i$ tokens, whatever the depth. With the memory, layer $n$ at
# absolute position $p$ (index $i = p \bmod L$ in its segment, which starts at $s = p - i$)
# attends to the layer-$(n-1)$ states of positions $s - M, \ldots, p$, and each of those
# was computed, when its own segment was processed, with its own reach. Writing
# $r_n(p)$ for the distance from $p$ back to the oldest token that layer $n$'s output at
# $p$ depends on,
#
# $$
# r_0(p) = 0, \qquad
# r_n(p) = \max_{s - M \,\le\, k \,\le\, p} \big( (p - k) + r_{n-1}(k) \big).
# $$
#
# In a long stream $r_n$ depends only on the index $i$ within the segment. The term
# $(p - k) + r_{n-1}(k)$ does not grow while $k$ moves forward inside one segment (one step
# less distance, at most one step more reach) and drops when $k$ crosses into a later
# segment, so the maximum is at the oldest key $k = s - M$. For $1 \le M \le L$ that key
# has index $L - M$ in the previous segment, and unrolling gives
#
# $$
# r_1(i) = i + M, \qquad r_n(i) = i + M + r_{n-1}(L - M) = i + (n - 1) L + M ,
# $$
#
# so with $M = L$ the top layer of an $N$-layer model reaches back $i + N L$ tokens:
# the longest dependency grows like $O(N \cdot L)$, one segment per layer (the paper's
# $O(N \times L)$, the shaded area of its figure 2b). The memory of each layer only spans
# $M$ positions, but those positions already summarise the segments before them. With
# $M > L$ the oldest key is several segments back and the same recursion applies.
#
# ### Exercise 1: the longest dependency, layer by layer
#
# Implement `longest_dependency(n_layer, seg_len, mem_len)`: an integer array
# (n_layer + 1, seg_len) whose row $n$ is $r_n(i)$ for $i = 0..L-1$, by the recursion
# above (row 0 is zeros; for row $n$, loop over $i$ and over the keys $k$ from
# $-M$ to $i$, counted from the segment start; the index of key $k$ in its own segment
# is $k \bmod L$). Do not use the closed form: it only holds for $M \le L$.

# %%
def longest_dependency(n_layer, seg_len, mem_len):
    """(n_layer + 1, seg_len) ints: row n, column i = how many tokens back layer n's output
    at index i of a segment depends on, in a long stream (memory full)."""
    # BEGIN SOLUTION lesson 09: longest_dependency: the recursion over layers derived above
    reach = np.zeros((n_layer + 1, seg_len), dtype=np.int64)
    for n in range(1, n_layer + 1):
        for i in range(seg_len):
            reach[n, i] = max(i - k + reach[n - 1, k % seg_len] for k in range(-mem_len, i + 1))
    return reach
    # END SOLUTION


print("r_N(L - 1), the longest dependency of the top layer, for L = 16:")
print(f"{'N':>3} {'M = 0':>7} {'M = 8':>7} {'M = 16':>7} {'M = 32':>7}")
reach_table = {}
for n_layer in (1, 2, 3, 4, 6):
    reach_table[n_layer] = [int(longest_dependency(n_layer, 16, m)[-1, -1]) for m in (0, 8, 16, 32)]
    print(f"{n_layer:3d} " + " ".join(f"{r:7d}" for r in reach_table[n_layer]))
closed_form_ok = all(
    np.array_equal(longest_dependency(n, 16, m)[n], np.arange(16) + (n - 1) * 16 + m)
    for n in range(1, 7) for m in range(1, 17))
print("closed form i + (n-1) L + M for 1 <= M <= L:", closed_form_ok)

# %% [markdown]
# With $M = 0$ every row is just $i \le L - 1$; with $M = L$ the reach is $L - 1 + NL$.
#
# Now the same thing measured. A 3-layer model with $L = 4$ reads a stream of 9
# segments, memory carried. We change one token, at position $p_0 = 5$ (index 1 of
# segment 1), run the stream again, and mark every position whose logits moved.
# Position $p$ can move only if $p \ge p_0$ and $p - p_0 \le r_N(p \bmod L)$. The computation is
# float64 and deterministic, so "did not move" means bit for bit.

# %%
def moved_positions(model, stream, seg_len, p0):
    """Bool (T,): which positions' logits change when token p0 of row 0 is replaced."""
    model.eval()
    changed = stream.copy()
    changed[0, p0] = (changed[0, p0] + 1) % model.config.vocab_size
    outs = []
    with mt.no_grad():
        for s in (stream, changed):
            mems, logits = None, []
            for start in range(0, s.shape[1], seg_len):
                z, mems = model(s[:, start:start + seg_len], mems)
                logits.append(z.numpy()[0])
            outs.append(np.concatenate(logits))
    return np.any(outs[0] != outs[1], axis=-1)


def predicted_positions(reach_top, seg_len, length, p0):
    p = np.arange(length)
    return (p >= p0) & (p - p0 <= reach_top[p % seg_len])


def as_string(flags, seg_len):
    chars = "".join("x" if f else "." for f in flags)
    return " ".join(chars[i:i + seg_len] for i in range(0, len(chars), seg_len))


N_PROBE, L_PROBE, P0 = 3, 4, 5
probe_stream = np.random.default_rng(5).integers(0, 9, size=(1, 9 * L_PROBE))
receptive_field = {}
print(f"N = {N_PROBE} layers, L = {L_PROBE}; token {P0} changed; x = logits moved (segments separated by spaces)")
for m in (0, 2, 4, 6):
    model = tiny_xl(9, L_PROBE, m, n_layer=N_PROBE, seed=6, d=16)
    moved = moved_positions(model, probe_stream, L_PROBE, P0)
    predicted = predicted_positions(longest_dependency(N_PROBE, L_PROBE, m)[-1], L_PROBE, moved.size, P0)
    receptive_field[m] = (moved, predicted)
    far = int(np.nonzero(moved)[0].max()) - P0
    print(f"M = {m}: measured  {as_string(moved, L_PROBE)}   farthest {far:2d} tokens")
    print(f"       predicted {as_string(predicted, L_PROBE)}   equal: {np.array_equal(moved, predicted)}")

# %% [markdown]
# With $M = 0$ the change stays inside its segment. With memory it travels about one
# segment per layer ($M = L = 4$: $r_3(i) = i + 12$, so up to the end of segment 4), and the
# edge of the moved region follows the recursion exactly, including $M = 2 < L$
# ($r_3(i) = i + 2L + 2$) and $M = 6 > L$ ($r_3(i) = i + 22$: the oldest key is two segments back).
#
# ## 4. Stop-gradient and truncated backpropagation through time
#
# Training carries the memory forward, segment after segment, exactly as evaluation does.
# The gradient does *not* go back: $\mathrm{SG}(h_\tau^{n-1})$ is a constant for the loss
# of segment $\tau + 1$,
#
# $$
# \frac{\partial \mathcal L_{\tau+1}}{\partial h_\tau^{n-1}} \Big|_{\text{through } \tilde h_{\tau+1}^{n-1}} = 0 ,
# $$
#
# so each segment's backward pass stops at the segment boundary: backpropagation through
# time *truncated* to one segment (as an RNN language model trained on chunks with a
# carried, detached hidden state). Two consequences: the cost of a step does not grow
# with the length of the stream, and the memory need not keep the computation graph of
# earlier segments. The forward pass, however, still sees $N \cdot L$ tokens back: the
# model is trained to *use* the memory, not to shape it for later segments.
#
# In minitensor, SG is `Tensor.detach()`: a new tensor that shares the data and has no
# graph (`_ctx`). `concat_memory` applies it to the memory. Below: a memory that would
# like a gradient (`requires_grad=True`) gets none through `concat_memory`, while a plain
# `concat` passes one.

# %%
mem_t = mt.tensor(rng.standard_normal((1, M_DEMO, D_DEMO)), requires_grad=True)
h_t = mt.tensor(rng.standard_normal((1, L_DEMO, D_DEMO)), requires_grad=True)
concat_memory(mem_t, h_t).sum().backward()
sg_memory_grad = mem_t.grad
sg_segment_grad = h_t.grad.copy()
mem_t.grad = h_t.grad = None
mt.concat([mem_t, h_t], axis=1).sum().backward()
plain_memory_grad = mem_t.grad.copy()
print(f"through concat_memory: memory grad {sg_memory_grad}, segment grad all ones: {np.all(sg_segment_grad == 1)}")
print(f"through a plain concat: memory grad all ones: {np.all(plain_memory_grad == 1)}")

# %% [markdown]
# The same at the level of the model: memories handed in as tensors that require a
# gradient get none from the loss of the next segment, and the new memories come back
# as plain arrays (data, no graph).

# %%
mems_t = [mt.tensor(m.copy(), requires_grad=True) for m in mems_0]
loss_t, new_mems_t = chk.loss(ids[:, 5:], ids[:, 5:], mems_t)
loss_t.backward()
model_memory_grads = [m.grad for m in mems_t]
weight_grad_norm = float(np.sqrt(sum(float((p.grad ** 2).sum()) for p in chk.parameters() if p.grad is not None)))
chk.zero_grad()
print(f"memory grads after backward: {model_memory_grads}; weight gradient norm {weight_grad_norm:.3f}")
print(f"new memories: {[type(m).__name__ for m in new_mems_t]}")


# %% [markdown]
# What SG saves: the graph. Without SG, the memory of layer $n$ is a piece of the graph
# of the previous segment, whose own memory of layer $n - 1$ is a piece of the segment
# before, and so on down to the embeddings: the loss of segment $\tau$ reaches back
# diagonally through the graphs of the $N$ previous segments. Every backward pass would
# traverse them again (they were built with older weights), and every memory would keep
# them alive. We stream segments through four layers of `memory_layer`, with and without
# SG, and count the graph nodes (the `Context` records of the ops) reachable from each
# segment's loss: without SG the graph grows over the first $N = 4$ segments, to 2.5 times
# one segment's, and stays there; with SG it is the same for every segment.

# %%
def graph_size(t):
    """The number of op records reachable from t (iterative: graphs can be deep)."""
    seen, stack = set(), [t]
    while stack:
        node = stack.pop()
        ctx = node._ctx
        if ctx is None or id(ctx) in seen:
            continue
        seen.add(id(ctx))
        stack.extend(p for p in ctx.parents if isinstance(p, mt.Tensor))
    return len(seen)


N_GRAPH = 4


def stream_graph_sizes(detach_memory, n_seg=7):
    mems, sizes = [None] * N_GRAPH, []
    stream_rng = np.random.default_rng(7)
    for _ in range(n_seg):
        h = mt.tensor(stream_rng.standard_normal((1, L_DEMO, D_DEMO)))
        inputs = []
        for n in range(N_GRAPH):
            inputs.append(h)  # the memory of layer n is its input
            h = memory_layer(h, mems[n], *w_demo, detach_memory=detach_memory)
        loss = (h ** 2).mean()
        sizes.append(graph_size(loss))
        if detach_memory:
            mems = [x.numpy()[:, -M_DEMO:] for x in inputs]  # data only
        else:
            mems = [x[:, -M_DEMO:] for x in inputs]  # slices of graph tensors: the graph stays attached
    return sizes


graph_sizes_sg = stream_graph_sizes(True)
graph_sizes_no_sg = stream_graph_sizes(False)
print(f"graph nodes per segment's loss, with SG:    {graph_sizes_sg}")
print(f"graph nodes per segment's loss, without SG: {graph_sizes_no_sg}")

# %% [markdown]
# And in the model: once a segment's logits and loss are dropped, nothing of its graph
# survives, though its memory lives on for the next segment (a weak reference to the
# loss tensor goes dead).

# %%
loss_seg, mems_kept = chk.loss(ids[:, :5], ids[:, 1:6], None)
loss_ref = weakref.ref(loss_seg)
del loss_seg
gc.collect()
graph_freed = loss_ref() is None
print(f"segment graph freed while its memory ({mems_kept[0].shape}) is kept: {graph_freed}")
lesson_seconds = time.perf_counter() - LESSON_START
print(f"\nlesson 09 ran in {lesson_seconds:.1f} s")

# %% [markdown]
# ## Exercises
#
# In the student copy two regions raise `NotImplementedError`; the lesson stops at the
# first one it meets, so do them in this order:
#
# 1. **`concat_memory`**, in `minitensor/attention/masked.py`: the line that turns the
#    memory into $\mathrm{SG}(m)$, a tensor with the memory's data and no graph, whether
#    the caller passes an array or a `Tensor` (one that requires a gradient included).
#    Every Transformer-XL forward with a memory goes through it (section 1 stops here).
#    What would section 4's plain `concat` do to a training run of 10,000 segments?
# 2. **`longest_dependency(n_layer, seg_len, mem_len)`** (section 3), in this file: the
#    recursion $r_n(p) = \max_k \big((p - k) + r_{n-1}(k)\big)$ over the keys $k$ from
#    $s - M$ to $p$. The measured patterns of section 3 must match it for every $M$.
#
# If you want more: train the models of section 1 with a memory of $M = 2$ (shorter than
# the period) and predict, before running it, which positions stay at $\ln V$; or make the
# period longer than $L + M$ for the vanilla model's worst case.
#
# Check your work with `pytest -m lesson09 -x` (from the repository's root; `-x` stops at the first failure).
