r"""Evaluation speed: Transformer-XL's cached evaluation vs the vanilla sliding window (issue 6).

Both models have the same size, the ``tiny`` Transformer-XL's: d_model 128, 4 layers, 4 heads
of 32, d_inner 512 (the vanilla model is :class:`models.gpt.GPT` with ``d_ff`` 512), float32,
random weights (the speed does not depend on the weights), eval mode, no graph. The text is the
test plays when the corpus package is installed, else random ids over a 76-character vocabulary.

For each attention length $C$ in {128, 256, 512, 1024}, every predicted character sees exactly
$C$ characters (itself included) in both models:

* vanilla (:func:`models.evaluate.vanilla_bpc`): GPT with ``n_ctx = C``; each prediction is a
  full forward pass over a window of $C$ tokens of which only the last position is used, the
  window sliding by one (the source's Figure 1b). ``--windows-per-batch`` windows go through
  one forward pass. It is slow, so we time a FIXED number of predictions
  (``--vanilla-tokens``, all with full windows) and report the per-token rate.
* cached XL (:func:`models.evaluate.cached_bpc`): segments of ``--seg-len`` $L$ = 128 tokens,
  memory ``mem_len = C`` and ``same_length=True``, so each query attends to exactly the last
  $C$ positions (the paper's "XL with memory length $C$ vs vanilla with context $C$"): one
  forward pass per $L$ new tokens. We time ``--xl-segments`` segments after the memory is full
  (its first $C / L$ segments run untimed) and report the per-token rate.

Both rates are tokens (predicted characters) per second: the speed-up is their ratio. Each
figure is the median of ``--repeats`` timed runs. Target (issue 6): at least 300x at C = 1024,
growing with C (the paper reports 1,874x at C = 3,800 on a GPU).

Memory: ``--rss-segments`` (10,000) cached segments of a tiny length (8 tokens, memory 32),
with the process RSS printed before and after, run twice: through ``cached_bpc`` (no graph),
and as a plain loop of ``model.forward(x, mems)`` with the graph ON (what a training forward
records): in both, the memory carries no graph from segment to segment, so RSS stays flat.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/txl_eval_speed.py`` (``--contexts 128 256``
for a subset). Prints a table; writes ``benchmarks/out/txl_eval_speed.png`` (matplotlib) and
``benchmarks/out/txl_eval_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from models.evaluate import cached_bpc, vanilla_bpc
from models.gpt import GPT, GPTConfig
from models.transformer_xl import TransformerXL, TransformerXLConfig

SIZE = {"d_model": 128, "n_layer": 4, "n_head": 4}  # shared; XL: d_head 32, d_inner 512; GPT: d_ff 512
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def text_ids(n):
    """``n`` ids of the test plays (character level), or random ids without the corpus package."""
    try:
        from models import data

        corpus = data.load_shakespeare()
        tok = data.CharTokenizer.from_text(corpus.train)
        ids = tok.encode(corpus.test)
        source = "test plays"
        while len(ids) < n:
            ids = np.concatenate([ids, ids])
        return ids[:n], tok.vocab_size, source
    except ImportError:
        return np.random.default_rng(0).integers(0, 76, size=n), 76, "random ids"


def xl_model(vocab, seg_len, mem_len):
    cfg = TransformerXLConfig(vocab_size=vocab, d_head=32, d_inner=512, tgt_len=seg_len, mem_len=mem_len,
                              same_length=True, dropout=0.0, **SIZE)
    return TransformerXL(cfg, rng=0).eval()


def vanilla_model(vocab, context):
    cfg = GPTConfig(vocab_size=vocab, n_ctx=context, d_ff=512, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0,
                    **SIZE)
    return GPT(cfg, rng=0).eval()


def xl_rate(ids, vocab, context, seg_len, segments, repeats):
    """Tokens/s of cached evaluation with a full memory of ``context`` positions."""
    model = xl_model(vocab, seg_len, context)
    warm = -(-context // seg_len)  # segments until the memory holds C positions
    rates = []
    for _ in range(repeats):
        # cached_bpc starts from an empty memory: time warm + segments, subtract a warm-only run.
        t0 = time.perf_counter()
        full = cached_bpc(model, ids, seg_len=seg_len, max_segments=warm + segments)
        t1 = time.perf_counter()
        cached_bpc(model, ids, seg_len=seg_len, max_segments=warm)
        t2 = time.perf_counter()
        rates.append(segments * seg_len / ((t1 - t0) - (t2 - t1)))
        assert full.n_predicted == (warm + segments) * seg_len
    return statistics.median(rates)


def vanilla_rate(ids, vocab, context, tokens, windows_per_batch, repeats):
    """Tokens/s of sliding-window evaluation, every timed prediction with a full window of C."""
    model = vanilla_model(vocab, context)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = vanilla_bpc(model, ids, context=context, windows_per_batch=windows_per_batch, max_windows=tokens,
                        include_first=False)
        rates.append(r.n_predicted / (time.perf_counter() - t0))
    return statistics.median(rates)


def rss_mib():
    """Resident set size of this process now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_check(vocab, n_segments, seg_len=8, mem_len=32):
    ids = np.random.default_rng(1).integers(0, vocab, size=n_segments * seg_len + 1)
    model = xl_model(vocab, seg_len, mem_len)
    cached_bpc(model, ids, seg_len=seg_len, max_segments=100)  # warm up the allocator
    before = rss_mib()
    t0 = time.perf_counter()
    result = cached_bpc(model, ids, seg_len=seg_len)
    no_graph = (before, rss_mib(), result.n_predicted // seg_len, time.perf_counter() - t0)

    # Graph ON: each forward records a graph, which must die with its segment (the memory is detached).
    mems = None
    for i in range(100):
        _, mems = model.forward(ids[None, i * seg_len:(i + 1) * seg_len], mems)
    before = rss_mib()
    for i in range(n_segments):
        logits, mems = model.forward(ids[None, i * seg_len:(i + 1) * seg_len], mems)
    assert logits.requires_grad  # the graph was recorded
    with_graph = (before, rss_mib(), n_segments)
    return no_graph, with_graph


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, skipping {path}")
        return
    cs = [r["C"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(cs, [r["xl_tok_s"] for r in rows], "o-", label="Transformer-XL, cached")
    a.loglog(cs, [r["vanilla_tok_s"] for r in rows], "s-", label="vanilla, sliding window")
    a.set_xlabel("attention length C")
    a.set_ylabel("predicted tokens / s")
    a.legend()
    b.semilogx(cs, [r["speedup"] for r in rows], "o-")
    b.axhline(300, ls="--", c="gray", lw=0.8, label="target 300x at C=1024")
    b.set_xlabel("attention length C")
    b.set_ylabel("speed-up (x)")
    b.legend()
    for ax in (a, b):
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.minorticks_off()  # log-axis minor labels would overlap the C labels
        ax.grid(alpha=0.3)
    fig.suptitle("Evaluation speed, same model size (d 128, 4 layers)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--contexts", type=int, nargs="+", default=[128, 256, 512, 1024])
    p.add_argument("--seg-len", type=int, default=128, help="XL segment length L (default 128)")
    p.add_argument("--xl-segments", type=int, default=16, help="timed XL segments per run (default 16)")
    p.add_argument("--vanilla-tokens", type=int, default=48, help="timed vanilla predictions per run (default 48)")
    p.add_argument("--windows-per-batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rss-segments", type=int, default=10_000)
    p.add_argument("--out", default=OUT_DIR)
    args = p.parse_args(argv)

    need = (max(args.contexts) // args.seg_len + args.xl_segments + 2) * args.seg_len + max(args.contexts) \
        + args.vanilla_tokens + 2
    ids, vocab, source = text_ids(need)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"model: d_model 128, 4 layers, 4 heads x 32, d_inner 512, float32; text: {source}; "
          f"{platform.processor() or platform.machine()}, OPENBLAS_NUM_THREADS={threads}, numpy {np.__version__}")
    print(f"XL: segment L={args.seg_len}, mem_len=C, same_length (each query sees exactly C positions); "
          f"{args.xl_segments} timed segments. Vanilla: {args.vanilla_tokens} timed full-window predictions, "
          f"{args.windows_per_batch} windows per forward. Median of {args.repeats}.\n")
    print(f"{'C':>6} {'XL tok/s':>12} {'vanilla tok/s':>14} {'speed-up':>10}")
    rows = []
    for c in args.contexts:
        xl = xl_rate(ids, vocab, c, args.seg_len, args.xl_segments, args.repeats)
        van = vanilla_rate(ids, vocab, c, args.vanilla_tokens, args.windows_per_batch, args.repeats)
        rows.append({"C": c, "xl_tok_s": xl, "vanilla_tok_s": van, "speedup": xl / van})
        print(f"{c:>6} {xl:>12,.0f} {van:>14,.1f} {xl / van:>9,.0f}x", flush=True)

    rss = None
    if args.rss_segments:
        (b0, a0, n0, secs), (b1, a1, n1) = rss_check(vocab, args.rss_segments)
        print(f"\nRSS over {n0:,} cached segments (L=8, mem_len 32), no graph: start {b0:.1f} MiB, end {a0:.1f} MiB "
              f"({a0 - b0:+.1f} MiB, {secs:.1f} s)")
        print(f"RSS over {n1:,} forward(x, mems) segments, graph ON:        start {b1:.1f} MiB, end {a1:.1f} MiB "
              f"({a1 - b1:+.1f} MiB)")
        rss = {"segments": n0, "no_graph_mib": [b0, a0], "graph_on_mib": [b1, a1]}

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "txl_eval_speed.json"), "w") as f:
        json.dump({"rows": rows, "rss": rss, "seg_len": args.seg_len, "threads": threads, "text": source}, f, indent=1)
    plot(rows, os.path.join(args.out, "txl_eval_speed.png"))
    return rows


if __name__ == "__main__":
    main()
