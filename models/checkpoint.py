r"""A run's files: its checkpoint, its metrics log and its loss plot.

Checkpoints and exact resume
----------------------------
Everything that decides the next step is saved in ONE file, ``out_dir/checkpoint.npz``,
written with :func:`minitensor.save` (atomic: a crash mid-save leaves the previous
checkpoint intact; no pickle: loading it runs no code):

* arrays ``model.<name>``  — every parameter;
* arrays ``optim.<name>``  — AdamW's moment buffers and per-parameter step counts;
* arrays ``mems.<n>``   — Transformer-XL only: the memory carried into the next step, one
  (B, M, d) array per layer input (absent when the memory is empty, e.g. just reset);
* metadata (JSON): ``model`` (a key of :data:`models.recipes.KINDS`), ``step``, ``model_config``, ``tokenizer``,
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
Which classes rebuild a checkpoint's model, config and tokenizer is the recipes' table
(:data:`models.recipes.KINDS`), looked up by the checkpoint's ``model`` string; this module never
asks what kind of model it holds.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

import minitensor as mt
from minitensor.backend import to_numpy
from minitensor.io import CheckpointError

from . import files

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "PLOT_NAME", "RESULTS_NAME", "RUN_FILES", "append_jsonl",
           "build_model", "check_run_dir", "checkpoint_file", "from_metadata", "load_checkpoint", "load_language_model",
           "model_generators",
           "plot_losses", "read_checkpoint", "read_metrics", "save_checkpoint", "set_generator_states", "split_state"]


def _recipes():
    """:mod:`models.recipes`, imported when first needed: it imports every model, and a model's
    own modules (the masked LM's, for one) import this one."""
    from . import recipes  # noqa: PLC0415

    return recipes


CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "loss.png"
RESULTS_NAME = "results.json"  # written by the Longformer recipe and by fine-tuning
#: The files of one run: a fresh run refuses a directory holding the first two, --overwrite deletes them all.
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, PLOT_NAME, RESULTS_NAME)
LN2 = math.log(2.0)


# ------------------------------------------------------------------ the model's generators

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


def set_generator_states(model, states: dict) -> None:
    gens = model_generators(model)
    if set(gens) != set(states):
        raise ValueError(f"checkpoint RNG states do not match the model: checkpoint has {sorted(states)}, "
                         f"model has {sorted(gens)}")
    for name, state in states.items():
        gens[name].bit_generator.state = state



# ------------------------------------------------------------------ checkpoints

def build_model(kind: str, config, rng=None, dtype=np.float32):
    """A fresh model of checkpoint kind ``kind`` (a key of :data:`models.recipes.KINDS`)."""
    k = _recipes().kind(kind)
    return k.model(config, *k.build_args, rng=rng, dtype=dtype)


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
        "model": _recipes().kind_of(model),
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


def checkpoint_file(path) -> str:
    """``path`` itself, or ``path/checkpoint.npz`` when ``path`` is a run's directory."""
    path = os.fspath(path)
    return os.path.join(path, CHECKPOINT_NAME) if os.path.isdir(path) else path


def read_checkpoint(path, expected_model: str | None = None):
    """``(state, metadata)`` of a training checkpoint; ``path`` is the file or its directory.
    ``expected_model`` (a key of :data:`models.recipes.KINDS`), when given, must be the checkpoint's model.
    Metadata that lacks a field or holds one of the wrong type is a :class:`minitensor.io.CheckpointError`."""
    path = checkpoint_file(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r} (train first: python -m models train gpt --out DIR)")
    state, metadata = mt.load(path, return_metadata=True)
    if not isinstance(metadata, dict) or "model" not in metadata:
        raise ValueError(f"{path!r} is not a training checkpoint of this project (no 'model' in its metadata)")
    if not isinstance(metadata["model"], str) or metadata["model"] not in _recipes().KINDS:
        raise ValueError(f"{path!r} is a checkpoint of model {metadata['model']!r}, not one of {sorted(_recipes().KINDS)}")
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


def split_state(state):
    """``(model_state, optim_state)``: a checkpoint's ``model.*`` and ``optim.*`` arrays, prefixes removed."""
    model_state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    optim_state = {k[len("optim."):]: v for k, v in state.items() if k.startswith("optim.")}
    return model_state, optim_state


def load_checkpoint(path, expected_model: str | None = None):
    """Rebuild the model saved at ``path`` (a checkpoint file or its directory).

    Returns ``(model, tokenizer_dict, metadata)``; the model (of the kind the metadata's ``model``
    says) is in eval mode, on the CPU, with its dropout generators restored
    to their saved states. ``expected_model`` (e.g. "gpt"), when given, must be its kind
    (a clear ValueError otherwise, e.g. for a caller that only handles GPT).
    """
    path = checkpoint_file(path)
    state, metadata = read_checkpoint(path, expected_model)
    kind = _recipes().kind(metadata["model"])
    from_metadata(path, "tokenizer", kind.tokenizer.from_dict, metadata["tokenizer"])
    config = from_metadata(path, "model_config", kind.config.from_dict, metadata["model_config"])
    dtype = from_metadata(path, "dtype", np.dtype, metadata.get("dtype", "float32"))
    model = build_model(metadata["model"], config, dtype=dtype)
    model_state, _ = split_state(state)
    from_metadata(path, "model.*", model.load_state_dict, model_state,
                  what="its weights do not fit the model its metadata describes")
    from_metadata(path, "model_rng_states", lambda s: set_generator_states(model, s), metadata["model_rng_states"])
    model.eval()
    return model, metadata["tokenizer"], metadata



def load_language_model(path, command: str):
    """``(model, tokenizer_dict, metadata, recipe)`` of a character language model's checkpoint (GPT,
    Transformer-XL) for ``command`` (sample, evaluate); another model's is a clear error."""
    model, tokenizer_dict, meta = load_checkpoint(path)
    recipe = _recipes().recipe_of(meta["model"])
    if not recipe.char_lm:
        raise ValueError(f"{path!r} is a {meta['model']} checkpoint; {command} handles gpt and txl "
                         "(a Longformer run's figures are in its results.json)")
    return model, tokenizer_dict, meta, recipe


# ------------------------------------------------------------------ metrics and plot

def append_jsonl(path, record) -> None:
    # JSON has no NaN or inf (json.dumps would write the non-standard tokens NaN, Infinity that other
    # readers reject): a non-finite figure, e.g. the gradient norm of the step before a divergence, is null.
    record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=False) + "\n")


def read_metrics(path, up_to_step=None, log=None) -> list:
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
    records = read_metrics(metrics_path)
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
