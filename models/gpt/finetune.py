r"""Fine-tuning GPT-1 on a task (the source's sections 3.3.2-3.3.3).

A pretrained GPT reads the task's input, rewritten as token sequences framed by special
tokens (:mod:`models.gpt.tasks`), and a linear head $W_y$ reads the final hidden state
$h_l^m$ of the last token, the extract token ``<e>``:

$$P(y \mid x^1, \dots, x^m) = \mathrm{softmax}(h_l^m W_y),\qquad
L_2 = \sum_{(x, y)} \log P(y \mid x^1, \dots, x^m)$$

Training maximises $L_3 = L_2 + \lambda L_1$, where $L_1$ is the language-modelling
objective on the same inputs (the source reports it helps larger datasets and hurts
smaller ones less than it helps). As losses to minimise, in nats per item:

$$\mathcal{L}_3 = \mathrm{CE}(\text{task}) + \lambda\, \mathrm{CE}(\text{next token})$$

with ``lm_coef`` = $\lambda$ (0.5 by default, as GPT-1).

How the formats reach the head (N examples, S sequences each, hidden size d):

* every sequence gives $h$ of its ``<e>`` token: (N, S, d);
* classification / entailment (S = 1) and similarity (S = 2, both orders of the pair):
  the S vectors are ADDED, then $W_y$ maps d -> number of labels;
* multiple choice (S = choices): $W_y$ maps d -> 1, one score per choice, and the
  softmax runs over the S choices.

The special tokens are three new rows of the token embedding $W_e$ (ids V, V+1, V+2
after a vocabulary of V characters, or of V BPE tokens for a checkpoint trained with
``--tokenizer bpe``), drawn N(0, init_std) like the others. The output projection is
tied to $W_e$, so the model could predict them; $L_1$ never asks it to (targets are
text tokens only).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np

import minitensor as mt
import minitensor.functional as F
from minitensor import nn
from minitensor.backend import to_device, to_numpy

from .. import checkpoint, data, files
from ..evaluate import eval_mode
from ..tokenizers.lm import BPETextTokenizer, lm_tokenizer_from_dict
from ..train import progress_bar
from . import tasks
from .model import GPT, GPTConfig

__all__ = ["SPECIAL_TOKENS", "EncodedSplit", "FinetuneConfig", "GPTForTasks", "TaskEncoder", "command", "evaluate",
           "finetune", "load_finetuned", "majority_accuracy", "prepare", "save_finetuned"]

SPECIAL_TOKENS = ("<s>", "$", "<e>")  # start, delimiter, extract: names for printing only
IGNORE = -1  # target id of positions L_1 does not score (padding, special tokens)
FINETUNED_NAME = "finetuned.npz"
MODEL_TYPE = "gpt-finetune"


# ----------------------------------------------------------------- inputs

class TaskEncoder:
    """Turns task examples into GPT input sequences with the special tokens.

    ``tokenizer`` is the pretrained model's: characters (:class:`models.data.CharTokenizer`, V
    characters) or byte-level BPE tokens (:class:`models.tokenizers.BPETextTokenizer`, V tokens);
    either way the special tokens get ids V, V+1, V+2. A character the character tokenizer does
    not know is an error naming the example, never a silent replacement: the task text must be
    in the model's vocabulary (byte-level BPE can encode any text).
    """

    def __init__(self, tokenizer, fmt: str, n_ctx: int):
        if fmt not in tasks.FORMATS:
            raise ValueError(f"TaskEncoder: unknown format {fmt!r}; expected one of {tasks.FORMATS}")
        if isinstance(tokenizer, data.CharTokenizer):
            tokenizer = data.CharTokenizer(tokenizer.chars, unknown="error", unk=tokenizer.unk)
        elif not isinstance(tokenizer, BPETextTokenizer):
            raise TypeError(f"TaskEncoder: expected a CharTokenizer or a BPETextTokenizer, got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.format, self.n_ctx = fmt, n_ctx
        v = tokenizer.vocab_size
        self.start, self.delim, self.extract = v, v + 1, v + 2
        self.vocab_size = v + 3

    def _text(self, text: str, where: str) -> list:
        try:
            return self.tokenizer.encode(text).tolist()
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None

    def sequences(self, example: dict, where: str = "example") -> list:
        """The token sequences of one example (lists of ids), per the format's transform."""
        s, d, e = self.start, self.delim, self.extract
        # BEGIN SOLUTION lesson 08: TaskEncoder.sequences: the input transformation of each format (the source's section 3.3, lesson 08)
        if self.format == "classification":
            seqs = [[s, *self._text(example["text"], where), e]]
        elif self.format == "entailment":
            seqs = [[s, *self._text(example["premise"], where), d, *self._text(example["hypothesis"], where), e]]
        elif self.format == "similarity":  # both orders: similarity has no inherent order
            a, b = self._text(example["text_a"], where), self._text(example["text_b"], where)
            seqs = [[s, *a, d, *b, e], [s, *b, d, *a, e]]
        else:  # multiple choice: the context with each answer in turn
            ctx = self._text(example["context"], where)
            seqs = [[s, *ctx, d, *self._text(c, where), e] for c in example["choices"]]
        # END SOLUTION
        longest = max(len(q) for q in seqs)
        if longest > self.n_ctx:
            raise ValueError(f"{where} needs {longest} tokens with its special tokens, more than the model's "
                             f"context n_ctx={self.n_ctx}; shorten its text (nothing is cut silently)")
        return seqs

    def encode(self, examples: list, labels: list, where: str) -> EncodedSplit:
        """All examples of a split, checked and encoded once (see :class:`EncodedSplit`)."""
        seqs = [self.sequences(ex, f"{where}: example {i}") for i, ex in enumerate(examples)]
        if self.format == "multiple_choice":
            y = [ex["label"] for ex in examples]
        else:
            y = [labels.index(ex["label"]) for ex in examples]
        return EncodedSplit(seqs, np.asarray(y, dtype=np.int64), self.vocab_size - 3)


