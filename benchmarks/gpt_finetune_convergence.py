r"""Does the auxiliary LM objective speed up fine-tuning? Task-loss curves of finished runs, side by side.

The source (section 3.3.3) says that adding $\lambda L_1$ to the task loss improves generalisation and
speeds convergence. This script reads fine-tuning runs that already exist (each a ``finetune --out``
directory with ``metrics.jsonl`` and ``results.json``, e.g. the ones
``benchmarks/gpt_finetune_ablation.py`` writes), groups them by task, and prints the mean task loss
$L_2$ (nats per example) over each third of the steps, with the held-out accuracy; it plots the curves
(a moving mean over ``--window`` steps) to ``benchmarks/out/gpt_finetune_convergence.png``.

Run: ``python benchmarks/gpt_finetune_convergence.py runs/ablation/*-pre-lm0.5 runs/ablation/*-pre-lm0.0``.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_PNG = os.path.join(ROOT, "benchmarks", "out", "gpt_finetune_convergence.png")


def read_run(path: str) -> dict:
    """A finished run's task, λ, init, held-out accuracy and per-step task losses."""
    try:
        with open(os.path.join(path, "results.json"), encoding="utf-8") as f:
            results = json.load(f)
        with open(os.path.join(path, "metrics.jsonl"), encoding="utf-8") as f:
            losses = [json.loads(line)["task_loss"] for line in f if line.strip()]
    except FileNotFoundError as e:
        raise SystemExit(f"{path}: not a finished fine-tuning run ({e.filename} is missing)") from None
    if not losses:
        raise SystemExit(f"{path}: metrics.jsonl has no steps")
    return {"path": path, "task": results["task"], "lm_coef": results["lm_coef"], "init": results["init"],
            "held_out": results["accuracy"].get("held-out"), "losses": np.asarray(losses)}


def thirds(losses: np.ndarray) -> list:
    return [float(part.mean()) for part in np.array_split(losses, 3)]


def plot(runs: list, window: int, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, skipping {path}")
        return
    tasks = sorted({r["task"] for r in runs})
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in runs if r["task"] == task):
            k = min(window, len(r["losses"]))
            smooth = np.convolve(r["losses"], np.ones(k) / k, mode="valid")
            ax.plot(np.arange(k, len(r["losses"]) + 1), smooth, label=f"λ={r['lm_coef']:g}, init {os.path.basename(r['init'])}")
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"task loss L2 (mean of {window} steps)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="finetune --out directories")
    p.add_argument("--window", type=int, default=32, help="steps per moving mean in the plot (default: 32)")
    args = p.parse_args(argv)
    if args.window < 1:
        p.error("--window must be >= 1")
    runs = sorted((read_run(path) for path in args.runs), key=lambda r: (r["task"], -r["lm_coef"], r["init"]))
    print("| task | init | λ | task loss, 1st / 2nd / 3rd third of the steps | held-out accuracy |")
    print("|---|---|---:|---|---:|")
    for r in runs:
        first, second, third = thirds(r["losses"])
        print(f"| {r['task']} | {os.path.basename(r['init'])} | {r['lm_coef']:g} | {first:.3f} / {second:.3f} / "
              f"{third:.3f} | {r['held_out']:.3f} |")
    plot(runs, args.window, OUT_PNG)


if __name__ == "__main__":
    main()
