"""The command line: ``python -m models train|sample|evaluate|finetune|task ...``.

    python -m models train gpt --preset tiny                 # a few minutes on 2 CPU cores
    python -m models train gpt --preset tiny --stop-at 200   # ...or in pieces: stop after step 200,
    python -m models train gpt --preset tiny --resume        # then continue exactly where it stopped
    python -m models train gpt --preset tiny --overwrite     # start runs/gpt-tiny afresh (refused without it)
    python -m models train txl --preset tiny --mem-len 64    # Transformer-XL: segments carry memory
    python -m models train longformer --task genre           # whole scenes -> genre (also speaker-qa, lm)
    python -m models sample --ckpt runs/gpt-tiny --prompt "ROMEO:" --length 200
    python -m models evaluate --ckpt runs/txl-tiny           # test bpc: cached (txl) or sliding window (gpt)
    python -m models finetune gpt --task follows --init runs/gpt-tiny   # L_3 = L_2 + 0.5 L_1
    python -m models task next-speech --show 3               # look at a task's examples

Errors a user can cause (a missing checkpoint, an unknown preset, ``--device cuda`` without
a GPU, a prompt with characters the model never saw, a number flag out of range, a run already
in ``--out``, a damaged checkpoint) end with one line ``error: ...`` on stderr and exit code 2,
not a traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

# Defaults of `train gpt --preset tiny`: about 0.3 s per step on 2 CPU cores (B=32, T=128,
# d=128, 4 layers), so 600 steps plus evaluations take a few minutes.
TRAIN_DEFAULTS = {"steps": 600, "batch_size": 32, "seq_len": 128, "lr": 3e-3, "warmup": 100, "min_lr": 0.0,
                  "weight_decay": 0.01, "grad_clip": 1.0, "eval_every": 100, "eval_batches": 40, "ckpt_every": 200,
                  "seed": 0, "final_eval_batches": 0}
# `train longformer --preset tiny --task T`: what differs from TRAIN_DEFAULTS. seq_len is the model's max_len
# for the tasks (whole scenes up to that many characters) and the window length for lm. Seconds per step
# on 2 CPU cores are in the README.
LONGFORMER_DEFAULTS = {
    "genre": {"steps": 400, "batch_size": 8, "seq_len": 2048, "lr": 1e-3, "eval_every": 100, "eval_batches": 0,
              "ckpt_every": 100},
    "speaker-qa": {"steps": 1500, "batch_size": 8, "seq_len": 1024, "lr": 1e-3, "eval_every": 250,
                   "eval_batches": 0, "ckpt_every": 250},
    "lm": {"steps": 1000, "batch_size": 8, "seq_len": 512, "lr": 2e-3, "eval_every": 250, "eval_batches": 10,
           "ckpt_every": 250},
}
# The model per task, on top of the preset: the windows (w, w/2 keys each side) of each layer. genre:
# CLS is global and reads every token, the band only builds local features. speaker-qa: the answer
# (a speaker line) is a median 80 characters before the quoted line (p75 220), so four layers with
# windows growing with depth, the paper's layout, give each token a reach of 16+32+64+128 = 240
# characters on each side. lm: a causal band of 32 keys to the left (64 wide).
LONGFORMER_MODELS = {
    "genre": {"attention_window": 32},
    "speaker-qa": {"n_layer": 4, "attention_window": [32, 64, 128, 256]},
    "lm": {"attention_window": 64},
}


def _int(low):
    """An argparse type: an integer >= ``low`` (the message names the flag: argparse adds it)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value
    return parse


