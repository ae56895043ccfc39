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
# # Lesson 07 — GPT pretraining
#
# **Needs:** the exercises of lessons 02, 04, 05 and 06 solved first (its tests and code call them).
#
# GPT-1 (Radford et al., 2018) is the decoder half of the Transformer used as a
# language model: a stack of masked self-attention blocks that reads a text and,
# at every position at once, predicts the next token. Its pretraining objective
# needs no labels, only text. This lesson reads the model of the source's
# section 3.3.1 line by line and trains a small one on Shakespeare:
#
# 0. what a token is: characters, words, or the subwords of byte-pair encoding,
#    whose merge rule we run by hand (GPT-1 read 40,000 BPE tokens, not characters);
# 1. the input $h_0 = U W_e + W_p$, the post-LN block, the tanh GELU, and the
#    parameter count of a GPT, checked for a tiny model and for GPT-1 itself;
# 2. the causal mask at the level of the whole model: changing a future token
#    does not change any earlier prediction;
# 3. the objective $L_1 = \sum_i \log P(u_i \mid u_{i-k}, \ldots, u_{i-1})$ as a mean
#    cross-entropy, the initial loss $\ln V$, and bits per character;
# 4. tied embeddings, $P(u) = \mathrm{softmax}(h_n W_e^\top)$: one matrix that
#    receives gradient from two places;
# 5. a real training run on Shakespeare that beats the unigram entropy of the text;
# 6. sampling: temperature and top-$k$, with the formulas, then text.
#
# The model lives in `models/gpt/model.py` (`GPT`, `GPTConfig`), the corpus and the
# character tokenizer in `models/data.py`, byte-pair encoding in `models/tokenizers/`,
# bits per character in `models/evaluate.py`.
# Their docstrings are the single source; we print them.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` (here and in
# `models/gpt/model.py` and `models/tokenizers/bpe.py`) is blanked out in the student
# copy: those are the exercises listed at the end.

# %%
import inspect
import math
import textwrap
import time

import numpy as np

import minitensor as mt
import minitensor.functional as F
from models.data import CharTokenizer, load_shakespeare, random_batches
from models.tokenizers import apply_merges, learn_merges, merge_pair, train_bpe
from models.gpt import GPT, PRESETS, GPTConfig
from models.evaluate import evaluate_bpc

np.set_printoptions(precision=4, suppress=True)
LESSON_START = time.perf_counter()


