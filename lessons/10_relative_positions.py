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
# # Lesson 10 — Transformer-XL, part 2: relative positional encoding
#
# **Needs:** the exercises of lessons 02, 03 and 09 solved first (its tests and code call them).
#
# Lesson 09 gave each segment a memory of the previous one. That memory is useless
# with the position embeddings of GPT (lesson 07): every segment reuses the same
# $U_1, \ldots, U_L$, so a memory token and a current token at the same index carry the
# same position code, and the model cannot tell "3 tokens ago" from "$L + 3$ tokens ago".
# Transformer-XL (the source's section 1.2.2) moves positions out of the input and into
# the attention scores, as *relative* distances. This lesson follows the derivation:
#
# 1. why absolute positions collide across segments, shown on numbers;
# 2. the expansion of $q_i^\top k_j$ with absolute positions into four terms (a)–(d);
# 3. the replacement $U_j \to R_{i-j}$, $U_i^\top W_q^\top \to u, v$, and what each of the
#    four terms means;
# 4. the rel-shift trick that computes all $R_{i-j}$ terms with one matrix product:
#    derived, printed step by step, checked against explicit indexing, and the garbage it
#    leaves shown to be exactly the entries the causal mask removes;
# 5. the four terms per head of a real model (`TransformerXL.score_terms`);
# 6. a float64 gradient check of `relative_scores`.
#
# The primitives are in `minitensor/attention/relative.py` (`sinusoid_positions`,
# `rel_shift`, `relative_scores`), the model in `models/transformer_xl/model.py`. Their
# docstrings are the single source; we print them.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` in this file is blanked out in
# the student copy: those are the exercises listed at the end.

# %%
import inspect
import math
import textwrap
import time

import numpy as np

import minitensor as mt
from minitensor.attention import (
    causal_mask,
    rel_shift,
    relative_scores,
    sinusoid_positions,
)
from minitensor.testing import GradcheckError, gradcheck
from models.transformer_xl import TransformerXL, TransformerXLConfig

np.set_printoptions(precision=3, suppress=True, linewidth=110)
LESSON_START = time.perf_counter()


