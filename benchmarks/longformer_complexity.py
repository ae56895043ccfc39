r"""The source's Figure 2 on this machine, and the peer comparison with Hugging Face (issue 7).

**1. One attention layer, time and peak memory vs T.** B=1, d=256, 4 heads ($D_h$ = 64),
window $w$ = 512 ($w/2$ each side), one global token (position 0), float32, forward + backward
with loss $= \sum_{ij} o_{ij} R_{ij}$ for a fixed random $R$. The inputs q, k, v and
$Q_g, K_g, V_g$ are (B, H, T, Dh) leaf tensors requiring grad: attention only, no projections.

* ``full``: dense (T, T) scores composed from minitensor ops — local rows through
  :func:`scaled_dot_product_attention` with the (T, T) allowed-key mask (band $|i - j| \le w/2$,
  plus the global key), the global row over every key with its own $Q_g, K_g, V_g$, the two joined
  with :func:`concat`. The mask is built inside the timed step (it is part of what full attention
  costs). Skipped where its (B, H, T, T) float32 scores would exceed ``--max-dense-gib`` (its peak is
  several times that: scores, probabilities and their gradients).
* ``reference``: :func:`banded_attention_reference`, the loop over rows. Its work is linear in T
  but its autograd graph (a node per row) makes it grow faster in practice; a length is skipped
  when one run would take more than ``--reference-limit-s`` (60 s), with an estimate scaled
  linearly from the largest length measured (a lower bound), and always above
  ``--reference-max-len`` (4096: its graph takes about 1 GiB per 1k tokens, 4.5 GiB at 4k).
* ``banded``: :func:`banded_attention`, vectorised (also at T = 32k).
* ``banded-cupy``: the same on a CUDA GPU when :func:`minitensor.backend.gpu_available` (time after
  a device synchronise; the memory column is then host RSS, which says little: the GPU's own peak is
  reported from CuPy's memory pool instead).

**2. The peer: Hugging Face's ``LongformerSelfAttention``** (extra ``bench``: torch + transformers)
at T = 16,384, d = 256, 4 heads, ``attention_window=512``, global token 0, forward + backward on the
CPU in float32, against our real layer :class:`models.longformer.LongformerSelfAttention`. Both sides
time "projections + attention": x (1, T, 256) requiring grad, the six Linear projections, banded
attention with the global part, heads merged. HF is called as its ``LongformerEncoder`` calls it:
``attention_mask`` 0 (local) / +10000 (global) / -10000 (masked), ``is_index_masked``,
``is_index_global_attn``, ``is_global_attn``. Before timing, HF's weights are copied into ours and the
outputs (and the gradients of x) compared at T = 2048: the max abs difference is printed.

**Memory.** Every (method, T) runs in a fresh process (this script with ``--one``): once its inputs
are built, the RSS high-water mark is reset (``/proc/self/clear_refs`` <- 5), VmRSS read, the
warm-up and timed runs done, and VmHWM read: peak = VmHWM - VmRSS(before), in MiB, the same for
NumPy and PyTorch. Without /proc, ``resource.getrusage``'s ru_maxrss (never reset: the process
peak, inputs included) minus the RSS before is used, and the table says so.

**Time** is the median of ``--repeats`` (3) runs after one warm-up; a method whose warm-up alone
takes more than 10 s (the loop reference) reports that single run instead.

**Threads.** ``--threads`` (default 1) is set for every child process before NumPy or PyTorch is
imported: OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS, MINITENSOR_NUM_THREADS, and ``torch.set_num_threads``
(interop 1), so both libraries use the same number of cores; the counts in effect are printed and
saved. One thread is the default because the figure must not depend on how busy a shared machine's
other cores are; ``--threads 2`` measures both sides on two.

Run: ``python benchmarks/longformer_complexity.py`` (``--quick`` for a smoke run with small lengths,
``--skip-hf`` without PyTorch). Prints the table; writes ``benchmarks/out/longformer_complexity.json``
and, with matplotlib, ``benchmarks/out/longformer_complexity.png`` (time and memory vs T, log-log).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time

B, D, H, WINDOW, GLOBAL = 1, 256, 4, 512, 0  # one global token, at position GLOBAL
DH = D // H
METHODS = ("full", "reference", "banded", "banded-cupy")
PEER = ("ours", "hf")
LENGTHS = [1024, 2048, 4096, 8192, 16384, 32768]
QUICK_LENGTHS = [64, 128]
QUICK_WINDOW = 16
HF_T, CHECK_T = 16384, 2048
LONG_S = 10.0  # a warm-up longer than this is reported as the single timing
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 2**20


# ------------------------------------------------------------------ memory probes (one process each)

def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def reset_peak():
    """Reset the RSS high-water mark and return the RSS now (MiB), or fall back to getrusage."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
        return _status_kib("VmRSS") / 1024, "VmHWM"
    except OSError:
        # no reset possible: the process peak so far (inputs included) is the floor we subtract from
        return _rss_now_mib(), "getrusage"


