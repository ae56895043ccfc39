r"""Transformer-XL ablations at our scale (issue 6): relative vs absolute positions, and bpc as a
function of the memory length used at evaluation.

1. Positions (the source's section 1.2.2). The ``tiny`` Transformer-XL is trained twice with
   :func:`models.train.train`, same seed, steps, batches and memory (segment 64, memory 64):
   ``positions="relative"`` (the paper's model) and ``positions="absolute"`` (the same recurrence,
   every segment adding the same fixed sinusoid codes $U_{1:L}$ to its embeddings, ordinary
   $q^\top k$ attention; see :mod:`models.transformer_xl`). Each is then scored on the test plays
   with cached evaluation (:func:`models.evaluate.cached_bpc`: one stream, batch 1, segments of 64,
   memory carried) -> a Markdown table.
2. Evaluation memory (the small-scale analogue of the paper's effective context): the RELATIVE model,
   trained with ``mem_len`` 64, evaluated with ``mem_len`` in {0, 32, 64, 128, 256, 512} (same
   weights; only the number of cached positions changes) -> a second table and
   ``benchmarks/out/txl_memlen.png`` (when matplotlib is installed).

Both evaluations use the FIRST ``--eval-chars`` characters of the test split (default 100,000 of
its 312,954) to keep the run within a few minutes on 2 cores; ``--eval-chars 0`` uses all of it.
The two trainings (and then the memory sweep) run in ``--jobs`` processes with one BLAS thread each.

Measured (250 steps, 2 cores, first 100,000 test characters): at the CLI's peak lr 3e-3 the absolute
variant does not learn in 250 steps: test bpc 4.786, the unigram cross-entropy (4.783) -- and the same
4.786 with ``mem_len`` 0, so that figure is an optimisation failure, not the cross-segment collision;
the relative model reaches 3.037. At ``--lr 1e-3`` both learn: relative 3.273, absolute 3.776.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/txl_ablation.py [--steps 250] [--lr 3e-3] [--jobs 2]``.
Writes the runs to ``benchmarks/out/txl_ablation/{relative,absolute}`` and the figures to
``benchmarks/out/txl_ablation.json``.
"""
from __future__ import annotations

from one_thread import OUT_DIR  # first: one thread per process, set before NumPy loads

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import figures
import numpy as np

MEM_LENS = (0, 32, 64, 128, 256, 512)
DEFAULT_LR = 3e-3  # `python -m models train`'s


def _corpus(eval_chars):
    from models import data

    corpus = data.load_shakespeare()
    tok = data.CharTokenizer.from_text(corpus.train, unknown="replace")  # as `python -m models train`
    test = corpus.test if not eval_chars else corpus.test[:eval_chars]
    return corpus, tok, tok.encode(test), len(corpus.test)


def _tag(lr):
    """Output names: the default learning rate keeps the plain names, another one is appended."""
    return "" if lr == DEFAULT_LR else f"-lr{lr:g}"


