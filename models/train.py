r"""One training loop for every model, readable top to bottom.

:func:`train` is a plain ``for`` loop over optimisation steps::

    lr_t = warmup_cosine(t)                      # linear warmup, then cosine annealing
    loss, n = batches.step_loss(model)           # next batch and its mean cross-entropy (nats)
    loss.backward(); clip_grad_norm(params, c); opt.step()

and around it four small helpers that run every so often: validation metrics (the adapter's
``validate``: bits per character, :func:`evaluate_bpc`, for language models; accuracy or exact
match, :func:`evaluate_task`, beside their baselines, for tasks), a JSONL metrics line, a loss-curve PNG and an atomic
checkpoint. There are no callback objects or trainer classes to learn: to change
what happens in a step, edit the loop.

What differs between the models is only where a step's batch comes from and what the loss
is given, which one small "batches + loss" adapter per model holds (:func:`batches_for`):

* GPT (:class:`RandomWindows`): ``B`` windows of ``T`` characters at random offsets,
  ``loss = model.lm_loss(x, y)``, $L_1$ of GPT-1.
* Longformer tasks (:class:`Examples`): ``B`` examples drawn at random (seeded), right-padded to
  the batch's longest, ``loss = model.loss(...)`` of the task head (genre: cross-entropy of the
  CLS logits; speaker-qa: of the span's start and end). The Longformer language model
  (``longformer-lm``) uses :class:`RandomWindows` as GPT does.
* Transformer-XL (:class:`Recurrence`): segment recurrence with truncated backpropagation
  through time. The text is read as ``B`` contiguous streams (:class:`models.data.SegmentStream`),
  segment after segment (``T`` = ``tgt_len``), and ``loss, mems = model.loss(x, y, mems)``
  carries the memory from one step to the next. The memory the model returns is already
  detached (the paper's $\mathrm{SG}$): gradients stop at the segment boundary, so each step's
  graph covers one segment only. The memory is RESET (emptied) at the first segment of every pass
  over the text: at step 0 and whenever the stream wraps around from the end of its slice to
  its start, since that segment does not follow the memory's text.

Checkpoints and exact resume
----------------------------
Everything that decides the next step is saved in ONE file, ``out_dir/checkpoint.npz``,
written with :func:`minitensor.save` (atomic: a crash mid-save leaves the previous
checkpoint intact; no pickle: loading it runs no code):

* arrays ``model.<name>``  — every parameter;
* arrays ``optim.<name>``  — AdamW's moment buffers and per-parameter step counts;
* arrays ``mems.<n>``   — Transformer-XL only: the memory carried into the next step, one
  (B, M, d) array per layer input (absent when the memory is empty, e.g. just reset);
* metadata (JSON): ``model`` (a key of :data:`MODEL_TYPES`), ``step``, ``model_config``, ``tokenizer``,
  ``train_config``, the optimizer's scalar fields, where the next batch comes from (GPT: the
  batch sampler's RNG state ``batch_rng_state``; Transformer-XL: the stream's position
  ``stream_state``) and the state of EVERY ``np.random.Generator`` the model holds.

The last item matters for bit-exact resume: dropout draws its masks from generators
stored on the modules (``Dropout.rng``). We find them by walking ``model.modules()``
and looking at each module's attributes for ``np.random.Generator`` instances,
and save ``bit_generator.state`` (a JSON-able dict) under the attribute's dotted
path, e.g. ``"blocks.0.attn.attn_drop.rng"``. A generator shared by several modules
is simply saved under each path with the same state. With all of this restored,
"train 2N steps" and "train N steps, save, reload into fresh objects, train N more"
give the same parameters bit for bit. For Transformer-XL the saved memory is part of this:
without it the resumed run would start its next segment from an empty memory, a different
computation from the uninterrupted run's.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

import minitensor as mt
from minitensor.backend import to_device, to_numpy
from minitensor.io import CheckpointError

from . import data, evaluate, files, longdoc, step_memory
from .gpt import GPT, GPTConfig
from .longformer import LongformerConfig
from .transformer_xl import TransformerXL, TransformerXLConfig

try:
    from .longformer_heads import (
        LongformerForCausalLM,
        LongformerForQuestionAnswering,
        LongformerForSequenceClassification,
    )
except ImportError:  # the task heads are written separately; without them longformer training is unavailable
    LongformerForCausalLM = LongformerForQuestionAnswering = LongformerForSequenceClassification = None

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "loss.png"
RESULTS_NAME = "results.json"  # written by the command line's Longformer tasks
#: The files of one run: a fresh run refuses a directory holding the first two, --overwrite deletes them all.
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, PLOT_NAME, RESULTS_NAME)
#: The ``model`` field of a checkpoint's metadata -> (model class, config class).
MODEL_TYPES = {"gpt": (GPT, GPTConfig), "txl": (TransformerXL, TransformerXLConfig)}
if LongformerForCausalLM is not None:
    MODEL_TYPES.update({"longformer-lm": (LongformerForCausalLM, LongformerConfig),
                        "longformer-genre": (LongformerForSequenceClassification, LongformerConfig),
                        "longformer-qa": (LongformerForQuestionAnswering, LongformerConfig)})
#: Longformer task (command line) -> its checkpoint kind.
LONGFORMER_KINDS = {"lm": "longformer-lm", "genre": "longformer-genre", "speaker-qa": "longformer-qa"}
LN2 = math.log(2.0)


@dataclass
class TrainConfig:
    """Hyper-parameters of one run. ``steps`` is also the length of the LR schedule."""

    steps: int = 2000
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 3e-3
    warmup: int = 100
    min_lr: float = 0.0
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int | None = 40  # None: the whole validation text
    ckpt_every: int = 500
    seed: int = 0
    final_eval_batches: int | None = None  # the figure at the end of the run; None: the whole validation text

    def __post_init__(self):
        # Each message names the field and its command-line flag (--batch-size for batch_size).
        def bad(name, rule):
            value = getattr(self, name)
            flag = "--" + name.replace("_", "-")
            return ValueError(f"TrainConfig: {name} ({flag}) must be {rule}, got {value!r}")

        for name, low in (("steps", 1), ("batch_size", 1), ("seq_len", 1), ("eval_every", 1), ("ckpt_every", 1),
                          ("warmup", 0), ("seed", 0), ("eval_batches", 1), ("final_eval_batches", 1)):
            value = getattr(self, name)
            if value is None and name.endswith("eval_batches"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise bad(name, f"an int >= {low}" + (" or None (all of it)" if name.endswith("eval_batches") else ""))
            setattr(self, name, int(value))
        if self.warmup > self.steps:
            raise ValueError(f"TrainConfig: need warmup <= steps, got warmup={self.warmup}, steps={self.steps}")
        # NaN fails every comparison, so "not x > 0" (not "x <= 0") is what refuses it.
        for name, positive in (("lr", True), ("min_lr", False), ("weight_decay", False), ("grad_clip", True)):
            value = getattr(self, name)
            number = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
            finite = name == "grad_clip" or (number and math.isfinite(value))  # grad_clip inf: no clipping
            if not (number and finite and (value > 0 if positive else value >= 0)):
                rule = "a number > 0 (inf: no clipping)" if name == "grad_clip" else \
                    f"a finite number {'>' if positive else '>='} 0"
                raise bad(name, rule)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**d)


# ------------------------------------------------------------------ helpers

def build_model(kind: str, config, rng=None, dtype=np.float32):
    """A fresh model of checkpoint kind ``kind`` (a key of :data:`MODEL_TYPES`)."""
    if kind not in MODEL_TYPES:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(MODEL_TYPES)}")
    model_cls, _ = MODEL_TYPES[kind]
    if kind == "longformer-genre":
        return model_cls(config, len(longdoc.GENRES), rng, dtype=dtype)
    return model_cls(config, rng=rng, dtype=dtype)


def model_type(model) -> str:
    """The checkpoint name of ``model``'s kind: a key of :data:`MODEL_TYPES` ("gpt", "txl", "longformer-qa" ...)."""
    for name, (cls, _) in MODEL_TYPES.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"train: no training recipe for {type(model).__name__}; known: "
                    f"{', '.join(cls.__name__ for cls, _ in MODEL_TYPES.values())}")


