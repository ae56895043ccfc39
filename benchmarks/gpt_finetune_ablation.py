r"""GPT-1's fine-tuning ablation at our scale: accuracy per task for three settings and a baseline.

Settings (each a run of ``python -m models finetune gpt`` with the same step budget, lr and seed):

* pretrained, $\lambda = 0.5$  — $L_3 = L_2 + 0.5 L_1$ from the pretraining checkpoint ``--init``;
* pretrained, $\lambda = 0$    — the task loss $L_2$ alone, same initialisation;
* no pretraining, $\lambda = 0.5$ — random weights of the same size: only the initialisation changes;
* majority class               — always the most frequent training label.

Accuracy is measured on the held-out plays (validation + test: six plays, one per genre, that the
language model never saw), with its standard error $\sqrt{p(1-p)/n}$. ``--sizes`` gives training sets
of several sizes (examples per training play; the held-out examples stay the same): the smaller ones
get proportionally more epochs, so every run takes as many steps as the largest set's ``--epochs``.

Runs go to ``--out`` (one directory per run, each with its ``results.json``); ``--jobs`` runs that
many at once, sharing ``--threads`` BLAS threads (default: the core count). Prints a Markdown table per
size, each pretrained setting's lead over no pretraining in standard errors, and writes
``ablation.json`` beside the runs and a bar chart ``benchmarks/out/gpt_finetune_ablation.png``.

Run: ``python benchmarks/gpt_finetune_ablation.py --init runs/gpt-tiny [--jobs 2] [--epochs 3]
[--settings pretrained-0.5] [--tasks genre,follows] [--sizes 16,64]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models.gpt.tasks import PER_PLAY, TASKS  # noqa: E402

DEFAULT_TASKS = tuple(TASKS)[:4]  # the first four; --tasks picks the others
SETTINGS = ("pretrained-0.5", "pretrained-0", "none")  # --settings: the rows, in the table's order
OUT_PNG = os.path.join(ROOT, "benchmarks", "out", "gpt_finetune_ablation.png")


def settings(init, chosen=SETTINGS):
    rows = {"pretrained-0.5": ("pretrained, λ=0.5", init, 0.5), "pretrained-0": ("pretrained, λ=0", init, 0.0),
            "none": ("no pretraining, λ=0.5", "none", 0.5)}
    return [rows[name] for name in SETTINGS if name in chosen]


def standard_error(p, n):
    return math.sqrt(p * (1 - p) / n)


def run_one(args, label, init, lm_coef, task, size, threads):
    out = os.path.join(args.out, f"{task}-{'none' if init == 'none' else 'pre'}-lm{lm_coef}"
                       + ("" if size == PER_PLAY else f"-train{size}"))
    epochs = round(args.epochs * max(args.sizes) / size)  # the same number of steps for every size
    cmd = [sys.executable, "-m", "models", "finetune", "gpt", "--task", task, "--init", init, "--lm-coef",
           str(lm_coef), "--epochs", str(epochs), "--lr", str(args.lr), "--batch-size", str(args.batch_size),
           "--seed", str(args.seed), "--per-play", str(PER_PLAY), "--train-per-play", str(size), "--out", out,
           "--overwrite"]
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
    result["epochs"] = epochs
    print(f"  {task:13s} {label:24s} {size:3d}/play held-out {result['accuracy']['held-out']:.3f}  "
          f"({result['seconds']:.0f} s)", flush=True)
    return (label, task, size), result


def cell(result):
    p, n = result["accuracy"]["held-out"], result["sizes"]["held-out"]
    return f"{p:.3f} ± {standard_error(p, n):.3f}"


def lead(a, b):
    """``a``'s held-out accuracy minus ``b``'s, and that difference in standard errors of the difference."""
    (pa, na), (pb, nb) = ((r["accuracy"]["held-out"], r["sizes"]["held-out"]) for r in (a, b))
    se = math.hypot(standard_error(pa, na), standard_error(pb, nb))
    return pa - pb, (pa - pb) / se if se else math.inf


def print_table(table, rows, tasks, size):
    first = table[(rows[0][0], tasks[0], size)]
    print(f"\nheld-out accuracy ± standard error, {first['sizes']['train']:,} training examples "
          f"({size} per play, {first['epochs']} epoch{'s' if first['epochs'] != 1 else ''})\n")
    print("| setting | " + " | ".join(tasks) + " |")
    print("|---|" + "---:|" * len(tasks))
    for label, _, _ in rows:
        print(f"| {label} | " + " | ".join(cell(table[(label, t, size)]) for t in tasks) + " |")
    print("| majority class | " + " | ".join(f"{table[(rows[0][0], t, size)]['majority_baseline']['held-out']:.3f}"
                                            for t in tasks) + " |")
    none = [r for r in rows if r[1] == "none"]
    for label, init, _ in rows:
        if none and init != "none":
            leads = [lead(table[(label, t, size)], table[(none[0][0], t, size)]) for t in tasks]
            print(f"| lead of {label} over none | " + " | ".join(f"{d:+.3f} ({z:+.1f} SE)" for d, z in leads) + " |")


def plot(table, rows, tasks, sizes, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, skipping {path}")
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.4), squeeze=False)
    width = 0.8 / len(rows)
    for ax, task in zip(axes[0], tasks):
        for k, (label, _, _) in enumerate(rows):
            results = [table[(label, task, s)] for s in sizes]
            acc = [r["accuracy"]["held-out"] for r in results]
            err = [standard_error(r["accuracy"]["held-out"], r["sizes"]["held-out"]) for r in results]
            ax.bar([i + (k - (len(rows) - 1) / 2) * width for i in range(len(sizes))], acc, width, yerr=err,
                   capsize=2, label=label)
        majority = table[(rows[0][0], task, sizes[-1])]["majority_baseline"]["held-out"]
        ax.axhline(majority, ls=":", c="k", lw=0.8, label="majority class")
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([f"{table[(rows[0][0], task, s)]['sizes']['train']:,} ex." for s in sizes])
        ax.set_title(f"{task} ({TASKS[task].replace('_', ' ')})", fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("held-out accuracy")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", required=True, help="the pretraining checkpoint directory")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the largest training set")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default=str(PER_PLAY),
                        help=f"comma-separated training examples per play (default: {PER_PLAY}; held-out: {PER_PLAY})")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="BLAS threads in all")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help=f"comma-separated tasks of {', '.join(TASKS)} (default: {', '.join(DEFAULT_TASKS)})")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated subset of the rows: {', '.join(SETTINGS)}")
    parser.add_argument("--out", default=os.path.join("runs", "ablation"))
    parser.add_argument("--plot", default=OUT_PNG, help="where the bar chart goes")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    chosen = args.settings.split(",")
    unknown = sorted(set(chosen) - set(SETTINGS)) + sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown setting or task {', '.join(unknown)}: settings are {', '.join(SETTINGS)}, "
                     f"tasks {', '.join(TASKS)}")
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if args.sizes[0] < 2:
        parser.error(f"--sizes: each size must be >= 2 examples per play, got {args.sizes[0]}")
    threads = max(1, args.threads // args.jobs)
    rows = settings(args.init, chosen)
    jobs = [(label, init, lm, task, size) for size in args.sizes for task in tasks for label, init, lm in rows]
    print(f"{len(jobs)} fine-tuning runs, {args.jobs} at a time, {threads} BLAS thread(s) each; {args.epochs} epochs "
          f"of {max(args.sizes)} examples per play (the same steps for every size), lr {args.lr}, batch "
          f"{args.batch_size}, seed {args.seed}; held-out {PER_PLAY} examples per play")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        table = dict(pool.map(lambda j: run_one(args, *j, threads), jobs))
    print(f"\n({time.perf_counter() - t0:.0f} s in all)")
    for size in args.sizes:
        print_table(table, rows, tasks, size)
    summary = {f"{label} | {task} | {size}": r for (label, task, size), r in table.items()}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ablation.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    plot(table, rows, tasks, args.sizes, args.plot)


if __name__ == "__main__":
    main()