def train_one(positions, steps, seed, eval_chars, lr=None):
    """Train the tiny model with ``positions``; return its cached test bpc and timings."""
    from models.evaluate import cached_bpc
    from models.train import TrainConfig, train
    from models.transformer_xl import TransformerXL, TransformerXLConfig

    corpus, tok, test_ids, _ = _corpus(eval_chars)
    config = TransformerXLConfig.preset("tiny", tok.vocab_size, positions=positions)
    lr = DEFAULT_LR if lr is None else lr
    cfg = TrainConfig(steps=steps, batch_size=32, seq_len=config.tgt_len, lr=lr, warmup=min(100, steps // 5),
                      eval_every=steps, eval_batches=20, ckpt_every=steps, seed=seed)
    model = TransformerXL(config, rng=np.random.default_rng(seed))
    out = os.path.join(OUT_DIR, "txl_ablation" + _tag(lr), positions)
    t0 = time.perf_counter()
    result = train(model, tok.encode(corpus.train), tok.encode(corpus.validation), cfg, out,
                   tokenizer_dict=tok.to_dict(), model_config_dict=config.to_dict(), overwrite=True, log=lambda *a: None)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = cached_bpc(model, test_ids, batch_size=1)
    return {"positions": positions, "parameters": model.num_parameters(), "train_s": train_s,
            "final_train_loss_bits": result["loss"] / np.log(2), "val_bpc_20_segments": result["val_bpc"],
            "test_bpc": ev.bpc, "n_predicted": ev.n_predicted, "eval_s": time.perf_counter() - t0}


def eval_mem_len(mem_len, eval_chars, lr=DEFAULT_LR):
    """The trained relative model evaluated with ``mem_len`` cached positions."""
    import dataclasses

    from models.evaluate import cached_bpc
    from models.checkpoint import load_checkpoint
    from models.transformer_xl import TransformerXL

    _, _, test_ids, _ = _corpus(eval_chars)
    trained, _, _ = load_checkpoint(os.path.join(OUT_DIR, "txl_ablation" + _tag(lr), "relative"), expected_model="txl")
    model = TransformerXL(dataclasses.replace(trained.config, mem_len=mem_len))
    model.load_state_dict(trained.state_dict())  # same weights: only the memory length differs
    t0 = time.perf_counter()
    ev = cached_bpc(model, test_ids, batch_size=1)
    return {"mem_len": mem_len, "test_bpc": ev.bpc, "n_predicted": ev.n_predicted, "eval_s": time.perf_counter() - t0}


def plot(rows, path, train_mem):
    plt = figures.pyplot(path)
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([r["mem_len"] for r in rows], [r["test_bpc"] for r in rows], "o-")
    ax.axvline(train_mem, ls="--", c="gray", lw=0.8, label=f"training mem_len {train_mem}")
    ax.set_xscale("symlog", linthresh=32)
    ax.set_xticks([r["mem_len"] for r in rows], [str(r["mem_len"]) for r in rows])
    ax.set_xlabel("memory length at evaluation")
    ax.set_ylabel("test bpc (cached)")
    ax.set_title(f"Transformer-XL tiny (relative), trained with memory {train_mem}")
    figures.save(plt, fig, ax, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=250, help="training steps of each model (default: 250)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-chars", type=int, default=100_000,
                   help="evaluate on the first N characters of the test split; 0 = all (default: 100000)")
    p.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"peak learning rate of both runs (default: {DEFAULT_LR}, the CLI's; another value writes "
                        "to names ending in -lr<value>)")
    p.add_argument("--jobs", type=int, default=2, help="processes at once, one BLAS thread each (default: 2)")
    args = p.parse_args(argv)
    os.makedirs(OUT_DIR, exist_ok=True)
    _, _, test_ids, n_test = _corpus(args.eval_chars)
    scope = f"the first {len(test_ids):,} of {n_test:,} test-play characters"
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(train_one, ("relative", "absolute"), [args.steps] * 2, [args.seed] * 2,
                             [args.eval_chars] * 2, [args.lr] * 2))
    print(f"Positions ablation: tiny Transformer-XL (d 128, 4 layers, segment 64, memory 64, batch 32), "
          f"{args.steps} steps, peak lr {args.lr:g}, seed {args.seed}; cached bpc on {scope} (batch 1, memory carried)\n")
    print("| positions | parameters | train time (s) | last train loss (bits) | test bpc |")
    print("|---|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['positions']} | {r['parameters']:,} | {r['train_s']:.0f} | {r['final_train_loss_bits']:.4f} "
              f"| {r['test_bpc']:.4f} |")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        sweep = list(pool.map(eval_mem_len, MEM_LENS, [args.eval_chars] * len(MEM_LENS), [args.lr] * len(MEM_LENS)))
    print(f"\nEvaluation memory: the relative model (trained with mem_len 64) on {scope}, segments of 64\n")
    print("| eval mem_len | test bpc | eval time (s) |")
    print("|---:|---:|---:|")
    for r in sweep:
        print(f"| {r['mem_len']} | {r['test_bpc']:.4f} | {r['eval_s']:.1f} |")
    png = os.path.join(OUT_DIR, f"txl_memlen{_tag(args.lr)}.png")
    plot(sweep, png, 64)
    with open(os.path.join(OUT_DIR, f"txl_ablation{_tag(args.lr)}.json"), "w", encoding="utf-8") as f:
        json.dump({"steps": args.steps, "lr": args.lr, "seed": args.seed, "eval_chars": len(test_ids), "runs": runs,
                   "mem_len_sweep": sweep}, f, indent=1)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; plot {png}")


if __name__ == "__main__":
    main()