def _rss_now_mib():
    try:
        return _status_kib("VmRSS") / 1024
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_mib(how):
    if how == "VmHWM":
        return _status_kib("VmHWM") / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ------------------------------------------------------------------ the steps

def _attention_inputs(t, device, seed=0):
    import numpy as np

    import minitensor as mt

    rng = np.random.default_rng(seed)
    leaves = [mt.tensor(rng.standard_normal((B, H, t, DH)).astype(np.float32), requires_grad=True, device=device)
              for _ in range(6)]  # q, k, v, Q_g, K_g, V_g
    r = mt.tensor(rng.standard_normal((B, H, t, DH)).astype(np.float32), device=device)
    glob = np.zeros((B, t), bool)
    glob[:, GLOBAL] = True
    return leaves, r, glob


def full_attention(q, k, v, qg, kg, vg, window):
    """Dense (T, T) composition with the allowed-key mask of :func:`banded_attention` (global key 0)."""
    import numpy as np

    import minitensor as mt
    from minitensor.attention import scaled_dot_product_attention

    t = q.shape[2]
    i = np.arange(t, dtype=np.int32)
    allowed = np.abs(i[None, :] - i[:, None]) <= window // 2  # (T, T) the band |i - j| <= w/2
    allowed[:, GLOBAL] = True  # every local row sees the global key (once: it is in no band slot then)
    local = scaled_dot_product_attention(q, k, v, mask=allowed)  # (B, H, T, Dh) rows with Q_s K_s V_s
    row = scaled_dot_product_attention(qg[:, :, GLOBAL:GLOBAL + 1], kg, vg)  # (B, H, 1, Dh): all keys
    return mt.concat([row, local[:, :, GLOBAL + 1:]], axis=2)  # (B, H, T, Dh), GLOBAL = 0


def attention_step(method, t, window, device):
    """(run, inputs) for one figure-2 measurement."""
    from minitensor.attention import banded_attention, banded_attention_reference

    leaves, r, glob = _attention_inputs(t, device)
    q, k, v, qg, kg, vg = leaves

    def run():
        for x in leaves:
            x.grad = None
        if method == "full":
            o = full_attention(q, k, v, qg, kg, vg, window)
        else:
            fn = banded_attention_reference if method == "reference" else banded_attention
            o = fn(q, k, v, window=window, global_mask=glob, q_global=qg, k_global=kg, v_global=vg)
        (o * r).sum().backward()
        if device == "cuda":
            import cupy

            cupy.cuda.Device().synchronize()

    return run


