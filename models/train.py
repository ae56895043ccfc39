r"""One training loop for every model, readable top to bottom.

:func:`train` is a plain ``for`` loop over optimisation steps::

    lr_t = warmup_cosine(t)                      # linear warmup, then cosine annealing
    loss, n = batches.step_loss(model)           # next batch and its mean cross-entropy (nats)
    loss.backward(); clip_grad_norm(params, c); opt.step()

and around it four small helpers that run every so often: validation metrics (the adapter's
``validate``: bits per character for language models; accuracy or exact match beside their
baselines for tasks), a JSONL metrics line, a loss-curve PNG and an atomic
checkpoint. There are no callback objects or trainer classes to learn: to change
what happens in a step, edit the loop.

What differs between the models is only where a step's batch comes from and what the loss
is given, which one small "batches + loss" adapter per model holds, found in the recipes' table
(:func:`batches_for`, :mod:`models.recipes`):

* GPT (:class:`models.gpt.recipe.RandomWindows`): ``B`` windows of ``T`` characters at random offsets,
  ``loss = model.lm_loss(x, y)``, $L_1$ of GPT-1.
* Longformer tasks (:class:`models.longformer.recipe.Examples`): ``B`` examples drawn at random (seeded), right-padded to
  the batch's longest, ``loss = model.loss(...)`` of the task head (genre: cross-entropy of the
  CLS logits; speaker-qa: of the span's start and end). The Longformer language model
  (``longformer-lm``) uses ``RandomWindows`` as GPT does.
* Transformer-XL (:class:`models.transformer_xl.recipe.Recurrence`): segment recurrence with truncated backpropagation
  through time. The text is read as ``B`` contiguous streams (:class:`models.data.SegmentStream`),
  segment after segment (``T`` = ``tgt_len``), and ``loss, mems = model.loss(x, y, mems)``
  carries the memory from one step to the next. The memory the model returns is already
  detached (the paper's $\mathrm{SG}$): gradients stop at the segment boundary, so each step's
  graph covers one segment only. The memory is RESET (emptied) at the first segment of every pass
  over the text: at step 0 and whenever the stream wraps around from the end of its slice to
  its start, since that segment does not follow the memory's text.

Checkpoints, the metrics log and the plot are :mod:`models.checkpoint`'s; exact resume is described
there. :func:`run` is a whole ``python -m models train`` run: a recipe's settings, data, model, this
loop and its final figures.
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
from minitensor import distributed
from minitensor.backend import to_numpy

from . import checkpoint, data, files, recipes, step_memory
from .evaluate import model_device

__all__ = ["SETTINGS", "TrainConfig", "batches_for", "check_steps_left", "progress_bar", "run", "shared_defaults",
           "train", "train_config_of"]


@dataclass(kw_only=True)
class TrainConfig:
    """Hyper-parameters of one run. ``steps`` is also the length of the LR schedule.

    A run's schedule, batches and evaluations have no defaults here: each recipe states its own
    (``DEFAULTS`` in :mod:`models.gpt.recipe`, :mod:`models.transformer_xl.recipe`,
    :mod:`models.longformer.recipe`), the values ``python -m models train`` uses. What every run
    shares, AdamW's settings, the seed and the scope of the final figure, has its one default here."""

    steps: int
    batch_size: int
    seq_len: int
    lr: float
    warmup: int
    min_lr: float = 0.0
    beta2: float = 0.999  # AdamW's second-moment decay (beta1 is 0.9)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int
    eval_batches: int | None  # None: the whole validation text
    ckpt_every: int
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
        if isinstance(self.beta2, bool) or not isinstance(self.beta2, (int, float, np.floating, np.integer)) \
                or not 0 <= self.beta2 < 1:
            raise bad("beta2", "a number in [0, 1)")
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



def check_steps_left(out_dir, step, steps, stop_at) -> None:
    """Refuse a resume that would train no step: the checkpoint's ``step`` is at or past the end asked for
    (``steps``, or ``stop_at`` when that comes first)."""
    if stop_at is not None and stop_at <= step:
        raise ValueError(f"--stop-at {stop_at}: the checkpoint in {out_dir!r} is already at step {step}; "
                         "nothing to train")
    if steps <= step:
        raise ValueError(f"the checkpoint in {out_dir!r} is at step {step} and the run's schedule ends at step "
                         f"{steps}: nothing to train (--steps N with N > {step} continues it on a longer schedule)")


def train_config_of(path, meta) -> TrainConfig:
    """The checkpoint's training settings, as a :class:`TrainConfig` (a damaged entry: CheckpointError)."""
    return checkpoint.from_metadata(path, "train_config", TrainConfig.from_dict, meta["train_config"])