def _model_device(model) -> str:
    params = model.parameters()
    return params[0].device if params else "cpu"


def model_generators(model) -> dict:
    """``{"dotted.path.attr": np.random.Generator}`` for every generator the model's modules hold
    (dropout masks are drawn from these, so exact resume must save and restore them)."""
    found = {}
    for prefix, module in _named_modules(model):
        for attr, value in vars(module).items():
            if isinstance(value, np.random.Generator):
                found[f"{prefix}{attr}"] = value
    return found


def _named_modules(model, prefix=""):
    # Module.modules() gives no names; we need stable names to match the generators up on reload.
    yield prefix, model
    for name, child in model.named_children():
        yield from _named_modules(child, f"{prefix}{name}.")


def _set_generator_states(model, states: dict) -> None:
    gens = model_generators(model)
    if set(gens) != set(states):
        raise ValueError(f"checkpoint RNG states do not match the model: checkpoint has {sorted(states)}, "
                         f"model has {sorted(gens)}")
    for name, state in states.items():
        gens[name].bit_generator.state = state


@mt.no_grad()
def evaluate_bpc(model, ids: np.ndarray, batch_size: int, seq_len: int, max_batches: int | None = None) -> float:
    r"""Bits per character on ``ids``: the mean next-character cross-entropy in nats over
    every predicted position, divided by $\ln 2$. Dropout is off (``model.eval()``) and no
    graph is recorded; the model's previous train/eval mode is restored afterwards.

    GPT: contiguous windows of ``seq_len``, each starting without context. Transformer-XL:
    cached evaluation (:func:`models.evaluate.cached_bpc`): ``batch_size`` contiguous slices
    read in segments of ``seq_len`` with the memory carried; ``max_batches`` counts segments."""
    if isinstance(model, TransformerXL):
        return evaluate.cached_bpc(model, ids, batch_size=batch_size, seg_len=seq_len, max_segments=max_batches).bpc
    was_training = model.training
    model.eval()
    device = _model_device(model)
    total_nats, count = 0.0, 0
    try:
        for i, (x, y) in enumerate(data.iterate_eval_batches(ids, batch_size, seq_len)):
            if max_batches is not None and i >= max_batches:
                break
            loss = model.lm_loss(to_device(x, device), to_device(y, device))
            total_nats += float(to_numpy(loss.data)) * y.size  # lm_loss is a mean: weight by its positions
            count += y.size
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"evaluate_bpc: the text ({len(ids)} tokens) is too short for one batch of seq_len {seq_len}")
    return total_nats / count / LN2