@dataclass
class EncodedSplit:
    """Encoded examples: ``seqs[i]`` is the list of S sequences of example i; ``labels`` (N,)."""

    seqs: list
    labels: np.ndarray
    n_text: int  # ids below this are text (characters or BPE tokens); the special tokens come after

    def __len__(self):
        return len(self.seqs)

    def batch(self, index) -> tuple:
        """Examples ``index`` as padded arrays: ``ids`` (n·S, T) right-padded, ``last`` (n·S,) the
        position of each ``<e>``, ``lm_targets`` (n·S, T) next characters (IGNORE elsewhere),
        ``labels`` (n,). Right padding is invisible to the real tokens: attention is causal."""
        flat = [q for i in index for q in self.seqs[i]]
        t = max(len(q) for q in flat)
        ids = np.zeros((len(flat), t), dtype=np.int64)
        for r, q in enumerate(flat):
            ids[r, :len(q)] = q
        lengths = np.array([len(q) for q in flat])
        targets = np.full_like(ids, IGNORE)
        # BEGIN SOLUTION lesson 08: EncodedSplit.batch: the L_1 targets the docstring describes (next characters, IGNORE elsewhere)
        targets[:, :-1] = ids[:, 1:]
        inside = np.arange(t)[None, :] < (lengths - 1)[:, None]  # a next token exists in the sequence
        targets[~inside | (targets >= self.n_text)] = IGNORE  # L_1 scores characters only
        # END SOLUTION
        return ids, lengths - 1, targets, self.labels[np.asarray(index)]


# ----------------------------------------------------------------- the model

