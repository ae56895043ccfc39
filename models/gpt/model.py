r"""GPT-1 (Radford et al., 2018): a decoder-only Transformer language model.

The model of the source's section 3.3, read top to bottom:

$$h_0 = U W_e + W_p,\qquad h_l = \mathrm{block}(h_{l-1})\ (l = 1..n),\qquad
P(u) = \mathrm{softmax}(h_n W_e^\top)$$

- $U$ are the one-hot context tokens, $W_e$ the token embedding (V, d), $W_p$ the
  learned position embedding (n_ctx, d).
- Each block is POST-LN, as in the original GPT (GPT-2 later moved LN before each sub-layer):
  $x \leftarrow \mathrm{LN}(x + \mathrm{Attn}(x))$, then $x \leftarrow \mathrm{LN}(x + \mathrm{FFN}(x))$.
- Attn is masked multi-head self-attention: position $i$ sees positions $j \le i$ only.
- FFN is $\mathrm{GELU}(x W_1 + b_1) W_2 + b_2$ with the tanh form of GELU.
- The output projection is the token embedding itself (tied weights), so a GPT has no
  separate $V \times d$ output matrix.

Parameter names follow Hugging Face's ``openai-gpt`` (``tokens_embed``, ``positions_embed``,
``h.N.attn.c_attn``, ``h.N.attn.c_proj``, ``h.N.ln_1``, ``h.N.mlp.c_fc``, ``h.N.mlp.c_proj``,
``h.N.ln_2``), so loading the real weights (:func:`models.gpt.load_hf_checkpoint`) is a rename plus a
transpose: HF's ``Conv1D`` stores its weight as (in, out), our ``Linear`` as (out, in).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import minitensor as mt
import minitensor.functional as F
from minitensor import nn
from minitensor.attention import causal_mask, masked_softmax, merge_heads, split_heads
from minitensor.backend import to_numpy

from ..config import PresetConfig
from ..evaluate import eval_mode
from ..generate import check_sampling, sample_from_logits
from ..weights import generators, normal

__all__ = ["GPT", "PRESETS", "GPTConfig"]

#: Named configurations. ``tiny`` trains on two CPU cores in minutes; ``gpt1`` is the paper's
#: 12-layer, 768-wide, 12-head model with a 512-token context (117M parameters with its
#: 40,478-token BPE vocabulary).
PRESETS = {
    "tiny": {"n_ctx": 128, "d_model": 128, "n_layer": 4, "n_head": 4},
    "gpt1": {"n_ctx": 512, "d_model": 768, "n_layer": 12, "n_head": 12},
}
GPT1_VOCAB_SIZE = 40478  # the BPE vocabulary of the released GPT-1 (40,000 merges + base symbols)


@dataclass
class GPTConfig(PresetConfig):
    """Hyper-parameters of a GPT. ``d_ff=None`` means ``4 * d_model``, as in the paper (3072 for 768)."""

    PRESETS = PRESETS
    FULL_PRESET = "gpt1"
    FULL_VOCAB_SIZE = GPT1_VOCAB_SIZE
    KIND = "GPT"
    DROPOUT_FIELDS = ("embd_pdrop", "attn_pdrop", "resid_pdrop")

    vocab_size: int
    n_ctx: int = 128
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_ff: int | None = None
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self):
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        for name in ("vocab_size", "n_ctx", "d_model", "n_layer", "n_head", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive int, got {value!r}")
            setattr(self, name, int(value))
        if self.d_model % self.n_head:
            raise ValueError(f"GPTConfig: d_model={self.d_model} is not divisible by n_head={self.n_head}")
        for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"GPTConfig: {name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.layer_norm_eps > 0 or not self.init_std > 0:
            raise ValueError(f"GPTConfig: layer_norm_eps and init_std must be > 0, got "
                             f"{self.layer_norm_eps!r} and {self.init_std!r}")

    def num_parameters(self) -> int:
        """The parameter count, computed without building the model (tied output: no extra V x d)."""
        d, f = self.d_model, self.d_ff
        per_block = (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d) + 2 * (2 * d)
        return self.vocab_size * d + self.n_ctx * d + self.n_layer * per_block


class CausalSelfAttention(nn.Module):
    r"""Masked multi-head self-attention, GPT-1's first sub-layer.

    $$\mathrm{head}_h = \mathrm{softmax}\Big(\frac{Q_h K_h^\top}{\sqrt{d_h}} + M\Big) V_h,\qquad
    \mathrm{Attn}(x) = [\mathrm{head}_1, \dots, \mathrm{head}_H]\, W_O$$

    with $M_{ij} = -\infty$ for $j > i$ (``masked_softmax`` with ``causal_mask``).
    ``c_attn`` produces $[Q, K, V]$ in one (d -> 3d) projection, packed in that order along
    the output axis as in HF's ``openai-gpt``; ``c_proj`` is $W_O$.
    """

    def __init__(self, config: GPTConfig, *, rng, dropout_rng, dtype):
        d = config.d_model
        self.n_head = config.n_head
        self.c_attn = nn.Linear(d, 3 * d, rng=rng, dtype=dtype)
        self.c_proj = nn.Linear(d, d, rng=rng, dtype=dtype)
        self.attn_dropout = nn.Dropout(config.attn_pdrop, rng=dropout_rng)
        self.resid_dropout = nn.Dropout(config.resid_pdrop, rng=dropout_rng)

    def forward(self, x: mt.Tensor) -> mt.Tensor:
        _b, t, d = x.shape
        q, k, v = mt.split(self.c_attn(x), 3, axis=-1)  # 3 x (B, T, d)
        q, k, v = (split_heads(z, self.n_head) for z in (q, k, v))  # (B, H, T, Dh)
        # The 1/sqrt(Dh) is applied to q (B, H, T, Dh), not to the T/Dh times larger scores.
        scores = (q * (1.0 / math.sqrt(d // self.n_head))) @ k.swapaxes(-1, -2)  # (B, H, T, T)
        p = masked_softmax(scores, causal_mask(t, t))  # row i attends to j <= i only
        p = self.attn_dropout(p)  # GPT-1 drops attention probabilities too
        a = merge_heads(p @ v)  # (B, H, T, Dh) -> (B, T, d)
        return self.resid_dropout(self.c_proj(a))


class MLP(nn.Module):
    r"""The position-wise feed-forward network $\mathrm{GELU}(x W_1 + b_1) W_2 + b_2$ (tanh GELU)."""

    def __init__(self, config: GPTConfig, *, rng, dropout_rng, dtype):
        self.c_fc = nn.Linear(config.d_model, config.d_ff, rng=rng, dtype=dtype)
        self.c_proj = nn.Linear(config.d_ff, config.d_model, rng=rng, dtype=dtype)
        self.dropout = nn.Dropout(config.resid_pdrop, rng=dropout_rng)

    def forward(self, x: mt.Tensor) -> mt.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    r"""One post-LN decoder block: $x \leftarrow \mathrm{LN}_1(x + \mathrm{Attn}(x))$,
    $x \leftarrow \mathrm{LN}_2(x + \mathrm{FFN}(x))$."""

    def __init__(self, config: GPTConfig, *, rng, dropout_rng, dtype):
        self.attn = CausalSelfAttention(config, rng=rng, dropout_rng=dropout_rng, dtype=dtype)
        self.ln_1 = nn.LayerNorm(config.d_model, config.layer_norm_eps, dtype=dtype)
        self.mlp = MLP(config, rng=rng, dropout_rng=dropout_rng, dtype=dtype)
        self.ln_2 = nn.LayerNorm(config.d_model, config.layer_norm_eps, dtype=dtype)

    def forward(self, x: mt.Tensor) -> mt.Tensor:
        x = self.ln_1(x + self.attn(x))
        return self.ln_2(x + self.mlp(x))


class GPT(nn.Module):
    """GPT-1 language model. ``forward(ids)`` gives next-token logits (B, T, V).

    ``rng`` (a ``np.random.Generator`` or an int seed) draws the initial weights, N(0, init_std)
    for every weight matrix and embedding, zeros for biases, ones for LN gains (as GPT-1); it also
    seeds ONE generator, ``self.dropout_rng``, shared by every dropout layer, so a seeded model
    trains reproducibly. Save/restore its state with :meth:`get_rng_state` / :meth:`set_rng_state`
    to resume training exactly. ``dtype`` is float32 by default; tests use float64.
    """

    def __init__(self, config: GPTConfig, rng=None, *, dtype=np.float32):
        dtype, rng, self.dropout_rng = generators("GPT", config, GPTConfig, rng, dtype)
        self.config = config
        c, kw = config, {"rng": rng, "dropout_rng": self.dropout_rng, "dtype": dtype}
        self.tokens_embed = nn.Embedding(c.vocab_size, c.d_model, rng=rng, dtype=dtype)  # W_e (V, d)
        self.positions_embed = nn.Embedding(c.n_ctx, c.d_model, rng=rng, dtype=dtype)  # W_p (n_ctx, d)
        self.drop = nn.Dropout(c.embd_pdrop, rng=self.dropout_rng)
        self.h = nn.ModuleList(Block(c, **kw) for _ in range(c.n_layer))
        self._init_weights(rng, dtype)

    def _init_weights(self, rng, dtype):
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                p.data = np.zeros(p.shape, dtype)
            elif ".ln_" in name:
                p.data = np.ones(p.shape, dtype)  # LN gain
            else:
                p.data = normal(rng, p.shape, self.config.init_std, dtype)

    # ------------------------------------------------------------------ forward
    def _check_ids(self, ids):
        data = ids.data if isinstance(ids, mt.Tensor) else ids
        data = data if hasattr(data, "dtype") and hasattr(data, "ndim") else np.asarray(data)  # NumPy or CuPy
        if data.dtype.kind not in "iu":
            raise TypeError(f"GPT: token ids must be integers, got dtype {data.dtype}")
        if data.ndim != 2:
            raise ValueError(f"GPT: ids must have shape (B, T), got {data.shape}")
        t = data.shape[1]
        if not 1 <= t <= self.config.n_ctx:
            raise ValueError(f"GPT: sequence length {t} must be between 1 and n_ctx={self.config.n_ctx}")
        return data

    def hidden_states(self, ids) -> mt.Tensor:
        """$h_n$ (B, T, d): the last block's output, before the tied output projection."""
        ids = self._check_ids(ids)
        t = ids.shape[1]
        # h_0 = U W_e + W_p: the lookup is the product with one-hot U; W_p broadcasts over the batch.
        # BEGIN SOLUTION lesson 07: GPT.hidden_states: the source's h_0 = U W_e + W_p, then the blocks
        h = self.tokens_embed(ids) + self.positions_embed(np.arange(t))  # (B, T, d) + (T, d)
        # END SOLUTION
        h = self.drop(h)
        for block in self.h:
            h = block(h)  # h_l = block(h_{l-1})
        return h

    def forward(self, ids) -> mt.Tensor:
        r"""Logits (B, T, V) of $P(u) = \mathrm{softmax}(h_n W_e^\top)$ for ids (B, T), T <= n_ctx."""
        # BEGIN SOLUTION lesson 07: GPT.forward: the source's tied output h_n W_e^T (as logits, before the softmax)
        return F.linear(self.hidden_states(ids), self.tokens_embed.weight)  # h_n W_e^T, tied
        # END SOLUTION

    def lm_loss(self, ids, targets, ignore_index: int | None = None) -> mt.Tensor:
        r"""$L_1$ per token: the mean cross-entropy (nats) of ``targets`` (B, T) under ``forward(ids)``."""
        return F.cross_entropy(self.forward(ids), targets, ignore_index=ignore_index)

    # ------------------------------------------------------------------ rng state
    def get_rng_state(self) -> dict:
        """The dropout generator's state (JSON-able), for exact resume."""
        return self.dropout_rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.dropout_rng.bit_generator.state = state

    # ------------------------------------------------------------------ sampling
    def generate(self, prompt_ids, length: int, temperature: float = 1.0, top_k: int | None = None,
                 rng=None) -> np.ndarray:
        """Sample ``length`` new token ids after ``prompt_ids`` (1-D ints); returns ONLY the new ids
        (int64, shape (length,)).

        Each step feeds the last ``n_ctx`` tokens (the window slides once the text outgrows the
        context), divides the last logits by ``temperature`` and, with ``top_k``, keeps only the
        k most likely tokens (``top_k=1`` is greedy decoding). ``rng``: a Generator or int seed.
        Runs in eval mode (no dropout) without recording a graph; the training mode is restored.
        """
        ids, rng = check_sampling("generate", prompt_ids, self.config.vocab_size, length, temperature, top_k, rng)
        out = np.empty(length, dtype=np.int64)
        with eval_mode(self):
            for i in range(length):
                window = ids[-self.config.n_ctx:]  # slide: keep the most recent n_ctx tokens
                logits = to_numpy(self.forward(window[None, :]).data)[0, -1]  # (V,)
                nxt = sample_from_logits(logits, temperature, top_k, rng)  # one uniform draw per step
                out[i] = nxt
                ids = np.append(ids, nxt)
        return out

    @classmethod
    def load_hf_checkpoint(cls, directory, dtype=np.float32) -> GPT:
        """See :func:`models.gpt.load_hf_checkpoint`."""
        from .hf_checkpoint import load_hf_checkpoint  # which imports this module

        return load_hf_checkpoint(directory, dtype=dtype)
