r"""The Longformer paper's Table 4 at our scale: how the window should change with depth, and dilation.

The paper (Beltagy et al., 2020, section 4.2, text8 dev bpc of a 12-layer character LM) compares, at
the same total attention cost: windows DECREASING with depth from 512 to 32 (1.24), a FIXED window of
230 (1.23), windows INCREASING from 32 to 512 (1.21); and, with increasing windows, no dilation
(1.21) against dilation on two heads (1.20).

Here: the causal character LM of ``train longformer --task lm`` (its settings: d 64, 4 heads, no
dropout, N(0, 0.05) weights, 1,000 steps of 8 x 512 characters, peak lr 2e-3) with FOUR layers, so that
windows can change with depth. Every variant has the same total window, 320 = the sum over layers of
$w$ (a causal layer reads $w/2$ keys back), so the same attention cost per step and the same receptive
field, 160 characters back, except where dilation widens it:

=================  ========================  ==========================================
variant            windows (layers 1 -> 4)   dilation
=================  ========================  ==========================================
decreasing         128, 96, 64, 32           none
fixed              80, 80, 80, 80            none
increasing         32, 64, 96, 128           none (the paper's "no dilation" row)
increasing+dil2    32, 64, 96, 128           2 on two of the four heads of layers 3 and 4
=================  ========================  ==========================================

Each variant trains in its own process (one BLAS thread) with the same seed, batches and schedule,
then is scored in bits per character over the whole test split (contiguous windows of 512, every
position predicted). ``--seeds 0,1`` repeats every variant per seed and reports the mean and the
spread, because the paper's differences (0.01-0.03 bpc) are of the order of one seed's noise.

Run: ``python benchmarks/longformer_window_ablation.py [--steps 1000] [--seeds 0,1] [--jobs 2] [--reuse]``.
Writes the runs to ``benchmarks/out/longformer_window_ablation/VARIANT-sSEED`` (each with its ``run.json``,
which ``--reuse`` reads back) and the figures to
``benchmarks/out/longformer_window_ablation.json``.
"""
from __future__ import annotations

from one_thread import OUT_DIR  # first: one thread per process, set before NumPy loads

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

N_LAYER, N_HEAD = 4, 4
#: variant -> (windows per layer, dilation per layer: one int per head). Every row's windows sum to 320.
VARIANTS = {
    "decreasing": ([128, 96, 64, 32], 1),
    "fixed": ([80, 80, 80, 80], 1),
    "increasing": ([32, 64, 96, 128], 1),
    "increasing+dil2": ([32, 64, 96, 128], [1, 1, [1, 1, 2, 2], [1, 1, 2, 2]]),
}
#: The paper's Table 4 (text8 dev bpc), for the README's side-by-side.
PAPER = {"decreasing": 1.24, "fixed": 1.23, "increasing": 1.21, "increasing+dil2": 1.20}
SEQ_LEN, BATCH, LR = 512, 8, 2e-3  # train longformer --task lm's defaults (models/longformer/recipe.py)