class GPTForTasks(nn.Module):
    r"""A GPT with the three special tokens and the task head $W_y$ (``head``).

    ``forward(ids, last, n_examples)`` returns the task logits: (N, labels) for
    classification, entailment and similarity, (N, choices) for multiple choice; and,
    when asked, the LM logits of every position for $L_1$.
    """

    def __init__(self, transformer: GPT, fmt: str, n_labels: int, *, clf_pdrop: float = 0.1, rng=None):
        if fmt not in tasks.FORMATS:
            raise ValueError(f"GPTForTasks: unknown format {fmt!r}; expected one of {tasks.FORMATS}")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.format = fmt
        self.transformer = transformer
        dtype = transformer.tokens_embed.weight.dtype
        d = transformer.config.d_model
        self.clf_dropout = nn.Dropout(clf_pdrop, rng=transformer.dropout_rng)
        self.head = nn.Linear(d, 1 if fmt == "multiple_choice" else n_labels, rng=rng, dtype=dtype)  # W_y
        std = transformer.config.init_std
        self.head.weight.data = (rng.standard_normal(self.head.weight.shape) * std).astype(dtype)
        self.head.bias.data = np.zeros(self.head.bias.shape, dtype)

    @staticmethod
    def add_special_tokens(transformer: GPT, n: int = len(SPECIAL_TOKENS), rng=None) -> GPT:
        """Append ``n`` rows, N(0, init_std), to the token embedding (in place) and to the config."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        emb = transformer.tokens_embed
        old = to_numpy(emb.weight.data)
        new = (rng.standard_normal((n, old.shape[1])) * transformer.config.init_std).astype(old.dtype)
        emb.weight.data = to_device(np.concatenate([old, new]), emb.weight.device)
        emb.num_embeddings += n
        transformer.config = dataclasses.replace(transformer.config, vocab_size=transformer.config.vocab_size + n)
        return transformer

    def forward(self, ids, last, n_examples: int, with_lm: bool = False):
        """Task logits (and the LM logits (n·S, T, V+3) when ``with_lm``) for a padded batch."""
        h = self.transformer.hidden_states(ids)  # (n·S, T, d)
        # BEGIN SOLUTION lesson 08: GPTForTasks.forward: the task head on h_l^m at each <e>, per format as lesson 08 derives it
        h_last = h[np.arange(h.shape[0]), last]  # (n·S, d): h_l^m of each <e>
        h_last = self.clf_dropout(h_last).reshape(n_examples, -1, h.shape[-1])  # (n, S, d)
        if self.format == "multiple_choice":
            logits = self.head(h_last).reshape(n_examples, -1)  # (n, S): one score per choice
        else:
            logits = self.head(h_last.sum(axis=1))  # (n, labels); S = 2 adds both orders (similarity)
        # END SOLUTION
        if not with_lm:
            return logits
        return logits, F.linear(h, self.transformer.tokens_embed.weight)  # tied output, as in pretraining

    def loss(self, batch, lm_coef: float, device="cpu"):
        r"""$(\mathcal{L}_3, \mathcal{L}_2, \mathcal{L}_1)$ of a batch from :meth:`EncodedSplit.batch`."""
        ids, last, targets, labels = batch
        n = len(labels)
        if lm_coef == 0:  # L_1 is not needed: skip the output projection
            logits = self(to_device(ids, device), last, n)
            l2 = F.cross_entropy(logits, to_device(labels, device))
            return l2, l2, None
        logits, lm_logits = self(to_device(ids, device), last, n, with_lm=True)
        l2 = F.cross_entropy(logits, to_device(labels, device))
        l1 = F.cross_entropy(lm_logits, to_device(targets, device), ignore_index=IGNORE)
        return l2 + lm_coef * l1, l2, l1


# ----------------------------------------------------------------- training

@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters. GPT-1 used 3 epochs, batch 32, lr 6.25e-5 with 0.2% warmup
    and linear decay, lm_coef 0.5, classifier dropout 0.1; a small model wants a larger lr."""

    epochs: int = 3
    batch_size: int = 16  # examples (each has S sequences)
    lr: float = 5e-4
    warmup: float = 0.02  # fraction of the steps
    lm_coef: float = 0.5
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    clf_pdrop: float = 0.1
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"FinetuneConfig: {name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"FinetuneConfig: lr must be > 0, got {self.lr!r}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"FinetuneConfig: warmup is a fraction of the steps in [0, 1), got {self.warmup!r}")
        if not (self.lm_coef >= 0 and math.isfinite(self.lm_coef)):
            raise ValueError(f"FinetuneConfig: lm_coef (lambda) must be a finite number >= 0, got {self.lm_coef!r}")
        if not 0 <= self.clf_pdrop < 1:
            raise ValueError(f"FinetuneConfig: clf_pdrop must be in [0, 1), got {self.clf_pdrop!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate(model: GPTForTasks, split: EncodedSplit, batch_size: int = 32, device="cpu") -> float:
    """Accuracy on ``split`` (dropout off, no graph; the previous mode is restored)."""
    if len(split) == 0:
        raise ValueError("evaluate: the split has no examples")
    correct = 0
    with eval_mode(model):
        for first in range(0, len(split), batch_size):
            ids, last, _, labels = split.batch(np.arange(first, min(first + batch_size, len(split))))
            logits = to_numpy(model(to_device(ids, device), last, len(labels)).data)
            correct += int((logits.argmax(axis=-1) == labels).sum())
    return correct / len(split)


def majority_accuracy(train: EncodedSplit, split: EncodedSplit) -> float:
    """Accuracy of always answering the most frequent training label (a choice index for multiple choice)."""
    majority = np.bincount(train.labels).argmax()
    return float((split.labels == majority).mean())


def finetune(model: GPTForTasks, train: EncodedSplit, evals: dict, cfg: FinetuneConfig, *, device="cpu",
             log=print, on_step=None) -> dict:
    r"""Minimise $\mathcal{L}_3$ over ``cfg.epochs`` shuffled passes of ``train``; returns accuracies.

    ``evals`` maps split names to :class:`EncodedSplit` s, measured after every epoch.
    ``on_step(record)`` (optional) receives each step's metrics (the CLI writes them as JSONL).
    The LR warms up linearly over ``cfg.warmup`` of the steps, then decays linearly to 0.
    """
    rng = np.random.default_rng(cfg.seed)
    params = model.parameters()
    opt = mt.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, skip_1d_decay=True)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup * total)
    bar = progress_bar(total, 0)  # the same quiet-when-not-a-TTY progress bar as pretraining
    step, result = 0, {}
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(len(train))
        for first in range(0, len(train), cfg.batch_size):
            t0 = time.perf_counter()
            opt.lr = mt.optim.warmup_linear(step, warmup=warmup, total=total, peak_lr=cfg.lr)
            batch = train.batch(order[first:first + cfg.batch_size])
            opt.zero_grad()
            l3, l2, l1 = model.loss(batch, cfg.lm_coef, device)  # L_3 = L_2 + lambda L_1
            l3.backward()
            mt.optim.clip_grad_norm(params, cfg.grad_clip)
            opt.step()
            step += 1
            record = {"step": step, "epoch": epoch, "loss": float(to_numpy(l3.data)),
                      "task_loss": float(to_numpy(l2.data)), "lr": opt.lr,
                      "seconds": time.perf_counter() - t0}
            if l1 is not None:
                record["lm_loss"] = float(to_numpy(l1.data))
            if not math.isfinite(record["loss"]):
                raise RuntimeError(f"fine-tuning diverged at step {step}: loss is {record['loss']} (try a lower --lr)")
            if on_step is not None:
                on_step(record)
            if bar is not None:
                bar.set_postfix(loss=f"{record['task_loss']:.3f}", refresh=False)
                bar.update(1)
        result = {name: evaluate(model, split, device=device) for name, split in evals.items()}
        message = f"epoch {epoch}/{cfg.epochs}: " + ", ".join(f"{k} accuracy {v:.3f}" for k, v in result.items())
        if bar is not None and not bar.disable:
            bar.write(message)
        else:
            log(message)
    if bar is not None:
        bar.close()
    return result