def ours_layer(t, window, seed=0):
    import numpy as np

    import minitensor as mt
    from models.longformer import LongformerConfig, LongformerSelfAttention

    no_dropout = {f.name: 0.0 for f in dataclasses.fields(LongformerConfig) if f.name.endswith("dropout")}
    cfg = LongformerConfig(vocab_size=8, d_model=D, n_layer=1, n_head=H, max_len=max(t, 8), attention_window=window,
                           **no_dropout)
    layer = LongformerSelfAttention(cfg, 0, rng=np.random.default_rng(seed), dtype=np.float32,
                                    dropout_rng=np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    x = mt.tensor(rng.standard_normal((B, t, D)).astype(np.float32), requires_grad=True)
    r = rng.standard_normal((B, t, D)).astype(np.float32)
    glob = np.zeros((B, t), bool)
    glob[:, GLOBAL] = True
    return layer, x, r, glob


def hf_layer(window, seed=0):
    import torch
    from transformers import LongformerConfig
    from transformers.models.longformer.modeling_longformer import (
        LongformerSelfAttention,
    )

    torch.manual_seed(seed)
    cfg = LongformerConfig(hidden_size=D, num_attention_heads=H, attention_window=[window],
                           attention_probs_dropout_prob=0.0)
    return LongformerSelfAttention(cfg, layer_id=0).train()


def hf_call(layer, x):
    """One HF layer call with the masks its LongformerEncoder derives (0 local, +10000 global)."""
    import torch

    mask = torch.zeros(x.shape[:2], dtype=x.dtype)  # (B, T): 0 = local attention
    mask[:, GLOBAL] = 10000.0  # > 0: global attention (LongformerModel's extended mask)
    return layer(x, attention_mask=mask, is_index_masked=mask < 0, is_index_global_attn=mask > 0,
                 is_global_attn=True)[0]  # (B, T, D)


def peer_step(method, t, window):
    if method == "ours":
        layer, x, r, glob = ours_layer(t, window)
        r = __import__("minitensor").tensor(r)
        params = [p for _, p in layer.named_parameters()]

        def run():
            for p in [x, *params]:
                p.grad = None
            (layer(x, global_mask=glob) * r).sum().backward()
        return run
    import torch

    layer = hf_layer(window)
    _, x0, r0, _ = ours_layer(t, window)  # same x and R as ours
    x = torch.tensor(x0.data, requires_grad=True)
    r = torch.from_numpy(r0)

    def run():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        (hf_call(layer, x) * r).sum().backward()
    return run


def copy_hf_weights(hf, ours):
    for name in ("query", "key", "value", "query_global", "key_global", "value_global"):
        src, dst = getattr(hf, name), getattr(ours, name)
        dst.weight.data[...] = src.weight.detach().numpy()  # both (out, in)
        dst.bias.data[...] = src.bias.detach().numpy()


def agreement(t, window):
    """Max abs differences (output, dL/dx) of HF's layer and ours with HF's weights."""
    import numpy as np
    import torch

    hf = hf_layer(window)
    layer, x, r, glob = ours_layer(t, window)
    copy_hf_weights(hf, layer)
    xt = torch.tensor(x.data, requires_grad=True)
    o_hf = hf_call(hf, xt)
    (o_hf * torch.from_numpy(r)).sum().backward()
    o = layer(x, global_mask=glob)
    (o * __import__("minitensor").tensor(r)).sum().backward()
    return {"T": t, "out_max_abs_diff": float(np.abs(o.data - o_hf.detach().numpy()).max()),
            "out_max_abs": float(np.abs(o.data).max()),
            "grad_x_max_abs_diff": float(np.abs(x.grad - xt.grad.numpy()).max()),
            "grad_x_max_abs": float(np.abs(x.grad).max())}


def thread_info():
    info = {k: os.environ.get(k, "unset")
            for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MINITENSOR_NUM_THREADS")}
    import numpy as np

    from minitensor.kernels.threads import _openblas_threads

    ob = _openblas_threads()
    info["numpy_openblas_threads"] = ob[0]() if ob else "not OpenBLAS"
    info["numpy"] = np.__version__
    if "torch" in sys.modules:
        import torch

        info["torch_threads"], info["torch_interop_threads"] = torch.get_num_threads(), torch.get_num_interop_threads()
        info["torch"] = torch.__version__
    return info


def one(method, t, window, repeats, threads):
    """Measure one (method, T) in this process; prints one JSON line."""
    if method in PEER:
        if method == "hf":
            import torch

            torch.set_num_threads(threads)
            torch.set_num_interop_threads(1)
        run = peer_step(method, t, window)
        device = "cpu"
    else:
        device = "cuda" if method == "banded-cupy" else "cpu"
        run = attention_step(method, t, window, device)
    before, how = reset_peak()
    t0 = time.perf_counter()
    run()  # warm-up
    first = time.perf_counter() - t0
    times = [first]
    if first <= LONG_S:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    res = {"method": method, "T": t, "seconds": statistics.median(times), "runs": len(times),
           "peak_mib": peak_mib(how) - before, "rss_before_mib": before, "memory_probe": how,
           "threads": thread_info()}
    if device == "cuda":
        import cupy

        res["gpu_pool_mib"] = cupy.get_default_memory_pool().total_bytes() / MIB
    print("RESULT " + json.dumps(res), flush=True)


# ------------------------------------------------------------------ the driver

def child_env(threads):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MINITENSOR_NUM_THREADS"):
        env[k] = str(threads)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def measure(method, t, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--one", method, str(t), "--window", str(args.window),
           "--repeats", str(args.repeats), "--threads", str(args.threads)]
    p = subprocess.run(cmd, env=child_env(args.threads), capture_output=True, text=True,
                       check=False)  # a failed child is a row saying why, not a crash
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    err = (p.stderr.strip().splitlines() or ["no output"])[-1]
    if "MemoryError" in p.stderr or p.returncode in (-9, 137):
        err = "out of memory"
    return {"method": method, "T": t, "skipped": f"failed: {err}"}


def dense_gib(t):
    return B * H * t * t * 4 / 2**30  # (B, H, T, T) float32 scores


def fmt_row(r):
    if "skipped" in r:
        return f"{r['T']:>7} {r['method']:<12} {r['skipped']}"
    extra = f"  (GPU pool {r['gpu_pool_mib']:.0f} MiB)" if "gpu_pool_mib" in r else ""
    runs = "" if r["runs"] > 1 else "  (1 run)"
    return f"{r['T']:>7} {r['method']:<12} {r['seconds']:>10.3f} {r['peak_mib']:>10.1f}{runs}{extra}"


def figure_rows(args, gpu):
    rows = []
    print(f"{'T':>7} {'method':<12} {'seconds':>10} {'peak MiB':>10}")
    ref_last = None  # (T, seconds) of the largest reference run
    for t in args.lengths:
        for method in METHODS:
            if method == "banded-cupy" and not gpu:
                continue
            if t > 16384 and method in ("full", "reference"):  # 32k: banded only (the source's Figure 2)
                continue
            r = None
            if method == "full" and dense_gib(t) > args.max_dense_gib:
                r = {"method": method, "T": t, "skipped": f"skipped: (B,H,T,T) scores {dense_gib(t):.1f} GiB "
                                                           f"> --max-dense-gib {args.max_dense_gib:g}"}
            if method == "reference" and t > args.reference_max_len:
                r = {"method": method, "T": t, "skipped": f"skipped: T > --reference-max-len {args.reference_max_len} "
                                                           "(its per-row graph needs ~1 GiB per 1k tokens)"}
            elif method == "reference" and ref_last is not None:
                est = ref_last[1] * t / ref_last[0]  # the loop is linear in T
                if est > args.reference_limit_s:
                    r = {"method": method, "T": t, "skipped": f"skipped (est. {est:.0f} s)", "est_seconds": est}
            if r is None:
                r = measure(method, t, args)
                if method == "reference" and "seconds" in r:
                    ref_last = (t, r["seconds"])
            rows.append(r)
            print(fmt_row(r), flush=True)
    return rows


def _verdict(ratio):
    return "meets" if ratio <= 1.0 else "MISSES"


def peer_rows(args):
    from_t = CHECK_T if not args.quick else QUICK_LENGTHS[-1]
    import torch  # fails early (ImportError) when the bench extra is missing

    torch.set_num_threads(args.threads)
    check = agreement(from_t, args.window)
    print(f"\nHF agreement at T={check['T']} (HF's weights copied into ours): output max |diff| "
          f"{check['out_max_abs_diff']:.2e} (max |out| {check['out_max_abs']:.2f}), dL/dx max |diff| "
          f"{check['grad_x_max_abs_diff']:.2e} (max |dL/dx| {check['grad_x_max_abs']:.2f})")
    t = args.hf_length
    print(f"\nprojections + attention, T={t}, d={D}, {H} heads, window {args.window}, global token {GLOBAL}, "
          f"forward + backward, CPU float32")
    print(f"{'T':>7} {'method':<12} {'seconds':>10} {'peak MiB':>10}")
    rows = []
    for m in PEER:
        r = measure(m, t, args)
        rows.append(r)
        print(fmt_row(r), flush=True)
    ours, hf = rows
    ratios = None
    if "seconds" in ours and "seconds" in hf:
        ratios = {"time_ours_over_hf": ours["seconds"] / hf["seconds"],
                  "peak_ours_over_hf": ours["peak_mib"] / hf["peak_mib"]}
        tr, mr = ratios["time_ours_over_hf"], ratios["peak_ours_over_hf"]
        print(f"ours / HF: time {tr:.2f}x ({_verdict(tr)} target <= 1), "
              f"peak memory {mr:.2f}x ({_verdict(mr)} target <= 1)")
        print(f"threads: ours {ours['threads']}\n         HF   {hf['threads']}")
    return {"agreement": check, "rows": rows, "ratios": ratios}


def plot(rows, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"note: matplotlib is not installed, skipping {path}")
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    ts = sorted({r["T"] for r in rows})
    for m, style in zip(METHODS, ("s-", "^-", "o-", "d-")):
        got = [r for r in rows if r["method"] == m and "seconds" in r]
        if not got:
            continue
        a.loglog([r["T"] for r in got], [r["seconds"] for r in got], style, label=m)
        b.loglog([r["T"] for r in got], [max(r["peak_mib"], 1e-1) for r in got], style, label=m)
    a.set_ylabel("seconds, forward + backward")
    b.set_ylabel("peak RSS above inputs (MiB)")
    for ax in (a, b):
        ax.set_xlabel("sequence length T")
        ax.set_xticks(ts, [f"{t // 1024}k" if t >= 1024 else str(t) for t in ts])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"One attention layer: d {D}, {H} heads, window {rows[0].get('window', WINDOW)}, 1 global token, "
                 "float32, CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="*", default=None,
                   help=f"T values (default {LENGTHS}); '--lengths' alone: only the HF comparison")
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up; the median is reported")
    p.add_argument("--max-dense-gib", type=float, default=1.0,
                   help="skip full attention where its (B,H,T,T) float32 scores exceed this (default 1 GiB; "
                        "its peak is ~4-5x that)")
    p.add_argument("--reference-max-len", type=int, default=4096,
                   help="never run the loop reference above this T (its memory grows ~1 GiB per 1k tokens; default 4096)")
    p.add_argument("--reference-limit-s", type=float, default=60.0,
                   help="skip the loop reference where one run is estimated above this (default 60 s)")
    p.add_argument("--skip-hf", action="store_true", help="no Hugging Face comparison (no torch needed)")
    p.add_argument("--hf-length", type=int, default=HF_T, help=f"T of the HF comparison (default {HF_T})")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: T {QUICK_LENGTHS}, window {QUICK_WINDOW}, 1 repeat, HF at T=256")
    p.add_argument("--window", type=int, default=WINDOW, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch threads of every measurement (default 1)")
    p.add_argument("--one", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)  # a child measurement
    p.add_argument("--out", default=OUT_DIR)
    args = p.parse_args(argv)

    if args.one:
        one(args.one[0], int(args.one[1]), args.window, args.repeats, args.threads)
        return None
    if args.quick:
        args.lengths = QUICK_LENGTHS if args.lengths is None else args.lengths
        args.window, args.repeats, args.hf_length = QUICK_WINDOW, 1, 256
    args.lengths = LENGTHS if args.lengths is None else args.lengths

    from minitensor.backend import gpu_available

    gpu = gpu_available()
    probe = "VmHWM reset via /proc/self/clear_refs" if os.path.exists("/proc/self/clear_refs") else \
        "getrusage ru_maxrss (no /proc: peak of the whole process, not reset)"
    print(f"one attention layer: B={B}, d={D}, {H} heads x {DH}, window {args.window}, global token {GLOBAL}, float32, "
          f"forward + backward; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"--threads {args.threads} (OPENBLAS/OMP/MKL_NUM_THREADS and torch threads in every child), "
          f"GPU: {'yes' if gpu else 'none (banded-cupy skipped)'}")
    print(f"each (method, T) in a fresh process; peak = {probe}, minus RSS once inputs are built; "
          f"median of {args.repeats} after a warm-up\n")
    rows = figure_rows(args, gpu)
    for r in rows:
        r["window"] = args.window
    peer = None
    if not args.skip_hf:
        try:
            peer = peer_rows(args)
        except ImportError as e:
            print(f"\nHF comparison skipped: {e} (pip install -e '.[bench]')")
    os.makedirs(args.out, exist_ok=True)
    result = {"rows": rows, "peer": peer, "window": args.window, "B": B, "d": D, "heads": H, "global_tokens": [GLOBAL],
              "threads": args.threads, "repeats": args.repeats, "memory_probe": probe,
              "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "python": platform.python_version()}, "gpu": gpu}
    with open(os.path.join(args.out, "longformer_complexity.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {os.path.join(args.out, 'longformer_complexity.json')}")
    if rows:
        plot(rows, os.path.join(args.out, "longformer_complexity.png"))
    return result


if __name__ == "__main__":
    main()
