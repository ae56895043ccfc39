"""The command line: ``python -m models train|sample|evaluate|finetune|task|tokenizer ...``.

    python -m models train gpt --preset tiny                 # a few minutes on 2 CPU cores
    python -m models train gpt --preset tiny --stop-at 200   # ...or in pieces: stop after step 200,
    python -m models train gpt --preset tiny --resume        # then continue exactly where it stopped
    python -m models train gpt --preset tiny --overwrite     # start runs/gpt-tiny afresh (refused without it)
    python -m models train txl --preset tiny --mem-len 64    # Transformer-XL: segments carry memory
    python -m models train longformer --task genre           # whole scenes -> genre (also speaker-qa, speaks, first-line, lm, mlm)
    mpiexec -n 2 python -m models train gpt                  # two processes, each half of every batch (extra 'distributed')
    python -m models sample --ckpt runs/gpt-tiny --prompt "ROMEO:" --length 200
    python -m models sample --hf openai-gpt --prompt "the king said"   # a Hugging Face GPT-1 directory
    python -m models evaluate --ckpt runs/txl-tiny           # test bpc: cached (txl) or sliding window (gpt)
    python -m models finetune gpt --task follows --init runs/gpt-tiny   # L_3 = L_2 + 0.5 L_1
    python -m models task next-speech --show 3               # look at a task's examples
    python -m models tokenizer train --vocab-size 2000 --out runs/bpe-2000   # learn BPE merges

Errors a user can cause (a missing checkpoint, an unknown preset, ``--device cuda`` without
a GPU, a prompt with characters the model never saw, a number flag out of range, a run already
in ``--out``, a damaged checkpoint) end with one line ``error: ...`` on stderr and exit code 2,
not a traceback.
"""
from __future__ import annotations

import argparse
import math
import sys

from .tokenizers import cli as tokenizer_cli