def prepare(task: tasks.Task, init: str, cfg: FinetuneConfig, preset: str = "tiny", layers: int | None = None) -> tuple:
    """Everything a fine-tuning run needs: ``(model, splits, tokenizer)``.

    ``init`` is a pretraining checkpoint (a ``train --out`` directory or its file) or ``"none"``
    for random weights of ``preset`` with the corpus' vocabulary (the "no pretraining" row of
    the ablation). ``layers`` = k (with a checkpoint) transfers the embeddings and the first k
    blocks only; the later blocks get fresh weights, the ones ``init="none"`` would give them (the
    source's Figure 2, left). ``splits`` holds the task's encoded splits plus ``"held-out"``,
    validation and test together (the six plays the language model never saw).
    """
    rng = np.random.default_rng(cfg.seed)
    if init == "none":
        if layers is not None:
            raise ValueError("--layers chooses how many pretrained blocks to keep; with --init none there are none")
        tokenizer = data.CharTokenizer.from_text(data.load_shakespeare().train, unknown="replace")
        transformer = GPT(GPTConfig.preset(preset, tokenizer.vocab_size), rng=rng)
    else:
        transformer, tokenizer_dict, _ = checkpoint.load_checkpoint(init, expected_model="gpt")
        tokenizer = lm_tokenizer_from_dict(tokenizer_dict)  # the task text is read as pretraining read text
        transformer.set_rng_state(np.random.default_rng(cfg.seed).bit_generator.state)  # a fresh dropout stream
        if layers is not None:
            n_layer = transformer.config.n_layer
            if not 0 <= layers <= n_layer:
                raise ValueError(f"--layers {layers}: the checkpoint has {n_layer} blocks (0 to {n_layer})")
            fresh = GPT(transformer.config, rng=np.random.default_rng(cfg.seed), dtype=transformer.tokens_embed.weight.dtype)
            for i in range(layers, n_layer):
                transformer.h[i].load_state_dict(fresh.h[i].state_dict())
    encoder = TaskEncoder(tokenizer, task.format, transformer.config.n_ctx)
    splits = {name: encoder.encode(examples, task.labels, f"task {task.name!r}, split {name!r}")
              for name, examples in task.splits.items() if examples}
    held_out = [s for s in ("validation", "test") if s in splits]
    if held_out:
        splits["held-out"] = EncodedSplit([q for s in held_out for q in splits[s].seqs],
                                          np.concatenate([splits[s].labels for s in held_out]), encoder.vocab_size - 3)
    GPTForTasks.add_special_tokens(transformer, rng=rng)
    model = GPTForTasks(transformer, task.format, max(len(task.labels), 1), clf_pdrop=cfg.clf_pdrop, rng=rng)
    return model.train(), splits, tokenizer


