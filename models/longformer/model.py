r"""Longformer (Beltagy et al., 2020): a RoBERTa-style encoder with banded self-attention.

The model of the source's section 2.2 (``source/seed-transformer-xl-longformer-gpt.txt``):

- 2.2.1 sliding window: token $i$ attends to $w/2$ tokens on each side ($w$ = ``attention_window``
  of that layer, even, as in HF's ``LongformerConfig``);
- 2.2.2 dilation: with dilation $d$ the window's keys are $i + (j - w/2)\,d$ (per layer, per head);
- 2.2.3 global attention: tokens marked in ``global_mask`` attend to every token and every token
  attends to them. Global rows use their own projections $Q_g, K_g, V_g$ (``query_global``,
  ``key_global``, ``value_global``); local rows score the global keys with $Q_s, K_s$ and mix $V_s$.

All of that lives in :func:`minitensor.attention.banded_attention`; this module only builds the
encoder around it. Blocks are POST-LN as in BERT/RoBERTa:

$$a = \mathrm{LN}(x + \mathrm{Attn}(x) W_O),\qquad y = \mathrm{LN}(a + \mathrm{GELU}(a W_1 + b_1) W_2 + b_2)$$

with the exact (erf) GELU, RoBERTa's ``hidden_act="gelu"``.

Parameter names follow Hugging Face's ``LongformerModel`` (``embeddings.word_embeddings``,
``encoder.layer.N.attention.self.query_global``, ``...attention.output.LayerNorm``,
``...intermediate.dense``, ``...output.dense`` ...), so :func:`models.longformer.load_hf_checkpoint` is a key match.

Any length 1..``max_len`` is accepted: :func:`banded_attention` handles a T that is not a multiple
of the window itself (it pads its residue subsequences and query chunks internally), so unlike HF
no padding to a window multiple is done here.

Padding: ``padding_mask`` (B, T) bool, True = real token. Padded keys are never attended and padded
tokens are never global; outputs at padded positions are computed but mean nothing.

Positions (RoBERTa's offset): position ids are ``pad_id + cumsum(ids != pad_id)`` for real tokens
and ``pad_id`` for pad tokens (HF's ``create_position_ids_from_input_ids``), so the first real
token has position ``pad_id + 1`` (2 for RoBERTa's ``pad_id=1``). The position table therefore has
``max_len + pad_id + 1`` rows (4,098 for ``longformer-base-4096``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import minitensor as mt
import minitensor.functional as F
from minitensor import nn
from minitensor.attention import banded_attention, merge_heads, split_heads

from ..config import PresetConfig
from ..weights import generators, normal

__all__ = ["PRESETS", "Longformer", "LongformerConfig"]

# The task heads (classification, span extraction, causal LM) live in models/longformer/heads.py.

#: Named configurations. ``tiny`` runs on a CPU in tests and lessons; ``base`` is
#: ``longformer-base-4096``: 12 layers, 768 wide, 12 heads, window 512 in every layer, 4,096 tokens.
PRESETS = {
    "tiny": {"d_model": 64, "n_layer": 2, "n_head": 4, "d_ff": 256, "max_len": 512, "attention_window": 16},
    "base": {"d_model": 768, "n_layer": 12, "n_head": 12, "d_ff": 3072, "max_len": 4096,
             "attention_window": 512},
}
ROBERTA_VOCAB_SIZE = 50265  # the BPE vocabulary of RoBERTa / longformer-base-4096


def is_int(x):
    """An int or NumPy integer, not a bool (the config's and the heads' check)."""
    return not isinstance(x, bool) and isinstance(x, (int, np.integer))


@dataclass
class LongformerConfig(PresetConfig):
    r"""Hyper-parameters of a Longformer encoder.

    ``attention_window``: one even int $w$ (w/2 keys on each side) for every layer, or one per layer
    (growing with depth is the paper's choice for char-LM). ``dilation``: one int for everything, one
    per layer, or per layer a list with one int per head. After construction both are normalised to
    per-layer lists (``dilation`` to a list of per-head lists).

    ``attention_dropout`` (HF's ``attention_probs_dropout_prob``) drops attention probabilities in
    training mode; ``hidden_dropout`` the embeddings and sub-layer outputs. ``causal=True`` gives every
    layer the causal band (keys $j \le i$ only): :class:`~models.longformer.heads.LongformerForCausalLM`.
    ``global_tokens=False`` stops the task heads from making their tokens global (CLS, the question):
    the ablation of section 2.2.3, every token reads only its window.
    """

    PRESETS = PRESETS
    FULL_PRESET = "base"
    FULL_VOCAB_SIZE = ROBERTA_VOCAB_SIZE
    KIND = "Longformer"
    DROPOUT_FIELDS = ("hidden_dropout", "attention_dropout")

    vocab_size: int
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_ff: int | None = None
    max_len: int = 512
    attention_window: int | list = 16
    dilation: int | list = 1
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    causal: bool = False
    global_tokens: bool = True
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    pad_id: int = 1

    def __post_init__(self):
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        for name in ("vocab_size", "d_model", "n_layer", "n_head", "d_ff", "max_len"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"LongformerConfig: {name} must be a positive int, got {value!r}")
            setattr(self, name, int(value))
        if self.d_model % self.n_head:
            raise ValueError(f"LongformerConfig: d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if not is_int(self.pad_id) or not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"LongformerConfig: pad_id must be an int in [0, vocab_size={self.vocab_size}), "
                             f"got {self.pad_id!r}")
        self.pad_id = int(self.pad_id)
        self.attention_window = self._per_layer_window(self.attention_window)
        self.dilation = self._per_layer_dilation(self.dilation)
        for name in ("hidden_dropout", "attention_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"LongformerConfig: {name} must be in [0, 1), got {value!r}")
        if not isinstance(self.causal, bool):
            # ValueError like every other config field (one error type for a bad config)
            raise ValueError(f"LongformerConfig: causal must be a bool, got {self.causal!r}")  # noqa: TRY004
        if not isinstance(self.global_tokens, bool):
            raise ValueError(f"LongformerConfig: global_tokens must be a bool, got {self.global_tokens!r}")  # noqa: TRY004
        if not self.layer_norm_eps > 0:
            raise ValueError(f"LongformerConfig: layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if not self.init_std > 0:
            raise ValueError(f"LongformerConfig: init_std must be > 0, got {self.init_std!r}")

    def _per_layer_window(self, w):
        ws = [w] * self.n_layer if is_int(w) else list(w) if isinstance(w, (list, tuple)) else None
        if ws is None or len(ws) != self.n_layer:
            raise ValueError(f"LongformerConfig: attention_window must be an int or a list of {self.n_layer} ints "
                             f"(one per layer), got {w!r}")
        for x in ws:
            if not is_int(x) or x <= 0 or x % 2:
                raise ValueError(f"LongformerConfig: attention_window must be even positive ints (w/2 on each "
                                 f"side), got {w!r}")
        return [int(x) for x in ws]

    def _per_layer_dilation(self, d):
        ds = [d] * self.n_layer if is_int(d) else list(d) if isinstance(d, (list, tuple)) else None
        if ds is None or len(ds) != self.n_layer:
            raise ValueError(f"LongformerConfig: dilation must be an int, or a list of {self.n_layer} entries "
                             f"(one per layer, each an int or {self.n_head} ints per head), got {d!r}")
        out = []
        for x in ds:
            heads = [x] * self.n_head if is_int(x) else list(x) if isinstance(x, (list, tuple)) else None
            if heads is None or len(heads) != self.n_head or not all(is_int(h) and h >= 1 for h in heads):
                raise ValueError(f"LongformerConfig: dilation must hold positive ints, per layer one or "
                                 f"{self.n_head} (one per head), got {d!r}")
            out.append([int(h) for h in heads])
        return out

    @property
    def n_positions(self) -> int:
        """Rows of the position table: ``max_len`` real positions after RoBERTa's offset ``pad_id + 1``."""
        return self.max_len + self.pad_id + 1


# ---------------------------------------------------------------------- layers

class LongformerSelfAttention(nn.Module):
    r"""$Q_s, K_s, V_s$ (``query``, ``key``, ``value``) for the band, $Q_g, K_g, V_g$ for global rows;
    the band/global rules are :func:`banded_attention`'s."""

    def __init__(self, config: LongformerConfig, layer: int, *, rng, dropout_rng, dtype):
        d = config.d_model
        self.n_head = config.n_head
        self.causal = config.causal
        # attention-probability dropout (HF's attention_probs_dropout_prob), drawn from the model's one
        # dropout generator so exact resume (models/checkpoint.py saves every Generator) keeps working
        self.attention_dropout, self.dropout_rng = config.attention_dropout, dropout_rng
        self.window = config.attention_window[layer]
        self.dilation = tuple(config.dilation[layer])
        for name in ("query", "key", "value", "query_global", "key_global", "value_global"):
            setattr(self, name, nn.Linear(d, d, rng=rng, dtype=dtype))

    def forward(self, x, *, global_mask=None, padding_mask=None):
        def heads(lin):
            return split_heads(lin(x), self.n_head)  # (B, T, d) -> (B, H, T, Dh)

        q, k, v = heads(self.query), heads(self.key), heads(self.value)  # Q_s, K_s, V_s
        glob = {}
        if global_mask is not None and global_mask.any():
            glob = {"global_mask": global_mask, "q_global": heads(self.query_global),  # Q_g
                    "k_global": heads(self.key_global), "v_global": heads(self.value_global)}  # K_g, V_g
        o = banded_attention(q, k, v, window=self.window, dilation=self.dilation, causal=self.causal,
                             key_padding_mask=padding_mask, **glob,
                             dropout=self.attention_dropout if self.training else 0.0,
                             rng=self.dropout_rng)  # (B, H, T, Dh)
        return merge_heads(o)  # (B, T, d)


class _DenseLN(nn.Module):
    r"""HF's ``LongformerSelfOutput`` / ``LongformerOutput``: $\mathrm{LN}(\mathrm{residual} + \mathrm{drop}(x W + b))$."""

    def __init__(self, d_in, d, eps, dropout, *, rng, dropout_rng, dtype):
        self.dense = nn.Linear(d_in, d, rng=rng, dtype=dtype)
        self.LayerNorm = nn.LayerNorm(d, eps, dtype=dtype)
        self.dropout = nn.Dropout(dropout, rng=dropout_rng)

    def forward(self, x, residual):
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class _Attention(nn.Module):
    def __init__(self, config, layer, *, rng, dropout_rng, dtype):
        self.self = LongformerSelfAttention(config, layer, rng=rng, dropout_rng=dropout_rng, dtype=dtype)
        self.output = _DenseLN(config.d_model, config.d_model, config.layer_norm_eps, config.hidden_dropout,
                               rng=rng, dropout_rng=dropout_rng, dtype=dtype)

    def forward(self, x, *, global_mask, padding_mask):
        return self.output(self.self(x, global_mask=global_mask, padding_mask=padding_mask), x)


class _Intermediate(nn.Module):
    def __init__(self, config, *, rng, dtype):
        self.dense = nn.Linear(config.d_model, config.d_ff, rng=rng, dtype=dtype)

    def forward(self, x):
        return F.gelu(self.dense(x), approximate="none")  # RoBERTa's exact GELU x Φ(x)


class LongformerLayer(nn.Module):
    """One post-LN encoder block: attention -> add & LN -> FFN -> add & LN."""

    def __init__(self, config, layer, *, rng, dropout_rng, dtype):
        self.attention = _Attention(config, layer, rng=rng, dropout_rng=dropout_rng, dtype=dtype)
        self.intermediate = _Intermediate(config, rng=rng, dtype=dtype)
        self.output = _DenseLN(config.d_ff, config.d_model, config.layer_norm_eps, config.hidden_dropout,
                               rng=rng, dropout_rng=dropout_rng, dtype=dtype)

    def forward(self, x, *, global_mask=None, padding_mask=None):
        a = self.attention(x, global_mask=global_mask, padding_mask=padding_mask)
        return self.output(self.intermediate(a), a)


class _Embeddings(nn.Module):
    def __init__(self, config, *, rng, dropout_rng, dtype):
        d = config.d_model
        self.word_embeddings = nn.Embedding(config.vocab_size, d, rng=rng, dtype=dtype)
        self.position_embeddings = nn.Embedding(config.n_positions, d, rng=rng, dtype=dtype)
        # RoBERTa has one token type; kept so HF checkpoints load as they are (added to every token)
        self.token_type_embeddings = nn.Embedding(1, d, rng=rng, dtype=dtype)
        self.LayerNorm = nn.LayerNorm(d, config.layer_norm_eps, dtype=dtype)
        self.dropout = nn.Dropout(config.hidden_dropout, rng=dropout_rng)
        self.pad_id = config.pad_id

    def forward(self, ids, *, count_pad=True):
        if count_pad:
            real = (ids != self.pad_id).astype(np.int64)
            pos = np.cumsum(real, axis=1) * real + self.pad_id  # RoBERTa: first real token at pad_id + 1
        else:  # every id is a real token (the causal LM): positions pad_id + 1, pad_id + 2, ...
            pos = np.broadcast_to(np.arange(ids.shape[1]) + self.pad_id + 1, ids.shape)
        h = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings(
            np.zeros_like(ids))  # (B, T, d)
        return self.dropout(self.LayerNorm(h))


class _Encoder(nn.Module):
    def __init__(self, config, *, rng, dropout_rng, dtype):
        self.layer = nn.ModuleList(LongformerLayer(config, i, rng=rng, dropout_rng=dropout_rng, dtype=dtype)
                                   for i in range(config.n_layer))

    def forward(self, h, *, global_mask, padding_mask):
        for layer in self.layer:
            h = layer(h, global_mask=global_mask, padding_mask=padding_mask)
        return h


def init_weights(module, rng, std, dtype):
    """N(0, std) for weights and embeddings, zeros for biases, ones for LN gains (as HF/RoBERTa)."""
    for name, p in module.named_parameters():
        if name.endswith(".bias"):
            p.data = np.zeros(p.shape, dtype)
        elif "LayerNorm" in name:
            p.data = np.ones(p.shape, dtype)
        else:
            p.data = normal(rng, p.shape, std, dtype)


def bool_mask(m, shape, name):
    """``m`` (None, an array or a Tensor) as a NumPy bool array of ``shape``; anything else is an error naming ``name``."""
    if m is None:
        return None
    m = np.asarray(m.data if isinstance(m, mt.Tensor) else m)
    if m.dtype != np.bool_:
        raise TypeError(f"Longformer: {name} must be bool (True = {'global' if name == 'global_mask' else 'real'}), "
                        f"got dtype {m.dtype}")
    if m.shape != shape:
        raise ValueError(f"Longformer: {name} must have the shape of ids {shape}, got {m.shape}")
    return m


class Longformer(nn.Module):
    """The Longformer encoder. ``forward(ids, global_mask=None, padding_mask=None)`` -> hidden (B, T, d).

    ``rng`` (Generator or int seed) draws the weights and seeds one dropout generator;
    ``dtype`` float32 by default, float64 in tests.
    """

    def __init__(self, config: LongformerConfig, rng=None, *, dtype=np.float32):
        dtype, rng, self.dropout_rng = generators("Longformer", config, LongformerConfig, rng, dtype)
        self.config = config
        kw = {"rng": rng, "dropout_rng": self.dropout_rng, "dtype": dtype}
        self.embeddings = _Embeddings(config, **kw)
        self.encoder = _Encoder(config, **kw)
        init_weights(self, rng, config.init_std, dtype)

    def _check_ids(self, ids):
        data = np.asarray(ids.data if isinstance(ids, mt.Tensor) else ids)
        if data.dtype.kind not in "iu":
            raise TypeError(f"Longformer: token ids must be integers, got dtype {data.dtype}")
        if data.ndim != 2:
            raise ValueError(f"Longformer: ids must have shape (B, T), got {data.shape}")
        if not 1 <= data.shape[1] <= self.config.max_len:
            raise ValueError(f"Longformer: sequence length {data.shape[1]} must be between 1 and "
                             f"max_len={self.config.max_len}")
        if data.min() < 0 or data.max() >= self.config.vocab_size:
            raise ValueError(f"Longformer: token ids must be in [0, vocab_size={self.config.vocab_size})")
        return data

    def forward(self, ids, global_mask=None, padding_mask=None, *, pad_positions=True) -> mt.Tensor:
        """``pad_positions=False``: ids equal to ``pad_id`` are ordinary tokens for the position ids
        (RoBERTa's offset still applies: positions ``pad_id + 1 + t``) — the causal LM, which pads nothing."""
        ids = self._check_ids(ids)
        global_mask = bool_mask(global_mask, ids.shape, "global_mask")
        padding_mask = bool_mask(padding_mask, ids.shape, "padding_mask")
        if global_mask is not None and padding_mask is not None:
            global_mask = global_mask & padding_mask  # a pad token is never global
        h = self.embeddings(ids, count_pad=pad_positions)  # (B, T, d)
        return self.encoder(h, global_mask=global_mask, padding_mask=padding_mask)

    def get_rng_state(self) -> dict:
        return self.dropout_rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.dropout_rng.bit_generator.state = state
