r"""Bits per character of a language model two ways: Transformer-XL's cached evaluation and the
vanilla sliding window (the source's Figure 1b).

Both report $\mathrm{bpc} = -\frac{1}{N \ln 2} \sum_t \ln P(x_t \mid \text{context})$ over the
$N$ predicted characters, run with no graph (``mt.no_grad``) and dropout off (``model.eval()``;
the caller's train/eval mode comes back afterwards), and return an :class:`EvalResult`.

Cached (:func:`cached_bpc`)
    Transformer-XL reads the text segment after segment (length $L$, the model's ``tgt_len``
    unless given) and carries its memory: every character is predicted ONCE, from the up to
    ``mem_len`` + (its place in the segment) characters before it, and each segment costs one
    forward pass over $L$ new tokens. ``batch_size`` > 1 cuts the text into that many contiguous
    slices read in parallel (:class:`models.data.SegmentStream`'s layout, short last segment
    included), each starting with an empty memory.

Vanilla (:func:`vanilla_bpc`)
    An absolute-position Transformer (:class:`models.gpt.GPT`) with context $C$ predicts
    character $t$ from the window ``ids[t-C : t]`` and uses ONLY the last position's prediction;
    the window then slides by one. Every prediction therefore costs a full forward pass over $C$
    tokens: $C$ times the work per character of the cached model, which is what
    ``benchmarks/txl_eval_speed.py`` measures. The first $C$ characters have shorter windows
    starting at the text's start; one causal forward pass over ``ids[:C]`` gives exactly those
    predictions (position $i$ of it sees ``ids[:i+1]`` at the same absolute positions).
    Many windows go through one forward pass (``windows_per_batch``); that changes the speed,
    not the numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import minitensor as mt
from minitensor.backend import get_array_module, to_device, to_numpy

from . import data

LN2 = math.log(2.0)

__all__ = ["EvalResult", "cached_bpc", "vanilla_bpc"]


@dataclass
class EvalResult:
    """``bpc`` over ``n_predicted`` characters (``nats`` is their summed negative log-likelihood)."""

    bpc: float
    n_predicted: int
    nats: float


def _device(model) -> str:
    params = model.parameters()
    return params[0].device if params else "cpu"


def _sum_nats(logits, targets) -> float:
    r"""$-\sum \ln \mathrm{softmax}(\text{logits})[\text{target}]$ in float64; logits (..., V), targets (...)."""
    xp = get_array_module(logits)
    z = logits.astype(xp.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))  # log-softmax, (..., V)
    picked = xp.take_along_axis(logp, targets[..., None], axis=-1)  # (..., 1)
    return -float(to_numpy(picked.sum()))


class _EvalMode:
    """``with _EvalMode(model):`` dropout off, no graph; the previous mode is restored on exit."""

    def __init__(self, model):
        self.model, self.no_grad = model, mt.no_grad()

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        self.no_grad.__enter__()

    def __exit__(self, *exc):
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def _result(nats: float, count: int, where: str, n_ids: int) -> EvalResult:
    if count == 0:
        raise ValueError(f"{where}: the text ({n_ids} tokens) has nothing to predict")
    return EvalResult(bpc=nats / count / LN2, n_predicted=count, nats=nats)


def cached_bpc(model, ids, *, batch_size: int = 1, seg_len: int | None = None,
               max_segments: int | None = None) -> EvalResult:
    """Transformer-XL bpc over ``ids`` with memory carried across segments (see the module docstring).

    ``seg_len`` defaults to the model's ``tgt_len``; the memory length is the model's ``mem_len``.
    ``max_segments`` stops after that many segments (a cheap partial figure during training).
    """
    ids = data._check_ids(ids, "cached_bpc")
    seg_len = model.config.tgt_len if seg_len is None else seg_len
    data._check_positive("cached_bpc", batch_size=batch_size, seg_len=seg_len)
    n = (len(ids) - 1) // batch_size  # targets per slice, as SegmentStream lays them out
    if n < 1:
        raise ValueError(f"cached_bpc: the text ({len(ids)} tokens) is too short for {batch_size} slices")
    rows = ids.astype(np.int64)[np.arange(batch_size)[:, None] * n + np.arange(n + 1)]  # (B, n+1)
    device = _device(model)
    nats, count, mems = 0.0, 0, None
    with _EvalMode(model):
        for i, a in enumerate(range(0, n, seg_len)):
            if max_segments is not None and i >= max_segments:
                break
            x = rows[:, a : min(a + seg_len, n)]  # (B, L); the last segment may be shorter
            y = rows[:, a + 1 : a + 1 + x.shape[1]]  # (B, L)
            logits, mems = model.forward(to_device(x, device), mems)  # memory carried, already detached
            nats += _sum_nats(logits.data, to_device(y, device))
            count += y.size
    return _result(nats, count, "cached_bpc", len(ids))


def vanilla_windows(n_ids: int, context: int) -> tuple:
    """``(first, starts)``: the first forward pass covers ``ids[:first]`` and predicts every one of
    its positions; then one window ``ids[s : s + context]`` per entry of ``starts`` predicts
    ``ids[s + context]`` from its last position only."""
    first = min(context, n_ids - 1)
    starts = np.arange(1, n_ids - context)  # windows ending at t-1 for t = context+1 .. n_ids-1
    return first, starts


def vanilla_bpc(model, ids, *, context: int | None = None, windows_per_batch: int = 16,
                max_windows: int | None = None, include_first: bool = True) -> EvalResult:
    r"""Sliding-window bpc of an absolute-position model (``forward(ids) -> logits``) over ``ids``.

    ``context`` $C$ defaults to the model's ``n_ctx``. ``max_windows`` stops after that many
    sliding windows (the benchmark times a fixed number of them); ``include_first=False`` skips
    the predictions of the first, shorter windows so that every counted prediction saw exactly
    $C$ characters.
    """
    ids = data._check_ids(ids, "vanilla_bpc").astype(np.int64)
    context = model.config.n_ctx if context is None else context
    data._check_positive("vanilla_bpc", context=context, windows_per_batch=windows_per_batch)
    if context > model.config.n_ctx:
        raise ValueError(f"vanilla_bpc: context {context} is longer than the model's n_ctx={model.config.n_ctx}")
    if len(ids) < 2:
        raise ValueError(f"vanilla_bpc: the text ({len(ids)} tokens) has nothing to predict")
    device = _device(model)
    first, starts = vanilla_windows(len(ids), context)
    if max_windows is not None:
        starts = starts[:max_windows]
    nats, count = 0.0, 0
    with _EvalMode(model):
        if include_first:
            logits = model.forward(to_device(ids[None, :first], device)).data  # (1, first, V): every position
            nats += _sum_nats(logits, to_device(ids[None, 1 : first + 1], device))
            count += first
        for b in range(0, len(starts), windows_per_batch):
            s = starts[b : b + windows_per_batch]
            x = ids[s[:, None] + np.arange(context)]  # (W, C): one window per row
            logits = model.forward(to_device(x, device)).data[:, -1]  # (W, V): the last position only
            nats += _sum_nats(logits, to_device(ids[s + context], device))
            count += len(s)
    return _result(nats, count, "vanilla_bpc", len(ids))