def _float(low, *, strict, allow_inf=False):
    """An argparse type: a finite number > ``low`` (``strict``) or >= ``low``; ``allow_inf`` lets inf through.
    NaN and inf are refused here, before they could surface steps later as a "diverged" loss."""
    rule = f"a finite number {'>' if strict else '>='} {low:g}" + (" (or inf)" if allow_inf else "")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        finite = math.isfinite(value) or (allow_inf and value == math.inf)
        if not finite or not (value > low if strict else value >= low):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (plus the --help hint) and exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m models", description="Train and sample the models of this project.",
                     epilog="examples:\n"
                            "  python -m models train gpt --preset tiny --out runs/gpt-tiny\n"
                            "  python -m models train gpt --resume --out runs/gpt-tiny\n"
                            '  python -m models sample --ckpt runs/gpt-tiny --prompt "ROMEO:" --length 200',
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="pretrain a language model on Shakespeare (character level)",
                       description="Pretrain a model on the Shakespeare corpus (train split); report validation "
                                   "bits per character. Writes checkpoint.npz, metrics.jsonl and loss.png to --out.")
    t.add_argument("model", help="which model to train: gpt, txl (Transformer-XL) or longformer (with --task)")
    t.add_argument("--task", choices=["genre", "speaker-qa", "lm"],
                   help="longformer only: scene -> genre, speaker-qa (span of the speaker's name), or lm "
                        "(character language model with a causal band)")
    t.add_argument("--full-attention", action="store_true",
                   help="longformer --task lm only: a band of 2 x --seq-len, i.e. full causal attention (the baseline)")
    t.add_argument("--preset", default=None,
                   help="model size: tiny (minutes on a CPU), gpt1 (gpt) or base (txl, longformer) (default: tiny; "
                        "with --resume, the checkpoint's)")
    # The training options default to None so that --resume can tell "not given" (take the
    # checkpoint's value) from "given" (override it); TRAIN_DEFAULTS fills in the rest.
    d = TRAIN_DEFAULTS
    t.add_argument("--steps", type=_int(1), help=f"optimisation steps, the length of the LR schedule (default: {d['steps']})")
    t.add_argument("--batch-size", type=_int(1), help=f"sequences per step (default: {d['batch_size']})")
    t.add_argument("--seq-len", type=_int(1),
                   help=f"characters per sequence: gpt at most its context (default: {d['seq_len']}, capped at n_ctx); "
                        "txl the segment length tgt_len (default: the preset's, 64 for tiny)")
    t.add_argument("--mem-len", type=_int(0),
                   help="txl only: memory length M, cached positions per layer (default: the preset's, 64 for tiny)")
    t.add_argument("--positions", choices=["relative", "absolute"],
                   help="txl only: relative positions (the paper, default) or absolute ones reused by every segment "
                        "(the section 1.2.2 ablation)")
    t.add_argument("--lr", type=_float(0, strict=True), help=f"peak learning rate of AdamW (default: {d['lr']})")
    t.add_argument("--warmup", type=_int(0), help=f"linear warmup steps (default: {d['warmup']}, at most --steps/5)")
    t.add_argument("--min-lr", type=_float(0, strict=False), help=f"learning rate at the end of the cosine (default: {d['min_lr']})")
    t.add_argument("--weight-decay", type=_float(0, strict=False), help=f"decoupled weight decay of AdamW (default: {d['weight_decay']})")
    t.add_argument("--grad-clip", type=_float(0, strict=True, allow_inf=True), help=f"clip the global gradient norm to this (default: {d['grad_clip']})")
    t.add_argument("--eval-every", type=_int(1), help=f"steps between validation bpc measurements (default: {d['eval_every']})")
    t.add_argument("--eval-batches", type=_int(0),
                   help=f"validation batches (txl: segments of --batch-size slices) per measurement; 0 = the whole "
                        f"validation text (default: {d['eval_batches']})")
    t.add_argument("--final-eval-batches", type=_int(0),
                   help="validation batches for the final figure; 0 = the whole validation text (default: 0)")
    t.add_argument("--ckpt-every", type=_int(1),
                   help=f"steps between checkpoints; one is also written at the end (default: {d['ckpt_every']})")
    t.add_argument("--seed", type=_int(0), help=f"seed of the weights, dropout and batches (default: {d['seed']})")
    t.add_argument("--stop-at", type=_int(1), default=None,
                   help="stop after this step (checkpointing), as if interrupted; continue later with --resume")
    t.add_argument("--device", default="cpu", help="cpu or cuda (cuda needs CuPy and a GPU) (default: cpu)")
    t.add_argument("--out", default=None, help="output directory (default: runs/<model>-<preset>)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out exactly where it stopped (its settings are reused; "
                        "options given here override them, which breaks exactness)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run --out already holds (its checkpoint, metrics and plot are deleted); without "
                        "it a fresh run into a directory holding one is refused")

    s = sub.add_parser("sample", help="generate text from a trained checkpoint",
                       description="Print --prompt followed by --length sampled characters.")
    s.add_argument("--ckpt", required=True, help="a checkpoint directory (written by train --out) or its checkpoint.npz")
    s.add_argument("--prompt", default="\n", help='text to continue (default: a newline), e.g. "ROMEO:"')
    s.add_argument("--length", type=_int(0), default=200, help="characters to generate (default: 200)")
    s.add_argument("--temperature", type=_float(0, strict=True), default=0.8, help="divide the logits by this; lower is safer (default: 0.8)")
    s.add_argument("--top-k", type=_int(0), default=20, help="sample among the k likeliest characters; 0 = all (default: 20)")
    s.add_argument("--seed", type=_int(0), default=0, help="seed of the sampler: same seed, same text (default: 0)")
    s.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")

    e = sub.add_parser("evaluate", help="bits per character of a checkpoint on the test (or validation) plays",
                       description="Evaluate a trained checkpoint on a held-out split. Transformer-XL: cached "
                                   "evaluation (one pass, segment after segment, memory of the checkpoint's mem_len "
                                   "carried, batch 1). GPT: the vanilla sliding window of --context characters, "
                                   "one character at a time, only the last position predicted (Figure 1b). "
                                   "Prints one line: model, split, characters, bpc, seconds, tokens/s.")
    e.add_argument("--ckpt", required=True, help="a checkpoint directory (written by train --out) or its checkpoint.npz")
    e.add_argument("--split", choices=["test", "validation"], default="test", help="which held-out plays (default: test)")
    e.add_argument("--max-chars", type=_int(2), default=None,
                   help="evaluate only the first N characters of the split (default: all of it)")
    e.add_argument("--context", type=_int(1), default=None,
                   help="gpt only: the sliding window C, at most the model's n_ctx (default: n_ctx)")
    e.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")

    f = sub.add_parser("finetune", help="fine-tune a pretrained GPT on a task (L_3 = L_2 + lambda L_1)",
                       description="Fine-tune GPT-1 on one of the corpus tasks (or a task file): the input "
                                   "transform of the task's format, a linear head on the extract token, "
                                   "L_3 = L_2 + lambda L_1. Prints accuracy on the held-out plays and the "
                                   "majority-class baseline; writes finetuned.npz, metrics.jsonl and results.json "
                                   "to --out.")
    f.add_argument("model", help="which model: gpt")
    which = f.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="genre, follows, same-speaker or next-speech (built from the corpus)")
    which.add_argument("--task-file", help="a task JSON file (python -m models task NAME --out FILE writes one)")
    f.add_argument("--init", required=True,
                   help="the pretrained checkpoint (a train --out directory), or 'none' for no pretraining "
                        "(random weights of --preset, the corpus' vocabulary)")
    f.add_argument("--preset", default="tiny", help="model size with --init none (default: tiny)")
    f.add_argument("--lm-coef", type=_float(0, strict=False), default=0.5, help="lambda, the weight of L_1 in L_3 (default: 0.5)")
    f.add_argument("--epochs", type=_int(1), default=3, help="passes over the training examples (default: 3)")
    f.add_argument("--batch-size", type=_int(1), default=16, help="examples per step (default: 16)")
    f.add_argument("--lr", type=_float(0, strict=True), default=5e-4, help="peak learning rate (default: 5e-4)")
    f.add_argument("--per-play", type=_int(1), default=None,
                   help="examples per play when building a corpus task (default: 64)")
    f.add_argument("--seed", type=_int(0), default=0, help="seed of the head, dropout and shuffling (default: 0)")
    f.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    f.add_argument("--out", default=None, help="output directory (default: runs/finetune-<task>)")
    f.add_argument("--overwrite", action="store_true",
                   help="replace the fine-tuned model --out already holds (refused without it)")

    k = sub.add_parser("task", help="build a corpus task, write it as JSON and/or show examples",
                       description="Build one of the fine-tuning tasks from the corpus (deterministic, split "
                                   "by play) and write it as a task file or print some examples.")
    k.add_argument("name", help="genre, follows, same-speaker or next-speech")
    k.add_argument("--out", default=None, help="write the task to this JSON file")
    k.add_argument("--show", type=_int(0), default=3, help="print this many training examples (default: 3)")
    k.add_argument("--per-play", type=_int(1), default=None, help="examples per play (default: 64)")
    return parser


