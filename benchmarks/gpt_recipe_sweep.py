r"""Which GPT-1 recipe learns most in a fixed time? Validation bpc of the tiny preset after B seconds of training.

Every recipe trains the same model, ``train gpt --preset tiny`` (post-LN, learned positions, tied output,
819k parameters), on the same Shakespeare split, for the same WALL-CLOCK budget (``--budget``
seconds of training steps; evaluation is not counted), each in a fresh process one after the other.
The learning rate warms up linearly over ``warmup`` steps and then follows a cosine from ``lr``
to ``min_lr`` over the budget's remaining TIME (not a step count, which would favour whatever is
fastest per step). The score is the bits per character on the whole validation split, windows of
the recipe's own ``seq_len`` (non-overlapping, every position predicted), as ``train`` reports it.

What is varied: learning rate and its floor, warmup, batch size and context length, dropout,
AdamW's beta2 and weight decay, the initial weights' standard deviation (GPT-1's N(0, 0.02), and
GPT-2's residual projections scaled by 1/sqrt(2 n_layer)). ``--only NAME ...`` runs some recipes.

Run: ``python benchmarks/gpt_recipe_sweep.py [--budget 200] [--only A B] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

BASE = {"batch_size": 32, "seq_len": 128, "lr": 3e-3, "min_lr": 0.0, "warmup": 100, "dropout": 0.1,
        "beta2": 0.999, "weight_decay": 0.01, "init_std": 0.02, "scaled_proj": False, "grad_clip": 1.0}

#: name -> the settings that differ from BASE (the command's defaults before this sweep).
RECIPES = {
    "old-default": {},
    "no-dropout": {"dropout": 0.0},
    "b2-.99": {"dropout": 0.0, "beta2": 0.99},
    "lr6e-3": {"dropout": 0.0, "beta2": 0.99, "lr": 6e-3},
    "lr1e-3": {"dropout": 0.0, "beta2": 0.99, "lr": 1e-3},
    "B16": {"dropout": 0.0, "beta2": 0.99, "batch_size": 16, "lr": 2e-3},
    "B8": {"dropout": 0.0, "beta2": 0.99, "batch_size": 8, "lr": 1.5e-3},
    "T64": {"dropout": 0.0, "beta2": 0.99, "seq_len": 64, "lr": 2e-3},
    "nanogpt": {"dropout": 0.0, "beta2": 0.99, "batch_size": 12, "seq_len": 64, "lr": 1e-3, "min_lr": 1e-4,
                "weight_decay": 0.1},
    "warmup30": {"dropout": 0.0, "beta2": 0.99, "warmup": 30},
    "scaled-init": {"dropout": 0.0, "beta2": 0.99, "scaled_proj": True},
    "init.05": {"dropout": 0.0, "beta2": 0.99, "init_std": 0.05},
    "init.08": {"dropout": 0.0, "beta2": 0.99, "init_std": 0.08},
    "B16-init.05": {"dropout": 0.0, "beta2": 0.99, "batch_size": 16, "lr": 2e-3, "init_std": 0.05},
    "B16-init.08": {"dropout": 0.0, "beta2": 0.99, "batch_size": 16, "lr": 2e-3, "init_std": 0.08},
    "B16-init.05-lr3e-3": {"dropout": 0.0, "beta2": 0.99, "batch_size": 16, "lr": 3e-3, "init_std": 0.05},
    "B16-init.05-b2-.999": {"dropout": 0.0, "batch_size": 16, "lr": 2e-3, "init_std": 0.05},
    "B16-init.05-lr3e-3-b2-.999": {"dropout": 0.0, "batch_size": 16, "lr": 3e-3, "init_std": 0.05},
    "B16-init.05-lr4e-3-b2-.999": {"dropout": 0.0, "batch_size": 16, "lr": 4e-3, "init_std": 0.05},
}


def build(settings, vocab_size, seed=0):
    from models.gpt import GPT, GPTConfig  # noqa: PLC0415

    p = settings["dropout"]
    config = GPTConfig.preset("tiny", vocab_size, embd_pdrop=p, attn_pdrop=p, resid_pdrop=p,
                              init_std=settings["init_std"])
    model = GPT(config, rng=np.random.default_rng(seed))
    if settings["scaled_proj"]:  # GPT-2: the residual branches' output layers start 1/sqrt(2L) smaller
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight"):
                param.data = param.data / np.float32(math.sqrt(2 * config.n_layer))
    return model


def worker(settings, budget):
    """Train one recipe for ``budget`` seconds in this process; print a JSON line with its figures."""
    import minitensor as mt  # noqa: PLC0415
    from models import data  # noqa: PLC0415
    from models.evaluate import evaluate_bpc  # noqa: PLC0415

    corpus = data.load_shakespeare()
    tok = data.CharTokenizer.from_text(corpus.train, unknown="replace")
    train_ids, val_ids = tok.encode(corpus.train), tok.encode(corpus.validation)
    model = build(settings, tok.vocab_size)
    params = model.parameters()
    opt = mt.optim.AdamW(params, lr=settings["lr"], betas=(0.9, settings["beta2"]),
                         weight_decay=settings["weight_decay"], skip_1d_decay=True)
    rng = np.random.default_rng(0)
    b, t, peak, floor, warmup = (settings[k] for k in ("batch_size", "seq_len", "lr", "min_lr", "warmup"))
    model.train()
    step, losses, start, warm_end = 0, [], time.perf_counter(), None
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            break
        if step < warmup:
            opt.lr = peak * (step + 1) / warmup
        else:
            warm_end = elapsed if warm_end is None else warm_end
            frac = min(1.0, (elapsed - warm_end) / max(1e-9, budget - warm_end))
            opt.lr = floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * frac))
        x, y = data.random_batches(train_ids, b, t, rng)
        opt.zero_grad()
        loss = model.lm_loss(x, y)
        loss.backward()
        mt.optim.clip_grad_norm(params, settings["grad_clip"])
        opt.step()
        losses.append(float(loss.data))
        step += 1
        if not math.isfinite(losses[-1]):
            break
    trained = time.perf_counter() - start
    bpc = evaluate_bpc(model, val_ids, 32, t, None) if math.isfinite(losses[-1]) else float("nan")
    print(json.dumps({"steps": step, "seconds": trained, "tokens": step * b * t, "val_bpc": bpc,
                      "final_loss": float(np.mean(losses[-50:]))}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=200.0, help="seconds of training per recipe (default: 200)")
    ap.add_argument("--only", nargs="+", choices=list(RECIPES), help="run these recipes only")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker), args.budget)
        return
    names = args.only or list(RECIPES)
    print(f"budget {args.budget:.0f} s of training per recipe; base settings {BASE}")
    print(f"| recipe | changes | steps | tokens | val bpc |\n|---|---|---:|---:|---:|")
    results = {}
    for name in names:
        settings = {**BASE, **RECIPES[name]}
        cmd = [sys.executable, os.path.abspath(__file__), "--budget", str(args.budget), "--worker", json.dumps(settings)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        if done.returncode != 0:
            raise SystemExit(f"gpt_recipe_sweep: recipe {name} failed:\n{done.stderr}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        results[name] = {"settings": settings, **r}
        changes = ", ".join(f"{k} {v}" for k, v in RECIPES[name].items()) or "(the old default)"
        print(f"| {name} | {changes} | {r['steps']:,} | {r['tokens'] / 1e6:.2f} M | {r['val_bpc']:.3f} |", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
