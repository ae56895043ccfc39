r"""Does more of the document help? A trained Longformer task model scored on the held-out questions with
the scene cut to its first 256, 512, 1,024, 2,048 tokens, and whole.

Tasks: ``genre`` (``train longformer --task genre``), ``speaks`` and ``first-line`` (the speaker tasks of
:mod:`models.longformer.cast_tasks`). For the speaker tasks the held-out questions are built from WHOLE
scenes (``max_len`` unbounded), so their answers lie anywhere in the scene; each cut gives the model
``<s> NAME $`` and as much of the scene as fits in that many tokens, and a question whose answer was cut
away is scored as the model answers it (a "yes" it cannot see; a first line it cannot mark). Every cut
scores the same questions.

A model was trained on at most ``max_len`` tokens (its run's ``--seq-len``); for longer inputs its position
table is extended as the paper extends RoBERTa's, by repeating the learnt positions
(:func:`models.longformer.positions.with_max_len`). Scored by accuracy (genre, speaks) or exact match
(first-line) beside the task's baselines on the whole scenes.

Run: ``python benchmarks/longformer_input_length.py [--task first-line] [--ckpt runs/longformer-first-line-tiny]
[--lengths 256,512,1024,2048,0]`` (0: the whole scene). Writes ``benchmarks/out/longformer_input_length-TASK.json``
and, with matplotlib, ``benchmarks/out/longformer_input_length-TASK.png``.
"""
from __future__ import annotations

from one_thread import OUT_DIR  # first: one thread per process, set before NumPy loads

import argparse
import json
import os
import time

import figures

WHOLE = 1 << 20  # a max_len no scene reaches: the speaker tasks' questions on whole scenes
SCORE = {"genre": "accuracy", "speaks": "accuracy", "first-line": "exact_match"}


def held_out(task, corpus):
    """(held-out examples on whole scenes, the task's baselines on them)."""
    from models.longformer import cast_tasks, longdoc

    if task == "genre":
        examples = longdoc.build_genre(corpus)
        ho = examples["validation"] + examples["test"]
        return ho, {"majority": longdoc.majority_baseline(examples["train"], ho)}
    if task == "speaks":
        examples = cast_tasks.build_speaks(corpus, max_len=WHOLE)
        ho = examples["validation"] + examples["test"]
        return ho, {"majority": longdoc.majority_baseline(examples["train"], ho),
                    "cast_prior": cast_tasks.cast_prior(examples["train"], ho)}
    examples = cast_tasks.build_first_line(corpus, max_len=WHOLE)
    ho = examples["validation"] + examples["test"]
    return ho, cast_tasks.first_line_baselines(ho)


def encode_cut(task, examples, tok, max_len):
    """The examples given as at most ``max_len`` tokens, and how many were cut."""
    from models.longformer import cast_tasks, longdoc

    if task == "genre":
        return longdoc.encode_genre(examples, tok, max_len)
    cut = [{**e, "context": e["context"][:max_len - 2 - len(e["question"])]} for e in examples]
    n_cut = sum(len(c["context"]) < len(e["context"]) for c, e in zip(cut, examples))
    if task == "speaks":
        return cast_tasks.encode_speaks(cut, tok), n_cut
    # first-line: a cut-away answer keeps a span inside the input (the first context character) so that
    # the batch can be built; it is scored against the answer TEXT below, which the input then lacks.
    inside = [c if c["answer_end"] <= len(c["context"]) else {**c, "answer_start": 0, "answer_end": 1}
              for c in cut]
    return longdoc.encode_qa(inside, tok, max_answer_len=cast_tasks.LONGEST_LINE), n_cut