def progress_bar(total, initial):
    """A tqdm bar over ``total`` steps starting at ``initial``, quiet when stderr is not a terminal;
    None without tqdm. Pretraining and fine-tuning share it."""
    try:
        from tqdm.auto import tqdm  # optional: extras "train"/"test"
    except ImportError:
        return None
    # Quiet when stderr is not a terminal (CI logs, tests, redirected output).
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not sys.stderr.isatty())


def batches_for(model, train_data, cfg: TrainConfig, device):
    """The "batches + loss" adapter of ``model``'s kind (its recipe's); ``train_data`` is token ids (language
    models) or a :class:`models.longformer.longdoc.Encoded` (Longformer tasks)."""
    return recipes.kind(recipes.kind_of(model)).batches(train_data, cfg, device)


# ------------------------------------------------------------------ the loop

def train(model, train_ids, val_ids, cfg: TrainConfig, out_dir, *, tokenizer_dict, model_config_dict,
          resume=False, overwrite=False, stop_at=None, run_info=None, log=print, world=None) -> dict:
    """Train ``model`` on ``train_ids`` for ``cfg.steps`` steps, writing to ``out_dir``.

    ``train_ids``/``val_ids``: token ids for language models; for Longformer tasks, the encoded
    examples (:class:`models.longformer.longdoc.Encoded`) of the training and validation plays.
    ``resume=True`` continues from ``out_dir/checkpoint.npz`` exactly where it stopped. A fresh run
    into a directory that already holds one is refused unless ``overwrite=True``, which deletes the
    old run's files first (:func:`models.checkpoint.check_run_dir`). ``stop_at`` (optional) ends the run after that
    step, checkpointing first, as if the run had been interrupted there: the LR schedule still spans
    ``cfg.steps``. ``run_info`` (a JSON-able dict, e.g. the preset's name) is saved with the checkpoint.
    Returns ``{"step", "loss", "val_bpc"}`` of the last step (val_bpc of the final evaluation; None for a
    task) and the last validation metrics (``val_accuracy`` or ``val_exact_match`` and the baselines).

    ``world`` (default :func:`minitensor.distributed.world`): the ranks of an ``mpiexec`` run. Each rank
    reads its slice of every batch (the batch is ``cfg.batch_size`` over all ranks: ``-n 1`` and ``-n 2``
    train on the same examples), the gradients are averaged over the ranks before the step, and rank 0
    alone validates, logs and writes the run's files.
    """
    world = world or distributed.world()
    root = world.is_root
    log = log if root else (lambda *a, **k: None)
    checkpoint.check_run_dir(out_dir, resume=resume, overwrite=overwrite)
    world.check_same("the training run", {"model": recipes.kind_of(model), "model_config": model_config_dict,
                                          "train_config": cfg.to_dict(), "resume": bool(resume), "stop_at": stop_at})
    shard = distributed.shard_slice(cfg.batch_size, world.rank, world.size)  # this rank's rows of each batch
    if root:
        if overwrite and not resume:
            for name in checkpoint.RUN_FILES:
                if os.path.exists(os.path.join(out_dir, name)):
                    os.remove(os.path.join(out_dir, name))
        files.make_output_dir(out_dir)
        files.remove_leftovers(out_dir, checkpoint.RUN_FILES, log=log)
    ckpt_path = os.path.join(out_dir, checkpoint.CHECKPOINT_NAME)
    metrics_path = os.path.join(out_dir, checkpoint.METRICS_NAME)
    png_path = os.path.join(out_dir, checkpoint.PLOT_NAME)
    last_step = cfg.steps if stop_at is None else min(int(stop_at), cfg.steps)
    device = model_device(model)

    params = model.parameters()
    opt = mt.optim.AdamW(params, lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay, skip_1d_decay=True)
    batches = batches_for(model, train_ids, cfg, device)
    batches.shard = shard
    step = 0

    if resume:
        state, meta = checkpoint.read_checkpoint(ckpt_path, expected_model=recipes.kind_of(model))
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
        model_state, optim_state = checkpoint.split_state(state)
        model.load_state_dict(model_state)
        opt.load_state_dict({**optim_state, **meta["optim"]})
        batches.restore(state, meta)
        checkpoint.set_generator_states(model, meta["model_rng_states"])
        if root:  # metrics logged after the checkpoint belong to the lost part of the run: drop them
            kept = checkpoint.read_metrics(metrics_path, up_to_step=step, log=log)
            files.write_atomic(metrics_path, lambda f: f.writelines(json.dumps(r) + "\n" for r in kept))
        log(f"resumed from {ckpt_path} at step {step}")
    world.broadcast_parameters(params)  # every rank starts from rank 0's weights
    if world.rank:  # rank r's dropout draws: the saved (rank 0's) streams, jumped r times ahead
        for g in checkpoint.model_generators(model).values():
            g.bit_generator.state = g.bit_generator.jumped(world.rank).state

    def checkpoint_fields():  # on every rank: Transformer-XL's memory is gathered from every rank's streams
        fields = batches.checkpoint_fields()
        if fields.get("mems") is not None:
            fields["mems"] = world.gather_rows(fields["mems"])
        return fields

    def save(fields):  # on rank 0: its streams and weights (the same weights on every rank)
        checkpoint.save_checkpoint(ckpt_path, model, opt, step=step, tokenizer_dict=tokenizer_dict,
                                   model_config_dict=model_config_dict, train_config=cfg, run_info=run_info,
                                   **fields)

    step_memory.check_step_fits(model, cfg.batch_size, cfg.seq_len)  # a step that cannot fit: refused now
    bar = progress_bar(cfg.steps, step) if root else None
    loss_value, val_metrics = float("nan"), {}
    model.train()
    while step < last_step:
        t0 = time.perf_counter()
        # GPT-1's schedule: linear warmup, then cosine annealing to min_lr over cfg.steps.
        opt.lr = mt.optim.warmup_cosine(step, warmup=cfg.warmup, total=cfg.steps, peak_lr=cfg.lr, min_lr=cfg.min_lr)
        opt.zero_grad()
        loss, n_targets = batches.step_loss(model)  # the next batch's mean cross-entropy (nats), this rank's rows
        loss.backward()
        world.average_gradients(params)  # the whole batch's gradient on every rank (one process: as it is)
        grad_norm = mt.optim.clip_grad_norm(params, cfg.grad_clip)
        opt.step()
        step += 1

        loss_value = world.mean(float(to_numpy(loss.data)))  # the whole batch's loss
        n_targets *= world.size
        if not math.isfinite(loss_value):
            raise RuntimeError(f"training diverged at step {step}: loss is {loss_value} (try a lower --lr)")
        tokens_per_s = n_targets / max(time.perf_counter() - t0, 1e-9)
        record = {"step": step, "loss": loss_value, "lr": opt.lr, "grad_norm": grad_norm,
                  "tokens_per_s": tokens_per_s}
        fields = checkpoint_fields() if step % cfg.ckpt_every == 0 or step == last_step else None
        if not root:
            continue
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val_metrics = batches.validate(model, val_ids, cfg.eval_batches)  # {"val_bpc": ...} or task scores
            record.update(val_metrics)
            shown = "  ".join(f"{k.removeprefix('val_').replace('_', ' ')} {v:.4f}" for k, v in val_metrics.items())
            if bar is not None and not bar.disable:
                bar.write(f"step {step}: val {shown}")
            else:
                log(f"step {step}/{cfg.steps}: loss {loss_value:.4f}  val {shown}")
        checkpoint.append_jsonl(metrics_path, record)
        if bar is not None:
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            bar.update(1)  # redraws with the postfix above

        if fields is not None:
            save(fields)
            checkpoint.plot_losses(metrics_path, png_path, log=lambda *a: None)  # the note is printed once, at the end
    if bar is not None:
        bar.close()
    if root:
        checkpoint.plot_losses(metrics_path, png_path, log=log)
    return {"step": step, "loss": loss_value, "val_bpc": val_metrics.get("val_bpc"), **val_metrics}