#: The corpus tasks, as models.gpt.tasks.TASKS names them (repeated so that --help imports no model code;
#: tests/models/test_cli.py checks the two agree).
TASK_NAMES = ["genre", "follows", "same-speaker", "next-speech", "corrupted", "continues", "same-speech", "next-words",
              "word-order"]


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
                                   "bits per character. Writes checkpoint.npz, metrics.jsonl and loss.png to --out. "
                                   "Under mpiexec -n N, N processes train together, each on 1/N of every batch "
                                   "(--batch-size is the whole batch; pip install -e '.[distributed]').")
    t.add_argument("model", help="which model to train: gpt, txl (Transformer-XL) or longformer (with --task)")
    t.add_argument("--task", choices=["genre", "speaker-qa", "speaks", "first-line", "lm", "mlm"],
                   help="longformer only: scene -> genre, speaker-qa (span of the speaker's name), speaks (does "
                        "the named character speak in the scene), first-line (span of their first line), lm "
                        "(character language model with a causal band) or mlm (masked-LM pretraining of the "
                        "encoder, for --init)")
    t.add_argument("--init", metavar="CKPT",
                   help="longformer --task genre, speaker-qa, speaks or first-line: start the encoder from a --task mlm run "
                        "or another task's run (its directory or checkpoint.npz); the head starts fresh")
    t.add_argument("--no-global", action="store_true",
                   help="longformer --task genre, speaker-qa, speaks or first-line: make no token global (CLS, the question): "
                        "the ablation of global attention")
    t.add_argument("--full-attention", action="store_true",
                   help="longformer --task lm only: a band of 2 x --seq-len, i.e. full causal attention (the baseline)")
    t.add_argument("--preset", default=None,
                   help="model size: tiny (minutes on a CPU), gpt1 (gpt) or base (txl, longformer) (default: tiny; "
                        "with --resume, the checkpoint's)")
    # The training options default to None so that --resume can tell "not given" (take the
    # checkpoint's value) from "given" (override it); the recipe's defaults fill in the rest.
    # The help shows GPT's (models/gpt/recipe.py); the Longformer's per task are in models/longformer/recipe.py.
    from .gpt.recipe import DEFAULTS
    from .train import shared_defaults

    d = {**shared_defaults(), **DEFAULTS}
    t.add_argument("--steps", type=_int(1), help=f"optimisation steps, the length of the LR schedule (default: {d['steps']})")
    t.add_argument("--batch-size", type=_int(1), help=f"sequences per step (default: {d['batch_size']})")
    t.add_argument("--seq-len", type=_int(1),
                   help=f"tokens (characters, or BPE tokens) per sequence: gpt at most its context (default: {d['seq_len']}, capped at n_ctx); "
                        "txl the segment length tgt_len (default: the preset's, 64 for tiny)")
    t.add_argument("--tokenizer", choices=["char", "bpe"],
                   help="gpt and txl: characters (default) or byte-level BPE tokens learnt on the train split "
                        "(with --vocab-size); bits per character stay total bits over characters")
    t.add_argument("--vocab-size", type=_int(261),
                   help="with --tokenizer bpe: tokens in all (256 bytes + 4 special + merges)")
    t.add_argument("--mem-len", type=_int(0),
                   help="txl only: memory length M, cached positions per layer (default: the preset's, 64 for tiny)")
    t.add_argument("--positions", choices=["relative", "absolute"],
                   help="txl only: relative positions (the paper, default) or absolute ones reused by every segment "
                        "(the section 1.2.2 ablation)")
    t.add_argument("--lr", type=_float(0, strict=True), help=f"peak learning rate of AdamW (default: {d['lr']})")
    t.add_argument("--warmup", type=_int(0), help=f"linear warmup steps (default: {d['warmup']}, at most --steps/5)")
    t.add_argument("--min-lr", type=_float(0, strict=False), help=f"learning rate at the end of the cosine (default: {d['min_lr']})")
    t.add_argument("--beta2", type=_float(0, strict=False),
                   help=f"AdamW's beta2, the decay of its squared-gradient average, below 1 (default: {d['beta2']})")
    t.add_argument("--dropout", type=_float(0, strict=False),
                   help="dropout probability of the model's dropout layers, below 1 (default: 0.0 for the tiny gpt "
                        "and txl and longformer --task lm; otherwise the preset's)")
    t.add_argument("--init-std", type=_float(0, strict=True),
                   help="standard deviation of the initial weights (default: 0.05 for the tiny gpt and txl and "
                        "longformer --task lm; otherwise the preset's, 0.02 as in the papers)")
    t.add_argument("--weight-decay", type=_float(0, strict=False), help=f"decoupled weight decay of AdamW (default: {d['weight_decay']})")
    t.add_argument("--grad-clip", type=_float(0, strict=True, allow_inf=True), help=f"clip the global gradient norm to this (default: {d['grad_clip']})")
    t.add_argument("--eval-every", type=_int(1), help=f"steps between validation bpc measurements (default: {d['eval_every']})")
    t.add_argument("--eval-batches", type=_int(0),
                   help=f"validation batches (txl: segments of --batch-size slices) per measurement; 0 = the whole "
                        f"validation text (default: {d['eval_batches'] or 0})")
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

    s = sub.add_parser("sample", help="generate text from a trained checkpoint or a Hugging Face GPT-1 directory",
                       description="Print --prompt followed by --length sampled characters (tokens with --hf: "
                                   "then the text printed is GPT-1's tokenizer's, lower-cased).")
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="a checkpoint directory (written by train --out) or its checkpoint.npz")
    source.add_argument("--hf", metavar="DIR",
                        help="a Hugging Face openai-gpt directory: config.json, model.safetensors, vocab.json, "
                             "merges.txt (GPT-1's byte-pair encoding)")
    s.add_argument("--prompt", default="\n", help='text to continue (default: a newline), e.g. "ROMEO:"')
    s.add_argument("--length", type=_int(0), default=200,
                   help="characters to generate, tokens with --hf (default: 200)")
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
    e.add_argument("--mem-len", type=_int(0), default=None,
                   help="txl only: evaluate with this many cached positions per layer instead of the "
                        "checkpoint's mem_len (the same weights; default: the checkpoint's)")
    e.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")

    f = sub.add_parser("finetune", help="fine-tune a pretrained GPT on a task (L_3 = L_2 + lambda L_1)",
                       description="Fine-tune GPT-1 on one of the corpus tasks (or a task file): the input "
                                   "transform of the task's format, a linear head on the extract token, "
                                   "L_3 = L_2 + lambda L_1. Prints accuracy on the held-out plays and the "
                                   "majority-class baseline; writes finetuned.npz, metrics.jsonl and results.json "
                                   "to --out.")
    f.add_argument("model", help="which model: gpt")
    which = f.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", choices=TASK_NAMES, help="a task built from the corpus (python -m models task NAME "
                                                          "shows its examples; models/gpt/tasks.py defines them)")
    which.add_argument("--task-file", help="a task JSON file (python -m models task NAME --out FILE writes one)")
    f.add_argument("--init", required=True,
                   help="the pretrained checkpoint (a train --out directory), or 'none' for no pretraining "
                        "(random weights of --preset, the corpus' vocabulary)")
    f.add_argument("--preset", default="tiny", help="model size with --init none (default: tiny)")
    f.add_argument("--layers", type=_int(0), default=None,
                   help="with a checkpoint: transfer the embeddings and the first K blocks only, the later blocks "
                        "freshly initialised (default: all; the source's Figure 2, left)")
    f.add_argument("--lm-coef", type=_float(0, strict=False), default=0.5, help="lambda, the weight of L_1 in L_3 (default: 0.5)")
    f.add_argument("--epochs", type=_int(1), default=3, help="passes over the training examples (default: 3)")
    f.add_argument("--batch-size", type=_int(1), default=16, help="examples per step (default: 16)")
    f.add_argument("--lr", type=_float(0, strict=True), default=5e-4, help="peak learning rate (default: 5e-4)")
    f.add_argument("--per-play", type=_int(1), default=None,
                   help="examples per play when building a corpus task (default: 64)")
    f.add_argument("--train-per-play", type=_int(1), default=None,
                   help="examples per TRAINING play (default: --per-play): a smaller training set, "
                        "the same held-out examples")
    f.add_argument("--seed", type=_int(0), default=0, help="seed of the head, dropout and shuffling (default: 0)")
    f.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    f.add_argument("--out", default=None, help="output directory (default: runs/finetune-<task>)")
    f.add_argument("--overwrite", action="store_true",
                   help="replace the fine-tuned model --out already holds (refused without it)")

    k = sub.add_parser("task", help="build a corpus task, write it as JSON and/or show examples",
                       description="Build one of the fine-tuning tasks from the corpus (deterministic, split "
                                   "by play) and write it as a task file or print some examples.")
    k.add_argument("name", choices=TASK_NAMES, help="which task")
    k.add_argument("--out", default=None, help="write the task to this JSON file")
    k.add_argument("--show", type=_int(0), default=3, help="print this many training examples (default: 3)")
    k.add_argument("--per-play", type=_int(1), default=None, help="examples per play (default: 64)")
    k.add_argument("--train-per-play", type=_int(1), default=None,
                   help="examples per training play (default: --per-play)")
    tokenizer_cli.add_parser(sub, _int)
    return parser


def cmd_train(args) -> int:
    from . import recipes, train  # imported here so that --help is instant

    if args.model not in recipes.RECIPES:
        raise ValueError(f"unknown model {args.model!r}: choose from {', '.join(recipes.RECIPES)}")
    return train.run(recipes.RECIPES[args.model], args)


def cmd_sample(args) -> int:
    from . import generate

    return generate.command(args)


def cmd_evaluate(args) -> int:
    from . import evaluate

    return evaluate.command(args)


def cmd_finetune(args) -> int:
    from .gpt import finetune

    return finetune.command(args)


def cmd_task(args) -> int:
    from .gpt import tasks

    return tasks.command(args)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from minitensor.distributed import launched_size

        if args.command != "train" and launched_size() > 1:  # each rank would write the same files
            raise ValueError(f"only `train` runs on several processes (mpiexec -n {launched_size()}); run "
                             f"`{args.command}` with plain python")
        return {"train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "finetune": cmd_finetune,
                "task": cmd_task, "tokenizer": tokenizer_cli.cmd_tokenizer}[args.command](args)
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