def _resumed_run(args, kind, out, given):
    """What ``--resume`` continues: ``(meta, tokenizer, config, settings, run_info)`` of the checkpoint in
    ``out``, the options given on this command line on top of its settings. Refuses, before the slow
    part, a ``--preset`` that is not the checkpoint's."""
    from .train import CHECKPOINT_NAME, MODEL_TYPES, from_metadata, read_checkpoint, tokenizer_class, train_config_of

    path = os.path.join(out, CHECKPOINT_NAME)
    _, meta = read_checkpoint(path, expected_model=kind)
    tokenizer = from_metadata(path, "tokenizer", tokenizer_class(kind).from_dict, meta["tokenizer"])
    config = from_metadata(path, "model_config", MODEL_TYPES[kind][1].from_dict, meta["model_config"])
    run = meta.get("run") if isinstance(meta.get("run"), dict) else {}
    if args.preset is not None and args.preset != run.get("preset"):
        saved = f"the checkpoint's preset {run['preset']!r}" if run.get("preset") else \
            "the checkpoint's model (which does not record its preset)"
        raise ValueError(f"--preset {args.preset} differs from {saved}; a resumed run keeps its model "
                         "(leave --preset out)")
    settings = {**train_config_of(path, meta).to_dict(), **given}
    return meta, tokenizer, config, settings, run