def reach(windows, dilation) -> int:
    """How far back (characters) the top layer's output can see: the sum over layers of the widest
    head's w/2 x dilation."""
    dil = dilation if isinstance(dilation, list) else [dilation] * len(windows)
    return sum(w // 2 * max(d if isinstance(d, list) else [d]) for w, d in zip(windows, dil))


def _run_dir(variant, seed):
    return os.path.join(OUT_DIR, "longformer_window_ablation", f"{variant}-s{seed}")


def train_one(variant, seed, steps, reuse=False):
    """Train ``variant`` with ``seed``; its test bpc over the whole test split and its timings (``reuse``:
    read them from an earlier run of the same steps instead, when there is one)."""
    record = os.path.join(_run_dir(variant, seed), "run.json")
    if reuse and os.path.exists(record):
        with open(record, encoding="utf-8") as f:
            done = json.load(f)
        if done["steps"] == steps:
            return done
    from models import data
    from models.evaluate import evaluate_bpc
    from models.longformer import LongformerConfig
    from models.longformer.heads import LongformerForCausalLM
    from models.longformer.longdoc import LongdocTokenizer
    from models.train import TrainConfig, train

    windows, dilation = VARIANTS[variant]
    corpus = data.load_shakespeare()
    tok = LongdocTokenizer.from_corpus(corpus)  # as train longformer --task lm
    config = LongformerConfig.preset("tiny", tok.vocab_size, pad_id=tok.pad_id, max_len=SEQ_LEN, causal=True,
                                     n_layer=N_LAYER, n_head=N_HEAD, attention_window=windows, dilation=dilation,
                                     hidden_dropout=0.0, attention_dropout=0.0, init_std=0.05)
    cfg = TrainConfig(steps=steps, batch_size=BATCH, seq_len=SEQ_LEN, lr=LR, warmup=min(100, steps // 5),
                      eval_every=steps, eval_batches=10, ckpt_every=steps, seed=seed)
    model = LongformerForCausalLM(config, rng=np.random.default_rng(seed))
    out = _run_dir(variant, seed)
    t0 = time.perf_counter()
    result = train(model, tok.encode(corpus.train), tok.encode(corpus.validation), cfg, out,
                   tokenizer_dict=tok.to_dict(), model_config_dict=config.to_dict(), overwrite=True, log=lambda *a: None)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_bpc = evaluate_bpc(model, tok.encode(corpus.test), BATCH, SEQ_LEN)
    done = {"variant": variant, "seed": seed, "steps": steps, "windows": windows, "dilation": config.dilation,
            "reach": reach(windows, dilation), "parameters": model.num_parameters(), "train_s": train_s,
            "s_per_step": train_s / steps, "last_train_loss_bits": result["loss"] / np.log(2),
            "test_bpc": test_bpc, "eval_s": time.perf_counter() - t0}
    with open(record, "w", encoding="utf-8") as f:
        json.dump(done, f, indent=1)
    return done


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="training steps of each run (default: 1000)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; every variant runs once per seed (default: 0)")
    p.add_argument("--only", default=None, help="comma-separated variants (default: all of them)")
    p.add_argument("--jobs", type=int, default=2, help="processes at once, one BLAS thread each (default: 2)")
    p.add_argument("--reuse", action="store_true",
                   help="take a variant and seed already trained for --steps from its run.json instead of training it")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = list(VARIANTS) if args.only is None else args.only.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    jobs = [(v, s) for v in variants for s in seeds]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(train_one, *zip(*jobs), [args.steps] * len(jobs), [args.reuse] * len(jobs)))
    print(f"Longformer char-LM window ablation: {N_LAYER} layers, d 64, {N_HEAD} heads, causal, {args.steps} steps "
          f"x {BATCH} x {SEQ_LEN}, peak lr {LR:g}, seeds {seeds}; test bpc over the whole test split\n")
    print("| variant | windows | dilation (layers 3, 4) | reach (chars back) | s/step | test bpc | paper (text8 dev) |")
    print("|---|---|---|---:|---:|---:|---:|")
    summary = {}
    for v in variants:
        rows = [r for r in runs if r["variant"] == v]
        bpcs = [r["test_bpc"] for r in rows]
        summary[v] = {"mean": float(np.mean(bpcs)), "runs": bpcs}
        shown = f"{np.mean(bpcs):.4f}" + (f" ({min(bpcs):.4f}-{max(bpcs):.4f})" if len(bpcs) > 1 else "")
        dil = rows[0]["dilation"]
        print(f"| {v} | {', '.join(map(str, rows[0]['windows']))} | {dil[2]}, {dil[3]} | {rows[0]['reach']} "
              f"| {np.mean([r['s_per_step'] for r in rows]):.3f} | {shown} | {PAPER[v]:.2f} |")
    with open(os.path.join(OUT_DIR, "longformer_window_ablation.json"), "w", encoding="utf-8") as f:
        json.dump({"steps": args.steps, "seeds": seeds, "runs": runs, "summary": summary}, f, indent=1)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
