r"""Zero-shot: a pretrained language model answers a task with no fine-tuning at all (the source's
Figure 2, right: heuristics that use the LM alone, measured as pretraining goes on).

Every heuristic reads one number off the LM, how much a text's log-probability rises when another
text comes first:

$$\mathrm{gain}(b \mid a) = \log P(b \mid a) - \log P(b \mid \text{"\\n"}),$$

both sums over exactly the tokens of $b$ (the neutral prefix, a line break, gives $b$'s first token a
context too, so the two sums score the same tokens). A positive gain says "$a$ makes $b$ likelier".
Then, per format:

* **multiple choice**: the choice with the largest gain after the context (the choice's own
  likelihood is subtracted, so a short or common choice is not favoured for being short or common);
* **entailment**: "yes" when the hypothesis's gain after the premise is above a threshold; for the
  tasks of :data:`BY_LIKELIHOOD`, when its mean log-probability per token after the premise is;
* **similarity**: the larger of the two orders' gains, above a threshold;
* **classification** (two labels): the text's mean log-probability per token above a threshold
  (``corrupted``: real text is likelier).

Why two scores: a wrong continuation taken from another speech reads as well as the right one, so
only the gain, what the premise adds, tells them apart; a scrambled one (``word-order``) reads badly
whatever comes first, and its gain hardly moves, so its likelihood is the measure.

A threshold is the one parameter a heuristic has: the median of its score on the training split,
where the labels are half and half, so no label is read. ``genre`` has six labels and no heuristic.
"""
from __future__ import annotations

import numpy as np

import minitensor.functional as F
from minitensor.backend import to_device, to_numpy

from ..evaluate import eval_mode, model_device
from . import tasks

__all__ = ["BY_LIKELIHOOD", "NEUTRAL", "gains", "log_probs", "scores", "zero_shot_accuracy"]

NEUTRAL = "\n"  # the prefix of the unconditional likelihood
#: Entailment tasks scored by the hypothesis's likelihood after the premise rather than by its gain.
BY_LIKELIHOOD = frozenset({"word-order"})


def log_probs(model, tokenizer, pairs, batch_size: int = 32) -> np.ndarray:
    r"""$\log P(b \mid a)$ in nats for each ``(a, b)`` of ``pairs``: the summed log-probabilities of ``b``'s
    tokens after ``a``'s, one forward pass per batch (right-padded; causal attention keeps the padding
    invisible). ``a + b`` must fit the model's context."""
    encoded = [(tokenizer.encode(a), tokenizer.encode(b)) for a, b in pairs]
    n_ctx = model.config.n_ctx
    for (a, b), (ta, tb) in zip(pairs, encoded, strict=True):
        if len(ta) < 1 or len(tb) < 1 or len(ta) + len(tb) > n_ctx:
            raise ValueError(f"log_probs: {a[:30]!r} + {b[:30]!r} is {len(ta)} + {len(tb)} tokens; each needs at "
                             f"least one and together at most the model's context n_ctx={n_ctx}")
    device, out = model_device(model), np.empty(len(pairs))
    with eval_mode(model):
        for start in range(0, len(pairs), batch_size):
            chunk = encoded[start : start + batch_size]
            width = max(len(ta) + len(tb) for ta, tb in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            for r, (ta, tb) in enumerate(chunk):
                ids[r, : len(ta) + len(tb)] = np.concatenate([ta, tb])
            logp = to_numpy(F.log_softmax(model(to_device(ids, device)), axis=-1).data).astype(np.float64)
            for r, (ta, tb) in enumerate(chunk):
                at = np.arange(len(ta) - 1, len(ta) + len(tb) - 1)  # the positions that predict b's tokens
                out[start + r] = logp[r, at, tb].sum()
    return out


def gains(model, tokenizer, pairs) -> np.ndarray:
    r"""$\mathrm{gain}(b \mid a) = \log P(b \mid a) - \log P(b \mid \text{"\\n"})$ for each ``(a, b)``."""
    both = log_probs(model, tokenizer, [*pairs, *((NEUTRAL, b) for _, b in pairs)])
    return both[: len(pairs)] - both[len(pairs) :]


def scores(model, tokenizer, task: tasks.Task, split: str) -> np.ndarray:
    """The heuristic's score of each example of ``split``: (N, choices) for multiple choice, else (N,)."""
    examples = task.splits[split]
    if task.format == "multiple_choice":
        k = len(examples[0]["choices"])
        pairs = [(ex["context"], c) for ex in examples for c in ex["choices"]]
        return gains(model, tokenizer, pairs).reshape(len(examples), k)
    if task.format == "entailment":
        pairs = [(ex["premise"], ex["hypothesis"]) for ex in examples]
        if task.name in BY_LIKELIHOOD:
            return log_probs(model, tokenizer, pairs) / _lengths(tokenizer, [b for _, b in pairs])
        return gains(model, tokenizer, pairs)
    if task.format == "similarity":
        ab = gains(model, tokenizer, [(ex["text_a"], ex["text_b"]) for ex in examples])
        ba = gains(model, tokenizer, [(ex["text_b"], ex["text_a"]) for ex in examples])
        return np.maximum(ab, ba)
    if len(task.labels) != 2:
        raise ValueError(f"zero-shot: task {task.name!r} has {len(task.labels)} labels; the classification "
                         "heuristic (mean log-probability above a threshold) needs two")
    texts = [ex["text"] for ex in examples]
    return log_probs(model, tokenizer, [(NEUTRAL, t) for t in texts]) / _lengths(tokenizer, texts)


def _lengths(tokenizer, texts) -> np.ndarray:
    return np.array([len(tokenizer.encode(t)) for t in texts])


#: For a thresholded score: the label that a score ABOVE the threshold means.
HIGH_LABEL = {"entailment": "yes", "similarity": "same", "classification": "real"}


def zero_shot_accuracy(model, tokenizer, task: tasks.Task, splits=("validation", "test")) -> float:
    """Accuracy of the format's heuristic (module docstring) on ``splits`` together, the threshold (when
    the format has one) the median score on the training split."""
    held = [ex for s in splits for ex in task.splits[s]]
    held_task = tasks.Task(task.name, task.format, task.labels, {"held": held})
    s = scores(model, tokenizer, held_task, "held")
    if task.format == "multiple_choice":
        return float((s.argmax(axis=1) == np.array([ex["label"] for ex in held])).mean())
    high = HIGH_LABEL[task.format]
    if high not in task.labels:
        raise ValueError(f"zero-shot: a {task.format} task needs the label {high!r}, task {task.name!r} has {task.labels}")
    threshold = float(np.median(scores(model, tokenizer, task, "train")))
    predicted_high = s > threshold
    return float((predicted_high == np.array([ex["label"] == high for ex in held])).mean())