def first_line_exact_match(model, encoded, examples, tok, batch_size=4):
    """Exact match of the predicted span's text with each example's answer (which a cut may have removed)."""
    import numpy as np

    hits = 0
    for lo in range(0, len(examples), batch_size):
        index = np.arange(lo, min(lo + batch_size, len(examples)))
        b = encoded.batch(index)
        spans = model.predict_spans(b["ids"], b["question_mask"], padding_mask=b["padding_mask"],
                                    max_answer_len=encoded.max_answer_len)
        for row, (s, e), i in zip(b["ids"], spans, index):
            hits += s >= 0 and tok.decode(row[s:e + 1]) == examples[i]["answer"]
    return hits / len(examples)


def scores(task, ckpt, lengths):
    from models import checkpoint, data
    from models.longformer import longdoc
    from models.longformer.positions import with_max_len
    from models.longformer.recipe import evaluate_task

    model, tokenizer_dict, meta = checkpoint.load_checkpoint(ckpt, expected_model=f"longformer-{task}")
    tok = longdoc.LongdocTokenizer.from_dict(tokenizer_dict)
    examples, baselines = held_out(task, data.load_shakespeare())
    text = "text" if task == "genre" else "context"
    longest = max(len(e[text]) + len(e.get("question", "")) + 2 for e in examples)
    rows = []
    for length in lengths:
        max_len = longest if length == 0 else length
        encoded, n_cut = encode_cut(task, examples, tok, max_len)
        reader = model if max_len <= model.config.max_len else with_max_len(model, max_len)
        t0 = time.perf_counter()
        if task == "first-line":
            score = first_line_exact_match(reader, encoded, examples, tok)
        else:
            score = evaluate_task(reader, encoded, batch_size=4)
        rows.append({"length": length or "whole", "max_len": max_len, "cut": n_cut, SCORE[task]: score,
                     "seconds": time.perf_counter() - t0})
        print(f"| {length or 'whole'} | {n_cut} of {len(examples)} | {score:.3f} |", flush=True)
    return {"task": task, "ckpt": str(ckpt), "trained_max_len": model.config.max_len, "trained_steps": meta["step"],
            "baselines": baselines, "examples": len(examples), "rows": rows}


def plot(result, path):
    plt = figures.pyplot(path)
    if plt is None:
        return
    rows, score = result["rows"], SCORE[result["task"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(range(len(rows)), [r[score] for r in rows], "o-", label=f"Longformer {result['task']}")
    for (name, value), style in zip(result["baselines"].items(), ("--", ":", "-.")):
        ax.axhline(value, ls=style, c="gray", lw=0.8, label=name.replace("_", " "))
    ax.set_xticks(range(len(rows)), [str(r["length"]) for r in rows])
    ax.set_xlabel(f"tokens of the input (trained on at most {result['trained_max_len']})")
    ax.set_ylabel(f"held-out {score.replace('_', ' ')}")
    figures.save(plt, fig, ax, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=sorted(SCORE), default="first-line")
    p.add_argument("--ckpt", default=None, help="the task run's directory (default: runs/longformer-TASK-tiny)")
    p.add_argument("--lengths", default="256,512,1024,2048,0", help="tokens given; 0 = the whole scene")
    args = p.parse_args(argv)
    ckpt = args.ckpt or os.path.join("runs", f"longformer-{args.task}-tiny")
    lengths = [int(x) for x in args.lengths.split(",")]
    print(f"{args.task} from the first N tokens of each held-out example ({ckpt})\n")
    print(f"| tokens given | inputs cut | {SCORE[args.task].replace('_', ' ')} |")
    print("|---|---:|---:|")
    result = scores(args.task, ckpt, lengths)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result["baselines"].items())
    print(f"\nbaselines on the whole scenes: {shown}; {result['examples']} held-out examples; trained on at "
          f"most {result['trained_max_len']} tokens")
    os.makedirs(OUT_DIR, exist_ok=True)
    plot(result, os.path.join(OUT_DIR, f"longformer_input_length-{args.task}.png"))
    with open(os.path.join(OUT_DIR, f"longformer_input_length-{args.task}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