# ------------------------------------------------------------------ a run of the command line

#: The ``train`` command's options that are TrainConfig fields (None when not given).
SETTINGS = ("steps", "batch_size", "seq_len", "lr", "warmup", "min_lr", "beta2", "weight_decay", "grad_clip", "eval_every",
            "eval_batches", "ckpt_every", "seed", "final_eval_batches")


def _resumed_run(opts, recipe, kind, out, given):
    """What ``--resume`` continues: ``(meta, tokenizer, config, settings, run_info)`` of the checkpoint in
    ``out``, the options given on this command line on top of its settings. Refuses, before the slow
    part, a ``--preset`` that is not the checkpoint's."""
    path = os.path.join(out, checkpoint.CHECKPOINT_NAME)
    _, meta = checkpoint.read_checkpoint(path, expected_model=kind)
    k = recipes.kind(kind)
    tokenizer = checkpoint.from_metadata(path, "tokenizer", k.tokenizer.from_dict, meta["tokenizer"])
    config = checkpoint.from_metadata(path, "model_config", k.config.from_dict, meta["model_config"])
    run_info = meta.get("run") if isinstance(meta.get("run"), dict) else {}
    if opts.preset is not None and opts.preset != run_info.get("preset"):
        saved = f"the checkpoint's preset {run_info['preset']!r}" if run_info.get("preset") else \
            "the checkpoint's model (which does not record its preset)"
        raise ValueError(f"--preset {opts.preset} differs from {saved}; a resumed run keeps its model "
                         "(leave --preset out)")
    settings = {**train_config_of(path, meta).to_dict(), **given}
    return meta, tokenizer, config, settings, run_info