@mt.no_grad()
def evaluate_task(model, examples: longdoc.Encoded, batch_size: int, max_batches: int | None = None) -> float:
    """Accuracy (genre: the argmax label) or exact match (speaker-qa: the predicted span's TEXT equals the
    answer's, as SQuAD scores it — any header of the right speaker counts, which is also how the baselines
    are scored) on ``examples``, in batches of ``batch_size`` in order; dropout off, mode restored."""
    was_training = model.training
    model.eval()
    hits, count = 0, 0
    try:
        for i, lo in enumerate(range(0, len(examples), batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            index = np.arange(lo, min(lo + batch_size, len(examples)))
            b = examples.batch(index)
            if examples.kind == "genre":
                logits = to_numpy(model(b["ids"], padding_mask=b["padding_mask"]).data)  # (B, C)
                hits += int((logits.argmax(axis=-1) == b["labels"]).sum())
            else:
                spans = np.asarray(model.predict_spans(b["ids"], b["question_mask"], padding_mask=b["padding_mask"]))
                for row, (s, e), gs, ge in zip(b["ids"], spans, b["starts"], b["ends"]):  # spans (B, 2), inclusive
                    hits += s >= 0 and np.array_equal(row[s:e + 1], row[gs:ge + 1])  # the same text
            count += len(index)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_task: no examples to evaluate")
    return hits / count


def save_checkpoint(path, model, opt, *, step, tokenizer_dict, model_config_dict, train_config, run_info=None,
                    batch_rng=None, stream=None, mems=None) -> None:
    """Model, optimizer, every RNG, and (Transformer-XL) the stream position and the memory
    in one file, written atomically by ``mt.save``."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    for n, mem in enumerate(mems or []):
        state[f"mems.{n}"] = to_numpy(mem)  # (B, M, d), from the device if need be
    opt_state = opt.state_dict()
    opt_scalars = {}
    for k, v in opt_state.items():
        if isinstance(v, np.ndarray):
            state[f"optim.{k}"] = v
        else:
            opt_scalars[k] = v
    metadata = {
        "model": model_type(model),
        "dtype": str(model.parameters()[0].dtype),
        "step": int(step),
        "model_config": model_config_dict,
        "tokenizer": tokenizer_dict,
        "train_config": train_config.to_dict(),
        "optim": opt_scalars,
        "model_rng_states": {k: g.bit_generator.state for k, g in model_generators(model).items()},
        "run": run_info or {},
    }
    if batch_rng is not None:
        metadata["batch_rng_state"] = batch_rng.bit_generator.state
    if stream is not None:
        metadata["stream_state"] = stream.state_dict()
    mt.save(state, path, metadata=metadata)


#: The metadata fields every training checkpoint has, and their JSON types.
_METADATA_FIELDS = {"model": str, "step": int, "model_config": dict, "tokenizer": dict, "train_config": dict,
                    "optim": dict, "model_rng_states": dict}


def check_run_dir(out_dir, *, resume: bool, overwrite: bool, names=(CHECKPOINT_NAME, METRICS_NAME),
                  resumable=True) -> None:
    """Refuse to start a fresh run in ``out_dir`` when it holds one (one of the files ``names``) unless
    ``overwrite``: a plain ``train`` must never destroy a run. ``out_dir`` must not be a file."""
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"--out {out_dir!r} is a file, not a directory")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run, or replace it")
    held = [n for n in names if os.path.exists(os.path.join(out_dir, n))]
    if held and not resume and not overwrite:
        how = "--resume continues it, --overwrite replaces it" if resumable else "--overwrite replaces it"
        raise FileExistsError(f"{out_dir} already holds a run; {how}")


def check_steps_left(out_dir, step, steps, stop_at) -> None:
    """Refuse a resume that would train no step: the checkpoint's ``step`` is at or past the end asked for
    (``steps``, or ``stop_at`` when that comes first)."""
    if stop_at is not None and stop_at <= step:
        raise ValueError(f"--stop-at {stop_at}: the checkpoint in {out_dir!r} is already at step {step}; "
                         "nothing to train")
    if steps <= step:
        raise ValueError(f"the checkpoint in {out_dir!r} is at step {step} and the run's schedule ends at step "
                         f"{steps}: nothing to train (--steps N with N > {step} continues it on a longer schedule)")


def checkpoint_file(path) -> str:
    """``path`` itself, or ``path/checkpoint.npz`` when ``path`` is a run's directory."""
    path = os.fspath(path)
    return os.path.join(path, CHECKPOINT_NAME) if os.path.isdir(path) else path


def tokenizer_class(kind: str):
    """The tokenizer of checkpoint kind ``kind``: characters, plus the special tokens for Longformer's."""
    return longdoc.LongdocTokenizer if kind.startswith("longformer") else data.CharTokenizer


def read_checkpoint(path, expected_model: str | None = None):
    """``(state, metadata)`` of a training checkpoint; ``path`` is the file or its directory.
    ``expected_model`` (a key of :data:`MODEL_TYPES`), when given, must be the checkpoint's model.
    Metadata that lacks a field or holds one of the wrong type is a :class:`minitensor.io.CheckpointError`."""
    path = checkpoint_file(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r} (train first: python -m models train gpt --out DIR)")
    state, metadata = mt.load(path, return_metadata=True)
    if not isinstance(metadata, dict) or "model" not in metadata:
        raise ValueError(f"{path!r} is not a training checkpoint of this project (no 'model' in its metadata)")
    if not isinstance(metadata["model"], str) or metadata["model"] not in MODEL_TYPES:
        raise ValueError(f"{path!r} is a checkpoint of model {metadata['model']!r}, not one of {sorted(MODEL_TYPES)}")
    if expected_model is not None and metadata["model"] != expected_model:
        raise ValueError(f"{path!r} is a checkpoint of model {metadata['model']!r}, not {expected_model!r}")
    for field, kind in _METADATA_FIELDS.items():
        if not isinstance(metadata.get(field), kind) or isinstance(metadata.get(field), bool):
            raise CheckpointError(f"{path!r}: the metadata field {field!r} is missing or not a {kind.__name__} "
                                  f"(got {type(metadata.get(field)).__name__}); the file is damaged")
    return state, metadata


def from_metadata(path, field, build, value, what=None):
    """``build(value)`` for the metadata ``field`` of the checkpoint at ``path``; whatever a damaged
    entry makes ``build`` raise becomes one :class:`~minitensor.io.CheckpointError` naming both (or
    saying ``what``)."""
    try:
        return build(value)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        what = what or f"the metadata field {field!r} is not valid"
        raise CheckpointError(f"{os.fspath(path)!r}: {what}: {message}") from None


def train_config_of(path, meta) -> TrainConfig:
    """The checkpoint's training settings, as a :class:`TrainConfig` (a damaged entry: CheckpointError)."""
    return from_metadata(path, "train_config", TrainConfig.from_dict, meta["train_config"])


def _split_state(state):
    model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    optim_state = {k[len("optim."):]: v for k, v in state.items() if k.startswith("optim.")}
    return model_state, optim_state


def _saved_mems(state):
    """The memory saved as ``mems.0 .. mems.{N-1}``, or None (empty memory)."""
    n = sum(1 for k in state if k.startswith("mems."))
    return [state[f"mems.{i}"] for i in range(n)] if n else None


def load_checkpoint(path, expected_model: str | None = None):
    """Rebuild the model saved at ``path`` (a checkpoint file or its directory).

    Returns ``(model, tokenizer_dict, metadata)``; the model (of the kind the metadata's ``model``
    says) is in eval mode, on the CPU, with its dropout generators restored
    to their saved states. ``expected_model`` (e.g. "gpt"), when given, must be its kind
    (a clear ValueError otherwise, e.g. for a caller that only handles GPT).
    """
    path = checkpoint_file(path)
    state, metadata = read_checkpoint(path, expected_model)
    _, config_cls = MODEL_TYPES[metadata["model"]]
    from_metadata(path, "tokenizer", tokenizer_class(metadata["model"]).from_dict, metadata["tokenizer"])
    config = from_metadata(path, "model_config", config_cls.from_dict, metadata["model_config"])
    dtype = from_metadata(path, "dtype", np.dtype, metadata.get("dtype", "float32"))
    model = build_model(metadata["model"], config, dtype=dtype)
    model_state, _ = _split_state(state)
    from_metadata(path, "model.*", model.load_state_dict, model_state,
                  what="its weights do not fit the model its metadata describes")
    from_metadata(path, "model_rng_states", lambda s: _set_generator_states(model, s), metadata["model_rng_states"])
    model.eval()
    return model, metadata["tokenizer"], metadata


def _append_jsonl(path, record) -> None:
    # JSON has no NaN or inf (json.dumps would write the non-standard tokens NaN, Infinity that other
    # readers reject): a non-finite figure, e.g. the gradient norm of the step before a divergence, is null.
    record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=False) + "\n")


