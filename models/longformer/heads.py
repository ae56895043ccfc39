r"""Task heads on the Longformer encoder (:mod:`models.longformer`): the three of the source's section 2.2,
and the masked LM that pretrains the encoder for them.

- :class:`LongformerForSequenceClassification`: CLS (position 0) made global, HF's classification head.
- :class:`LongformerForQuestionAnswering`: span extraction; the question tokens are made global
  (the paper's choice for QA), ``qa_outputs`` gives start/end logits, positions that cannot be an
  answer (question, padding) get $-\infty$ (:func:`minitensor.attention.masked_softmax`'s convention:
  $e^{-\infty} = 0$, so cross-entropy stays finite and those positions get no gradient).
- :class:`LongformerForMaskedLM`: RoBERTa's masked-LM head, output tied to the word embeddings (pretraining).
- :class:`LongformerForCausalLM`: the encoder with a causal band (autoregressive, the paper's char-LM
  setting), output tied to the word embeddings, ``lm_loss`` with GPT's contract.
"""
from __future__ import annotations

import dataclasses

import numpy as np

import minitensor as mt
import minitensor.functional as F
from minitensor import nn
from minitensor.backend import to_numpy

from ..evaluate import eval_mode
from .model import Longformer, LongformerConfig, bool_mask, init_weights, is_int

__all__ = ["LongformerForCausalLM", "LongformerForMaskedLM", "LongformerForQuestionAnswering",
           "LongformerForSequenceClassification"]


def _shape_of(ids):
    return np.shape(ids.data if isinstance(ids, mt.Tensor) else ids)


class _ClassificationHead(nn.Module):
    r"""HF's ``LongformerClassificationHead``: $\tanh(h_{CLS} W + b)$, dropout, then ``out_proj``."""

    def __init__(self, config, num_labels, *, rng, dropout_rng, dtype):
        self.dense = nn.Linear(config.d_model, config.d_model, rng=rng, dtype=dtype)
        self.dropout = nn.Dropout(config.hidden_dropout, rng=dropout_rng)
        self.out_proj = nn.Linear(config.d_model, num_labels, rng=rng, dtype=dtype)

    def forward(self, h_cls):
        return self.out_proj(self.dropout(mt.tanh(self.dense(self.dropout(h_cls)))))