# ----------------------------------------------------------------- checkpoints

def save_finetuned(path, model: GPTForTasks, *, task: tasks.Task, tokenizer_dict, cfg: FinetuneConfig,
                   init: str | None, accuracy: dict) -> None:
    """The fine-tuned model (transformer + head) in one atomic npz, with what is needed to rebuild it."""
    metadata = {"model": MODEL_TYPE, "dtype": str(model.head.weight.dtype),
                "model_config": model.transformer.config.to_dict(), "tokenizer": tokenizer_dict,
                "task": {"name": task.name, "format": task.format, "labels": task.labels},
                "finetune_config": cfg.to_dict(), "init": init, "accuracy": accuracy}
    mt.save(model.state_dict(), path, metadata=metadata)


def load_finetuned(path):
    """``(model, metadata)`` from :func:`save_finetuned`'s file or its directory; eval mode, CPU."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, FINETUNED_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no fine-tuned model at {path!r} (python -m models finetune gpt --out DIR)")
    state, meta = mt.load(path, return_metadata=True)
    if not isinstance(meta, dict) or meta.get("model") != MODEL_TYPE:
        kind = meta.get("model") if isinstance(meta, dict) else None
        raise ValueError(f"{path!r} is not a fine-tuned GPT (its model is {kind!r})")
    transformer = GPT(GPTConfig.from_dict(meta["model_config"]), dtype=np.dtype(meta["dtype"]))
    n_labels = max(len(meta["task"]["labels"]), 1)
    model = GPTForTasks(transformer, meta["task"]["format"], n_labels,
                        clf_pdrop=meta["finetune_config"]["clf_pdrop"])
    model.load_state_dict(state)
    return model.eval(), meta


# ----------------------------------------------------------------- the command

def command(opts) -> int:
    """``python -m models finetune gpt``: fine-tune ``opts.init`` on a corpus task (or a task file), print the
    accuracies beside the majority-class baseline; write finetuned.npz, metrics.jsonl and results.json."""
    if opts.model != "gpt":
        raise ValueError(f"unknown model {opts.model!r}: only 'gpt' can be fine-tuned")
    device = mt.backend.check_device(opts.device)
    cfg = FinetuneConfig(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, lm_coef=opts.lm_coef,
                         seed=opts.seed)
    if opts.task_file and (opts.per_play is not None or opts.train_per_play is not None):
        raise ValueError("--per-play and --train-per-play build a corpus task (--task); "
                         f"the task file {opts.task_file!r} has its own examples")
    task = tasks.load_task(opts.task_file) if opts.task_file else tasks.build_task(
        opts.task, per_play=tasks.PER_PLAY if opts.per_play is None else opts.per_play,
        train_per_play=opts.train_per_play)
    layers = getattr(opts, "layers", None)
    model, splits, tokenizer = prepare(task, opts.init, cfg, preset=opts.preset, layers=layers)
    out = opts.out or os.path.join("runs", f"finetune-{task.name}")
    held = (FINETUNED_NAME, checkpoint.METRICS_NAME, checkpoint.RESULTS_NAME)
    checkpoint.check_run_dir(out, resume=False, overwrite=opts.overwrite, names=held, resumable=False)
    model.to(device)
    files.make_output_dir(out)
    files.remove_leftovers(out, held)
    metrics = os.path.join(out, checkpoint.METRICS_NAME)
    print(f"task {task.name!r} ({task.format}): " + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
          + f" examples; init {opts.init}" + ("" if layers is None else f" (embeddings and the first {layers} blocks)")
          + f"; lambda {cfg.lm_coef}; {cfg.epochs} epochs; output {out}")
    evals = {k: v for k, v in splits.items() if k != "train"}
    with open(metrics, "w", encoding="utf-8") as log:
        accuracy = finetune(model, splits["train"], evals, cfg, device=device,
                            on_step=lambda r: log.write(json.dumps(r) + "\n"))
    majority = {k: majority_accuracy(splits["train"], v) for k, v in evals.items()}
    save_finetuned(os.path.join(out, FINETUNED_NAME), model, task=task, tokenizer_dict=tokenizer.to_dict(), cfg=cfg,
                   init=opts.init, accuracy=accuracy)
    results = {"task": task.name, "format": task.format, "init": opts.init, "layers": layers, "lm_coef": cfg.lm_coef,
               "accuracy": accuracy, "majority_baseline": majority, "sizes": {k: len(v) for k, v in splits.items()}}
    files.write_json(os.path.join(out, checkpoint.RESULTS_NAME), results)
    for k in evals:
        print(f"{k}: accuracy {accuracy[k]:.3f} (majority-class baseline {majority[k]:.3f}, {len(evals[k])} examples)")
    return 0
