r"""How much does the framework cost on top of the NumPy it runs?

1. A 4-layer MLP (width 1024, batch 256, ReLU, mean-squared error), one
   forward + backward step, with minitensor vs the same computation written by
   hand in plain NumPy (same float32 arrays, same operations, hand-derived
   gradients). Target: ratio <= 1.15.
2. Per-op overhead on tiny tensors: the time of one op (forward, recorded for
   backward) on a 1-element tensor, minus the raw NumPy call it wraps, in µs.

Run: ``python benchmarks/overhead.py`` (``--repeats N`` for more samples).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import minitensor as mt
import minitensor.functional as F

WIDTH, BATCH, LAYERS = 1024, 256, 4


def best_of(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def make_weights(rng):
    ws = [(rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32) for _ in range(LAYERS)]
    bs = [np.zeros(WIDTH, np.float32) for _ in range(LAYERS)]
    return ws, bs


def numpy_step(x, y, ws, bs):
    """Forward + backward by hand, the way one would write it without a framework."""
    acts, pre = [x], []
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        z = h @ w.T + b
        pre.append(z)
        h = np.maximum(z, 0) if i < LAYERS - 1 else z
        acts.append(h)
    diff = h - y
    loss = float((diff * diff).mean())
    g = diff * (2.0 / diff.size)
    grads = []
    for i in reversed(range(LAYERS)):
        if i < LAYERS - 1:
            g = g * (pre[i] > 0)
        grads.append((g.T @ acts[i], g.sum(axis=0)))
        if i > 0:
            g = g @ ws[i]
    return loss, grads


def minitensor_step(x, y, ws, bs, fused=True):
    for p in ws + bs:
        p.grad = None
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        # F.linear is what mt.nn.Linear calls; the composed form pays a strided copy of
        # each weight's gradient (it comes back as a transposed view)
        h = F.linear(h, w, b) if fused else h @ w.T + b
        if i < LAYERS - 1:
            h = F.relu(h)
    diff = h - y
    loss = (diff * diff).mean()
    loss.backward()
    return loss


def mlp_ratio(repeats):
    rng = np.random.default_rng(0)
    ws, bs = make_weights(rng)
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    y = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    tws = [mt.nn.Parameter(w) for w in ws]
    tbs = [mt.nn.Parameter(b) for b in bs]
    tx, ty = mt.tensor(x), mt.tensor(y)

    # Same numbers first: a benchmark of a different computation would mean nothing.
    loss_np, grads_np = numpy_step(x, y, ws, bs)
    loss_mt = minitensor_step(tx, ty, tws, tbs)
    np.testing.assert_allclose(loss_mt.item(), loss_np, rtol=1e-5)
    np.testing.assert_allclose(tws[0].grad, grads_np[-1][0], rtol=1e-3, atol=1e-6)

    np_best, np_med = best_of(lambda: numpy_step(x, y, ws, bs), repeats)
    mt_best, mt_med = best_of(lambda: minitensor_step(tx, ty, tws, tbs), repeats)
    composed_best, _ = best_of(lambda: minitensor_step(tx, ty, tws, tbs, fused=False), repeats)
    return np_best, np_med, mt_best, mt_med, composed_best


def per_op_overhead(n=20000):
    a_np = np.ones(1, np.float32)
    a = mt.tensor(a_np, requires_grad=True)
    b = mt.tensor(a_np, requires_grad=True)
    cases = {
        "add (a + b)": (lambda: a + b, lambda: a_np + a_np),
        "mul (a * b)": (lambda: a * b, lambda: a_np * a_np),
        "exp": (lambda: a.exp(), lambda: np.exp(a_np)),
        "sum": (lambda: a.sum(), lambda: a_np.sum()),
    }
    rows = []
    for name, (op, raw) in cases.items():
        t_op, _ = best_of(lambda: [op() for _ in range(n)], 5, warmup=1)
        t_raw, _ = best_of(lambda: [raw() for _ in range(n)], 5, warmup=1)
        rows.append((name, 1e6 * t_op / n, 1e6 * t_raw / n))

    def fwd_bwd():
        (a * b + a).sum().backward()

    t_fb, _ = best_of(lambda: [fwd_bwd() for _ in range(n // 10)], 5, warmup=1)
    return rows, 1e6 * t_fb / (n // 10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, python {platform.python_version()}")
    print(f"\n4-layer MLP, width {WIDTH}, batch {BATCH}, float32, forward+backward (best / median of {args.repeats}):")
    np_best, np_med, mt_best, mt_med, composed_best = mlp_ratio(args.repeats)
    print(f"  plain NumPy : {1e3 * np_best:8.2f} ms / {1e3 * np_med:8.2f} ms")
    print(f"  minitensor  : {1e3 * mt_best:8.2f} ms / {1e3 * mt_med:8.2f} ms   (nn.Linear / F.linear)")
    print(f"  ratio       : {mt_best / np_best:8.3f} (best) / {mt_med / np_med:.3f} (median)   target <= 1.15")
    print(f"  for contrast, layers written as x @ W.T + b: {1e3 * composed_best:.2f} ms, "
          f"ratio {composed_best / np_best:.3f} (best)")
    rows, fb = per_op_overhead()
    print("\nper-op cost on a 1-element float32 tensor that requires grad (µs per call):")
    print(f"  {'op':<14}{'minitensor':>12}{'raw NumPy':>12}{'overhead':>12}")
    for name, t_op, t_raw in rows:
        print(f"  {name:<14}{t_op:12.2f}{t_raw:12.2f}{t_op - t_raw:12.2f}")
    print(f"  (a*b + a).sum().backward(): {fb:.1f} µs for 3 ops forward and backward")


if __name__ == "__main__":
    main()