def show(obj, source=False):
    """Print a library object's docstring (or its source code) under a title."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    print(f"--- {name} ({'source' if source else 'docstring'}) ---")
    print(textwrap.dedent(inspect.getsource(obj)) if source else inspect.getdoc(obj))


def max_abs_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def no_dropout(**fields):
    """A GPTConfig without dropout: the checks below compare exact values, and the short
    training run underfits rather than overfits, so dropout would only slow it down."""
    return GPTConfig(embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0, **fields)


rng = np.random.default_rng(0)
corpus = load_shakespeare()
tok = CharTokenizer.from_text(corpus.train)  # the vocabulary comes from the training plays only
V = tok.vocab_size
print(corpus)
print(f"{V} characters in the vocabulary: {tok.chars!r}")

# %% [markdown]
# ## 0. Tokens: characters, words, or subwords
#
# A language model predicts the next **token**, so someone has to decide what a token
# is. This lesson's model reads characters: $V = 76$, nothing is ever unknown, but a
# window of 128 positions holds only 128 characters, and most of the model's steps
# go into spelling. Whole words go the other way: a window holds a paragraph, but the
# vocabulary runs to tens of thousands of entries, most of them seen a handful of
# times, and a word missing from the training text cannot be written at all.
#
# **Byte-pair encoding** (Sennrich et al., 2016, after a compression scheme of 1994)
# sits in between. It starts from the characters and learns, from the training text,
# which neighbours to glue together:
#
# 1. write every word as its characters, and count each word's frequency;
# 2. count every adjacent pair of symbols, each occurrence weighted by its word's count;
# 3. **merge** the most frequent pair $(a, b)$ into one new symbol $ab$ everywhere,
#    and record it as the next line of the merge table (its line number is its **rank**);
# 4. repeat from step 2 until the vocabulary has the size you want.
#
# Frequent words end up as one token, rare ones as a few pieces, and any word can
# still be spelled from characters. GPT-1 used 40,000 merges learnt on its books,
# with a marker `</w>` glued to the last character of each word, so that `er` at the
# end of a word (`lower`) and inside one (`eras`) are different tokens.
#
# By hand, on a corpus of four words (the example of Sennrich et al.): `low` ×5,
# `lower` ×2, `newest` ×6, `widest` ×3, with `</w>` marking the ends. The pairs
# `e s` and `s t</w>` both occur $6 + 3 = 9$ times, more than any other (`w e`: 8,
# `l o`: 7); a tie is broken by the pair's own order, so the first merge is
# `e s` → `es`. Now `es t</w>` occurs 9 times, the most, then `l o` 7 times, and so
# on. `learn_merges` (in `models/tokenizers/train.py`)
# does exactly this, keeping the pair counts up to date as it merges instead of
# counting again after every merge:

# %%
words = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
as_symbols = {tuple(w[:-1]) + (w[-1] + "</w>",): n for w, n in words.items()}  # GPT-1's end marker
learnt = learn_merges(as_symbols, 6)
for rank, (a, b) in enumerate(learnt):
    print(f"merge {rank}: {a!r} + {b!r} -> {a + b!r}")

# %% [markdown]
# One merge step, `merge_pair`, replaces every occurrence of the pair, scanning left to
# right (so with the merge `a a`, the symbols `a a a` become `aa a`). To **encode** a
# word never seen in training, replay the table: look at every adjacent pair, merge
# the one of lowest rank (the one learnt first), and repeat until no adjacent pair is
# in the table (`apply_merges`). That cuts the word the way training would have:

# %%
ranks = {pair: rank for rank, pair in enumerate(learnt)}
print(merge_pair(["n", "e", "w", "e", "s", "t</w>"], ("e", "s"), "es"))
for word in ("lowest", "newer", "wider"):
    print(f"{word!r} -> {apply_merges(tuple(word[:-1]) + (word[-1] + '</w>',), ranks)}")

# %% [markdown]
# **The byte-level trick** (GPT-2, and RoBERTa, whose tokenizer Longformer kept):
# start from the 256 possible **bytes** of UTF-8 instead of the characters of the
# training text. Every string is a sequence of bytes, so nothing is ever unknown, not
# even an emoji or a character the training text never had, and decoding is exact. The
# files store each byte as a printable character (a space is `Ġ`), and a pattern cuts
# the text into words first (a word carries its leading space, so merges never
# cross words). `train_bpe` learns such a tokenizer from a tenth of the training plays
# (`python -m models tokenizer train` learns one from all of them):

# %%
bpe = train_bpe(corpus.train[:400_000], vocab_size=256 + 4 + 500, kind="byte-level")
line = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?"
pieces = bpe.tokens(bpe.encode(line))
print(f"{len(line)} characters -> {len(pieces)} tokens: {pieces}")
assert bpe.decode(bpe.encode(line)) == line  # lossless
held_out = corpus.validation[:50_000]
print(f"characters per token on validation text: {len(held_out) / len(bpe.encode(held_out)):.2f}")

# %% [markdown]
# With 500 merges a window of 128 tokens covers about twice as many characters
# (2.1 per token here; 3.0 with 4,000 merges learnt on all the plays).
# The price is a larger output layer and fewer examples of each token; whether it
# pays is measured, not assumed (the README's table: in the five-minute run's time,
# every size from 500 to 4,000 tokens beats characters by about 0.2 bits per
# character, best at 2,000). To compare models with different tokens, report
# **bits per character**: the total bits a model spends on a text divided by the
# text's characters, whatever the tokens were (section 3 defines it for characters).
# The rest of this lesson keeps characters.
#
# ## 1. The model: $h_0 = U W_e + W_p$, then $n$ post-LN blocks
#
# The source's section 3.3.1, written out with shapes. A context of $T$ tokens is
# the one-hot matrix $U \in \{0,1\}^{T \times V}$ (row $t$ is the indicator of token
# $u_t$); $W_e \in \mathbb R^{V \times d}$ is the token embedding and
# $W_p \in \mathbb R^{n_{ctx} \times d}$ the position embedding, which GPT-1 *learns*
# (the original Transformer used fixed sinusoids):
#
# $$
# h_0 = U W_e + W_p, \qquad h_l = \mathrm{block}(h_{l-1})\ \ (l = 1..n), \qquad
# P(u) = \mathrm{softmax}(h_n W_e^\top) .
# $$
#
# Nobody multiplies by a one-hot matrix: row $t$ of $U W_e$ is row $u_t$ of $W_e$,
# so $U W_e$ is a lookup, `tokens_embed(ids)`, and $W_p$ means its first $T$ rows,
# `positions_embed(arange(T))`, broadcast over the batch.
#
# Each block is **post-LN**, as in GPT-1 and the original Transformer: the layer
# norm comes *after* each residual sum,
#
# $$
# x \leftarrow \mathrm{LN}_1\big(x + \mathrm{Attn}(x)\big), \qquad
# x \leftarrow \mathrm{LN}_2\big(x + \mathrm{FFN}(x)\big), \qquad
# \mathrm{FFN}(x) = \mathrm{GELU}(x W_1 + b_1) W_2 + b_2 ,
# $$
#
# so every block hands on a residual stream renormalised to mean $0$ and variance
# $1$ per position (times the LN gain, $1$ at initialisation). GPT-2 later moved LN
# to the input of each sub-layer (pre-LN), which trains deeper stacks more easily.
# The FFN's nonlinearity is the tanh approximation of GELU $= x\,\Phi(x)$:
#
# $$
# \mathrm{GELU}(x) \approx \tfrac12\, x \Big(1 + \tanh\big(\sqrt{2/\pi}\,(x + 0.044715\, x^3)\big)\Big) .
# $$
#
# Below: the library's model, then the same forward pass rebuilt from the formula,
# with a real one-hot $U$ and the blocks applied by hand.

# %%
show(GPT.hidden_states)
show(GPT.forward)

tiny_cfg = no_dropout(vocab_size=V, n_ctx=16, d_model=32, n_layer=2, n_head=4)
tiny = GPT(tiny_cfg, rng=1, dtype=np.float64)  # float64: the comparisons below are exact to ~1e-15
W_e, W_p = tiny.tokens_embed.weight.numpy(), tiny.positions_embed.weight.numpy()
ids = rng.integers(0, V, size=(2, 12))  # (B, T)
U = np.eye(V)[ids]  # (B, T, V): the one-hot context
h = mt.tensor(U @ W_e + W_p[:ids.shape[1]])  # h_0 = U W_e + W_p: (B, T, d)
for block in tiny.h:
    block_in = h
    h = block.ln_1(h + block.attn(h))  # post-LN: normalise after the residual sum
    h = block.ln_2(h + block.mlp(h))
    block_diff = max_abs_diff(h.numpy(), block(block_in).numpy())
reference_logits = h.numpy() @ W_e.T  # h_n W_e^T
model_logits = tiny(ids).numpy()
reference_diff = max(max_abs_diff(h.numpy(), tiny.hidden_states(ids).numpy()),
                     max_abs_diff(reference_logits, model_logits))
print(f"|h_0 = U W_e + W_p -> blocks -> h_n W_e^T  minus  GPT(ids)| = {reference_diff:.1e}")
hn = tiny.hidden_states(ids).numpy()
print(f"post-LN at init: h_n per position has mean {np.abs(hn.mean(-1)).max():.1e} (max |.|) "
      f"and std in [{hn.std(-1).min():.4f}, {hn.std(-1).max():.4f}]")

z = np.linspace(-4, 4, 801)
gelu_formula = 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
gelu_diff = max_abs_diff(F.gelu(mt.tensor(z), approximate="tanh").numpy(), gelu_formula)
gelu_vs_exact = max_abs_diff(F.gelu(mt.tensor(z), approximate="tanh").numpy(),
                             F.gelu(mt.tensor(z), approximate="none").numpy())
print(f"|F.gelu(tanh) - formula| = {gelu_diff:.1e};  |tanh form - exact x Phi(x)| <= {gelu_vs_exact:.1e} on [-4, 4]")

# %% [markdown]
# ### Counting the parameters
#
# With $d_{ff} = f$ (GPT-1: $f = 4d = 3072$), one block holds
#
# | part | weights | biases |
# |---|---|---|
# | `c_attn`: $W^Q, W^K, W^V$ fused, $d \to 3d$ | $3d^2$ | $3d$ |
# | `c_proj`: $W^O$, $d \to d$ | $d^2$ | $d$ |
# | `c_fc`: $W_1$, $d \to f$ | $d f$ | $f$ |
# | `c_proj` of the MLP: $W_2$, $f \to d$ | $f d$ | $d$ |
# | `ln_1`, `ln_2`: gain and bias | | $4d$ |
#
# and the whole model, whose output layer *is* $W_e$ (no extra $V \times d$ matrix), is
#
# $$
# N = \underbrace{V d}_{W_e} + \underbrace{n_{ctx}\, d}_{W_p}
#     + n \big(4d^2 + 2 d f + 9 d + f\big)
#   \;\overset{f = 4d}{=}\; V d + n_{ctx}\, d + n\,(12 d^2 + 13 d) .
# $$
#
# The $12 d^2$ per block dominates: for GPT-1 the twelve blocks hold 85M of the
# parameters and the token embedding 31M. We check the formula against a count of
# the actual arrays (`model.num_parameters()` sums their sizes), for the tiny model
# and for GPT-1 built at full size (about 0.47 GB of float32, a few seconds).

# %%
def gpt_parameter_count(vocab_size, n_ctx, d_model, n_layer, d_ff):
    """N = V d + n_ctx d + n (4 d^2 + 2 d f + 9 d + f): tied output, so no second V x d matrix."""
    d, f = d_model, d_ff
    per_block = 4 * d * d + 2 * d * f + 9 * d + f
    return vocab_size * d + n_ctx * d + n_layer * per_block


def count_for(config):
    return gpt_parameter_count(config.vocab_size, config.n_ctx, config.d_model, config.n_layer, config.d_ff)


gpt1_cfg = GPTConfig.preset("gpt1")  # 12 layers, d = 768, 12 heads, n_ctx = 512, V = 40478 (its BPE)
gpt1 = GPT(gpt1_cfg, rng=0)
parameter_counts = {
    "tiny": (count_for(tiny_cfg), tiny.num_parameters(), tiny_cfg.num_parameters()),
    "gpt1": (count_for(gpt1_cfg), gpt1.num_parameters(), gpt1_cfg.num_parameters()),
}
gpt1_parts = {"W_e": gpt1_cfg.vocab_size * gpt1_cfg.d_model, "W_p": gpt1_cfg.n_ctx * gpt1_cfg.d_model,
              "blocks": gpt1_cfg.n_layer * (12 * gpt1_cfg.d_model**2 + 13 * gpt1_cfg.d_model)}
del gpt1  # 0.47 GB we no longer need
print(f"{'model':6} {'formula':>12} {'model arrays':>13} {'GPTConfig':>12}")
for name, (formula, arrays, config_count) in parameter_counts.items():
    print(f"{name:6} {formula:12,d} {arrays:13,d} {config_count:12,d}")
print("GPT-1 split:", {k: f"{v / 1e6:.2f}M" for k, v in gpt1_parts.items()},
      f"(untied, an output matrix would add another {gpt1_parts['W_e'] / 1e6:.2f}M)")
assert all(len(set(c)) == 1 for c in parameter_counts.values()), parameter_counts

# %% [markdown]
# ## 2. The causal mask, seen from the outside
#
# Lesson 06 showed that one masked attention layer cannot see the future. The
# whole model inherits this: the embeddings, the layer norms and the FFN act on
# each position separately, and attention is the only place where positions
# mix, always through the causal mask. So the logits at position $t$ are a function
# of $u_1, \ldots, u_t$ only (the source's example: predict B from A, C from
# [A, B], D from [A, B, C]). That is what makes one forward pass over $T$ tokens
# $T$ honest next-token predictions at once.
#
# The check: replace every token after $t_0$ by other tokens and run the model
# again. The logits at positions $\le t_0$ must not move at all; those after $t_0$ do.

# %%
T0 = 5
changed_ids = ids.copy()
changed_ids[:, T0 + 1:] = (ids[:, T0 + 1:] + rng.integers(1, V, size=ids[:, T0 + 1:].shape)) % V  # all differ
changed_logits = tiny(changed_ids).numpy()
past_change = max_abs_diff(model_logits[:, :T0 + 1], changed_logits[:, :T0 + 1])
future_change = max_abs_diff(model_logits[:, T0 + 1:], changed_logits[:, T0 + 1:])
print(f"max |change| of the logits at positions <= {T0}: {past_change:.1e};  after {T0}: {future_change:.2e}")
assert past_change < 1e-12 < future_change, "the model must not see the future, and must see the present"

# %% [markdown]
# ## 3. The objective $L_1$, the initial loss and bits per character
#
# Given a corpus $\mathcal U = \{u_1, \ldots, u_N\}$, GPT-1 maximises the log-likelihood
# of each token given the $k$ tokens before it (the context window, $k = n_{ctx}$):
#
# $$
# L_1(\mathcal U) = \sum_i \log P(u_i \mid u_{i-k}, \ldots, u_{i-1}; \Theta) .
# $$
#
# (The source prints the condition as $u_1, \ldots, u_{k-1}$; the paper's window
# slides with $i$, as written here.) Maximising $L_1$ is minimising $-L_1$, and
# dividing by the number of predicted positions $N$ changes nothing but the
# scale of the gradient. With $z_t = h_n[t]\, W_e^\top$ the logits at position $t$,
#
# $$
# -\frac{L_1}{N} = \frac1N \sum_t -\log \mathrm{softmax}(z_t)_{u_{t+1}}
# = \frac1N \sum_t \Big(\log \sum_j e^{z_{tj}} - z_{t,u_{t+1}}\Big),
# $$
#
# the mean cross-entropy of the targets $y_t = u_{t+1}$, i.e. `model.lm_loss(x, y)`
# with `y` = `x` shifted by one (`random_batches` cuts windows of $T + 1$ tokens).
# Its unit is the nat.
#
# **At initialisation** every weight is $\mathcal N(0, 0.02^2)$. $h_n$ leaves a layer
# norm with unit variance per feature, so a logit $z_j = \langle h_n, W_e[j] \rangle$
# has standard deviation about $0.02\sqrt d$ ($0.11$ for $d = 32$): all logits are close
# to each other, $P \approx 1/V$, and the loss starts near $-\log(1/V) = \ln V$.
# A model whose first loss is far above $\ln V$ is confidently wrong: a bad init.
#
# **Bits per character.** Nats and bits differ by a constant: $\log_2 x = \ln x / \ln 2$,
# so a loss of $\ell$ nats per character is $\ell / \ln 2$ bits per character (bpc), the
# average number of bits an arithmetic coder driven by the model would spend per
# character. A uniform guess over $V$ characters costs $\log_2 V$ bits.

# %%
show(GPT.lm_loss)
show(evaluate_bpc)

x_ids, y_ids = ids[:, :-1], ids[:, 1:]  # the targets are the inputs shifted by one
logits = tiny(x_ids).numpy()  # (B, T, V)
log_p = logits - logits.max(-1, keepdims=True)
log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))  # log softmax
L1 = float(np.take_along_axis(log_p, y_ids[..., None], -1).sum())  # sum_i log P(u_i | u_<i)
n_predicted = y_ids.size
lm_loss_value = float(tiny.lm_loss(x_ids, y_ids).numpy())
L1_diff = abs(-L1 / n_predicted - lm_loss_value)
print(f"L_1 = {L1:.4f} over {n_predicted} positions;  -L_1/N = {-L1 / n_predicted:.6f};  "
      f"lm_loss = {lm_loss_value:.6f}  (diff {L1_diff:.1e})")

LN2 = math.log(2.0)


def bits_per_character(nats):
    r"""A loss in nats per character as bits per character: $\ell / \ln 2$."""
    return nats / LN2


print(f"initial loss {lm_loss_value:.4f} nats  vs  ln V = ln {V} = {math.log(V):.4f}  "
      f"->  {bits_per_character(lm_loss_value):.3f} bpc vs log2 V = {math.log2(V):.3f}")

# %% [markdown]
# ## 4. Tied embeddings: one matrix, two gradients
#
# The output layer of GPT-1 reuses the token embedding: the logit of token $j$ is
# the inner product of the final hidden state with $j$'s own input embedding,
# $z_{tj} = \langle h_n[t], W_e[j] \rangle$. A token the model expects is one whose
# embedding points the way $h_n$ points. This saves $V d$ parameters (31M in
# GPT-1, a quarter of the model) and makes the input and output
# representations of a token one and the same vector.
#
# $W_e$ is then used twice in the graph, and the gradient of a variable used
# twice is the sum of the gradients through each use (lesson 01: gradients
# accumulate). Write $W_e$'s two uses as if they were different matrices,
# $W_{in}$ in $h_0 = U W_{in} + W_p$ and $W_{out}$ in $z = h_n W_{out}^\top$, evaluated
# at the same value $W_{in} = W_{out} = W_e$:
#
# $$
# \frac{\partial L}{\partial W_e}
# = \underbrace{\frac{\partial L}{\partial W_{in}}}_{\text{input lookup}}
# + \underbrace{\frac{\partial L}{\partial W_{out}}}_{\text{output projection}},
# \qquad
# \frac{\partial L}{\partial W_{out}} = \frac1N \sum_t (p_t - y_t)\, h_n[t]^\top
# = \frac1N (P - Y)^\top H_n ,
# $$
#
# with $p_t$ the softmax of $z_t$ and $y_t$ the one-hot target (lesson 04: the
# gradient of the mean cross-entropy with respect to the logits is $(p - y)/N$).
# The two terms look different: the lookup sends gradient only to the rows of
# tokens that occur in the input (a scatter-add of $\partial L / \partial h_0$), while
# the output projection sends some to *every* row, because every token's
# probability is pushed down wherever it is not the target.
#
# The check: run the tied model, then an untied copy whose output matrix is a
# separate tensor holding the same numbers, and compare.

# %%
tiny.zero_grad()
tiny.lm_loss(x_ids, y_ids).backward()
grad_tied = tiny.tokens_embed.weight.grad.copy()  # (V, d): both uses of W_e

tiny.zero_grad()
W_out = mt.tensor(W_e.copy(), requires_grad=True)  # the output use, as its own leaf
h_n = tiny.hidden_states(x_ids)  # uses tokens_embed.weight as W_in
F.cross_entropy(F.linear(h_n, W_out), y_ids).backward()
grad_in, grad_out = tiny.tokens_embed.weight.grad.copy(), W_out.grad.copy()
tiny.zero_grad()

P = np.exp(log_p)  # softmax of the logits of section 3: (B, T, V)
Y = np.eye(V)[y_ids]  # (B, T, V)
grad_out_by_hand = (P - Y).reshape(-1, V).T @ h_n.numpy().reshape(-1, tiny_cfg.d_model) / n_predicted
tie_diff = max_abs_diff(grad_tied, grad_in + grad_out)
out_formula_diff = max_abs_diff(grad_out, grad_out_by_hand)
rows_in = int((np.abs(grad_in).sum(1) > 0).sum())
rows_out = int((np.abs(grad_out).sum(1) > 0).sum())
print(f"|grad W_e (tied) - (grad W_in + grad W_out)| = {tie_diff:.1e}")
print(f"|grad W_out - (P - Y)^T H_n / N| = {out_formula_diff:.1e}")
print(f"rows of W_e with gradient: input path {rows_in} (= {len(np.unique(x_ids))} distinct input tokens), "
      f"output path {rows_out} of {V}")
print(f"share of the gradient norm: input {np.linalg.norm(grad_in) / np.linalg.norm(grad_tied):.2f}, "
      f"output {np.linalg.norm(grad_out) / np.linalg.norm(grad_tied):.2f}")

# %% [markdown]
# ## 5. Pretraining on Shakespeare
#
# Now the real thing, small: a character-level GPT with $d = 64$, 2 blocks of 4
# heads and a context of 32 characters, trained for 200 steps on batches of
# $16 \times 32$ characters from the 32 training plays, with AdamW, gradient
# clipping at norm 1, and GPT-1's schedule (linear warmup, cosine annealing;
# lesson 05). It is the loop of `models/train.py` without the checkpoints and the
# logging, top to bottom.
#
# One change from GPT-1's recipe: the initial weights are drawn with standard
# deviation $0.1$ instead of $0.02$. With tied embeddings, the gradient that reaches
# the blocks from the loss is $\partial L / \partial h_n = (P - Y) W_e / N$, proportional to the
# scale of $W_e$; GPT-1's $0.02$ suits $d = 768$, but at $d = 64$ it leaves the blocks
# a weak signal: in our runs of this config the loss then sat on the unigram
# plateau (below) for anything from 50 to more than 200 steps, depending on the seed
# and the learning rate. With $0.1$ it left the plateau within about 40 steps for
# each of the three seeds we tried. The price is a first loss a little above
# $\ln V$: the logits start with standard deviation $\sigma = 0.1\sqrt{64} = 0.8$, and
# for independent Gaussian logits $\mathbb E \log \sum_j e^{z_j} \approx \ln\big(V\, \mathbb E\, e^{z}\big)
# = \ln V + \sigma^2 / 2$.
#
# What should it beat? The **unigram entropy** of the text,
#
# $$
# H_1 = -\sum_c q_c \log_2 q_c \ \text{bits}, \qquad q_c = \frac{\#c}{N},
# $$
#
# is the bpc of the best model that ignores context altogether: it knows only how
# often each character occurs. A network learns these frequencies first, and its
# loss lingers near $H_1$ for a while; going below it means the model has started
# to use the context: which letters follow which, spelling, the shape of a speech.
# We compute $H_1$ on the training plays, and the fairer baseline for held-out
# text as well: the cross-entropy of the validation plays under the training
# frequencies (add-one smoothed, in case a character is missing).

# %%
train_ids, val_ids = tok.encode(corpus.train), tok.encode(corpus.validation)
counts = np.bincount(train_ids, minlength=V)
q = counts / counts.sum()
unigram_bits = float(-(q[q > 0] * np.log2(q[q > 0])).sum())
q_smooth = (counts + 1) / (counts.sum() + V)
unigram_val_bits = float(-np.log2(q_smooth[val_ids]).mean())
print(f"unigram entropy of the training plays: {unigram_bits:.4f} bits/char "
      f"({unigram_bits * LN2:.4f} nats);  on the validation plays: {unigram_val_bits:.4f} bits/char")
print(f"uniform over {V} characters: {math.log2(V):.4f} bits/char")

STEPS, BATCH, SEQ, PEAK_LR, INIT_STD = 200, 16, 32, 3e-3, 0.1
small_cfg = no_dropout(vocab_size=V, n_ctx=SEQ, d_model=64, n_layer=2, n_head=4, init_std=INIT_STD)
model = GPT(small_cfg, rng=0)  # float32, as a real run
params = model.parameters()
opt = mt.optim.AdamW(params, lr=PEAK_LR, weight_decay=0.01, skip_1d_decay=True)
batch_rng = np.random.default_rng(0)
print(f"model: {small_cfg.num_parameters():,} parameters; {STEPS} steps of {BATCH} x {SEQ} characters")
losses = []
train_start = time.perf_counter()
for step in range(STEPS):
    opt.lr = mt.optim.warmup_cosine(step, warmup=20, total=STEPS, peak_lr=PEAK_LR, min_lr=PEAK_LR / 10)
    x, y = random_batches(train_ids, BATCH, SEQ, batch_rng)  # (B, T) each, y = x shifted by one
    opt.zero_grad()
    loss = model.lm_loss(x, y)  # -L_1 / N in nats
    loss.backward()
    mt.optim.clip_grad_norm(params, 1.0)
    opt.step()
    losses.append(float(loss.numpy()))
    if step % 40 == 0 or step == STEPS - 1:
        print(f"step {step:4d}  loss {losses[-1]:.4f} nats = {bits_per_character(losses[-1]):.3f} bpc")
train_seconds = time.perf_counter() - train_start
final_train_bits = bits_per_character(float(np.mean(losses[-20:])))
val_bpc = evaluate_bpc(model, val_ids, batch_size=64, seq_len=SEQ, max_batches=8)  # 16k held-out characters
sigma = INIT_STD * math.sqrt(small_cfg.d_model)
print(f"trained in {train_seconds:.1f} s.  first loss {losses[0]:.4f} nats;  "
      f"ln V + sigma^2/2 = {math.log(V):.4f} + {sigma**2 / 2:.4f} = {math.log(V) + sigma**2 / 2:.4f}")
print(f"last 20 steps: {final_train_bits:.3f} bpc;  validation: {val_bpc:.3f} bpc  "
      f"vs unigram {unigram_bits:.3f} (train) / {unigram_val_bits:.3f} (validation)")

# %% [markdown]
# ## 6. Sampling: temperature and top-$k$
#
# The model gives logits $z \in \mathbb R^V$ for the next character. Sampling with
# **temperature** $\tau > 0$ draws from
#
# $$
# p_i(\tau) = \frac{e^{z_i / \tau}}{\sum_j e^{z_j / \tau}} \;\propto\; \exp(z_i / \tau) .
# $$
#
# $\tau = 1$ is the model's own distribution. Dividing the logits by $\tau < 1$
# stretches their differences: $p_i / p_j = e^{(z_i - z_j)/\tau}$, so the likely
# characters get likelier, and as $\tau \to 0$ all the mass goes to $\arg\max_i z_i$
# (greedy decoding). $\tau > 1$ flattens it, and $\tau \to \infty$ gives the uniform
# distribution. The entropy of $p(\tau)$ grows with $\tau$ (unless all logits are equal).
#
# **Top-$k$** cuts the tail: keep the $k$ largest logits, drop the others, and
# renormalise over what is left,
#
# $$
# p_i = \frac{e^{z_i/\tau}\, [i \in S_k]}{\sum_{j \in S_k} e^{z_j / \tau}}, \qquad
# S_k = \{ i : z_i \ge z_{(k)} \},
# $$
#
# with $z_{(k)}$ the $k$-th largest logit (ties at the boundary are all kept, as in
# `GPT.generate`). Dropping a token is setting its logit to $-\infty$ before the
# softmax, exactly the masking of lesson 06. Each of the dozens of rare
# characters has a small probability, but together they make an odd character
# likely somewhere in a long text; top-$k$ removes that failure while leaving
# the choice among plausible characters random. $k = 1$ is greedy decoding again.

# %%
show(GPT.generate)


def sampling_probabilities(logits, temperature=1.0, top_k=None):
    r"""The next-token distribution: $p_i \propto \exp(z_i / \tau)$ over the ``top_k`` largest logits.

    ``logits`` (V,) as float64; logits below the k-th largest get probability exactly 0
    (ties with it are kept). ``top_k=None`` keeps all V.
    """
    # BEGIN SOLUTION lesson 07: sampling_probabilities: the temperature and top-k rules described above; removed tokens get probability exactly 0
    z = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < z.size:
        kth = np.partition(z, z.size - top_k)[z.size - top_k]  # the k-th largest
        z = np.where(z >= kth, z, -np.inf)
    e = np.exp(z - z.max())  # exactly 0 where z = -inf
    return e / e.sum()
    # END SOLUTION


prompt = "ROMEO:\nI"
prompt_ids = tok.encode(prompt)
model.eval()
with mt.no_grad():
    next_logits = model(prompt_ids[None, :]).numpy()[0, -1].astype(np.float64)  # (V,)
model.train()
order = np.argsort(-next_logits)[:6]
print(f"after {prompt!r}, the six likeliest next characters:")
print(f"{'':16}" + "".join(f"{tok.decode(np.array([i]))!r:>8}" for i in order) + f"{'entropy':>10}")
entropies = {}
for tau, k in ((0.5, None), (1.0, None), (2.0, None), (1.0, 3)):
    p = sampling_probabilities(next_logits, tau, k)
    entropies[(tau, k)] = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    print(f"tau={tau:<4} top_k={k!s:<5}" + "".join(f"{p[i]:8.3f}" for i in order)
          + f"{entropies[(tau, k)]:8.2f} b")
tau_grid = (0.25, 0.5, 1.0, 2.0, 4.0, 16.0)
entropy_by_tau = [float(-(p * np.log(np.where(p > 0, p, 1.0))).sum())
                  for p in (sampling_probabilities(next_logits, t) for t in tau_grid)]
print("entropy (nats) for tau =", tau_grid, ":", np.round(entropy_by_tau, 3), f"(ln V = {math.log(V):.3f})")

# %% [markdown]
# `GPT.generate` draws each character by inverse-CDF sampling with a single uniform
# number $r$ from its generator: the first index whose cumulative probability exceeds
# $r$. So for a given seed we can replay its first draw from our own probabilities,
# which checks that both compute the same distribution. Then some text: with $\tau = 0.8$
# and $k = 10$, and greedily ($k = 1$), which soon falls into a loop.

# %%
replay_matches = 0
for seed in range(20):
    p = sampling_probabilities(next_logits, 0.8, 10)
    r = np.random.default_rng(seed).random()
    replayed = int(np.searchsorted(np.cumsum(p), r * p.sum(), side="right"))
    replay_matches += replayed == int(model.generate(prompt_ids, 1, temperature=0.8, top_k=10, rng=seed)[0])
print(f"our distribution replays generate's first draw for {replay_matches} of 20 seeds")

sample = prompt + tok.decode(model.generate(prompt_ids, 240, temperature=0.8, top_k=10, rng=7))
greedy = prompt + tok.decode(model.generate(prompt_ids, 80, top_k=1))
print(f"--- tau = 0.8, top_k = 10 ---\n{sample}\n--- greedy ---\n{greedy}")
lesson_seconds = time.perf_counter() - LESSON_START
print(f"\nlesson 07 ran in {lesson_seconds:.1f} s")

# %% [markdown]
# Two hundred steps on about 100,000 characters (a fortieth of the training
# plays) make a model that has learned
# the layout (names in capitals followed by a colon, line breaks, short words) and
# little else: its validation bpc is well under the unigram entropy but far above
# what `python -m models train gpt` reaches with the `tiny` preset and a few
# thousand steps (the README gives the figures).
#
# ## Exercises
#
# In the student copy five regions raise `NotImplementedError`; the lesson
# stops at the first one it meets, so do them in this order:
#
# 1. **`merge_pair(symbols, pair, merged)`** (section 0), in `models/tokenizers/bpe.py`:
#    one merge step, every occurrence of `pair` replaced left to right (an occurrence
#    that overlaps one just merged is skipped).
# 2. **`apply_merges(symbols, ranks)`** (section 0), in the same file: encode one word
#    with a given merge table, always merging the adjacent pair of lowest rank first,
#    until no adjacent pair is a merge. Then `learn_merges` and the whole tokenizer work.
# 3. **`GPT.hidden_states`** (section 1), in `models/gpt/model.py`: the input
#    $h_0 = U W_e + W_p$ as two lookups, `tokens_embed(ids)` and the first $T$ rows of
#    `positions_embed`, summed (the positions broadcast over the batch).
# 4. **`GPT.forward`** (sections 1 and 4), in `models/gpt/model.py`: the tied output,
#    logits $h_n W_e^\top$ from `hidden_states` and the token embedding's weight
#    (`F.linear(x, W)` computes $x W^\top$). Then the tied gradient of section 4
#    is the sum of its two paths without any code of yours: why?
# 5. **`sampling_probabilities(logits, temperature, top_k)`** (section 6), in this
#    file: $p_i \propto \exp(z_i / \tau)$, with everything below the $k$-th largest
#    logit set to probability exactly $0$ (ties kept), and no overflow for large
#    logits or small $\tau$.
#
# When all five are in place, the merges of section 0 come out as worked by hand, the
# hand-built forward pass agrees with `GPT` to
# about $10^{-15}$, the causal check passes, the two paths of the tied gradient add up
# to the tied one, and our distribution replays every draw of `GPT.generate`.
#
# If you want more: untie the output layer (a separate `nn.Embedding`-shaped
# parameter) and train both versions for the same number of steps; compare the
# parameter counts and the validation bpc. Or turn dropout back on and see what
# it costs a run this short.
#
# Check your work with `pytest -m lesson07 -x` (from the repository's root; `-x` stops at the first failure).
