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
# # Lesson 06 — masked softmax and multi-head attention
#
# **Needs:** the exercises of lessons 02 and 03 solved first (its tests and code call them).
#
# Attention is the one layer that GPT-1, Transformer-XL and Longformer share, and
# the three models differ mostly in *which* keys each query may look at. That
# "which" is a boolean mask, and the softmax that applies it has to be exact:
# a forbidden key must get a weight of exactly zero, a row with no allowed key at
# all must not turn into NaN, and the backward pass must send nothing to forbidden
# entries. This lesson builds that machinery from the ground up:
#
# 1. scaled dot-product attention, and why the scores are divided by $\sqrt{d_h}$;
# 2. several heads at once: `split_heads` and `merge_heads`, $(B, T, D) \to (B, H, T, D_h)$;
# 3. masking: why $-\infty$ and not a large negative number, and the fully-masked row;
# 4. the softmax Jacobian, its vector form $\bar s = p \odot (\bar p - \langle \bar p, p \rangle)$,
#    and why masked entries get zero gradient with no special case;
# 5. a gradient check of the masked softmax, fully-masked rows included;
# 6. causal masking as the GPT decoder uses it, with the memory offset that
#    Transformer-XL will need, and a check that the future really is invisible.
#
# The primitives live in `minitensor/attention/masked.py`: `masked_softmax`,
# `causal_mask`, `scaled_dot_product_attention`, `split_heads`, `merge_heads`
# (all under `mt.attention`). Their docstrings are the single source; we print them.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` (here and in
# `minitensor/attention/masked.py`) is blanked out in the student copy: those are
# the exercises listed at the end.

# %%
import inspect
import textwrap
import warnings

import numpy as np

import minitensor as mt
from minitensor.attention import (
    MaskedSoftmax,
    causal_mask,
    masked_softmax,
    merge_heads,
    split_heads,
)
from minitensor.attention import scaled_dot_product_attention as sdpa
from minitensor.attention.masked import softmax_vjp

# Run every op on its formula, the code this lesson reads (and your exercises), never on a
# faster kernel that would stand in for it: see "Where the speed comes from" at the end.
mt.kernels.set_mode("reference")

np.set_printoptions(precision=4, suppress=True)


