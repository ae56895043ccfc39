r"""Zero-shot accuracy over pretraining (the source's Figure 2, right), at our scale.

Trains the README's main run (``python -m models train gpt --preset tiny``) in pieces with
``--stop-at`` and ``--resume`` (bit-exact: the last piece is the uninterrupted run's checkpoint) and
keeps a copy of the checkpoint after each piece. Step 0 is the model the run starts from (the same
seed). Every snapshot answers each task with the LM alone (:mod:`models.gpt.zero_shot`: the gain of
the hypothesis or choice after its context; for ``corrupted`` the text's likelihood), accuracy on the
held-out plays (validation + test: 384 examples per task by default, ±0.025 is two standard errors
at 50%).

Run: ``python benchmarks/gpt_zero_shot.py [--at 150,300,600,1200,1800] [--tasks corrupted,continues]``.
Writes ``benchmarks/out/gpt_zero_shot.json`` and ``.png``; the run and its snapshots go to ``--work``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models import checkpoint  # noqa: E402
from models.gpt import tasks  # noqa: E402
from models.gpt.zero_shot import zero_shot_accuracy  # noqa: E402
from models.tokenizers.lm import lm_tokenizer_from_dict  # noqa: E402

OUT_DIR = os.path.join(ROOT, "benchmarks", "out")
TASKS = ("corrupted", "continues", "word-order", "same-speech", "next-words")
CHANCE = {"classification": 0.5, "entailment": 0.5, "similarity": 0.5, "multiple_choice": 1 / tasks.N_CHOICES}


def snapshots(work: str, at: list) -> dict:
    """step -> checkpoint file, training the main run in pieces that stop at each step of ``at``."""
    run, out = os.path.join(work, "run"), {}
    for i, step in enumerate(at):
        cmd = [sys.executable, "-m", "models", "train", "gpt", "--preset", "tiny", "--stop-at", str(step),
               "--out", run, *(["--resume"] if i else ["--overwrite"])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        keep = os.path.join(work, f"step{step}.npz")
        shutil.copyfile(os.path.join(run, checkpoint.CHECKPOINT_NAME), keep)
        out[step] = keep
        print(f"  trained to step {step} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def plot(rows, names, formats, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, skipping {path}")
        return
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    steps = [r["step"] for r in rows]
    for name in names:
        line, = ax.plot(steps, [r[name] for r in rows], "o-", label=name)
        ax.axhline(CHANCE[formats[name]], ls=":", c=line.get_color(), lw=0.8)
    ax.set_xlabel("pretraining steps (the main command's run)")
    ax.set_ylabel("zero-shot held-out accuracy")
    ax.set_title("GPT tiny, the LM alone (dotted: chance)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--at", default="150,300,600,1200,1800", help="steps at which to keep a snapshot")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated tasks of {', '.join(tasks.TASKS)}")
    p.add_argument("--per-play", type=int, default=tasks.PER_PLAY, help="examples per play and task")
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "zero-shot"), help="the run and its snapshots")
    p.add_argument("--reuse", action="store_true",
                   help="use the snapshots an earlier run left in --work instead of training again")
    args = p.parse_args(argv)
    at = sorted(int(s) for s in args.at.split(","))
    names = args.tasks.split(",")
    unknown = sorted(set(names) - set(tasks.TASKS))
    if unknown or not at or at[0] < 1:
        p.error(f"--tasks must name tasks of {', '.join(tasks.TASKS)} (unknown: {unknown}); --at steps >= 1")
    built = {name: tasks.build_task(name, per_play=args.per_play) for name in names}
    if args.reuse:
        files = {step: os.path.join(args.work, f"step{step}.npz") for step in at}
        missing = [f for f in files.values() if not os.path.exists(f)]
        if missing:
            p.error(f"--reuse: no snapshot {missing[0]} (run once without --reuse)")
        print(f"reusing the snapshots in {args.work}")
    else:
        print(f"training the main run in {len(at)} pieces into {args.work}")
        files = snapshots(args.work, at)
    rows = []
    for step in [0, *at]:
        model, tokenizer_dict, meta = checkpoint.load_checkpoint(files[max(step, at[0])])
        if step == 0:  # the weights the run started from: the same kind, config and seed
            model = checkpoint.build_model("gpt", model.config, rng=np.random.default_rng(meta["train_config"]["seed"]))
        tokenizer = lm_tokenizer_from_dict(tokenizer_dict)
        t0 = time.perf_counter()
        row = {"step": step, **{name: zero_shot_accuracy(model, tokenizer, built[name]) for name in names}}
        rows.append(row)
        print(f"  step {step:5d}: " + ", ".join(f"{n} {row[n]:.3f}" for n in names)
              + f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    n_held = len(built[names[0]].splits["validation"]) + len(built[names[0]].splits["test"])
    print(f"\nzero-shot accuracy on the held-out plays ({n_held} examples per task)\n")
    print("| pretraining steps | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for row in rows:
        print(f"| {row['step']:,} | " + " | ".join(f"{row[n]:.3f}" for n in names) + " |")
    print("| chance | " + " | ".join(f"{CHANCE[built[n].format]:.3f}" for n in names) + " |")
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "gpt_zero_shot.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    plot(rows, names, {n: built[n].format for n in names}, os.path.join(OUT_DIR, "gpt_zero_shot.png"))


if __name__ == "__main__":
    main()
