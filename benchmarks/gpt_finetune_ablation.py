r"""GPT-1's fine-tuning ablation at our scale: accuracy per task for three settings and a baseline.

Settings (each a run of ``python -m models finetune gpt`` with the same epochs, lr and seed):

* pretrained, $\lambda = 0.5$  — $L_3 = L_2 + 0.5 L_1$ from the pretraining checkpoint ``--init``;
* pretrained, $\lambda = 0$    — the task loss $L_2$ alone, same initialisation;
* no pretraining, $\lambda = 0.5$ — random weights of the same size: only the initialisation changes;
* majority class               — always the most frequent training label.

Accuracy is measured on the held-out plays (validation + test: six plays, one per genre, that the
language model never saw). Runs go to ``--out`` (one directory per run, each with its
``results.json``); ``--jobs`` runs that many at once, sharing ``--threads`` BLAS threads (default: the
core count). Prints a Markdown table and writes ``ablation.json`` beside the runs.

Run: ``python benchmarks/gpt_finetune_ablation.py --init runs/gpt-tiny [--jobs 2] [--epochs 3]
[--settings pretrained-0.5] [--tasks genre,follows]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models.gpt.tasks import TASKS  # noqa: E402

DEFAULT_TASKS = tuple(TASKS)[:4]  # the first four; --tasks picks the others


SETTINGS = ("pretrained-0.5", "pretrained-0", "none")  # --settings: the rows, in the table's order


def settings(init, chosen=SETTINGS):
    rows = {"pretrained-0.5": ("pretrained, λ=0.5", init, 0.5), "pretrained-0": ("pretrained, λ=0", init, 0.0),
            "none": ("no pretraining, λ=0.5", "none", 0.5)}
    return [rows[name] for name in SETTINGS if name in chosen]


def run_one(args, label, init, lm_coef, task, threads):
    out = os.path.join(args.out, f"{task}-{'none' if init == 'none' else 'pre'}-lm{lm_coef}")
    cmd = [sys.executable, "-m", "models", "finetune", "gpt", "--task", task, "--init", init, "--lm-coef",
           str(lm_coef), "--epochs", str(args.epochs), "--lr", str(args.lr), "--batch-size", str(args.batch_size),
           "--seed", str(args.seed), "--per-play", str(args.per_play), "--out", out, "--overwrite"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "MINITENSOR_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        result = json.load(f)
    result["seconds"] = time.perf_counter() - t0
    print(f"  {task:13s} {label:24s} held-out {result['accuracy']['held-out']:.3f}  ({result['seconds']:.0f} s)",
          flush=True)
    return label, task, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", required=True, help="the pretraining checkpoint directory")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-play", type=int, default=64, help="examples per play and task")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="BLAS threads in all")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help=f"comma-separated tasks of {', '.join(TASKS)} (default: {', '.join(DEFAULT_TASKS)})")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated subset of the rows: {', '.join(SETTINGS)}")
    parser.add_argument("--out", default=os.path.join("runs", "ablation"))
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    chosen = args.settings.split(",")
    unknown = sorted(set(chosen) - set(SETTINGS)) + sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown setting or task {', '.join(unknown)}: settings are {', '.join(SETTINGS)}, "
                     f"tasks {', '.join(TASKS)}")
    threads = max(1, args.threads // args.jobs)
    jobs = [(label, init, lm, task) for task in tasks for label, init, lm in settings(args.init, chosen)]
    print(f"{len(jobs)} fine-tuning runs, {args.jobs} at a time, {threads} BLAS thread(s) each; "
          f"{args.epochs} epochs, lr {args.lr}, batch {args.batch_size}, seed {args.seed}, {args.per_play} examples per play")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda j: run_one(args, *j, threads), jobs))
    table = {(label, task): r for label, task, r in results}
    print(f"\nheld-out accuracy (validation + test plays; {time.perf_counter() - t0:.0f} s in all)\n")
    print("| setting | " + " | ".join(tasks) + " |")
    print("|---|" + "---:|" * len(tasks))
    for label, _, _ in settings(args.init, chosen):
        print(f"| {label} | " + " | ".join(f"{table[(label, t)]['accuracy']['held-out']:.3f}" for t in tasks) + " |")
    first = settings(args.init, chosen)[0][0]
    print("| majority class | " + " | ".join(f"{table[(first, t)]['majority_baseline']['held-out']:.3f}"
                                            for t in tasks) + " |")
    print("| examples (train / held-out) | " + " | ".join(
        f"{table[(first, t)]['sizes']['train']} / {table[(first, t)]['sizes']['held-out']}" for t in tasks) + " |")
    summary = {f"{label} | {task}": r for (label, task), r in table.items()}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ablation.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
