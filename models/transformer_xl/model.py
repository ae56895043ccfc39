r"""Transformer-XL (Dai et al., 2019): segment recurrence with a stop-gradient memory and
relative positional attention.

Layer $n$ on segment $\tau$, exactly the source's section 1.2.3 (memory $M$ positions, segment $L$):

$$\begin{aligned}
\tilde h_\tau^{n-1} &= \big[\mathrm{SG}(h_{\tau-1}^{n-1}) \circ h_\tau^{n-1}\big] && (B, M+L, d)\\
q_\tau^n,\ k_\tau^n,\ v_\tau^n &= h_\tau^{n-1} {W_q^n}^\top,\ \tilde h_\tau^{n-1} {W_{k,E}^n}^\top,\
  \tilde h_\tau^{n-1} {W_v^n}^\top && \text{queries from the current segment only}\\
A_{\tau,i,j}^n &= \underbrace{q_i^\top k_j}_{(a)} + \underbrace{q_i^\top W_{k,R}^n R_{i-j}}_{(b)}
  + \underbrace{u^\top k_j}_{(c)} + \underbrace{v^\top W_{k,R}^n R_{i-j}}_{(d)}\\
\alpha_\tau^n &= \mathrm{Masked\text{-}Softmax}\big(A_\tau^n / \sqrt{d_h}\big)\, v_\tau^n\\
o_\tau^n &= \mathrm{LayerNorm}\big(\mathrm{Linear}(\alpha_\tau^n) + h_\tau^{n-1}\big)\\
h_\tau^n &= \mathrm{Positionwise\text{-}Feed\text{-}Forward}(o_\tau^n)
  = \mathrm{LayerNorm}\big(o + \mathrm{ReLU}(o W_1^\top + b_1) W_2^\top + b_2\big)
\end{aligned}$$

with $h_\tau^0 = \sqrt{d}\, E_{s_\tau}$ (the token embedding scaled by $\sqrt{d_{model}}$, as the
original), logits $h_\tau^N E^\top + b$ (output weight tied to the input embedding).
$R$ is the fixed sinusoid table (:func:`~minitensor.attention.sinusoid_positions`), one row per
distance $M+L-1, \dots, 0$, distances above ``clamp_len`` (when > 0) clamped to it.

Parameters, named after the original / Hugging Face implementation, and their symbols:

========================================  ========================================================
``word_emb.weight`` (V, d)                 $E$, the token embedding; also the output matrix (tied)
``r_w_bias`` (H, d_h)                      $u$, the global content bias (term (c)); per layer
                                           (``layers.N.dec_attn.r_w_bias``) when ``untie_r``
``r_r_bias`` (H, d_h)                      $v$, the global position bias (term (d)); idem
``layers.N.dec_attn.qkv_net.weight``       $[W_q; W_{k,E}; W_v]$ stacked along the output axis,
  (3 H d_h, d), no bias                    the rows of each head contiguous (head-major)
``layers.N.dec_attn.r_net.weight``         $W_{k,R}$, projecting $R$ to position keys
  (H d_h, d), no bias
``layers.N.dec_attn.o_net.weight``         the "Linear" after attention, (d, H d_h), no bias
``layers.N.dec_attn.layer_norm.*``         the LayerNorm of $o_\tau^n$
``layers.N.pos_ff.CoreNet.0.*``            $W_1, b_1$ (d_inner, d); ``CoreNet.1`` is the ReLU,
``layers.N.pos_ff.CoreNet.3.*``            ``.2`` and ``.4`` dropouts; $W_2, b_2$ (d, d_inner)
``layers.N.pos_ff.layer_norm.*``           the FFN's LayerNorm
``crit.out_layers.0.bias`` (V,)            the output bias $b$; ``crit.out_layers.0.weight`` IS
                                           ``word_emb.weight`` (listed once in the state dict)
========================================  ========================================================

Tying: Hugging Face's ``TransfoXLLMHeadModel`` ties ``crit.out_layers.i`` to
``word_emb.emb_layers.i`` by default (``tie_word_embeddings=True``) and the original trains tied,
so we always tie; the output bias is not tied (there is no input counterpart).

Memory layout: ``mems`` is a list of ``n_layer`` arrays (B, M, d), batch-major like every other
tensor here, one per layer INPUT ($h^0$, the embedding output, then the outputs of layers
$0..N-2$; the last layer's output is never attended to). ``mems=None`` (or
:meth:`TransformerXL.init_mems`) is an EMPTY memory, M = 0. Hugging Face keeps memory time-major,
(M, B, d), and starts from ``mem_len`` zero vectors, which the first segment does attend to (a zero
key still gets the position terms (b), (d)). Convert with ``ours = hf.transpose(1, 0, 2)`` and back
with ``hf = ours.transpose(1, 0, 2)``; ``init_mems(B, zero_filled=True)`` reproduces HF's start.

Ablation, ``positions="absolute"`` (the source's section 1.2.2, the paper's naive baseline): the same
recurrence and memory (SG, the memory-aware causal mask, ``same_length``), but ABSOLUTE positions:
every segment adds the same fixed sinusoid codes $U_{1:L}$ to its embeddings,
$h_\tau^0 = \sqrt{d}\, E_{s_\tau} + U_{1:L}$ (row $i$ of $U$ is
:func:`~minitensor.attention.sinusoid_positions`' encoding of position $i$, $i = 0 \dots L-1$,
whatever $\tau$), and the attention score is the ordinary $A_{\tau,i,j} = q_i^\top k_j$: no $R$,
no $u, v$, no $W_{k,R}$, so no ``r_net``, ``r_w_bias``, ``r_r_bias`` parameters. The position of a
memory key is the one it had in ITS segment, so position $i$ of segment $\tau$ and position $i$ of
segment $\tau - 1$ (in the memory) carry identical codes: the collision that relative positions
remove. ``U`` is fixed (sinusoid, not learned) so that a segment of any length has codes and the
variant's parameters are exactly the relative model's minus the position ones.

Dropout is where the original has it: on $h^0$, on $R$, on the attention probabilities
(``dropatt``), after ``o_net``, after the ReLU and after $W_2$, and on $h^N$ before the output layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import minitensor as mt
import minitensor.functional as F
from minitensor import nn
from minitensor.attention import (
    causal_mask,
    concat_memory,
    masked_softmax,
    merge_heads,
    relative_scores,
    sinusoid_positions,
    split_heads,
)
from minitensor.backend import get_array_module, to_device, to_numpy

from ..config import PresetConfig
from ..evaluate import eval_mode
from ..weights import generators, normal

__all__ = ["PRESETS", "TransformerXL", "TransformerXLConfig"]

#: Named configurations. ``tiny`` trains on two CPU cores; ``base`` is the original's enwik8
#: base model (run_enwik8_base.sh: 12 layers, d 512, 8 heads of 64, d_inner 2048, segment and
#: memory 512, dropout 0.1, dropatt 0.0).
PRESETS = {
    "tiny": {"d_model": 128, "n_layer": 4, "n_head": 4, "d_head": 32, "d_inner": 512, "tgt_len": 64,
             "mem_len": 64, "dropout": 0.1, "dropatt": 0.0},
    "base": {"d_model": 512, "n_layer": 12, "n_head": 8, "d_head": 64, "d_inner": 2048, "tgt_len": 512,
             "mem_len": 512, "dropout": 0.1, "dropatt": 0.0},
}
#: ``TransformerXLConfig.positions``: the paper's relative encoding, or the section 1.2.2 ablation.
POSITIONS = ("relative", "absolute")
ENWIK8_VOCAB_SIZE = 204  # the distinct bytes of enwik8, the original's byte-level vocabulary


@dataclass
class TransformerXLConfig(PresetConfig):
    """Hyper-parameters of a Transformer-XL.

    ``tgt_len`` is the training segment length $L$ (forward accepts any length), ``mem_len`` the
    number $M$ of cached positions kept per layer (0: no recurrence), ``clamp_len`` > 0 clamps
    relative distances above it (0: none), ``same_length`` makes every query see the same number
    of keys (``mem_len``, as the original's evaluation), ``untie_r`` gives each layer its own
    $u, v$, ``pre_lnorm`` moves LayerNorm before each sub-layer. ``positions`` is ``"relative"``
    (the model of the paper) or ``"absolute"`` (the section 1.2.2 ablation, see the module
    docstring; ``untie_r`` and ``clamp_len`` belong to relative positions and must stay off).
    """

    PRESETS = PRESETS
    FULL_PRESET = "base"
    FULL_VOCAB_SIZE = ENWIK8_VOCAB_SIZE
    KIND = "Transformer-XL"
    DROPOUT_FIELDS = ("dropout",)  # dropatt, on the attention probabilities, stays the preset's (0 in both)

    vocab_size: int
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    d_head: int = 32
    d_inner: int = 512
    tgt_len: int = 64
    mem_len: int = 64
    clamp_len: int = 0
    same_length: bool = False
    dropout: float = 0.1
    dropatt: float = 0.0
    untie_r: bool = False
    pre_lnorm: bool = False
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    positions: str = "relative"

    def __post_init__(self):
        def is_int(value):
            return not isinstance(value, bool) and isinstance(value, (int, np.integer))

        for name in ("vocab_size", "d_model", "n_layer", "n_head", "d_head", "d_inner", "tgt_len"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"TransformerXLConfig: {name} must be a positive int, got {value!r}")
            setattr(self, name, int(value))
        for name in ("mem_len", "clamp_len"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise ValueError(f"TransformerXLConfig: {name} must be an int >= 0, got {value!r}")
            setattr(self, name, int(value))
        if self.d_model % 2:
            raise ValueError(f"TransformerXLConfig: d_model={self.d_model} must be even (the sinusoid table R "
                             "has sin/cos pairs)")
        for name in ("same_length", "untie_r", "pre_lnorm"):
            if type(getattr(self, name)) not in (bool, np.bool_):  # 0/1 are not accepted for a flag
                raise ValueError(f"TransformerXLConfig: {name} must be a bool, got {getattr(self, name)!r}")
            setattr(self, name, bool(getattr(self, name)))
        for name in ("dropout", "dropatt"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"TransformerXLConfig: {name} must be in [0, 1), got {getattr(self, name)!r}")
        for name in ("layer_norm_eps", "init_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TransformerXLConfig: {name} must be > 0, got {getattr(self, name)!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"TransformerXLConfig: positions must be one of {list(POSITIONS)}, got {self.positions!r}")
        if self.positions == "absolute" and (self.untie_r or self.clamp_len):
            raise ValueError("TransformerXLConfig: untie_r and clamp_len are options of relative positions; with "
                             f"positions='absolute' they must be False / 0 (got untie_r={self.untie_r}, "
                             f"clamp_len={self.clamp_len})")

    def num_parameters(self) -> int:
        """The parameter count, computed without building the model (tied output: only its bias)."""
        d, hd, f = self.d_model, self.n_head * self.d_head, self.d_inner
        rel = self.positions == "relative"
        uv = 2 * hd if rel else 0  # u and v (none with absolute positions)
        per_layer = (d * 3 * hd + (d * hd if rel else 0) + hd * d + 2 * d  # qkv_net, r_net, o_net, layer_norm
                     + (d * f + f) + (f * d + d) + 2 * d  # CoreNet.0, CoreNet.3, pos_ff.layer_norm
                     + (uv if self.untie_r else 0))
        return self.vocab_size * d + self.vocab_size + (0 if self.untie_r else uv) + self.n_layer * per_layer


def position_table(klen: int, d: int, clamp_len: int, dtype) -> np.ndarray:
    r"""$R$ (klen, d): rows for the distances klen-1 down to 0, each distance above ``clamp_len``
    (when > 0) replaced by ``clamp_len`` (the original's ``pos_seq.clamp_(max=clamp_len)``)."""
    if clamp_len <= 0 or klen - 1 <= clamp_len:
        return sinusoid_positions(klen, d, dtype)
    table = sinusoid_positions(clamp_len + 1, d, dtype)  # distances clamp_len .. 0
    far = np.repeat(table[:1], klen - (clamp_len + 1), axis=0)  # distances klen-1 .. clamp_len+1 -> clamp_len
    return np.concatenate([far, table], axis=0)


def absolute_positions(t: int, d: int, dtype) -> np.ndarray:
    r"""$U_{1:t}$ (t, d): the sinusoid codes of the positions 0 .. t-1 of a segment (the ablation's
    absolute positions; every segment gets the same rows)."""
    return np.ascontiguousarray(sinusoid_positions(t, d, dtype)[::-1])  # its rows run from t-1 down to 0


def attention_mask(t: int, m: int, same_length: bool, mem_len: int) -> np.ndarray:
    r"""(t, m + t) bool, True where query $i$ (absolute position $m + i$) may attend to key $j$.

    Causal over the memory: $j \le i + m$. With ``same_length`` every query also drops the keys
    at a distance $m + i - j \ge$ ``mem_len``, so each position is predicted from (at most) the
    same ``mem_len`` keys, itself included. This equals the original's
    ``tril(ones, -mask_shift_len)`` with ``mask_shift_len = t - (m + t - mem_len)`` when that
    overflow is positive (and nothing extra otherwise).
    """
    mask = causal_mask(t, m + t, offset=m)
    if same_length:
        dist = m + np.arange(t)[:, None] - np.arange(m + t)[None, :]  # i - j in absolute positions
        mask &= dist < mem_len
    return mask


class RelPartialLearnableMultiHeadAttn(nn.Module):
    r"""Relative multi-head attention over $[\mathrm{SG}(m) \circ h]$, plus its residual and LayerNorm.

    ``forward(h=..., mem=..., r=..., u=..., v=..., mask=...)``: h (B, L, d) the current segment,
    mem (B, M, d) or None, r (M+L, d) the (dropped-out) table $R$, u, v (H, d_h).
    Returns $o$ (B, L, d).
    """

    def __init__(self, config: TransformerXLConfig, *, rng, dropout_rng, dtype):
        c = config
        self.n_head, self.d_head, self.pre_lnorm = c.n_head, c.d_head, c.pre_lnorm
        hd = c.n_head * c.d_head
        self.qkv_net = nn.Linear(c.d_model, 3 * hd, bias=False, rng=rng, dtype=dtype)  # [W_q; W_{k,E}; W_v]
        self.o_net = nn.Linear(hd, c.d_model, bias=False, rng=rng, dtype=dtype)
        self.layer_norm = nn.LayerNorm(c.d_model, c.layer_norm_eps, dtype=dtype)
        if c.positions == "relative":  # absolute positions: no W_{k,R}, no u, v
            self.r_net = nn.Linear(c.d_model, hd, bias=False, rng=rng, dtype=dtype)  # W_{k,R}
        if c.untie_r:
            self.r_w_bias = nn.Parameter(np.zeros((c.n_head, c.d_head), dtype))  # u of this layer
            self.r_r_bias = nn.Parameter(np.zeros((c.n_head, c.d_head), dtype))  # v of this layer
        self.drop = nn.Dropout(c.dropout, rng=dropout_rng)
        self.dropatt = nn.Dropout(c.dropatt, rng=dropout_rng)

    def forward(self, *, h, mem, r, u, v, mask, record=None):
        _b, t, _d = h.shape
        hd = self.n_head * self.d_head
        h_tilde = concat_memory(mem, h)  # h~ = [SG(m) o h], (B, M+L, d)
        x = self.layer_norm(h_tilde) if self.pre_lnorm else h_tilde
        m = h_tilde.shape[1] - t
        w = self.qkv_net.weight  # (3 H Dh, d): rows W_q, then W_{k,E}, then W_v
        q = F.linear(x[:, m:], w[:hd])  # q = h W_q^T: the current segment only, (B, L, H Dh)
        k = F.linear(x, w[hd:2 * hd])  # k = h~ W_{k,E}^T, (B, M+L, H Dh)
        val = F.linear(x, w[2 * hd:])  # v = h~ W_v^T, (B, M+L, H Dh)
        q, k, val = (split_heads(z, self.n_head) for z in (q, k, val))  # (B, H, L, Dh), (B, H, M+L, Dh) x2
        klen = k.shape[2]
        if r is None:  # absolute positions (ablation): the ordinary q_i^T k_j, positions are inside h
            qk = q @ k.swapaxes(-1, -2)  # (B, H, L, M+L)
            scores = qk * (1.0 / math.sqrt(self.d_head))
            rk = None
        else:
            rk = self.r_net(r).reshape(klen, self.n_head, self.d_head).transpose(1, 0, 2)  # W_{k,R} R: (H, M+L, Dh)
            scores = relative_scores(q, k, rk, u, v) * (1.0 / math.sqrt(self.d_head))  # (a)+(b)+(c)+(d)
        p = masked_softmax(scores, mask)  # future keys (rel-shift garbage included) get probability 0
        if record is not None:
            if rk is None:
                record["a"] = qk.data  # the only term
            else:
                terms = relative_scores(q, k, rk, u, v, terms=True)
                record.update({name: term.data for name, term in terms.items()})
            record.update(scores=scores.data, probs=p.data, mask=mask)
        p = self.dropatt(p)
        attn = merge_heads(p @ val)  # alpha: (B, H, L, Dh) -> (B, L, H Dh)
        out = self.drop(self.o_net(attn))  # Linear(alpha)
        return h + out if self.pre_lnorm else self.layer_norm(h + out)  # o = LayerNorm(Linear(alpha) + h)


class PositionwiseFF(nn.Module):
    r"""$h = \mathrm{LayerNorm}\big(o + \mathrm{ReLU}(o W_1^\top + b_1) W_2^\top + b_2\big)$
    (pre-LN: $o + \mathrm{FFN}(\mathrm{LayerNorm}(o))$)."""

    def __init__(self, config: TransformerXLConfig, *, rng, dropout_rng, dtype):
        c = config
        self.pre_lnorm = c.pre_lnorm
        self.CoreNet = nn.Sequential(  # indices as the original, so the names match: CoreNet.0, CoreNet.3
            nn.Linear(c.d_model, c.d_inner, rng=rng, dtype=dtype), nn.ReLU(), nn.Dropout(c.dropout, rng=dropout_rng),
            nn.Linear(c.d_inner, c.d_model, rng=rng, dtype=dtype), nn.Dropout(c.dropout, rng=dropout_rng))
        self.layer_norm = nn.LayerNorm(c.d_model, c.layer_norm_eps, dtype=dtype)

    def forward(self, o):
        if self.pre_lnorm:
            return o + self.CoreNet(self.layer_norm(o))
        return self.layer_norm(o + self.CoreNet(o))


class RelPartialLearnableDecoderLayer(nn.Module):
    """One Transformer-XL layer: relative attention over the memory, then the FFN."""

    def __init__(self, config: TransformerXLConfig, *, rng, dropout_rng, dtype):
        self.dec_attn = RelPartialLearnableMultiHeadAttn(config, rng=rng, dropout_rng=dropout_rng, dtype=dtype)
        self.pos_ff = PositionwiseFF(config, rng=rng, dropout_rng=dropout_rng, dtype=dtype)

    def forward(self, *, h, mem, r, u, v, mask, record=None):
        return self.pos_ff(self.dec_attn(h=h, mem=mem, r=r, u=u, v=v, mask=mask, record=record))


class _Crit(nn.Module):
    """The output layer, named as HF's ``crit`` (ProjectedAdaptiveLogSoftmax without clusters)."""

    def __init__(self, word_emb: nn.Embedding, *, dtype):
        v, d = word_emb.weight.shape
        out = nn.Linear(d, v, rng=np.random.default_rng(0), dtype=dtype)
        out.weight = word_emb.weight  # tied: the same Parameter object
        out.bias = nn.Parameter(np.zeros(v, dtype))
        self.out_layers = nn.ModuleList([out])

    def forward(self, h):
        return self.out_layers[0](h)  # h E^T + b, (B, L, V)


class TransformerXL(nn.Module):
    """Transformer-XL language model: ``forward(ids, mems) -> (logits, new_mems)``.

    ``rng`` (Generator or int seed) draws the weights: N(0, init_std) for every weight matrix,
    the embedding and $u, v$; zeros for biases; ones for LayerNorm gains. It also seeds one
    generator, ``self.dropout_rng``, shared by every dropout (as :class:`models.gpt.GPT`).
    """

    def __init__(self, config: TransformerXLConfig, rng=None, *, dtype=np.float32):
        dtype, rng, self.dropout_rng = generators("TransformerXL", config, TransformerXLConfig, rng, dtype)
        self.config, self.dtype = config, dtype
        c, kw = config, {"rng": rng, "dropout_rng": self.dropout_rng, "dtype": dtype}
        self.word_emb = nn.Embedding(c.vocab_size, c.d_model, rng=rng, dtype=dtype)  # E (V, d)
        if not c.untie_r and c.positions == "relative":
            self.r_w_bias = nn.Parameter(np.zeros((c.n_head, c.d_head), dtype))  # u, shared by all layers
            self.r_r_bias = nn.Parameter(np.zeros((c.n_head, c.d_head), dtype))  # v, shared by all layers
        self.drop = nn.Dropout(c.dropout, rng=self.dropout_rng)
        self.layers = nn.ModuleList(RelPartialLearnableDecoderLayer(c, **kw) for _ in range(c.n_layer))
        self.crit = _Crit(self.word_emb, dtype=dtype)
        self._init_weights(rng, dtype)

    def _init_weights(self, rng, dtype):
        for name, p in self.named_parameters():
            if name.endswith(".bias") and "layer_norm" not in name:
                p.data = np.zeros(p.shape, dtype)
            elif "layer_norm" in name:
                p.data = (np.ones if name.endswith(".weight") else np.zeros)(p.shape, dtype)
            else:  # weights, the embedding, r_w_bias (u), r_r_bias (v)
                p.data = normal(rng, p.shape, self.config.init_std, dtype)

    # ------------------------------------------------------------------ memory
    def init_mems(self, batch: int, zero_filled: bool = False) -> list:
        """An empty memory: ``n_layer`` arrays (batch, 0, d). ``zero_filled=True`` gives Hugging Face's
        start instead: ``mem_len`` zero vectors per layer, (batch, mem_len, d), which are attended to."""
        xp = get_array_module(self.word_emb.weight.data)
        m = self.config.mem_len if zero_filled else 0
        return [xp.zeros((batch, m, self.config.d_model), dtype=self.dtype) for _ in range(self.config.n_layer)]

    def _check_mems(self, mems, batch):
        c = self.config
        if mems is None:
            return [None] * c.n_layer, 0
        if not isinstance(mems, (list, tuple)):  # every malformed memory is a ValueError, like a bad shape
            raise ValueError(f"TransformerXL: mems must be a list of {c.n_layer} arrays (B, M, d), one per "  # noqa: TRY004
                             f"layer input, got {type(mems).__name__}")
        if len(mems) != c.n_layer:
            raise ValueError(f"TransformerXL: mems has {len(mems)} arrays, expected n_layer={c.n_layer} (one per "
                             "layer input: the embedding output, then every layer's output but the last)")
        device = self.word_emb.weight.device
        out = []
        for n, mem in enumerate(mems):
            data = mem.data if isinstance(mem, mt.Tensor) else mem
            if not (hasattr(data, "shape") and hasattr(data, "dtype")):
                raise ValueError(f"TransformerXL: mems[{n}] must be an array (B, M, d), got {type(mem).__name__}")
            if data.ndim != 3 or data.shape[0] != batch or data.shape[2] != c.d_model:
                raise ValueError(f"TransformerXL: mems[{n}] has shape {tuple(data.shape)}, expected (B, M, d) = "
                                 f"({batch}, M, {c.d_model}) (batch-major; Hugging Face's (M, B, d) memories need "
                                 ".transpose(1, 0, 2))")
            if data.shape[1] != (out[0].shape[1] if out else data.shape[1]):
                raise ValueError(f"TransformerXL: mems[{n}] has M={data.shape[1]} positions but mems[0] has "
                                 f"{out[0].shape[1]}; every layer's memory must have the same length")
            if data.dtype != self.dtype:
                raise ValueError(f"TransformerXL: mems[{n}] has dtype {data.dtype}, the model {self.dtype}")
            out.append(to_device(data, device))
        m = out[0].shape[1]
        return ([None] * c.n_layer if m == 0 else out), m

    def _update_mems(self, hids, mems):
        """The last ``mem_len`` positions of [old memory, current layer input], per layer, detached
        (plain arrays, copied so no larger buffer and no graph is kept alive)."""
        c, new = self.config, []
        for h, mem in zip(hids, mems):
            xp = get_array_module(h.data)
            cat = h.data if mem is None else xp.concatenate([mem, h.data], axis=1)  # (B, M+L, d)
            keep = min(c.mem_len, cat.shape[1])
            new.append(cat[:, cat.shape[1] - keep:].copy())  # SG: data only, (B, min(mem_len, M+L), d)
        return new

    # ------------------------------------------------------------------ forward
    def _check_ids(self, ids):
        data = ids.data if isinstance(ids, mt.Tensor) else ids
        data = data if hasattr(data, "dtype") and hasattr(data, "ndim") else np.asarray(data)
        if data.dtype.kind not in "iu":
            raise TypeError(f"TransformerXL: token ids must be integers, got dtype {data.dtype}")
        if data.ndim != 2 or data.shape[1] < 1:
            raise ValueError(f"TransformerXL: ids must have shape (B, L) with L >= 1, got {data.shape}")
        return data

    def _run(self, ids, mems, records=None):
        c = self.config
        ids = self._check_ids(ids)
        b, t = ids.shape
        mems, m = self._check_mems(mems, b)
        device = self.word_emb.weight.device
        h = self.word_emb(ids) * math.sqrt(c.d_model)  # h^0 = sqrt(d) E_s, (B, L, d)
        if c.positions == "absolute":  # h^0 = sqrt(d) E_s + U_{1:L}: the same codes in every segment
            h = h + mt.Tensor(to_device(absolute_positions(t, c.d_model, self.dtype), device))
        h = self.drop(h)
        if c.positions == "relative":
            r = mt.Tensor(to_device(position_table(m + t, c.d_model, c.clamp_len, self.dtype), device))  # R, (M+L, d)
            r = self.drop(r)
        else:
            r = None
        mask = to_device(attention_mask(t, m, c.same_length, c.mem_len), device)  # (L, M+L)
        hids = []
        for n, layer in enumerate(self.layers):
            hids.append(h)  # the memory of layer n is its input h^{n}
            att = layer.dec_attn
            if c.positions == "absolute":
                u = v = None
            else:
                u, v = (att.r_w_bias, att.r_r_bias) if c.untie_r else (self.r_w_bias, self.r_r_bias)
            h = layer(h=h, mem=mems[n], r=r, u=u, v=v, mask=mask, record=None if records is None else records[n])
        h = self.drop(h)
        return self.crit(h), self._update_mems(hids, mems)

    def forward(self, ids, mems=None):
        r"""ids (B, L) -> (logits (B, L, V), new_mems: ``n_layer`` arrays (B, min(mem_len, M+L), d)).

        ``mems``: None (no memory), or the ``new_mems`` of the previous segment. The new memories
        are plain arrays: no gradient reaches them and no graph is kept (truncated BPTT).
        """
        return self._run(ids, mems)

    def loss(self, ids, targets, mems=None, ignore_index: int | None = None):
        """(mean cross-entropy in nats of ``targets`` (B, L), new_mems)."""
        logits, new_mems = self._run(ids, mems)
        return F.cross_entropy(logits, targets, ignore_index=ignore_index), new_mems

    def score_terms(self, ids, mems=None) -> list:
        r"""Per layer, a dict of NumPy arrays (B, H, L, M+L) for inspection (lesson 10):
        ``"a"``, ``"b"``, ``"c"``, ``"d"``, the four terms of $A^{\mathrm{rel}}$ UNSCALED, with the
        entries the mask forbids (future keys, where the rel-shift leaves garbage) set to NaN;
        ``"scores"`` $= (a+b+c+d)/\sqrt{d_h}$ as the forward used them (forbidden entries NaN too);
        ``"probs"`` the attention probabilities; ``"mask"`` (L, M+L) bool.
        Runs in eval mode (no dropout) without a graph; the training mode is restored.
        With ``positions="absolute"`` the score is $q_i^\top k_j$ alone: only ``"a"`` is given (with
        ``"scores"`` $= a/\sqrt{d_h}$, ``"probs"``, ``"mask"``).
        """
        records = [{} for _ in range(self.config.n_layer)]
        with eval_mode(self):
            self._run(ids, mems, records)
        out = []
        for rec in records:
            mask = to_numpy(rec["mask"])
            layer = {"mask": mask, "probs": to_numpy(rec["probs"]).copy()}
            for name in ("a", "b", "c", "d", "scores"):
                if name not in rec:
                    continue
                layer[name] = np.where(mask, to_numpy(rec[name]), np.nan)
            out.append(layer)
        return out

    # ------------------------------------------------------------------ rng state
    def get_rng_state(self) -> dict:
        """The dropout generator's state (JSON-able), for exact resume."""
        return self.dropout_rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.dropout_rng.bit_generator.state = state

    @classmethod
    def load_hf_checkpoint(cls, directory, dtype=np.float32) -> TransformerXL:
        """See :func:`models.transformer_xl.load_hf_checkpoint`."""
        from .hf_checkpoint import load_hf_checkpoint  # which imports this module

        return load_hf_checkpoint(directory, dtype=dtype)