def show(obj, source=False):
    """Print a library object's docstring (or its source code) under a title."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    print(f"--- {name} ({'source' if source else 'docstring'}) ---")
    print(textwrap.dedent(inspect.getsource(obj)) if source else inspect.getdoc(obj))


def max_abs_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def softmax_np(s, axis=-1):
    """Plain softmax with the max shift (lesson 04), no masking."""
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Scaled dot-product attention
#
# A query $q_i \in \mathbb R^{d_h}$ scores every key $k_j$ by a dot product, the
# scores become weights through a softmax over $j$, and the output is the
# weighted average of the values:
#
# $$
# s_{ij} = \frac{q_i^\top k_j}{\sqrt{d_h}}, \qquad
# p_{ij} = \frac{e^{s_{ij}}}{\sum_{j'} e^{s_{ij'}}}, \qquad
# o_i = \sum_j p_{ij}\, v_j,
# \qquad\text{i.e.}\qquad
# O = \mathrm{softmax}\Big(\frac{Q K^\top}{\sqrt{d_h}}\Big) V .
# $$
#
# ### Why $1/\sqrt{d_h}$: a variance argument
#
# At initialisation the entries of $q$ and $k$ are roughly independent with mean
# $0$ and variance $1$. Each product $q_a k_a$ then has mean $0$ and variance
# $\mathbb E[q_a^2]\,\mathbb E[k_a^2] = 1$, and the $d_h$ products are independent, so
#
# $$
# \mathbb E[q^\top k] = 0, \qquad
# \operatorname{Var}[q^\top k] = \sum_{a=1}^{d_h} \operatorname{Var}[q_a k_a] = d_h,
# \qquad
# \operatorname{Var}\Big[\frac{q^\top k}{\sqrt{d_h}}\Big] = 1 .
# $$
#
# Unscaled, the scores of a head of width 64 have a standard deviation of 8: the
# largest score of a row beats the others by many units, the softmax is nearly
# one-hot, and its Jacobian $\operatorname{diag}(p) - pp^\top$ (lesson 04) is nearly
# zero, so almost no gradient reaches $q$ and $k$. Dividing by $\sqrt{d_h}$ keeps
# the scores at unit scale whatever the head size. Below: the measured variance,
# the mean largest weight of a row of 16 keys, and the mean trace of the
# Jacobian $\sum_j p_j(1 - p_j)$, a measure of how much gradient can flow
# (it is $1 - 1/16 \approx 0.94$ for a uniform row and $0$ for a one-hot one).

# %%
show(sdpa)

T_KEYS, N_ROWS = 16, 2000
print(f"{'d_h':>5} {'Var raw':>9} {'Var scaled':>11} {'max p raw':>10} {'max p scaled':>13} "
      f"{'tr J raw':>9} {'tr J scaled':>12}")
variance_table = {}
for d_h in (4, 16, 64, 256):
    q = rng.standard_normal((N_ROWS, 1, d_h))
    k = rng.standard_normal((N_ROWS, T_KEYS, d_h))
    raw = (q @ k.swapaxes(-1, -2))[:, 0]  # (N_ROWS, T_KEYS): q^T k
    scaled = raw / np.sqrt(d_h)
    p_raw, p_scaled = softmax_np(raw), softmax_np(scaled)
    row = (raw.var(), scaled.var(), p_raw.max(-1).mean(), p_scaled.max(-1).mean(),
           (p_raw * (1 - p_raw)).sum(-1).mean(), (p_scaled * (1 - p_scaled)).sum(-1).mean())
    variance_table[d_h] = row
    print(f"{d_h:5d} {row[0]:9.2f} {row[1]:11.3f} {row[2]:10.3f} {row[3]:13.3f} {row[4]:9.3f} {row[5]:12.3f}")

# %% [markdown]
# The raw variance tracks $d_h$, the scaled one stays at $1$; unscaled rows of a
# 256-wide head put almost all their weight on one key and pass almost no gradient.
#
# ## 2. Several heads at once
#
# Multi-head attention runs $H$ attentions side by side, each on its own
# $D_h = D / H$ features. Nothing is computed per head in a Python loop: the
# model width $D$ is cut into $H$ slices and the heads become a batch axis,
#
# $$
# (B, T, D) \xrightarrow{\text{reshape}} (B, T, H, D_h) \xrightarrow{\text{transpose}} (B, H, T, D_h),
# $$
#
# so that head $h$ of token $t$ holds features $x_{t,\,hD_h : (h+1)D_h}$. The
# matmuls $QK^\top$ and $PV$ then act on the last two axes for every $(b, h)$ at
# once, and `merge_heads` undoes the split (transpose back, then reshape) before the
# output projection $W^O$:
#
# $$
# \mathrm{MultiHead}(X) = \big[\,\mathrm{head}_1, \ldots, \mathrm{head}_H\big]\, W^O, \qquad
# \mathrm{head}_h = \mathrm{Attention}(X W^Q_h, X W^K_h, X W^V_h) .
# $$
#
# One $D \times D$ matrix $W^Q$ holds all $H$ blocks $W^Q_h$ side by side, so one
# matmul followed by `split_heads` computes every head's queries.

# %%
show(split_heads)
show(merge_heads)

B, T, D, H = 2, 5, 12, 3
x = mt.tensor(rng.standard_normal((B, T, D)))
xh = split_heads(x, H)
print("x", x.shape, "-> split_heads ->", xh.shape, "-> merge_heads ->", merge_heads(xh).shape)
head_slice_ok = all(np.array_equal(xh.numpy()[:, h], x.numpy()[..., h * (D // H):(h + 1) * (D // H)])
                    for h in range(H))
round_trip = max_abs_diff(merge_heads(xh).numpy(), x.numpy())
print(f"head h holds features h*Dh:(h+1)*Dh: {head_slice_ok};  |merge(split(x)) - x| = {round_trip}")


def init_attention(d_model, rng, dtype=np.float64):
    """Weights of one self-attention layer: the fused (D, 3D) Q/K/V projection and W^O (D, D)."""
    scale = 1.0 / np.sqrt(d_model)
    return {"w_qkv": mt.tensor(rng.standard_normal((d_model, 3 * d_model)) * scale, dtype=dtype),
            "w_o": mt.tensor(rng.standard_normal((d_model, d_model)) * scale, dtype=dtype)}


def multi_head_self_attention(x, params, n_head, mask=None):
    """x (B, T, D) -> (B, T, D): project, split into heads, attend, merge, project."""
    q, k, v = mt.split(x @ params["w_qkv"], 3, axis=-1)  # each (B, T, D)
    q, k, v = (split_heads(t, n_head) for t in (q, k, v))  # each (B, H, T, Dh)
    out = sdpa(q, k, v, mask=mask)  # (B, H, T, Dh)
    return merge_heads(out) @ params["w_o"]  # (B, T, D)


attn_params = init_attention(D, rng)
print("multi-head self-attention:", x.shape, "->", multi_head_self_attention(x, attn_params, H).shape)

# %% [markdown]
# ## 3. Masking: $-\infty$, not a large negative number
#
# A mask says which keys a query may use: in this library it is boolean and
# **True where attention is allowed** (PyTorch's convention). Hiding key $j$ from
# query $i$ means giving it weight exactly $0$. The softmax can only do that if
# the score becomes $-\infty$, because $e^{-\infty} = 0$ exactly:
#
# $$
# \tilde s_{ij} = \begin{cases} s_{ij} & \text{allowed} \\ -\infty & \text{masked} \end{cases},
# \qquad
# p_{ij} = \frac{e^{\tilde s_{ij} - m_i}}{\sum_{j'} e^{\tilde s_{ij'} - m_i}}, \quad m_i = \max_{j'} \tilde s_{ij'} .
# $$
#
# A common shortcut fills masked scores with a large finite number $-c$ instead.
# A masked key then gets the weight $e^{-c - m_i} / Z_i$, which is zero only if
# $e^{-c - m_i}$ *underflows*, and where that happens depends on the dtype:
# float32 reaches $0$ below about $e^{-104}$, float64 only below about $e^{-745}$.
# So a fill of $-200$ hides a key perfectly in float32 and leaks in float64, and
# a fill of $-50$ leaks in both. Below, one row with two allowed scores and two
# masked ones: the total weight on the masked keys.

# %%
allowed_scores = np.array([0.5, -1.0])
print(f"{'fill':>8} {'float32 leak':>14} {'float64 leak':>14}")
leaks = {}
for fill in (-10.0, -50.0, -200.0, -1e9, -np.inf):
    row = []
    for dtype in (np.float32, np.float64):
        s = np.concatenate([allowed_scores, [fill, fill]]).astype(dtype)
        row.append(float(softmax_np(s)[2:].sum()))
    leaks[fill] = row
    print(f"{fill:8.0e} {row[0]:14.3e} {row[1]:14.3e}")

# %% [markdown]
# A big enough fill like $-10^9$ underflows in every dtype, as long as the row
# has at least one allowed key. The trouble is the row that has **none**: a
# padded query, a query before any position it may see, or a row of a banded
# pattern that falls entirely outside the sequence. With a finite fill every
# entry of that row equals $-c$, the max shift cancels it exactly, and the
# softmax returns a *uniform* distribution over keys the query was forbidden to
# see. With $-\infty$ and the naive formula the shift is
# $m = -\infty$ and $-\infty - (-\infty) = \text{NaN}$, which then spreads through
# the whole network.
#
# The library's convention: a fully-masked row attends to nothing. Its weights
# are all zeros, its output is the zero vector, and its gradient is zero. In the
# forward pass this takes two guards and no special-case row loop: shift by $0$
# where $m_i$ is not finite, and divide by $1$ where the sum is $0$ (then
# $0 / 1 = 0$).

# %%
show(MaskedSoftmax)

row_scores = np.array([[0.3, -1.2, 2.0, 0.7],
                       [0.3, -1.2, 2.0, 0.7]])  # (2 rows, 4 keys)
row_mask = np.array([[True, False, True, False],
                     [False, False, False, False]])  # the second row may see nothing
with np.errstate(invalid="ignore"):  # the naive version makes NaN on purpose
    big_negative = softmax_np(np.where(row_mask, row_scores, -1e9))
    naive_inf = softmax_np(np.where(row_mask, row_scores, -np.inf))
with warnings.catch_warnings():
    warnings.simplefilter("error")  # the library must not even warn
    library = masked_softmax(mt.tensor(row_scores), row_mask).numpy()
print("fill -1e9      \n", big_negative)
print("fill -inf naive\n", naive_inf)
print("masked_softmax \n", library)

# %% [markdown]
# ### Exercise 1: attention by hand
#
# Write scaled dot-product attention with a mask in plain NumPy, with the same
# conventions: `q` $(\ldots, T_q, D_h)$, `k` $(\ldots, T_k, D_h)$, `v` $(\ldots, T_k, D_v)$,
# `mask` boolean broadcastable to $(\ldots, T_q, T_k)$ (True = allowed) or `None`;
# return the output $(\ldots, T_q, D_v)$ and the weights $(\ldots, T_q, T_k)$. A
# fully-masked row gives zero weights and a zero output, with no NaN and no
# warning (guard the shift and the division as described above rather than
# silencing NumPy).

# %%
def attention_by_hand(q, k, v, mask=None):
    r"""$\mathrm{softmax}(qk^\top/\sqrt{d_h})\,v$ with a boolean mask (True = allowed), NumPy only.

    Returns ``(out, weights)``; fully-masked rows give zero weights and zero output.
    """
    # BEGIN SOLUTION lesson 06: attention_by_hand: sections 1 and 3 in NumPy; a fully-masked row gives zeros, not NaN
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])  # (..., T_q, T_k)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # a fully-masked row: any finite shift will do
    e = np.exp(scores - m)  # exactly 0 at masked keys
    total = e.sum(axis=-1, keepdims=True)
    weights = e / np.where(total > 0, total, 1.0)  # 0 / 1 = 0 in a fully-masked row
    return weights @ v, weights  # (..., T_q, D_v), (..., T_q, T_k)
    # END SOLUTION


q4, k4, v4 = (rng.standard_normal((2, 3, 4, 5)) for _ in range(3))  # (B, H, T, Dh)
mask4 = rng.random((2, 1, 4, 4)) < 0.6  # one mask per batch entry, shared by the heads
mask4[0, 0, 1] = False  # a fully-masked row
out_hand, w_hand = attention_by_hand(q4, k4, v4, mask4)
out_lib, w_lib = sdpa(mt.tensor(q4), mt.tensor(k4), mt.tensor(v4), mask=mask4, return_weights=True)
by_hand_diff = max(max_abs_diff(out_hand, out_lib.numpy()), max_abs_diff(w_hand, w_lib.numpy()))
print(f"|attention_by_hand - scaled_dot_product_attention| = {by_hand_diff:.1e}")
print("fully-masked row, output of head 0:", out_hand[0, 0, 1])

# %% [markdown]
# ## 4. The softmax Jacobian, in vector form
#
# Lesson 04 derived the Jacobian of one softmax row, $p = \mathrm{softmax}(s)$:
#
# $$
# \frac{\partial p_i}{\partial s_j} = p_i\big([i = j] - p_j\big), \qquad
# J = \operatorname{diag}(p) - p\,p^\top .
# $$
#
# The backward pass needs only the vector-Jacobian product. With $\bar p$ the
# gradient arriving at the weights,
#
# $$
# \bar s_j = \sum_i \bar p_i \frac{\partial p_i}{\partial s_j}
#          = \sum_i \bar p_i\, p_i [i = j] - \sum_i \bar p_i\, p_i\, p_j
#          = p_j \bar p_j - p_j \langle \bar p, p \rangle ,
# $$
#
# $$
# \boxed{\;\bar s = p \odot \big(\bar p - \langle \bar p, p \rangle \mathbf 1\big)\;}
# $$
#
# one inner product per row and an elementwise product: $O(T)$ work per row
# instead of the $O(T^2)$ matrix. (The inner product is the weighted average of
# $\bar p$ under $p$; subtracting it is why $\sum_j \bar s_j = 0$: shifting all
# scores of a row changes nothing.)
#
# ### Masked entries get zero gradient, automatically
#
# Masking only changes the forward values: on the allowed entries of a row the
# masked softmax *is* the softmax of those entries, and a masked score does not
# influence anything (it is $-\infty$ whatever its value was). So its true
# derivative is $0$, and the formula gives exactly that: the factor $p_j$ in front
# is $0$ at every masked $j$, so $\bar s_j = 0 \cdot (\ldots) = 0$. For a
# fully-masked row $p = 0$ everywhere and the whole row of $\bar s$ is $0$: the
# convention of section 3 costs nothing in the backward pass. The same line of
# code serves masked and unmasked rows, and $p$ is all it needs to save.
#
# ### Exercise 2: the backward of the masked softmax
#
# `softmax_vjp(p, grad, axis)` in `minitensor/attention/masked.py`
# returns $\bar s$ from the saved `p`, the upstream `grad` $= \bar p$ and the softmax
# axis: the boxed formula as array code, one line. Below it is checked
# against the full Jacobian, built row by row.

# %%
show(MaskedSoftmax.backward, source=True)
show(softmax_vjp, source=True)

s_jac = mt.tensor(rng.standard_normal((3, 5)), requires_grad=True)
jac_mask = np.array([[True, True, False, True, False],
                     [False, False, False, False, False],  # fully masked
                     [True, True, True, True, True]])
p_jac = masked_softmax(s_jac, jac_mask)
pbar = rng.standard_normal((3, 5))
p_jac.backward(pbar)
P = p_jac.numpy()
J_rows = [np.diag(p) - np.outer(p, p) for p in P]  # one (5, 5) Jacobian per row
vjp_full = np.stack([J.T @ g for J, g in zip(J_rows, pbar)])  # sum_i pbar_i dp_i/ds_j
vjp_vector = P * (pbar - (pbar * P).sum(-1, keepdims=True))  # the boxed formula
jacobian_diffs = (max_abs_diff(s_jac.grad, vjp_full), max_abs_diff(s_jac.grad, vjp_vector))
print(f"|backward - J^T pbar| = {jacobian_diffs[0]:.1e},  |backward - p*(pbar - <pbar, p>)| = {jacobian_diffs[1]:.1e}")
print("gradient (zeros at masked entries, a zero row where all are masked):\n", s_jac.grad)
print("row sums of the gradient:", s_jac.grad.sum(-1))

# %% [markdown]
# ## 5. Checking the gradient
#
# The comparison above checks the backward against our own derivation; a
# gradient check (lesson 03) checks it against the function itself, by central
# differences, entry by entry. A fully-masked row is a good case to include: the
# forward output does not depend on its scores, so the numerical gradient is $0$
# and the analytic one had better be too.
#
# ### Exercise 3: a gradient check with a fully-masked row
#
# Write `check_softmax_gradient(softmax_fn, scores, mask)`: it wraps the NumPy
# array `scores` as a float64 tensor that requires grad and runs
# `mt.testing.gradcheck` on `lambda s: softmax_fn(s, mask)`, returning its result
# (`True`, or the `GradcheckError` it raises propagates). We then run it on the
# library's `masked_softmax`, and on a broken twin whose backward forgets the
# $\langle \bar p, p \rangle$ term, to see the check catch it.

# %%
show(mt.testing.gradcheck)


def check_softmax_gradient(softmax_fn, scores, mask):
    """Gradcheck ``softmax_fn(s, mask)`` with respect to ``s`` at the float64 array ``scores``."""
    # BEGIN SOLUTION lesson 06: check_softmax_gradient: lesson 03's float64 gradient check of softmax_fn, the mask held fixed
    s = mt.tensor(np.asarray(scores, dtype=np.float64), requires_grad=True)
    return mt.testing.gradcheck(lambda t: softmax_fn(t, mask), s)
    # END SOLUTION


class ForgetfulMaskedSoftmax(MaskedSoftmax):
    r"""The masked softmax with a WRONG backward: $\bar s = p \odot \bar p$ (no inner product)."""

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        return p * grad


def forgetful_masked_softmax(scores, mask):
    return ForgetfulMaskedSoftmax.apply(scores, mask=np.asarray(mask), axis=-1)


gc_scores = rng.standard_normal((2, 4, 5))  # (B, T_q, T_k)
gc_mask = np.broadcast_to(causal_mask(4, 5, offset=1), (2, 4, 5)).copy()
gc_mask[1, 2] = False  # a fully-masked row
gradcheck_passed = check_softmax_gradient(masked_softmax, gc_scores, gc_mask)
print("gradcheck of masked_softmax, fully-masked row included:", gradcheck_passed)
try:
    check_softmax_gradient(forgetful_masked_softmax, gc_scores, gc_mask)
    broken_caught = False
except mt.testing.GradcheckError as err:
    broken_caught = True
    print("the forgetful backward is caught:", str(err).splitlines()[0])

# %% [markdown]
# ## 6. Causal masking
#
# A GPT decoder predicts token $t+1$ from tokens $1..t$, for every $t$ of a
# sequence at once. For that to be honest, position $i$ may only attend to
# positions $j \le i$: a lower-triangular mask, `causal_mask(T, T)`. Every
# row has at least one allowed key (itself), so no row is ever fully masked.
#
# Transformer-XL (lesson on segment recurrence, later) prepends a memory of the
# $M$ previous positions to the keys, $\tilde h = [\mathrm{SG}(m) \circ h]$, so the
# key axis has length $M + T$ and query $i$ (position $M + i$ in the long sequence)
# may see every memory slot and the current positions up to itself:
#
# $$
# \text{allowed}(i, j) \iff j \le i + M, \qquad 0 \le i < T,\ 0 \le j < M + T .
# $$
#
# That is `causal_mask(T, M + T, offset=M)`. Below, `x` = allowed and `.` = masked,
# with a bar between the memory and the current segment.

# %%
show(causal_mask)


def mask_picture(mask, split=None):
    """Rows of 'x' (allowed) and '.' (masked); a '|' before column ``split``."""
    lines = []
    for row in mask:
        cells = ["x" if a else "." for a in row]
        if split is not None:
            cells.insert(split, "|")
        lines.append(" ".join(cells))
    return "\n".join(lines)


print("GPT: causal_mask(5, 5)")
print(mask_picture(causal_mask(5, 5)))
M_MEM, T_SEG = 3, 4
xl_mask = causal_mask(T_SEG, M_MEM + T_SEG, offset=M_MEM)
print(f"\nTransformer-XL: causal_mask({T_SEG}, {M_MEM} + {T_SEG}, offset={M_MEM})  (memory | current)")
print(mask_picture(xl_mask, split=M_MEM))

# %% [markdown]
# ### The future is invisible
#
# The claim to check: with the causal mask, the output at position $t$ is a
# function of the inputs at positions $\le t$ only. Take the multi-head layer of
# section 2, feed it a sequence, then change every input after position $t_0$ and
# feed it again. Outputs at positions $\le t_0$ must not move at all: the changed
# keys get weight exactly $0$, and $0 \cdot v_j = 0$ whatever $v_j$ became. Without
# the mask they do move. The same holds for gradients: the output at $t_0$ sends
# no gradient to any later input.

# %%
T_C, T0 = 6, 2
tokens = rng.standard_normal((B, T_C, D))
changed = tokens.copy()
changed[:, T0 + 1:] = rng.standard_normal((B, T_C - T0 - 1, D))  # a different future
causal = causal_mask(T_C, T_C)
causal_diffs = {}
for name, mask in (("causal", causal), ("no mask", None)):
    before = multi_head_self_attention(mt.tensor(tokens), attn_params, H, mask=mask).numpy()
    after = multi_head_self_attention(mt.tensor(changed), attn_params, H, mask=mask).numpy()
    causal_diffs[name] = max_abs_diff(before[:, :T0 + 1], after[:, :T0 + 1])
    print(f"{name:8s}: max |change| of the outputs at positions <= {T0} = {causal_diffs[name]:.1e}")

x_grad = mt.tensor(tokens, requires_grad=True)
multi_head_self_attention(x_grad, attn_params, H, mask=causal)[:, T0].sum().backward()
future_grad = float(np.abs(x_grad.grad[:, T0 + 1:]).max())
past_grad = float(np.abs(x_grad.grad[:, :T0 + 1]).max())
print(f"gradient of the output at t0 = {T0}: max |.| on inputs <= t0 = {past_grad:.2f}, on later inputs = {future_grad}")

# %% [markdown]
# ## Exercises
#
# In the student copy three regions raise `NotImplementedError`; the lesson
# stops at the first one it meets, so do them in this order:
#
# 1. **`attention_by_hand(q, k, v, mask)`** (section 3), in this file: masked
#    scaled dot-product attention in NumPy, returning the output and the weights,
#    with the fully-masked-row convention (zeros, no NaN, no warning).
# 2. **`softmax_vjp`** (section 4), in `minitensor/attention/masked.py`:
#    return the boxed $\bar s$ of section 4, the inner product taken along `axis`.
#    No special case for masked entries is needed — convince yourself why.
# 3. **`check_softmax_gradient(softmax_fn, scores, mask)`** (section 5), in this
#    file: a float64 `mt.testing.gradcheck` of a masked softmax.
#
# When all three are in place, every comparison printed above (by hand against
# the library, backward against the Jacobian) differs by less than $10^{-12}$, the
# gradient check passes and catches the forgetful backward, and the causal
# layer's early outputs do not change at all.
#
# If you want more: make every row of `gc_mask` fully masked and run the
# check again; then replace $-\infty$ by $-10^9$ in your `attention_by_hand` and
# find the input where it disagrees with the library.
#
# The tests of the library exercise call `masked_softmax` directly, so it can be
# checked on its own: `pytest -m lesson06 -k masked_softmax`. The other tests
# run the whole lesson.
#
# Check your work with `pytest -m lesson06 -x` (from the repository's root; `-x` stops at the first failure).
#
# ## Where the speed comes from
#
# `masked_softmax_rows` and `softmax_vjp` are the formulas, and with
# `MINITENSOR_KERNELS=reference` they are all that runs. By default each is replaced by
# a **kernel** (`minitensor/kernels/cpu.py`) that does the same steps on blocks of about
# 131,000 scores, small enough to stay in the CPU's cache across the steps, shared between
# the cores and written in place into reused buffers: the $(B, H, T, T)$ scores are read
# from memory once instead of five times. The `@kernels.replaceable` line above each
# formula names its kernel; a test checks the two give bit-identical numbers. The
# lesson's tests always run your formula.