def _read_metrics(path, up_to_step=None, log=None) -> list:
    """The records of ``metrics.jsonl`` (up to ``up_to_step``). A last line cut short (power loss, a full
    disk) is dropped, with a note through ``log``; any other unreadable line is an error naming it."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    records = []
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not a metrics record (a JSON object with an int 'step')")
        except ValueError as e:
            if n < len(lines):
                raise ValueError(f"{path!r} line {n} is not a metrics record ({e}); fix or remove that line") from None
            if log is not None:
                log(f"note: dropped the torn last line {n} of {path!r} ({line[:40]!r}...)")
            break
        records.append(record)
    return [r for r in records if up_to_step is None or r["step"] <= up_to_step]


def plot_losses(metrics_path, png_path, log=print) -> bool:
    """Training loss and validation bpc against the step, as a PNG. Returns False (with a note)
    when matplotlib is not installed: plots are a convenience, never a reason to fail a run."""
    try:
        import matplotlib  # optional: extra "train"

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"note: matplotlib is not installed, skipping {png_path} (pip install -e '.[train]')")
        return False
    records = _read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    # Both curves in bits per character, so they share an axis: train loss (nats) / ln 2.
    ax.plot([r["step"] for r in records], [r["loss"] / LN2 for r in records], lw=0.8, label="train (bits/char)")
    evals = [r for r in records if "val_bpc" in r]
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_bpc"] for r in evals], "o-", label="validation bpc")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character" if evals or not records else "train loss (bits)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    scores = [(k, [r for r in records if k in r]) for k in ("val_accuracy", "val_exact_match")]
    for key, rows in scores:  # tasks: the validation score on its own axis, 0..1
        if rows:
            ax2 = ax.twinx()
            ax2.plot([r["step"] for r in rows], [r[key] for r in rows], "s-", color="tab:green",
                     label=key.replace("_", " "))
            ax2.set_ylim(0, 1)
            ax2.legend(loc="upper right")
    fig.tight_layout()
    try:
        files.write_atomic(png_path, lambda f: fig.savefig(f, format="png", dpi=100), binary=True)  # never half a PNG
    finally:
        plt.close(fig)
    return True


def _progress(total, initial):
    try:
        from tqdm.auto import tqdm  # optional: extras "train"/"test"
    except ImportError:
        return None
    # Quiet when stderr is not a terminal (CI logs, tests, redirected output).
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not sys.stderr.isatty())


# ------------------------------------------------------------------ batches + loss, per model

class RandomWindows:
    """GPT: each step ``B`` windows of ``T`` characters at random offsets (seeded by ``cfg.seed``)."""

    def __init__(self, train_ids, cfg: TrainConfig, device):
        self.ids, self.cfg, self.device = train_ids, cfg, device
        self.rng = np.random.default_rng(cfg.seed)

    def step_loss(self, model):
        r"""``(loss, n_targets)`` of the next batch: $L_1 = -$mean $\log P(u_i \mid u_{<i})$."""
        x, y = data.random_batches(self.ids, self.cfg.batch_size, self.cfg.seq_len, self.rng)  # (B, T) each
        return model.lm_loss(to_device(x, self.device), to_device(y, self.device)), y.size

    def checkpoint_fields(self) -> dict:
        return {"batch_rng": self.rng}

    def restore(self, state, meta) -> None:
        self.rng.bit_generator.state = meta["batch_rng_state"]

    def validate(self, model, val_ids, max_batches) -> dict:
        return {"val_bpc": evaluate_bpc(model, val_ids, self.cfg.batch_size, self.cfg.seq_len, max_batches)}


class Examples:
    """Longformer tasks: each step ``B`` examples drawn without replacement from the training set
    (a generator seeded by ``cfg.seed``, saved for resume), right-padded to the batch's longest
    (banded attention takes any length: no rounding to the window), ``loss`` from the task head."""

    def __init__(self, train_examples: longdoc.Encoded, cfg: TrainConfig, device):
        self.examples, self.cfg, self.device = train_examples, cfg, device
        self.rng = np.random.default_rng(cfg.seed)

    def step_loss(self, model):
        index = self.rng.choice(len(self.examples), size=min(self.cfg.batch_size, len(self.examples)), replace=False)
        b = self.examples.batch(index)  # (B, T) ids, padding_mask ...
        if self.examples.kind == "genre":
            loss = model.loss(b["ids"], b["labels"], padding_mask=b["padding_mask"])
        else:
            loss = model.loss(b["ids"], b["question_mask"], b["starts"], b["ends"], padding_mask=b["padding_mask"])
        return loss, int(b["padding_mask"].sum())  # tokens read this step

    def checkpoint_fields(self) -> dict:
        return {"batch_rng": self.rng}

    def restore(self, state, meta) -> None:
        self.rng.bit_generator.state = meta["batch_rng_state"]

    def validate(self, model, val_examples: longdoc.Encoded, max_batches) -> dict:
        """Accuracy (genre) or exact match (speaker-qa), and the baselines stored with the examples."""
        name = "val_accuracy" if val_examples.kind == "genre" else "val_exact_match"
        score = evaluate_task(model, val_examples, self.cfg.batch_size, max_batches)
        return {name: score, **{f"val_{k}": v for k, v in val_examples.baselines.items()}}


class Recurrence:
    """Transformer-XL: ``B`` contiguous streams read segment after segment, the memory carried
    from step to step (truncated BPTT) and reset at the start of every pass over the text."""

    def __init__(self, train_ids, cfg: TrainConfig, device):
        self.stream = data.SegmentStream(train_ids, cfg.batch_size, cfg.seq_len)
        self.device = device
        self.cfg = cfg
        self.mems = None  # empty memory

    def step_loss(self, model):
        x, y, starts = self.stream.next_segment()  # (B, L) each, continuing the previous segment
        if starts:
            self.mems = None  # a new pass: nothing precedes this segment
        loss, self.mems = model.loss(to_device(x, self.device), to_device(y, self.device), self.mems)
        return loss, y.size  # self.mems: plain arrays (B, min(M, M+L), d), no graph behind them

    def checkpoint_fields(self) -> dict:
        return {"stream": self.stream, "mems": self.mems}

    def restore(self, state, meta) -> None:
        self.stream.load_state_dict(meta["stream_state"])
        mems = _saved_mems(state)
        self.mems = None if mems is None else [to_device(m, self.device) for m in mems]

    def validate(self, model, val_ids, max_batches) -> dict:
        return {"val_bpc": evaluate_bpc(model, val_ids, self.cfg.batch_size, self.cfg.seq_len, max_batches)}


def batches_for(model, train_data, cfg: TrainConfig, device):
    """The "batches + loss" adapter of ``model``'s kind; ``train_data`` is token ids (language models)
    or a :class:`models.longdoc.Encoded` (Longformer tasks)."""
    adapters = {"gpt": RandomWindows, "txl": Recurrence, "longformer-lm": RandomWindows,
                "longformer-genre": Examples, "longformer-qa": Examples}
    return adapters[model_type(model)](train_data, cfg, device)


# ------------------------------------------------------------------ the loop

def train(model, train_ids, val_ids, cfg: TrainConfig, out_dir, *, tokenizer_dict, model_config_dict,
          resume=False, overwrite=False, stop_at=None, run_info=None, log=print) -> dict:
    """Train ``model`` on ``train_ids`` for ``cfg.steps`` steps, writing to ``out_dir``.

    ``train_ids``/``val_ids``: token ids for language models; for Longformer tasks, the encoded
    examples (:class:`models.longdoc.Encoded`) of the training and validation plays.
    ``resume=True`` continues from ``out_dir/checkpoint.npz`` exactly where it stopped. A fresh run
    into a directory that already holds one is refused unless ``overwrite=True``, which deletes the
    old run's files first (:func:`check_run_dir`). ``stop_at`` (optional) ends the run after that
    step, checkpointing first, as if the run had been interrupted there: the LR schedule still spans
    ``cfg.steps``. ``run_info`` (a JSON-able dict, e.g. the preset's name) is saved with the checkpoint.
    Returns ``{"step", "loss", "val_bpc"}`` of the last step (val_bpc of the final evaluation; None for a
    task) and the last validation metrics (``val_accuracy`` or ``val_exact_match`` and the baselines).
    """
    check_run_dir(out_dir, resume=resume, overwrite=overwrite)
    if overwrite and not resume:
        for name in RUN_FILES:
            if os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))
    files.make_output_dir(out_dir)
    files.remove_leftovers(out_dir, RUN_FILES, log=log)
    ckpt_path = os.path.join(out_dir, CHECKPOINT_NAME)
    metrics_path = os.path.join(out_dir, METRICS_NAME)
    png_path = os.path.join(out_dir, PLOT_NAME)
    last_step = cfg.steps if stop_at is None else min(int(stop_at), cfg.steps)
    device = _model_device(model)
    if not isinstance(train_ids, longdoc.Encoded):
        train_ids = np.asarray(train_ids)
        val_ids = np.asarray(val_ids)

    params = model.parameters()
    opt = mt.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, skip_1d_decay=True)
    batches = batches_for(model, train_ids, cfg, device)
    step = 0

    if resume:
        state, meta = read_checkpoint(ckpt_path, expected_model=model_type(model))
        if meta["model_config"] != model_config_dict:
            raise ValueError(f"--resume: the checkpoint in {out_dir!r} is for model config {meta['model_config']}, "
                             f"not {model_config_dict}")
        if meta["tokenizer"] != tokenizer_dict:
            raise ValueError(f"--resume: the checkpoint in {out_dir!r} was trained with another vocabulary")
        step = int(meta["step"])
        check_steps_left(out_dir, step, cfg.steps, stop_at)
        if train_config_of(ckpt_path, meta) != cfg:
            log(f"note: resuming with a different training config than the checkpoint's "
                f"({meta['train_config']}); the run will not match an uninterrupted one")
        model_state, optim_state = _split_state(state)
        model.load_state_dict(model_state)
        opt.load_state_dict({**optim_state, **meta["optim"]})
        batches.restore(state, meta)
        _set_generator_states(model, meta["model_rng_states"])
        # Metrics logged after the checkpoint belong to the lost part of the run: drop them.
        kept = _read_metrics(metrics_path, up_to_step=step, log=log)
        files.write_atomic(metrics_path, lambda f: f.writelines(json.dumps(r) + "\n" for r in kept))
        log(f"resumed from {ckpt_path} at step {step}")

    def checkpoint():
        save_checkpoint(ckpt_path, model, opt, step=step, tokenizer_dict=tokenizer_dict,
                        model_config_dict=model_config_dict, train_config=cfg, run_info=run_info,
                        **batches.checkpoint_fields())

    step_memory.check_step_fits(model, cfg.batch_size, cfg.seq_len)  # a step that cannot fit: refused now
    bar = _progress(cfg.steps, step)
    loss_value, val_metrics = float("nan"), {}
    model.train()
    while step < last_step:
        t0 = time.perf_counter()
        # GPT-1's schedule: linear warmup, then cosine annealing to min_lr over cfg.steps.
        opt.lr = mt.optim.warmup_cosine(step, warmup=cfg.warmup, total=cfg.steps, peak_lr=cfg.lr, min_lr=cfg.min_lr)
        opt.zero_grad()
        loss, n_targets = batches.step_loss(model)  # the next batch's mean cross-entropy (nats)
        loss.backward()
        grad_norm = mt.optim.clip_grad_norm(params, cfg.grad_clip)
        opt.step()
        step += 1

        loss_value = float(to_numpy(loss.data))
        if not math.isfinite(loss_value):
            raise RuntimeError(f"training diverged at step {step}: loss is {loss_value} (try a lower --lr)")
        tokens_per_s = n_targets / max(time.perf_counter() - t0, 1e-9)
        record = {"step": step, "loss": loss_value, "lr": opt.lr, "grad_norm": grad_norm,
                  "tokens_per_s": tokens_per_s}
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val_metrics = batches.validate(model, val_ids, cfg.eval_batches)  # {"val_bpc": ...} or task scores
            record.update(val_metrics)
            shown = "  ".join(f"{k.removeprefix('val_').replace('_', ' ')} {v:.4f}" for k, v in val_metrics.items())
            if bar is not None and not bar.disable:
                bar.write(f"step {step}: val {shown}")
            else:
                log(f"step {step}/{cfg.steps}: loss {loss_value:.4f}  val {shown}")
        _append_jsonl(metrics_path, record)
        if bar is not None:
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            bar.update(1)  # redraws with the postfix above

        if step % cfg.ckpt_every == 0 or step == last_step:
            checkpoint()
            plot_losses(metrics_path, png_path, log=lambda *a: None)  # the note is printed once, at the end
    if bar is not None:
        bar.close()
    plot_losses(metrics_path, png_path, log=log)
    return {"step": step, "loss": loss_value, "val_bpc": val_metrics.get("val_bpc"), **val_metrics}