class LongformerForSequenceClassification(nn.Module):
    """Encoder + classification head on position 0 (CLS, ``<s>``), which is made global automatically
    (the paper's choice for classification), beside the tokens ``global_mask`` marks (a question's).
    ``forward(ids, global_mask=None, padding_mask=None)`` -> logits (B, num_labels); ``loss(ids, labels,
    ...)`` the mean cross-entropy."""

    def __init__(self, config: LongformerConfig, num_labels: int, rng=None, *, dtype=np.float32):
        if not is_int(num_labels) or num_labels < 1:
            raise ValueError(f"LongformerForSequenceClassification: num_labels must be a positive int, "
                             f"got {num_labels!r}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.config, self.num_labels = config, int(num_labels)
        self.longformer = Longformer(config, rng, dtype=dtype)
        self.classifier = _ClassificationHead(config, self.num_labels, rng=rng,
                                              dropout_rng=self.longformer.dropout_rng, dtype=np.dtype(dtype))
        init_weights(self.classifier, rng, config.init_std, np.dtype(dtype))

    def forward(self, ids, global_mask=None, padding_mask=None) -> mt.Tensor:
        shape = np.shape(ids.data if isinstance(ids, mt.Tensor) else ids)
        g = bool_mask(global_mask, shape, "global_mask")
        g = np.zeros(shape, bool) if g is None else g.copy()
        g[:, 0] = True  # CLS is global
        g = g if self.config.global_tokens else None  # the global_tokens=False ablation: every token local
        h = self.longformer(ids, global_mask=g, padding_mask=padding_mask)  # (B, T, d)
        return self.classifier(h[:, 0])  # (B, num_labels)

    def loss(self, ids, labels, global_mask=None, padding_mask=None) -> mt.Tensor:
        return F.cross_entropy(self.forward(ids, global_mask, padding_mask), np.asarray(labels))


class LongformerForQuestionAnswering(nn.Module):
    r"""Encoder + ``qa_outputs = Linear(d, 2)`` (HF's name): start and end logits per token.

    ``forward(ids, question_mask, padding_mask=None)`` -> ``(start_logits, end_logits)``, each (B, T).
    ``question_mask`` (B, T) bool marks the question tokens: they are made global automatically.
    Question and padding positions cannot be an answer: their logits are $-\infty$.
    ``loss(ids, question_mask, starts, ends, padding_mask=None)`` = (CE(start) + CE(end)) / 2, each CE
    the mean over the batch; a gold start/end on a masked position is a ValueError naming the example.
    ``predict_spans`` decodes the best span (eval mode, no graph).

    ``no_answer`` (a class attribute; True in :class:`models.longformer.cast_tasks.LongformerSpeaks`): a
    question may have no answer, marked as the span (0, 0) on CLS, as BERT does SQuAD 2.0. CLS is then an
    answer position too, and ``predict_spans`` answers (0, 0) when $\text{start}_0 + \text{end}_0$ is at
    least every context span's score.
    """

    no_answer = False

    def __init__(self, config: LongformerConfig, rng=None, *, dtype=np.float32):
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.config = config
        self.longformer = Longformer(config, rng, dtype=dtype)
        self.qa_outputs = nn.Linear(config.d_model, 2, rng=rng, dtype=np.dtype(dtype))
        init_weights(self.qa_outputs, rng, config.init_std, np.dtype(dtype))

    def _masks(self, ids, question_mask, padding_mask):
        shape = _shape_of(ids)
        if question_mask is None:
            raise ValueError("LongformerForQuestionAnswering: question_mask (B, T) bool is required")
        qm = bool_mask(question_mask, shape, "question_mask")
        pm = bool_mask(padding_mask, shape, "padding_mask")
        real = np.ones(shape, bool) if pm is None else pm
        answerable = real & ~qm
        if self.no_answer:
            answerable[:, 0] = True  # CLS: "no answer"
        return qm & real, pm, answerable  # global, padding, answer-able positions

    def forward(self, ids, question_mask, padding_mask=None):
        glob, pm, context = self._masks(ids, question_mask, padding_mask)
        glob = glob if self.config.global_tokens else None  # the global_tokens=False ablation: all local
        h = self.longformer(ids, global_mask=glob, padding_mask=pm)  # (B, T, d), question tokens global
        logits = self.qa_outputs(h)  # (B, T, 2)
        neg_inf = np.array(-np.inf, dtype=logits.dtype)
        start = mt.where(context, logits[:, :, 0], neg_inf)  # (B, T): -inf where no answer can start
        end = mt.where(context, logits[:, :, 1], neg_inf)  # (B, T)
        return start, end

    def loss(self, ids, question_mask, starts, ends, padding_mask=None) -> mt.Tensor:
        _, _, context = self._masks(ids, question_mask, padding_mask)
        b, t = context.shape
        gold = []
        for name, pos in (("start", starts), ("end", ends)):
            pos = np.asarray(pos)
            if pos.dtype.kind not in "iu" or pos.shape != (b,):
                raise ValueError(f"LongformerForQuestionAnswering.loss: {name}s must be {b} ints (one per "
                                 f"example), got {pos.dtype} {pos.shape}")
            for i, p in enumerate(pos):
                if not 0 <= p < t:
                    raise ValueError(f"LongformerForQuestionAnswering.loss: example {i}: gold {name} {int(p)} is "
                                     f"out of range [0, {t})")
                if not context[i, p]:
                    raise ValueError(f"LongformerForQuestionAnswering.loss: example {i}: gold {name} {int(p)} is a "
                                     "question or padding position (it cannot be an answer)")
            gold.append(pos.astype(np.int64))
        start, end = self.forward(ids, question_mask, padding_mask)
        return (F.cross_entropy(start, gold[0]) + F.cross_entropy(end, gold[1])) * 0.5

    def predict_spans(self, ids, question_mask, padding_mask=None, max_answer_len: int = 30) -> np.ndarray:
        r"""(B, 2) ints: the (start, end) maximising $\text{start}_s + \text{end}_e$ over context positions
        $s \le e < s + \text{max\_answer\_len}$, and with ``no_answer`` the null span (0, 0), which wins ties.
        Runs in eval mode without a graph (training mode restored). An example with no context position
        gives (-1, -1)."""
        if not is_int(max_answer_len) or max_answer_len < 1:
            raise ValueError(f"predict_spans: max_answer_len must be a positive int, got {max_answer_len!r}")
        with eval_mode(self):
            start, end = self.forward(ids, question_mask, padding_mask)
        s_log = np.asarray(to_numpy(start.data), np.float64)
        e_log = np.asarray(to_numpy(end.data), np.float64)
        b, t = s_log.shape
        best = np.full(b, -np.inf)
        out = np.full((b, 2), -1, np.int64)
        if self.no_answer:  # the null span (0, 0) first; no other span may start on CLS
            best = s_log[:, 0] + e_log[:, 0]
            out[:] = 0
            s_log[:, 0] = -np.inf
        for k in range(min(max_answer_len, t)):  # span length k + 1: O(B T L), never (T, T)
            score = s_log[:, : t - k] + e_log[:, k:]  # (B, T-k): start s, end s + k
            arg = score.argmax(axis=1)
            val = score[np.arange(b), arg]
            better = val > best  # strict: the shorter span wins ties
            best = np.where(better, val, best)
            out[better] = np.stack([arg, arg + k], axis=1)[better]
        return out


class _MaskedLMHead(nn.Module):
    r"""RoBERTa's LM head (HF's ``LongformerLMHead``): $\mathrm{LN}(\mathrm{GELU}(h W + b)) W_e^\top + b_V$,
    the output tied to the word embeddings $W_e$ (passed in, not owned)."""

    def __init__(self, config, *, rng, dtype):
        self.dense = nn.Linear(config.d_model, config.d_model, rng=rng, dtype=dtype)
        self.layer_norm = nn.LayerNorm(config.d_model, config.layer_norm_eps, dtype=dtype)
        self.bias = nn.Parameter(np.zeros(config.vocab_size, dtype))

    def forward(self, h, w_e):
        x = self.layer_norm(F.gelu(self.dense(h), approximate="none"))
        return x @ w_e.swapaxes(0, 1) + self.bias  # (B, T, V)


class LongformerForMaskedLM(nn.Module):
    r"""Encoder + RoBERTa's LM head: the masked-language-model pretraining of the paper's section 5
    (continued from RoBERTa there; from scratch here). No global token (the paper pretrains with the
    band alone); ``forward(ids, padding_mask=None)`` -> logits (B, T, V); ``loss(ids, labels, ...)`` the mean
    cross-entropy over the positions whose label is not ``IGNORE`` (-1): the masked ones."""

    IGNORE = -1

    def __init__(self, config: LongformerConfig, rng=None, *, dtype=np.float32):
        if config.causal:
            raise ValueError("LongformerForMaskedLM: a masked LM reads both sides; config.causal must be False")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.config = config
        self.longformer = Longformer(config, rng, dtype=dtype)
        self.lm_head = _MaskedLMHead(config, rng=rng, dtype=np.dtype(dtype))
        init_weights(self.lm_head, rng, config.init_std, np.dtype(dtype))

    def forward(self, ids, padding_mask=None) -> mt.Tensor:
        h = self.longformer(ids, padding_mask=padding_mask)  # (B, T, d)
        return self.lm_head(h, self.longformer.embeddings.word_embeddings.weight)

    def loss(self, ids, labels, padding_mask=None) -> mt.Tensor:
        return F.cross_entropy(self.forward(ids, padding_mask), labels, ignore_index=self.IGNORE)


class LongformerForCausalLM(nn.Module):
    r"""A causal character/token LM on the Longformer encoder: every layer's band keeps only keys
    $j \le i$ (``banded_attention(causal=True)``), no global tokens, no padding.

    The given config is FORCED causal: ``config.causal`` False is replaced by a copy with
    ``causal=True`` (``self.config``; the caller's object is not changed). Output tied to the word
    embeddings: $\text{logits} = h W_e^\top + b$ (``lm_bias``, zeros at init). ``forward(ids)`` ->
    (B, T, V); ``lm_loss(x, y)`` the mean cross-entropy in nats, GPT's contract (models/gpt/recipe.py's
    RandomWindows and ``evaluate_bpc`` work unchanged).

    Positions: the LM pads nothing, so every id (``pad_id`` included: it may well be a character) is a
    real token; positions are ``pad_id + 1 + t`` (RoBERTa's offset), never shifted by pad ids.

    Full causal attention is the same class with ``attention_window >= 2 T``: the band's left half
    ($w/2 \ge T$ keys) then covers the whole past (tested against dense causal attention).
    """

    def __init__(self, config: LongformerConfig, rng=None, *, dtype=np.float32):
        if not isinstance(config, LongformerConfig):
            raise TypeError(f"LongformerForCausalLM: config must be a LongformerConfig, got {type(config).__name__}")
        if not config.causal:
            config = dataclasses.replace(config, causal=True)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.config = config
        self.longformer = Longformer(config, rng, dtype=dtype)
        self.lm_bias = nn.Parameter(np.zeros(config.vocab_size, np.dtype(dtype)))

    def forward(self, ids) -> mt.Tensor:
        h = self.longformer(ids, pad_positions=False)  # (B, T, d)
        w_e = self.longformer.embeddings.word_embeddings.weight  # W_e (V, d), tied
        return h @ w_e.swapaxes(0, 1) + self.lm_bias  # (B, T, V)

    def lm_loss(self, ids, targets, ignore_index: int | None = None) -> mt.Tensor:
        r"""The mean cross-entropy (nats) of ``targets`` (B, T) under ``forward(ids)``."""
        return F.cross_entropy(self.forward(ids), targets, ignore_index=ignore_index)

    def get_rng_state(self) -> dict:
        return self.longformer.get_rng_state()

    def set_rng_state(self, state: dict) -> None:
        self.longformer.set_rng_state(state)
