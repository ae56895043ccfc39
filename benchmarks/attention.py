r"""Banded (Longformer) attention vs dense masked attention: time and peak memory.

One layer's attention core, B=1, H=4, Dh=64, window w=512 (256 on each side), float32,
forward + backward (loss = sum of the output), at T = 1k, 2k, 4k, 8k, 16k:

* banded: :func:`minitensor.attention.banded_attention` — (B, H, T, w+1) scores;
* dense: the same sliding-window attention composed from ``q @ k^T`` (a full (T, T)
  score matrix per head), a (T, T) boolean band mask and ``masked_softmax``.

Time is the best of ``--repeats`` runs (the dense (T, T) mask is built once, outside it);
peak memory is measured with ``tracemalloc`` (NumPy reports its allocations to it) in a
separate run, the dense mask included. Dense is skipped where its
peak, extrapolated as $T^2$ from the smallest size, would exceed ``--dense-limit-gib``
(default 8 GiB); a MemoryError is reported as out of memory.

Targets (issue 4): banded memory linear in T — 16k peak within 1.3x of 8 x the 2k
peak — and banded at least 4x faster than dense at T=4096. A PNG of both curves is
written to ``benchmarks/out/attention.png`` when matplotlib is importable.

Run: ``python benchmarks/attention.py`` (``--sizes 1024 2048`` for a subset).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time
import tracemalloc

import numpy as np

# tracemalloc sees an allocation only when it happens: a block reused from minitensor's buffer cache
# (minitensor/kernels/buffers.py) would not count towards a run's peak. Off, every array is allocated afresh.
os.environ["MINITENSOR_BUFFER_CACHE_MB"] = "0"
import minitensor as mt  # noqa: E402
from minitensor.attention import banded_attention, masked_softmax

B, H, DH, WINDOW = 1, 4, 64, 512
GIB = 2**30


def make_inputs(t, seed=0):
    rng = np.random.default_rng(seed)
    return [mt.tensor(rng.standard_normal((B, H, t, DH)).astype(np.float32), requires_grad=True)
            for _ in range(3)]


def banded_step(q, k, v):
    for x in (q, k, v):
        x.grad = None
    banded_attention(q, k, v, window=WINDOW).sum().backward()


def band_mask(t):
    """(T, T) bool: the same sliding window, |i - j| <= w/2 (built without a (T, T) int temporary)."""
    i = np.arange(t, dtype=np.int32)
    return (i[None, :] >= i[:, None] - WINDOW // 2) & (i[None, :] <= i[:, None] + WINDOW // 2)


def dense_step(q, k, v, mask=None):
    for x in (q, k, v):
        x.grad = None
    if mask is None:  # the memory run builds it inside the traced region: dense needs it
        mask = band_mask(q.shape[2])
    scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(DH))  # (B, H, T, T)
    (masked_softmax(scores, mask) @ v).sum().backward()


def best_time(step, t, repeats):
    q, k, v = make_inputs(t)
    # the dense mask is an input like HF's attention mask: built once, outside the timing
    extra = (band_mask(t),) if step is dense_step else ()
    step(q, k, v, *extra)  # warm up (allocator, BLAS threads)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(q, k, v, *extra)
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_bytes(step, t):
    q, k, v = make_inputs(t)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        step(q, k, v)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dense-limit-gib", type=float, default=8.0)
    ap.add_argument("--png", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out",
                                                  "attention.png"))
    args = ap.parse_args()
    print(f"B={B} H={H} Dh={DH} window={WINDOW} float32, forward+backward; numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    rows = {}
    dense_per_t2 = None  # dense peak bytes / T^2, from the smallest size
    for t in sorted(args.sizes):
        r = {"banded_s": best_time(banded_step, t, args.repeats), "banded_b": peak_bytes(banded_step, t)}
        est = None if dense_per_t2 is None else dense_per_t2 * t * t
        if est is not None and est > args.dense_limit_gib * GIB:
            r["dense"] = f"skipped (est. {est / GIB:.1f} GiB > {args.dense_limit_gib:g} GiB)"
        else:
            try:
                r["dense_b"] = peak_bytes(dense_step, t)
                r["dense_s"] = best_time(dense_step, t, args.repeats)
                dense_per_t2 = dense_per_t2 or r["dense_b"] / (t * t)
            except MemoryError:
                r["dense"] = "out of memory"
        rows[t] = r
        dense = (f"{r['dense_s']:9.3f} s {r['dense_b'] / 2**20:9.1f} MiB  {r['dense_s'] / r['banded_s']:6.1f}x"
                 if "dense_s" in r else r["dense"])
        print(f"T={t:6d}  banded {r['banded_s']:8.3f} s {r['banded_b'] / 2**20:8.1f} MiB   dense {dense}",
              flush=True)

    print()
    if 2048 in rows and 16384 in rows:
        ratio = rows[16384]["banded_b"] / (8 * rows[2048]["banded_b"])
        print(f"banded memory: peak(16k) / (8 x peak(2k)) = {ratio:.3f}  (target <= 1.3)")
    if 4096 in rows and "dense_s" in rows[4096]:
        print(f"time at T=4096: dense / banded = {rows[4096]['dense_s'] / rows[4096]['banded_s']:.2f}x  "
              "(target >= 4)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not importable: no PNG written")
        return
    ts = sorted(rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("banded", "banded_attention"), ("dense", "dense masked")):
        xs = [t for t in ts if f"{key}_s" in rows[t]]
        ax1.plot(xs, [rows[t][f"{key}_s"] for t in xs], "o-", label=label)
        ax2.plot(xs, [rows[t][f"{key}_b"] / 2**20 for t in xs], "o-", label=label)
    for ax, title in ((ax1, "forward+backward time (s)"), (ax2, "peak memory (MiB, tracemalloc)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_title(title)
        ax.legend()
    fig.suptitle(f"attention core, B={B} H={H} Dh={DH} w={WINDOW}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.png), exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
