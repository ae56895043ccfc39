r"""Bits per character of a language model: Transformer-XL's cached evaluation, the vanilla sliding
window (the source's Figure 1b), and the plain windows the training loop measures (:func:`evaluate_bpc`);
with the two helpers every evaluation shares, :func:`eval_mode` and :func:`model_device`.

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

import contextlib
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import minitensor as mt
from minitensor.backend import get_array_module, to_device, to_numpy

from . import data
from .tokenizers.lm import BPETextTokenizer

LN2 = math.log(2.0)

__all__ = ["EvalResult", "cached_bpc", "command", "eval_mode", "evaluate_bpc", "model_device", "vanilla_bpc"]


@dataclass
class EvalResult:
    """``bpc`` over ``n_predicted`` characters (``nats`` is their summed negative log-likelihood)."""

    bpc: float
    n_predicted: int
    nats: float


def model_device(model) -> str:
    """The device of ``model``'s parameters ("cpu" for a model without any)."""
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


@contextlib.contextmanager
def eval_mode(model):
    """``with eval_mode(model):`` dropout off (``model.eval()``) and no graph (``mt.no_grad``); the model's
    previous train/eval mode comes back on exit, also after an error."""
    was_training = model.training
    model.eval()
    try:
        with mt.no_grad():
            yield model
    finally:
        model.train(was_training)


def _result(nats: float, count: int, where: str, n_ids: int, chars: int | None = None) -> EvalResult:
    """``chars``: the characters the ``count`` predicted tokens spell (BPE), when not one each."""
    if count == 0:
        raise ValueError(f"{where}: the text ({n_ids} tokens) has nothing to predict")
    return EvalResult(bpc=nats / (count if chars is None else chars) / LN2, n_predicted=count, nats=nats)


def cached_bpc(model, ids, *, batch_size: int = 1, seg_len: int | None = None,
               max_segments: int | None = None, chars_per_id=None) -> EvalResult:
    """Transformer-XL bpc over ``ids`` with memory carried across segments (see the module docstring).

    ``seg_len`` defaults to the model's ``tgt_len``; the memory length is the model's ``mem_len``.
    ``max_segments`` stops after that many segments (a cheap partial figure during training).
    With ``chars_per_id`` (a BPE model's tokens, :class:`TokenText`) the summed bits are divided by the
    characters the predicted tokens spell; ``n_predicted`` still counts tokens.
    """
    ids = data.check_ids(ids, "cached_bpc")
    seg_len = model.config.tgt_len if seg_len is None else seg_len
    data.check_positive("cached_bpc", batch_size=batch_size, seg_len=seg_len)
    n = (len(ids) - 1) // batch_size  # targets per slice, as SegmentStream lays them out
    if n < 1:
        raise ValueError(f"cached_bpc: the text ({len(ids)} tokens) is too short for {batch_size} slices")
    rows = ids.astype(np.int64)[np.arange(batch_size)[:, None] * n + np.arange(n + 1)]  # (B, n+1)
    device = model_device(model)
    nats, count, chars, mems = 0.0, 0, 0, None
    with eval_mode(model):
        for i, a in enumerate(range(0, n, seg_len)):
            if max_segments is not None and i >= max_segments:
                break
            x = rows[:, a : min(a + seg_len, n)]  # (B, L); the last segment may be shorter
            y = rows[:, a + 1 : a + 1 + x.shape[1]]  # (B, L)
            logits, mems = model.forward(to_device(x, device), mems)  # memory carried, already detached
            nats += _sum_nats(logits.data, to_device(y, device))
            count += y.size
            chars += y.size if chars_per_id is None else int(chars_per_id[y].sum())
    return _result(nats, count, "cached_bpc", len(ids), chars)


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
    ids = data.check_ids(ids, "vanilla_bpc").astype(np.int64)
    context = model.config.n_ctx if context is None else context
    data.check_positive("vanilla_bpc", context=context, windows_per_batch=windows_per_batch)
    if context > model.config.n_ctx:
        raise ValueError(f"vanilla_bpc: context {context} is longer than the model's n_ctx={model.config.n_ctx}")
    if len(ids) < 2:
        raise ValueError(f"vanilla_bpc: the text ({len(ids)} tokens) has nothing to predict")
    device = model_device(model)
    first, starts = vanilla_windows(len(ids), context)
    if max_windows is not None:
        starts = starts[:max_windows]
    nats, count = 0.0, 0
    with eval_mode(model):
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