def shared_defaults() -> dict:
    """The TrainConfig fields every recipe leaves to TrainConfig's own default."""
    return {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}


def run(recipe, opts) -> int:
    """``python -m models train NAME``: ``recipe``'s settings (its defaults, the options given, or the
    checkpoint's with ``--resume``), its data and model, :func:`train`, then its final figures (and
    ``results.json`` when the recipe returns results). ``opts``: the ``train`` command's options."""
    recipe = recipe.for_options(opts)  # the Longformer's: its task's; refuses other models' options
    kind = recipe.kind(opts)
    # Check what can be checked before the slow part (loading the corpus): fail fast.
    device = mt.backend.check_device(opts.device)
    preset = opts.preset or "tiny"
    recipe.check_preset(preset)
    out = opts.out or recipe.default_out(opts, preset)
    checkpoint.check_run_dir(out, resume=opts.resume, overwrite=opts.overwrite)

    given = {field: getattr(opts, field) for field in SETTINGS if getattr(opts, field) is not None}
    for field in ("eval_batches", "final_eval_batches"):  # 0 on the command line: all of it
        if field in given:
            given[field] = given[field] or None
    if getattr(opts, "tokenizer", None) == "bpe" and not recipe.bpe:
        raise ValueError(f"--tokenizer bpe is for the language models gpt and txl ({recipe.name} reads characters)")
    if (getattr(opts, "tokenizer", None) == "bpe") != (getattr(opts, "vocab_size", None) is not None):
        raise ValueError("--tokenizer bpe and --vocab-size go together (the BPE's size in tokens)")
    for flag, value in (("--dropout", opts.dropout), ("--init-std", opts.init_std),
                        ("--tokenizer", getattr(opts, "tokenizer", None)), ("--vocab-size", getattr(opts, "vocab_size", None))):
        if opts.resume and value is not None:
            raise ValueError(f"{flag} is part of the model: a resumed run keeps the checkpoint's (leave it out)")
    if opts.resume:
        # The vocabulary, the architecture and the training settings come from the checkpoint.
        meta, tokenizer, config, settings, run_info = _resumed_run(opts, recipe, kind, out, given)
        preset = run_info.get("preset", "(preset not recorded)")
        recipe.check_resume(opts, config, run_info)
        check_steps_left(out, meta["step"], settings["steps"], opts.stop_at)  # before the slow part
        corpus = data.load_shakespeare()
    else:
        corpus = data.load_shakespeare()
        tokenizer = recipe.tokenizer(corpus, opts)
        defaults = recipe.defaults(opts)
        settings = {**defaults, **given}
        config = recipe.configure(opts, preset, tokenizer, settings, given)
        settings["warmup"] = given.get("warmup", min(defaults["warmup"], settings["steps"] // 5))
        if opts.dropout is not None:
            config = config.with_dropout(opts.dropout)
        if opts.init_std is not None:
            config = dataclasses.replace(config, init_std=opts.init_std)
        run_info = recipe.run_info(opts, preset)
    recipe.check_seq_len(settings["seq_len"], config)
    cfg = TrainConfig(**settings)

    model = checkpoint.build_model(kind, config, rng=np.random.default_rng(cfg.seed))
    if getattr(opts, "init", None) is not None:  # a Longformer task from the masked-LM pretraining
        run_info = {**run_info, **recipe.initialise(model, opts, tokenizer)}
    model = model.to(device)
    world = distributed.world()  # the ranks of an mpiexec run (one process: rank 0 of 1)
    splits, sizes = recipe.prepare(corpus, tokenizer, config)
    ranks = f"; {world.size} processes" if world.size > 1 else ""
    if world.is_root:
        print(f"model: {recipe.describe(opts, preset, config, kind)}, {model.num_parameters():,} parameters, "
              f"vocabulary {tokenizer.vocab_size}; {sizes}; device {device}{ranks}; output {out}")
    result = train(model, splits["train"], splits["validation"], cfg, out, tokenizer_dict=tokenizer.to_dict(),
                   model_config_dict=config.to_dict(), resume=opts.resume, overwrite=opts.overwrite,
                   stop_at=opts.stop_at, run_info=run_info, world=world)
    if not world.is_root:
        return 0  # rank 0 scores the run and writes its results
    ckpt_path = os.path.join(out, checkpoint.CHECKPOINT_NAME)
    results = recipe.report(model, splits, cfg, {**result, "run": run_info}, opts, preset, config, ckpt_path)
    if results is not None:
        results_path = os.path.join(out, checkpoint.RESULTS_NAME)
        files.write_json(results_path, results)
        print(f"wrote {results_path} (checkpoint in {ckpt_path})")
    return 0
