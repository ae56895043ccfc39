r"""Does more of the document help? A trained genre model (``train longformer --task genre``) scored on the
held-out scenes given to it cut to 256, 512, 1,024, 2,048 characters, and whole.

The model was trained on at most ``max_len`` characters (2,048 by default); for longer inputs its
position table is extended as the paper extends RoBERTa's, by repeating the learnt positions
(:func:`models.longformer.positions.with_max_len`). The CLS token is global, so at every length it
reads every character it is given. Scored by accuracy on the held-out split (the validation and test
plays, one per genre), beside the majority class.

Run: ``python benchmarks/longformer_input_length.py [--ckpt runs/longformer-genre-tiny] [--lengths
256,512,1024,2048,0]`` (0: the whole scene). Writes ``benchmarks/out/longformer_input_length.json`` and,
with matplotlib, ``benchmarks/out/longformer_input_length.png``.
"""
from __future__ import annotations

from one_thread import OUT_DIR  # first: one thread per process, set before NumPy loads

import argparse
import json
import os
import time

import figures
import numpy as np


def scores(ckpt, lengths):
    from models import checkpoint, data
    from models.longformer import longdoc
    from models.longformer.positions import with_max_len
    from models.longformer.recipe import evaluate_task

    model, tokenizer_dict, meta = checkpoint.load_checkpoint(ckpt, expected_model="longformer-genre")
    tok = longdoc.LongdocTokenizer.from_dict(tokenizer_dict)
    examples = longdoc.build_genre(data.load_shakespeare())
    held_out = examples["validation"] + examples["test"]
    longest = max(len(e["text"]) for e in held_out) + 1  # + <s>
    majority = longdoc.majority_baseline(examples["train"], held_out)
    rows = []
    for length in lengths:
        max_len = longest if length == 0 else length
        encoded, n_cut = longdoc.encode_genre(held_out, tok, max_len)
        reader = model if max_len <= model.config.max_len else with_max_len(model, max_len)
        t0 = time.perf_counter()
        accuracy = evaluate_task(reader, encoded, batch_size=4)
        rows.append({"length": length or "whole", "max_len": max_len, "scenes_cut": n_cut, "accuracy": accuracy,
                     "seconds": time.perf_counter() - t0})
        print(f"| {length or 'whole'} | {n_cut} of {len(held_out)} | {accuracy:.3f} |", flush=True)
    return {"ckpt": str(ckpt), "trained_max_len": model.config.max_len, "trained_steps": meta["step"],
            "majority": majority, "scenes": len(held_out), "rows": rows}


def plot(result, path):
    plt = figures.pyplot(path)
    if plt is None:
        return
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(range(len(rows)), [r["accuracy"] for r in rows], "o-", label="Longformer genre")
    ax.axhline(result["majority"], ls="--", c="gray", lw=0.8, label="majority class")
    ax.set_xticks(range(len(rows)), [str(r["length"]) for r in rows])
    ax.set_xlabel(f"characters of the scene given (trained on at most {result['trained_max_len']})")
    ax.set_ylabel("held-out accuracy")
    figures.save(plt, fig, ax, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default=os.path.join("runs", "longformer-genre-tiny"), help="a genre run's directory")
    p.add_argument("--lengths", default="256,512,1024,2048,0", help="characters given; 0 = the whole scene")
    args = p.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    print(f"Genre from the first N characters of each held-out scene ({args.ckpt})\n")
    print("| characters given | scenes cut | accuracy |")
    print("|---|---:|---:|")
    result = scores(args.ckpt, lengths)
    print(f"\nmajority class: {result['majority']:.3f} on {result['scenes']} scenes; trained on at most "
          f"{result['trained_max_len']} tokens")
    os.makedirs(OUT_DIR, exist_ok=True)
    plot(result, os.path.join(OUT_DIR, "longformer_input_length.png"))
    with open(os.path.join(OUT_DIR, "longformer_input_length.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