class TokenText(NamedTuple):
    """A text as the ids of a tokenizer whose tokens spell several characters (BPE), with the characters
    each id spells (:attr:`models.tokenizers.BPETextTokenizer.chars_per_id`): what bits per character
    divides by. A character model's text is its plain ids."""

    ids: np.ndarray
    chars_per_id: np.ndarray

    @property
    def n_chars(self) -> int:
        return int(self.chars_per_id[self.ids].sum())


def ids_and_chars(text) -> tuple:
    """``(ids, chars_per_id)`` of a :class:`TokenText`, ``(ids, None)`` of plain ids (one character each)."""
    return (text.ids, text.chars_per_id) if isinstance(text, TokenText) else (text, None)


def evaluate_bpc(model, ids, batch_size: int, seq_len: int, max_batches: int | None = None,
                 chars_per_id=None) -> float:
    r"""Bits per character on ``ids`` over contiguous windows of ``seq_len``, each starting without
    context (GPT, the Longformer language model: any model with ``lm_loss``): the mean next-character
    cross-entropy in nats over every predicted position, divided by $\ln 2$. Dropout off, no graph,
    the model's mode restored. ``max_batches`` stops after that many batches (None: all of ``ids``).
    With ``chars_per_id`` (a BPE model's tokens, :class:`TokenText`) the summed bits are divided by the
    characters the predicted tokens spell instead of their number.
    Transformer-XL's figure is :func:`cached_bpc`, which carries the memory instead."""
    device = model_device(model)
    total_nats, count = 0.0, 0
    with eval_mode(model):
        for i, (x, y) in enumerate(data.iterate_eval_batches(ids, batch_size, seq_len)):
            if max_batches is not None and i >= max_batches:
                break
            loss = model.lm_loss(to_device(x, device), to_device(y, device))
            total_nats += float(to_numpy(loss.data)) * y.size  # lm_loss is a mean: weight by its positions
            count += y.size if chars_per_id is None else int(chars_per_id[y].sum())
    if count == 0:
        raise ValueError(f"evaluate_bpc: the text ({len(ids)} tokens) is too short for one batch of seq_len {seq_len}")
    return total_nats / count / LN2


def command(opts) -> int:
    """``python -m models evaluate``: the checkpoint ``opts.ckpt``'s bpc on a held-out split, measured as its
    recipe measures it (Transformer-XL: cached, batch 1; GPT: the vanilla sliding window of ``opts.context``)."""
    from . import checkpoint  # the checkpoint's module reads the recipes, which import this module

    if opts.max_chars is not None and opts.max_chars < 2:
        raise ValueError(f"--max-chars must be >= 2 (one character of context, one to predict), got {opts.max_chars}")
    if opts.context is not None and opts.context < 1:
        raise ValueError(f"--context must be >= 1, got {opts.context}")
    device = mt.backend.check_device(opts.device)
    model, tokenizer_dict, _, recipe = checkpoint.load_language_model(opts.ckpt, "evaluate")
    recipe.check_context(opts.context, model.config)
    model = recipe.with_memory(model, opts.mem_len).to(device)
    bpe = tokenizer_dict.get("type") == "bpe"
    if bpe:  # byte-level BPE (train gpt --tokenizer bpe): bits over the characters the tokens spell
        tokenizer = BPETextTokenizer.from_dict(tokenizer_dict)
    else:
        # The checkpoint's own tokenizer, as in training: a character only the held-out plays use
        # becomes the unknown symbol (train saves its tokenizer with unknown="replace").
        tokenizer = data.CharTokenizer.from_dict(tokenizer_dict)
    text = getattr(data.load_shakespeare(), opts.split)
    total = len(text)
    if opts.max_chars is not None:
        text = text[: opts.max_chars]
    ids = tokenizer.encode(text)
    start = time.perf_counter()
    result, how = recipe.held_out_bpc(model, ids, opts.context)
    seconds = time.perf_counter() - start
    scope = "all" if len(text) == total else f"the first {len(text):,} of"
    bpc, predicted = result.bpc, f"{result.n_predicted:,} predicted"
    if bpe:
        if result.n_predicted != len(ids) - 1:
            raise RuntimeError(f"evaluate: {result.n_predicted} tokens predicted, expected all {len(ids) - 1}")
        chars = int(tokenizer.chars_per_id[ids[1:]].sum())  # every token but the first is predicted
        bpc, predicted = result.nats / LN2 / chars, f"{result.n_predicted:,} BPE tokens spelling {chars:,} predicted"
    print(f"{how}: {opts.split} split, {scope} {total:,} characters ({predicted}): "
          f"bpc {bpc:.4f}, {seconds:.2f} s, {result.n_predicted / max(seconds, 1e-9):,.0f} tokens/s "
          f"(device {device})")
    return 0