def _train_config(settings):
    from .train import TrainConfig

    settings = dict(settings)
    for field in ("eval_batches", "final_eval_batches"):  # 0 on the command line: all of it
        settings[field] = settings[field] or None
    return TrainConfig(**settings)


def _final_scope(cfg, unit) -> str:
    n = cfg.final_eval_batches
    return "all" if n is None else f"the first {n} {unit} of the"


def cmd_train(args) -> int:
    import minitensor as mt  # imported here so that --help is instant

    from . import data
    from .train import CHECKPOINT_NAME, MODEL_TYPES, check_run_dir, check_steps_left, evaluate_bpc, train

    if args.model == "longformer":
        return cmd_train_longformer(args)
    if args.task is not None or args.full_attention:
        raise ValueError("--task and --full-attention are for longformer only")
    if args.model not in MODEL_TYPES or args.model.startswith("longformer"):
        raise ValueError(f"unknown model {args.model!r}: choose from gpt, txl, longformer")
    model_cls, config_cls = MODEL_TYPES[args.model]
    txl = args.model == "txl"
    if args.mem_len is not None and not txl:
        raise ValueError("--mem-len is for txl only (GPT has no memory)")
    if args.positions is not None and not txl:
        raise ValueError("--positions is for txl only (GPT always has learned absolute positions)")
    # Check what can be checked before the slow part (loading the corpus): fail fast.
    device = mt.backend.check_device(args.device)
    preset = args.preset or "tiny"
    config_cls.preset(preset, vocab_size=1)  # an unknown preset raises ValueError naming the choices
    out = args.out or os.path.join("runs", f"{args.model}-{preset}")
    check_run_dir(out, resume=args.resume, overwrite=args.overwrite)

    given = {field: getattr(args, field) for field in TRAIN_DEFAULTS if getattr(args, field) is not None}
    if args.resume:
        # The vocabulary, the architecture and the training settings come from the checkpoint.
        meta, tokenizer, config, settings, run = _resumed_run(args, args.model, out, given)
        preset = run.get("preset", "(preset not recorded)")
        if txl and args.mem_len is not None and args.mem_len != config.mem_len:
            raise ValueError(f"--mem-len {args.mem_len} differs from the checkpoint's mem_len={config.mem_len}; "
                             "a resumed run keeps its model")
        if txl and args.positions is not None and args.positions != config.positions:
            raise ValueError(f"--positions {args.positions} differs from the checkpoint's positions={config.positions}; "
                             "a resumed run keeps its model")
        check_steps_left(out, meta["step"], settings["steps"], args.stop_at)  # before the slow part
        corpus = data.load_shakespeare()
    else:
        corpus = data.load_shakespeare()
        # The vocabulary is the training text's characters; "replace" maps any character only
        # the held-out plays use to the unknown symbol instead of failing.
        tokenizer = data.CharTokenizer.from_text(corpus.train, unknown="replace")
        settings = {**TRAIN_DEFAULTS, **given}
        if txl:  # the segment length L is the model's tgt_len, so --seq-len sets both
            overrides = {"tgt_len": args.seq_len} if args.seq_len is not None else {}
            if args.mem_len is not None:
                overrides["mem_len"] = args.mem_len
            if args.positions is not None:
                overrides["positions"] = args.positions
            config = config_cls.preset(preset, tokenizer.vocab_size, **overrides)
            settings["seq_len"] = config.tgt_len
        else:
            config = config_cls.preset(preset, tokenizer.vocab_size)
            settings["seq_len"] = given.get("seq_len", min(TRAIN_DEFAULTS["seq_len"], config.n_ctx))
        settings["warmup"] = given.get("warmup", min(TRAIN_DEFAULTS["warmup"], settings["steps"] // 5))
    if not txl and settings["seq_len"] > config.n_ctx:
        raise ValueError(f"--seq-len {settings['seq_len']} is longer than the model's context n_ctx={config.n_ctx}")
    cfg = _train_config(settings)

    model = model_cls(config, rng=np.random.default_rng(cfg.seed)).to(device)
    train_ids = tokenizer.encode(corpus.train)
    val_ids = tokenizer.encode(corpus.validation)
    ablation = ", absolute positions" if txl and config.positions == "absolute" else ""
    name = f"Transformer-XL (segment {config.tgt_len}, memory {config.mem_len}{ablation})" if txl else "GPT"
    print(f"model: {name} {preset}, {model.num_parameters():,} parameters, vocabulary {tokenizer.vocab_size}; "
          f"train {len(train_ids):,} chars, validation {len(val_ids):,} chars; device {device}; output {out}")
    result = train(model, train_ids, val_ids, cfg, out, tokenizer_dict=tokenizer.to_dict(),
                   model_config_dict=config.to_dict(), resume=args.resume, overwrite=args.overwrite,
                   stop_at=args.stop_at, run_info={"preset": preset} if not args.resume else run)
    # The periodic measurements use the first --eval-batches batches (cheap, comparable across
    # steps); by default the final figure covers the WHOLE validation split (the held-out plays).
    # Transformer-XL: cached evaluation, cfg.batch_size contiguous slices carrying memory.
    bpc = evaluate_bpc(model, val_ids, cfg.batch_size, cfg.seq_len, cfg.final_eval_batches)
    how = " (cached evaluation)" if txl else ""
    print(f"step {result['step']}: final validation bpc {bpc:.4f}{how} on {_final_scope(cfg, 'segments' if txl else 'batches')} "
          f"{len(val_ids):,} validation characters (checkpoint in {os.path.join(out, CHECKPOINT_NAME)})")
    return 0


def cmd_train_longformer(args) -> int:
    """``train longformer --task {genre,speaker-qa,lm}``: the same loop, UX and files as GPT, plus
    results.json with the test-split metrics and the baselines."""
    import minitensor as mt

    from . import data, files, longdoc
    from .longformer import LongformerConfig
    from .train import (
        CHECKPOINT_NAME,
        LONGFORMER_KINDS,
        MODEL_TYPES,
        RESULTS_NAME,
        build_model,
        check_run_dir,
        check_steps_left,
        evaluate_bpc,
        evaluate_task,
        read_checkpoint,
        train,
    )

    if args.mem_len is not None or args.positions is not None:
        raise ValueError("--mem-len and --positions are for txl only")
    if args.resume and args.task is None:
        if args.out is None:
            raise ValueError("train longformer --resume needs --out DIR (or --task, for the default "
                             "runs/longformer-TASK-PRESET)")
        _, meta = read_checkpoint(os.path.join(args.out, CHECKPOINT_NAME))  # the checkpoint knows its task
        tasks = {kind: task for task, kind in LONGFORMER_KINDS.items()}
        if meta["model"] not in tasks:
            raise ValueError(f"{args.out!r} holds a {meta['model']} checkpoint, not a Longformer task's")
        args.task = tasks[meta["model"]]
        args.full_attention = args.full_attention or bool((meta.get("run") or {}).get("full_attention"))
    if args.task is None:
        raise ValueError("train longformer needs --task genre, speaker-qa or lm")
    kind = LONGFORMER_KINDS[args.task]
    if kind not in MODEL_TYPES:
        raise ValueError("the Longformer task heads (models/longformer_heads.py) are not available")
    if args.full_attention and args.task != "lm":
        raise ValueError("--full-attention is for --task lm only (the full causal baseline)")
    device = mt.backend.check_device(args.device)
    preset = args.preset or "tiny"
    LongformerConfig.preset(preset, vocab_size=2, pad_id=0)  # an unknown preset raises ValueError naming the choices
    suffix = "-full" if args.full_attention else ""
    out = args.out or os.path.join("runs", f"longformer-{args.task}{suffix}-{preset}")
    check_run_dir(out, resume=args.resume, overwrite=args.overwrite)

    given = {field: getattr(args, field) for field in TRAIN_DEFAULTS if getattr(args, field) is not None}
    if args.resume:
        meta, tokenizer, config, settings, run = _resumed_run(args, kind, out, given)
        preset = run.get("preset", "(preset not recorded)")
        if run.get("full_attention") is not None and bool(run["full_attention"]) != bool(args.full_attention):
            raise ValueError(f"--full-attention differs from the checkpoint's run (full_attention="
                             f"{run['full_attention']}); a resumed run keeps its model")
        check_steps_left(out, meta["step"], settings["steps"], args.stop_at)  # before the slow part
        corpus = data.load_shakespeare()
    else:
        corpus = data.load_shakespeare()
        tokenizer = longdoc.LongdocTokenizer.from_corpus(corpus)
        settings = {**TRAIN_DEFAULTS, **LONGFORMER_DEFAULTS[args.task], **given}
        settings["warmup"] = given.get("warmup", min(TRAIN_DEFAULTS["warmup"], settings["steps"] // 5))
        overrides = {"max_len": settings["seq_len"], "pad_id": tokenizer.pad_id}
        if preset == "tiny":
            overrides.update(LONGFORMER_MODELS[args.task])
        if args.task == "lm":
            overrides["causal"] = True
            if args.full_attention:  # causal keeps the w/2 keys to the left: 2 x seq_len covers the whole past
                overrides["attention_window"] = 2 * settings["seq_len"]
        config = LongformerConfig.preset(preset, tokenizer.vocab_size, **overrides)
        run = {"preset": preset, "task": args.task, "full_attention": bool(args.full_attention)}
    if settings["seq_len"] > config.max_len:
        raise ValueError(f"--seq-len {settings['seq_len']} is longer than the model's max_len={config.max_len}")
    cfg = _train_config(settings)

    model = build_model(kind, config, rng=np.random.default_rng(cfg.seed)).to(device)
    if args.task == "lm":
        train_data, val_data = tokenizer.encode(corpus.train), tokenizer.encode(corpus.validation)
        test_data = tokenizer.encode(corpus.test)
        sizes = f"train {len(train_data):,} chars, validation {len(val_data):,} chars"
    else:
        # held-out = validation + test plays: one play per genre, so every genre is scored there
        # (the test split alone holds three genres, none of them the training majority)
        if args.task == "genre":
            examples = longdoc.build_genre(corpus)
        else:
            examples = longdoc.build_speaker_qa(corpus, max_len=config.max_len)
        examples["held-out"] = examples["validation"] + examples["test"]
        encoded = {}
        for split, exs in examples.items():
            if args.task == "genre":
                encoded[split], n_cut = longdoc.encode_genre(exs, tokenizer, config.max_len)
                encoded[split].baselines = {"majority": longdoc.majority_baseline(examples["train"], exs)}
                if split != "held-out":
                    print(f"{split}: {len(exs)} scenes, {n_cut} longer than {config.max_len - 1} characters given "
                          f"as their first {config.max_len - 1}")
            else:
                encoded[split] = longdoc.encode_qa(exs, tokenizer)
                encoded[split].baselines = longdoc.qa_baselines(exs)
        train_data, val_data, test_data = encoded["train"], encoded["validation"], encoded["test"]
        unit = "scenes" if args.task == "genre" else "questions"
        sizes = ", ".join(f"{k} {len(v)} {unit}" for k, v in examples.items() if k != "held-out")
    band = "full causal attention" if args.full_attention else f"windows {config.attention_window}"
    print(f"model: Longformer {preset} ({kind}, {band}, max_len {config.max_len}), "
          f"{model.num_parameters():,} parameters, vocabulary {tokenizer.vocab_size}; {sizes}; device {device}; "
          f"output {out}")
    result = train(model, train_data, val_data, cfg, out, tokenizer_dict=tokenizer.to_dict(),
                   model_config_dict=config.to_dict(), resume=args.resume, overwrite=args.overwrite,
                   stop_at=args.stop_at, run_info=run)

    final = cfg.final_eval_batches
    results = {"task": args.task, "model": kind, "preset": preset, "attention_window": config.attention_window,
               "full_attention": bool(args.full_attention), "step": result["step"], "max_len": config.max_len}
    splits = [("validation", val_data), ("test", test_data)]
    if args.task != "lm":
        splits.append(("held-out", encoded["held-out"]))
    for split, split_data in splits:
        if args.task == "lm":
            results[split] = {"bpc": evaluate_bpc(model, split_data, cfg.batch_size, cfg.seq_len, final)}
        else:
            metric = "accuracy" if args.task == "genre" else "exact_match"
            results[split] = {metric: evaluate_task(model, split_data, cfg.batch_size, final),
                              **split_data.baselines,
                              "examples": len(split_data) if final is None else min(len(split_data), final * cfg.batch_size)}
        shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in results[split].items())
        print(f"step {result['step']}: {split} {shown}")
    files.write_json(os.path.join(out, RESULTS_NAME), results)
    print(f"wrote {os.path.join(out, RESULTS_NAME)} (checkpoint in {os.path.join(out, CHECKPOINT_NAME)})")
    return 0


def _load_language_model(args):
    """``(model, tokenizer_dict, meta)`` of ``--ckpt``: sample and evaluate handle gpt and txl checkpoints."""
    from .train import load_checkpoint

    model, tokenizer_dict, meta = load_checkpoint(args.ckpt)
    if meta["model"] not in ("gpt", "txl"):
        raise ValueError(f"{args.ckpt!r} is a {meta['model']} checkpoint; {args.command} handles gpt and txl "
                         "(a Longformer run's figures are in its results.json)")
    return model, tokenizer_dict, meta


def cmd_sample(args) -> int:
    import minitensor as mt

    from . import data

    if args.length < 0:
        raise ValueError(f"--length must be >= 0, got {args.length}")
    device = mt.backend.check_device(args.device)
    model, tokenizer_dict, meta = _load_language_model(args)
    model.to(device)
    # Sampling must not silently change the prompt: a character outside the vocabulary is an error.
    tokenizer = data.CharTokenizer.from_dict({**tokenizer_dict, "unknown": "error"})
    if not args.prompt:
        raise ValueError("--prompt must not be empty")
    prompt_ids = tokenizer.encode(args.prompt)
    if meta["model"] == "txl":  # one token per forward pass, attending to the memory
        from .generate import generate_txl

        new_ids = generate_txl(model, prompt_ids, args.length, temperature=args.temperature,
                               top_k=args.top_k or None, rng=np.random.default_rng(args.seed))
    else:  # GPT re-reads its window of n_ctx characters for every new one
        new_ids = model.generate(prompt_ids, args.length, temperature=args.temperature,
                                 top_k=args.top_k or None, rng=np.random.default_rng(args.seed))
    print(args.prompt + tokenizer.decode(new_ids))
    return 0


def cmd_evaluate(args) -> int:
    import time

    import minitensor as mt

    from . import data
    from .evaluate import cached_bpc, vanilla_bpc

    if args.max_chars is not None and args.max_chars < 2:
        raise ValueError(f"--max-chars must be >= 2 (one character of context, one to predict), got {args.max_chars}")
    if args.context is not None and args.context < 1:
        raise ValueError(f"--context must be >= 1, got {args.context}")
    device = mt.backend.check_device(args.device)
    model, tokenizer_dict, meta = _load_language_model(args)
    txl = meta["model"] == "txl"
    if txl and args.context is not None:
        raise ValueError("--context is for gpt only (Transformer-XL's context is its segment plus mem_len "
                         f"{model.config.mem_len}, fixed by the checkpoint)")
    if not txl and args.context is not None and args.context > model.config.n_ctx:
        raise ValueError(f"--context {args.context} is longer than the model's context n_ctx={model.config.n_ctx}")
    model.to(device)
    # The checkpoint's own tokenizer, as in training: a character only the held-out plays use
    # becomes the unknown symbol (train saves its tokenizer with unknown="replace").
    tokenizer = data.CharTokenizer.from_dict(tokenizer_dict)
    text = getattr(data.load_shakespeare(), args.split)
    total = len(text)
    if args.max_chars is not None:
        text = text[: args.max_chars]
    ids = tokenizer.encode(text)
    start = time.perf_counter()
    if txl:
        result = cached_bpc(model, ids, batch_size=1)
        how = f"Transformer-XL, cached evaluation (segment {model.config.tgt_len}, memory {model.config.mem_len})"
    else:
        context = model.config.n_ctx if args.context is None else args.context
        result = vanilla_bpc(model, ids, context=context)
        how = f"GPT, vanilla sliding window (context {context}, last position only)"
    seconds = time.perf_counter() - start
    scope = "all" if len(text) == total else f"the first {len(text):,} of"
    print(f"{how}: {args.split} split, {scope} {total:,} characters ({result.n_predicted:,} predicted): "
          f"bpc {result.bpc:.4f}, {seconds:.2f} s, {result.n_predicted / max(seconds, 1e-9):,.0f} tokens/s "
          f"(device {device})")
    return 0


def _build_task(name, per_play):
    from . import tasks

    return tasks.build_task(name, per_play=tasks.PER_PLAY if per_play is None else per_play)


def cmd_finetune(args) -> int:
    import json

    import minitensor as mt

    from . import files, finetune, tasks
    from .train import METRICS_NAME, RESULTS_NAME, check_run_dir

    if args.model != "gpt":
        raise ValueError(f"unknown model {args.model!r}: only 'gpt' can be fine-tuned")
    device = mt.backend.check_device(args.device)
    cfg = finetune.FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  lm_coef=args.lm_coef, seed=args.seed)
    task = tasks.load_task(args.task_file) if args.task_file else _build_task(args.task, args.per_play)
    model, splits, tokenizer = finetune.prepare(task, args.init, cfg, preset=args.preset)
    out = args.out or os.path.join("runs", f"finetune-{task.name}")
    held = (finetune.FINETUNED_NAME, METRICS_NAME, RESULTS_NAME)
    check_run_dir(out, resume=False, overwrite=args.overwrite, names=held, resumable=False)
    model.to(device)
    files.make_output_dir(out)
    files.remove_leftovers(out, held)
    metrics = os.path.join(out, METRICS_NAME)
    print(f"task {task.name!r} ({task.format}): " + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
          + f" examples; init {args.init}; lambda {cfg.lm_coef}; {cfg.epochs} epochs; output {out}")
    evals = {k: v for k, v in splits.items() if k != "train"}
    with open(metrics, "w", encoding="utf-8") as log:
        accuracy = finetune.finetune(model, splits["train"], evals, cfg, device=device,
                                     on_step=lambda r: log.write(json.dumps(r) + "\n"))
    majority = {k: finetune.majority_accuracy(splits["train"], v) for k, v in evals.items()}
    finetune.save_finetuned(os.path.join(out, finetune.FINETUNED_NAME), model, task=task,
                            tokenizer_dict=tokenizer.to_dict(), cfg=cfg, init=args.init, accuracy=accuracy)
    results = {"task": task.name, "format": task.format, "init": args.init, "lm_coef": cfg.lm_coef,
               "accuracy": accuracy, "majority_baseline": majority, "sizes": {k: len(v) for k, v in splits.items()}}
    files.write_json(os.path.join(out, RESULTS_NAME), results)
    for k in evals:
        print(f"{k}: accuracy {accuracy[k]:.3f} (majority-class baseline {majority[k]:.3f}, {len(evals[k])} examples)")
    return 0


def cmd_task(args) -> int:
    import json

    from . import tasks

    task = _build_task(args.name, args.per_play)
    print(task)
    for ex in task.splits["train"][: max(args.show, 0)]:
        print(json.dumps(ex, ensure_ascii=False))
    if args.out:
        tasks.save_task(task, args.out)
        print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "finetune": cmd_finetune,
                "task": cmd_task}[args.command](args)
    except KeyboardInterrupt:
        print("\ninterrupted (the last checkpoint is kept; continue with --resume)", file=sys.stderr)
        return 130
    except MemoryError:  # past the estimate of models/step_memory.py, which is a lower bound
        print("error: out of memory (the last checkpoint is kept); lower --batch-size or --seq-len", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError, OSError, ImportError, KeyError) as e:
        # The documented kinds of user error: one line, no traceback.
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