def show(obj, source=False):
    """Print a library object's docstring (or its source code) under a title."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    print(f"--- {name} ({'source' if source else 'docstring'}) ---")
    print(textwrap.dedent(inspect.getsource(obj)) if source else inspect.getdoc(obj))


rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Absolute positions collide across segments
#
# A vanilla Transformer adds a position embedding to each token embedding. With segment
# recurrence, segment $\tau$ and segment $\tau + 1$ are both fed as
#
# $$
# h_{\tau+1} = f\big(h_\tau,\ E_{s_{\tau+1}} + U_{1:L}\big), \qquad
# h_\tau = f\big(h_{\tau-1},\ E_{s_\tau} + U_{1:L}\big):
# $$
#
# the same $U_{1:L}$ twice. Below, a vocabulary of $V = 6$ tokens in $d = 8$ dimensions,
# $L = 4$, and the sinusoid codes of positions $0..L-1$ as $U$. Two consecutive segments
# get the same position codes, index by index: the difference printed below is only the
# $10^{-16}$ rounding of computing $(E + U) - E$ in floating point, not a difference in $U$.

# %%
V_ABS, D_ABS, L_ABS = 6, 8, 4
E = rng.standard_normal((V_ABS, D_ABS))  # token embeddings E_x
# sinusoid_positions lists the LONGEST distance first (row c encodes L-1-c; section 3 explains why),
# so reversed, row p encodes p: U_0 .. U_{L-1}
U = sinusoid_positions(L_ABS, D_ABS, np.float64)[::-1]
seg_prev = np.array([2, 0, 5, 1])  # s_tau: becomes the memory
seg_cur = np.array([2, 3, 4, 5])  # s_{tau+1}: token 2 again at index 0
x_prev = E[seg_prev] + U  # E_{s_tau} + U_{1:L}
x_cur = E[seg_cur] + U  # E_{s_{tau+1}} + U_{1:L}
position_code_collision = float(np.abs((x_prev - E[seg_prev]) - (x_cur - E[seg_cur])).max())
print(f"position codes of segment tau vs segment tau+1, max |diff| = {position_code_collision}")

# %% [markdown]
# The consequence inside attention: query $i = 2$ of the current segment looks at the
# memory (segment $\tau$, distances $L + 2 - j$) and at its own segment (distances
# $2 - j$). Key 0 of the memory and key 0 of the segment hold the same token 2 and the
# same code $U_0$, so their scores are equal, although one is 6 tokens back and the other
# 2. Every token of the memory is a perfect impostor of the token at the same index of
# the segment.

# %%
W_q = rng.standard_normal((D_ABS, D_ABS)) / math.sqrt(D_ABS)
W_k = rng.standard_normal((D_ABS, D_ABS)) / math.sqrt(D_ABS)
keys_abs = np.concatenate([x_prev, x_cur]) @ W_k.T  # (2L, d): memory keys, then current ones
query_abs = W_q @ x_cur[2]  # q_2 = W_q (E_{x_2} + U_2)
scores_abs = keys_abs @ query_abs  # A^abs_{2, j} for the 2L keys
print("distance of each key from query 2:", np.arange(L_ABS + 2, L_ABS + 2 - 2 * L_ABS, -1))
print("absolute scores:                  ", scores_abs)
absolute_impostor_diff = float(abs(scores_abs[0] - scores_abs[L_ABS]))
print(f"memory key 0 vs current key 0 (distances 6 and 2): |diff| = {absolute_impostor_diff}")

# %% [markdown]
# ## 2. The four terms of absolute attention
#
# In the paper's column-vector notation, the score of query $i$ against key $j$ with
# absolute positions is
#
# $$
# \begin{aligned}
# A_{i,j}^{\mathrm{abs}} &= \big(W_q (E_{x_i} + U_i)\big)^\top \big(W_k (E_{x_j} + U_j)\big)\\
# &= \underbrace{E_{x_i}^\top W_q^\top W_k E_{x_j}}_{(a)}
#  + \underbrace{E_{x_i}^\top W_q^\top W_k U_j}_{(b)}
#  + \underbrace{U_i^\top W_q^\top W_k E_{x_j}}_{(c)}
#  + \underbrace{U_i^\top W_q^\top W_k U_j}_{(d)} ,
# \end{aligned}
# $$
#
# just bilinearity: (a) content with content, (b) content with the key's position,
# (c) the query's position with content, (d) position with position. Checked on the
# $L \times L$ scores of the current segment:

# %%
Eq, Ek = E[seg_cur] @ W_q.T, E[seg_cur] @ W_k.T  # rows: W_q E_{x_i}, W_k E_{x_j}
Uq, Uk = U @ W_q.T, U @ W_k.T  # rows: W_q U_i, W_k U_j
abs_terms = {"a": Eq @ Ek.T, "b": Eq @ Uk.T, "c": Uq @ Ek.T, "d": Uq @ Uk.T}
abs_scores = (x_cur @ W_q.T) @ (x_cur @ W_k.T).T
abs_expansion_diff = float(np.abs(sum(abs_terms.values()) - abs_scores).max())
print(f"(a)+(b)+(c)+(d) vs (W_q(E+U))^T (W_k(E+U)): max |diff| = {abs_expansion_diff:.1e}")

# %% [markdown]
# ## 3. From absolute to relative: $R_{i-j}$, $u$ and $v$
#
# Transformer-XL rewrites each term so that only the distance $i - j$ appears:
#
# $$
# A_{i,j}^{\mathrm{rel}} =
#   \underbrace{E_{x_i}^\top W_q^\top W_{k,E} E_{x_j}}_{(a)}
# + \underbrace{E_{x_i}^\top W_q^\top W_{k,R} R_{i-j}}_{(b)}
# + \underbrace{u^\top W_{k,E} E_{x_j}}_{(c)}
# + \underbrace{v^\top W_{k,R} R_{i-j}}_{(d)} .
# $$
#
# Three changes:
#
# 1. in (b) and (d) the key's absolute position $U_j$ becomes the relative code $R_{i-j}$,
#    a fixed sinusoid (not trained) of the distance, with its own projection $W_{k,R}$;
# 2. in (c) and (d) the query-position vector $U_i^\top W_q^\top$ becomes a trained vector,
#    $u$ in (c) and $v$ in (d): once positions are relative, the query's own position
#    carries no information ("where am I" is the same question at every $i$), so the
#    vector must be the same for every query: a global bias;
# 3. keys are projected by $W_{k,E}$ for content and $W_{k,R}$ for position: two different
#    kinds of keys.
#
# What the terms mean: (a) content-based addressing ("which tokens match me");
# (b) a content-dependent positional bias ("a token like me looks 3 back");
# (c) a global content bias ("some tokens matter to everyone");
# (d) a global positional bias ("recent tokens matter more").
#
# With $R_{i-j}$ the impostor of section 1 disappears: the memory key and the current key
# are at distances $L + 2$ and $2$, so (b) and (d) differ. Here $R$ is the table of
# `sinusoid_positions`; keys $j = 0..2L-1$ (memory first), query $i = L + 2$ in absolute
# terms. Terms (a) and (c) are the same for both keys (same token), so the whole difference
# comes from the position terms (b) and (d).

# %%
show(sinusoid_positions)
W_kE, W_kR = W_k, rng.standard_normal((D_ABS, D_ABS)) / math.sqrt(D_ABS)
u_vec, v_vec = rng.standard_normal(D_ABS), rng.standard_normal(D_ABS)
R_table = sinusoid_positions(2 * L_ABS, D_ABS, np.float64)  # row c: distance 2L-1-c


def R_of(distance):
    return R_table[2 * L_ABS - 1 - distance]


q_rel = W_q @ E[seg_cur[2]]  # the query's content only: no position in the input
tokens_all = np.concatenate([seg_prev, seg_cur])
i_abs = L_ABS + 2
scores_rel = np.array([q_rel @ W_kE @ E[tokens_all[j]] + q_rel @ W_kR @ R_of(i_abs - j)
                       + u_vec @ W_kE @ E[tokens_all[j]] + v_vec @ W_kR @ R_of(i_abs - j)
                       for j in range(i_abs + 1)])  # (a) + (b) + (c) + (d), causal keys only
relative_impostor_diff = float(abs(scores_rel[0] - scores_rel[L_ABS]))
print("relative scores of query 2 against memory + segment keys 0..6:", scores_rel)
print(f"memory key 0 vs current key 0 (distances 6 and 2): |diff| = {relative_impostor_diff:.3f}")

# %% [markdown]
# ## 4. The rel-shift trick
#
# Computing (b) as written needs, for each pair $(i, j)$, the vector $W_{k,R} R_{i-j}$:
# a $T \times K$ grid of $d$-vectors ($K = M + T$ keys). But only $K$ distances occur,
# $0..K-1$. So compute every query against every *distance* with one product,
#
# $$
# X = (q + v)\, (W_{k,R} R)^\top \in \mathbb R^{T \times K}, \qquad
# X_{i,c} = (q_i + v)^\top W_{k,R} R_{K-1-c},
# $$
#
# (the rows of $R$ run from distance $K - 1$ down to $0$), and then move each entry to
# the key it belongs to. Query $i$ sits at absolute position $M + i$, key $j$ at $j$,
# their distance is $M + i - j$, which is column $c = K - 1 - (M + i - j) = T - 1 - i + j$:
#
# $$
# Y_{i,j} = X_{i,\; T-1-i+j} \qquad (j \le M + i).
# $$
#
# Row $i$ is shifted left by $T - 1 - i$ places: a different shift per row, which looks
# like a gather. (`rel_shift`'s docstring says $T - i$: it counts the shift in the padded
# rows of length $K + 1$, whose extra zero column comes first; here we count columns of the
# unpadded row of length $K$. Both are right, one column apart.) The trick does it with a pad and two reshapes. Prepend a zero column,
# $T \times (K + 1)$; read the same memory as $(K + 1) \times T$; drop the first row (the
# first $T$ entries); read the remaining $KT$ entries as $T \times K$. Entry $(i, j)$ of
# the result is entry $T + iK + j$ of the flat padded buffer, and the padded row $i'$
# starts at $i'(K + 1)$, so with $T + iK + j = i'(K+1) + 1 + c$: for $j \le M + i$ it is
# row $i' = i$, column $c = T - 1 - i + j$, exactly $X_{i,T-1-i+j}$. For $j = M + i + 1$
# it lands on the zero of row $i + 1$, and beyond that on the start of row $i + 1$:
# garbage, but precisely in the entries $j > M + i$ that the causal mask forbids.
#
# To see it, fill $X$ with labels: $X_{i,c} = 100\,i + (K - 1 - c)$, "query $i$, distance
# $K - 1 - c$". After the shift, an entry that reads $100\,i + (M + i - j)$ is right.

# %%
show(rel_shift)
T_SH, M_SH = 3, 2
K_SH = M_SH + T_SH
labels = 100.0 * np.arange(T_SH)[:, None] + (K_SH - 1 - np.arange(K_SH))[None, :]  # (T, K)
padded = np.concatenate([np.zeros((T_SH, 1)), labels], axis=1)  # (T, K+1)
folded = padded.reshape(K_SH + 1, T_SH)  # (K+1, T): the same buffer, rows of T
shifted = folded[1:].reshape(T_SH, K_SH)  # drop T entries, back to (T, K)
print(f"X (T={T_SH}, K={K_SH}), column c = distance {K_SH - 1}..0:\n{labels}")
print(f"padded (T, K+1):\n{padded}")
print(f"read as (K+1, T):\n{folded}")
print(f"first row dropped, read as (T, K) = Y:\n{shifted}")
shift_library = rel_shift(mt.tensor(labels)).numpy()
wanted = 100.0 * np.arange(T_SH)[:, None] + (M_SH + np.arange(T_SH)[:, None] - np.arange(K_SH)[None, :])
mask_sh = causal_mask(T_SH, K_SH, offset=M_SH)
print(f"wanted 100 i + (M + i - j) (negative distances are the future):\n{wanted}")
print(f"causal mask (1 = may attend):\n{mask_sh.astype(int)}")
rel_shift_equals_steps = bool(np.array_equal(shift_library, shifted))
garbage_is_masked = bool(np.array_equal(shift_library == wanted, mask_sh))
print(f"rel_shift equals the steps above: {rel_shift_equals_steps}; "
      f"correct exactly where the mask allows: {garbage_is_masked}")

# %% [markdown]
# The garbage: $Y_{i, M+i+1} = 0$ (the pad of row $i + 1$), and after it the first entries of
# row $i + 1$ ($104 = X_{1,0}$ above). The last row has none. The causal mask sets those
# scores to $-\infty$ before the softmax, so they never matter; without the mask they would be
# silently wrong, which is why `relative_scores` says "always apply the causal mask".
#
# ### Exercise 1: the shift by explicit indexing
#
# Write `rel_shift_by_index(x)` in plain NumPy: for x (..., T, K) with $K \ge T$ and
# $M = K - T$, return y of the same shape with $y_{\ldots,i,j} = x_{\ldots,i,\,T-1-i+j}$ where
# $j \le M + i$ and NaN where $j > M + i$. Use index arrays (or two loops): no pad, no
# reshape. It is the independent reference the trick is checked against below, on random
# (B, H, T, K) arrays for several $T$ and $M$.

# %%
def rel_shift_by_index(x):
    """y[..., i, j] = x[..., i, T-1-i+j] where j <= i + M (M = K - T), NaN elsewhere (the future)."""
    # BEGIN SOLUTION lesson 10: rel_shift_by_index: the index formula for Y_{i,j} derived above, NaN on the future entries
    x = np.asarray(x, dtype=np.float64)
    t, k = x.shape[-2:]
    m = k - t
    i = np.arange(t)[:, None]
    j = np.arange(k)[None, :]
    allowed = j <= i + m
    col = np.where(allowed, t - 1 - i + j, 0)  # (T, K) column of x to read; 0 is a placeholder
    y = np.take_along_axis(x, np.broadcast_to(col, x.shape), axis=-1)
    return np.where(allowed, y, np.nan)
    # END SOLUTION


rel_shift_checks = []
for t_, m_ in [(1, 0), (3, 0), (4, 2), (2, 5), (5, 3)]:
    x = rng.standard_normal((2, 3, t_, m_ + t_))
    y_trick = rel_shift(mt.tensor(x)).numpy()
    y_index = rel_shift_by_index(x)
    allowed = causal_mask(t_, m_ + t_, offset=m_)
    same_nan = bool(np.array_equal(np.isnan(y_index[0, 0]), ~allowed))
    diff = float(np.abs(np.where(allowed, y_trick - np.nan_to_num(y_index), 0.0)).max())
    rel_shift_checks.append((t_, m_, diff, same_nan))
    print(f"T={t_} M={m_}: max |rel_shift - explicit| on allowed entries = {diff:.1e}; "
          f"NaN exactly on the masked entries: {same_nan}")

# %% [markdown]
# ## 5. The four terms of a real model, per head
#
# `relative_scores` computes $A^{\mathrm{rel}}$ as two products, $(q + u) k^\top$ for (a)+(c)
# and $\mathrm{rel\_shift}\big((q + v)(W_{k,R}R)^\top\big)$ for (b)+(d), and with
# `terms=True` each term on its own. `TransformerXL.score_terms` records them in every layer
# and head. A small model ($L = 4$, $M = 3$; weights, $u$ and $v$ drawn with standard
# deviation 0.3 instead of 0.02 so that the terms are visible) reads
# a segment after a memory; the segment repeats token 7 at indices 0 and 2, so at layer 0
# (whose input is the token embedding alone, no position) queries 0 and 2 are the same
# vector. What the formula predicts, checked on every layer and head:
#
# - (c) $= u^\top k_j$ does not depend on the query: every row is the same;
# - (d) $= v^\top W_{k,R} R_{i-j}$ depends on $i - j$ only: constant along diagonals;
# - (b) $= q_i^\top W_{k,R} R_{i-j}$: at layer 0, rows of the two equal queries are the same
#   function of the distance (row 2 is row 0 shifted two keys right);
# - $(a + b + c + d) / \sqrt{d_h}$ is what the softmax received, and the future entries are
#   NaN (masked: where the rel-shift left garbage).

# %%
show(TransformerXL.score_terms)
show(relative_scores)
cfg = TransformerXLConfig(vocab_size=11, d_model=16, n_layer=2, n_head=2, d_head=8, d_inner=32,
                          tgt_len=4, mem_len=3, dropout=0.0, init_std=0.3)  # larger than 0.02: visible terms
model = TransformerXL(cfg, rng=1, dtype=np.float64)
model.eval()
with mt.no_grad():
    _, mems = model(np.array([[1, 2, 3]]))
terms = model.score_terms(np.array([[7, 4, 7, 5]]), mems)
M_T, L_T = 3, 4
for name in ("a", "b", "c", "d", "scores"):
    print(f"layer 0, head 0, term {name} (rows: queries 0..3, columns: memory keys 0..2, then segment keys 0..3):")
    print(terms[0][name][0, 0])


def max_nan_diff(a, b):
    both = ~np.isnan(a) & ~np.isnan(b)
    return float(np.abs(a[both] - b[both]).max())


term_facts = {"c_rows_equal": 0.0, "d_toeplitz": 0.0, "sum_is_scores": 0.0, "nan_is_mask": True}
for layer in terms:
    c, d = layer["c"], layer["d"]
    allowed = layer["mask"]
    for i in range(1, L_T):  # (c): row i equals row 0 where both are defined
        term_facts["c_rows_equal"] = max(term_facts["c_rows_equal"], max_nan_diff(c[..., i, :], c[..., 0, :]))
    for i in range(L_T - 1):  # (d): d[i, j] = d[i+1, j+1]
        term_facts["d_toeplitz"] = max(term_facts["d_toeplitz"], max_nan_diff(d[..., i, :-1], d[..., i + 1, 1:]))
    total = (layer["a"] + layer["b"] + c + d) / math.sqrt(cfg.d_head)
    term_facts["sum_is_scores"] = max(term_facts["sum_is_scores"], max_nan_diff(total, layer["scores"]))
    term_facts["nan_is_mask"] &= bool(np.array_equal(np.isnan(layer["b"][0, 0]), ~allowed))
b0 = terms[0]["b"][0]  # (H, L, M+L) at layer 0
b_shift_diff = float(np.abs(b0[:, 2, 2:M_T + 3] - b0[:, 0, 0:M_T + 1]).max())
term_facts["b_equal_queries_shifted"] = b_shift_diff
print(term_facts)

# %% [markdown]
# ## 6. Checking the gradient of `relative_scores`
#
# `rel_shift` is composed from `concat`, `reshape` and slicing, so its backward is derived
# by the engine: each output gradient goes back to the entry of $X$ it was read from, and
# the pad's gradient is dropped. The gradients of $q$, $k$, the position keys $r$ and the
# biases $u$, $v$ follow from the two products. Rather than trust that, we check it the way
# lesson 03 taught: central differences in float64 for every entry of every input
# (`minitensor.testing.gradcheck`).
#
# ### Exercise 2: a gradcheck of `relative_scores`
#
# Write `check_relative_scores(fn, seed=0, m=2, t=3)`: draw float64 inputs with
# `requires_grad=True` from `np.random.default_rng(seed)`, q (B, H, T, Dh), k (B, H, M+T, Dh),
# r (H, M+T, Dh), u and v (H, Dh), with B = 1, H = 2, Dh = 4, and return
# `gradcheck(fn, q, k, r, u, v)` (which returns True or raises `GradcheckError`). Every one of
# the five inputs must be checked. Only the causal entries matter to a model: the function
# checked is `fn` followed by a multiplication with the causal mask, so the check says
# nothing about the garbage entries.
#
# Below it passes for `relative_scores` and catches a broken version where $v$ gets no
# gradient (a bias detached by mistake: a silent bug, the model still trains). A second
# broken version forgets the rel-shift: every position score sits in the wrong column. That
# one *passes* the gradient check, because its backward is right for the function it
# computes; a gradient check compares backward with forward, never forward with the
# formula. The comparison with explicit indexing (section 4) is what catches it.

# %%
show(gradcheck)


def check_relative_scores(fn, seed=0, m=2, t=3):
    """gradcheck of mask * fn(q, k, r, u, v) over every entry of the five float64 inputs."""
    # BEGIN SOLUTION lesson 10: check_relative_scores: lesson 03's float64 gradient check of fn over all five inputs, on the causal entries only
    gen = np.random.default_rng(seed)
    b, h, dh, klen = 1, 2, 4, m + t
    shapes = [(b, h, t, dh), (b, h, klen, dh), (h, klen, dh), (h, dh), (h, dh)]
    q, k, r, u, v = (mt.tensor(gen.standard_normal(s), requires_grad=True) for s in shapes)
    mask = mt.tensor(causal_mask(t, klen, offset=m).astype(np.float64))  # the causal entries only

    def masked(*args):
        return fn(*args) * mask

    return gradcheck(masked, q, k, r, u, v)
    # END SOLUTION


def detached_v(q, k, r, u, v):
    return relative_scores(q, k, r, u, v.detach())


def unshifted(q, k, r, u, v):
    h, dh = u.shape
    ac = (q + u.reshape(h, 1, dh)) @ k.swapaxes(-1, -2)
    return ac + (q + v.reshape(h, 1, dh)) @ r.swapaxes(-1, -2)  # no rel_shift: column = distance, not key


gradcheck_results = {"relative_scores": check_relative_scores(relative_scores)}
for m_, t_ in [(0, 3), (3, 2)]:
    gradcheck_results[f"relative_scores M={m_} T={t_}"] = check_relative_scores(relative_scores, seed=1, m=m_, t=t_)
for name, broken in (("v detached", detached_v), ("no shift", unshifted)):
    try:
        check_relative_scores(broken)
        gradcheck_results[name] = True
    except GradcheckError as exc:
        gradcheck_results[name] = False
        print(f"{name}: caught: {str(exc)[:110]}...")
print(gradcheck_results)
gen_fw = np.random.default_rng(2)
fw_inputs = [mt.tensor(gen_fw.standard_normal(s)) for s in [(1, 2, 3, 4), (1, 2, 5, 4), (2, 5, 4), (2, 4), (2, 4)]]
fw_allowed = causal_mask(3, 5, offset=2)
q_, k_, r_, u_, v_ = (x.numpy() for x in fw_inputs)
explicit_bd = rel_shift_by_index((q_ + v_[:, None]) @ r_.swapaxes(-1, -2))  # (b)+(d) by explicit indexing
explicit = (q_ + u_[:, None]) @ k_.swapaxes(-1, -2) + explicit_bd
forward_errors = {name: float(np.abs(np.where(fw_allowed, fn(*fw_inputs).numpy() - np.nan_to_num(explicit), 0)).max())
                  for name, fn in (("relative_scores", relative_scores), ("no shift", unshifted))}
print(f"forward vs explicit indexing, max |diff| on the causal entries: {forward_errors}")
lesson_seconds = time.perf_counter() - LESSON_START
print(f"\nlesson 10 ran in {lesson_seconds:.1f} s")

# %% [markdown]
# Two checks, two kinds of bug: the gradient check finds the missing gradient of $v$ (it names
# input 4 and the entry), the forward comparison finds the missing shift.
#
# ## Exercises
#
# In the student copy two regions raise `NotImplementedError`; the lesson stops at the
# first one it meets, so do them in this order:
#
# 1. **`rel_shift_by_index(x)`** (section 4): the per-row shift
#    $y_{i,j} = x_{i,T-1-i+j}$ by explicit indexing, NaN on the future entries. It must
#    agree with the pad-and-reshape `rel_shift` on every allowed entry, for any $T$ and $M$.
# 2. **`check_relative_scores(fn, seed, m, t)`** (section 6): a float64 gradient check of
#    `fn` over all five inputs, restricted to the causal entries. It must pass for
#    `relative_scores` and fail for a version whose $v$ gets no gradient.
#
# If you want more: gradcheck each of the four terms of `relative_scores(..., terms=True)`
# separately (which inputs does each one depend on?); or replace $u$ and $v$ by zero and
# train the models of lesson 09 again: which of the four terms could the model do without?
#
# Check your work with `pytest -m lesson10 -x` (from the repository's root; `-x` stops at the first failure).
