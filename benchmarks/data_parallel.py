r"""Data parallelism on this machine, and what it predicts for a cluster.

A GPT training step at the README main command's shape (``models/gpt/recipe.py``'s DEFAULTS: the tiny
preset, a global batch of 16 windows of 128 characters, no dropout) timed three ways, each in fresh
processes:

- ``1 process, 1 thread``;
- ``1 process, 2 threads`` (minitensor's kernels and BLAS on both cores: what ``python -m models train``
  does by default);
- ``2 ranks x 1 thread`` (``mpiexec -n 2``: each rank 8 windows, then the gradients' allreduce).

Each rank reports the seconds of its step's parts: the forward and backward pass on its slice, the
allreduce of the gradients (:meth:`minitensor.distributed.MPIWorld.average_gradients`, with its wait for
the slower rank), and the optimizer step. Rank 0's medians are printed, with tokens per second of the
whole batch, and the bytes each rank sends in a ring allreduce, $2 (N-1)/N$ times the gradient's bytes.

**Cost model** (α–β): an allreduce of $n$ bytes over $N$ ranks in a ring takes $2(N-1)$ messages, each
of $n/N$ bytes, so $t_{ar} = 2(N-1)\,\alpha + 2\frac{N-1}{N}\,\frac{n}{\beta}$ ($\alpha$ the latency of a
message, $\beta$ the bandwidth). With the compute of a step on one core measured here, $t_c(B)$, and
compute linear in the batch, a step on $N$ ranks of one core each takes
$t(N) = t_c(B)/N + t_{ar}(N)$. $\alpha$ and $\beta$ are fitted to allreduces of 4 KiB to 16 MiB
between the two ranks here (shared memory); ``--alpha``/``--beta`` give a cluster's instead (defaults:
5 µs and 10 GB/s, a fast Ethernet or InfiniBand link) for the prediction table.

Run: ``python benchmarks/data_parallel.py [--steps 20] [--alpha 5e-6] [--beta 1e10]`` (needs the
``distributed`` extra). Writes ``benchmarks/out/data_parallel.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "benchmarks", "out")


def worker(steps: int) -> None:
    """One process's (or rank's) step times, split into parts; rank 0 prints them as JSON."""
    sys.path.insert(0, ROOT)
    import numpy as np

    import minitensor as mt
    from minitensor import distributed
    from models.gpt import GPT, GPTConfig
    from models.gpt.recipe import DEFAULTS

    world = distributed.world()
    b, t = DEFAULTS["batch_size"], DEFAULTS["seq_len"]
    cfg = GPTConfig(vocab_size=76, n_ctx=t, d_model=128, n_layer=4, n_head=4,
                    embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    model = GPT(cfg, rng=0, dtype=np.float32)
    model.train()
    params = model.parameters()
    opt = mt.optim.AdamW(params, lr=1e-4)
    rng = np.random.default_rng(0)
    rows = distributed.shard_slice(b, world.rank, world.size)
    parts = {"compute": [], "allreduce": [], "optimizer": [], "step": []}
    for i in range(steps + 2):  # 2 warm-up steps
        ids = rng.integers(0, 76, size=(b, t + 1))[rows]
        t0 = time.perf_counter()
        opt.zero_grad()
        model.lm_loss(ids[:, :-1], ids[:, 1:]).backward()
        t1 = time.perf_counter()
        world.average_gradients(params)
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= 2:
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                parts[k].append(v)
    med = {k: float(np.median(v)) for k, v in parts.items()}
    grad_bytes = sum(p.data.nbytes for p in params)
    out = {"ranks": world.size, "batch": b, "seq_len": t, "grad_bytes": grad_bytes, **med,
           "tokens_per_s": b * t / med["step"]}
    if world.size > 1:
        out["alpha_beta"] = fit_alpha_beta(world)
    if world.is_root:
        print(json.dumps(out))


def fit_alpha_beta(world) -> dict:
    """Least-squares α (s) and β (bytes/s) of t = 2(N-1) α + 2 (N-1)/N n / β over allreduces of n bytes."""
    import numpy as np

    sizes, times = [], []
    for n in (1 << 12, 1 << 16, 1 << 20, 1 << 22, 1 << 24):
        buf = np.ones(n // 4, np.float32)
        reps = []
        for _ in range(12):
            world.comm.Barrier()
            t0 = time.perf_counter()
            world.comm.Allreduce(world.MPI.IN_PLACE, buf, op=world.MPI.SUM)
            reps.append(time.perf_counter() - t0)
        sizes.append(n)
        times.append(float(np.median(reps[2:])))
    k = world.size
    a = np.stack([np.full(len(sizes), 2.0 * (k - 1)), 2.0 * (k - 1) / k * np.array(sizes, float)], axis=1)
    alpha, inv_beta = np.linalg.lstsq(a, np.array(times), rcond=None)[0]
    return {"alpha_s": float(alpha), "beta_bytes_per_s": float(1.0 / inv_beta) if inv_beta > 0 else float("inf"),
            "sizes": sizes, "seconds": times}


def launch(threads: int, ranks: int, steps: int) -> dict:
    env = {**os.environ, "MINITENSOR_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--steps", str(steps)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        if mpiexec is None:
            raise SystemExit("data_parallel.py: no mpiexec; pip install -e '.[distributed]'")
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"data_parallel.py: {' '.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ring_seconds(n_bytes: float, ranks: int, alpha: float, beta: float) -> float:
    """The α–β time of a ring allreduce of ``n_bytes`` over ``ranks``."""
    return 0.0 if ranks == 1 else 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * n_bytes / beta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration (after 2 warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the three configurations")
    p.add_argument("--alpha", type=float, default=5e-6, help="a cluster's message latency, seconds")
    p.add_argument("--beta", type=float, default=1e10, help="a cluster's bandwidth, bytes per second")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.steps)
        return
    configs = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 2, 1), ("2 ranks x 1 thread", 1, 2)]
    runs = {name: [] for name, _, _ in configs}
    for _ in range(args.rounds):
        for name, threads, ranks in configs:
            runs[name].append(launch(threads, ranks, args.steps))
    best = {name: min(rs, key=lambda r: r["step"]) for name, rs in runs.items()}  # the quieter round
    base = best["1 process, 1 thread"]
    print(f"GPT step at the main command's shape (batch {base['batch']} x {base['seq_len']}, no dropout), "
          f"gradient {base['grad_bytes'] / 2**20:.2f} MiB; medians of {args.steps} steps, best of {args.rounds} rounds\n")
    print("| configuration | step | forward + backward | allreduce | optimizer | tokens/s | sent per rank |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in best.items():
        sent = 2 * (r["ranks"] - 1) / r["ranks"] * r["grad_bytes"]
        print(f"| {name} | {r['step'] * 1e3:.1f} ms | {r['compute'] * 1e3:.1f} ms | {r['allreduce'] * 1e3:.2f} ms | "
              f"{r['optimizer'] * 1e3:.1f} ms | {r['tokens_per_s']:,.0f} | {sent / 2**20:.2f} MiB |")
    ab = best["2 ranks x 1 thread"]["alpha_beta"]
    print(f"\nfitted on this machine (2 ranks, shared memory): alpha {ab['alpha_s'] * 1e6:.1f} us, "
          f"beta {ab['beta_bytes_per_s'] / 1e9:.2f} GB/s")
    t_c, t_opt, n = base["compute"], base["optimizer"], base["grad_bytes"]
    print(f"\npredicted step on N ranks of one core each: t_c(B)/N + optimizer + ring allreduce; t_c(B) = "
          f"{t_c * 1e3:.1f} ms measured on one core (the global batch stays {base['batch']})\n")
    print("| N | this machine's alpha, beta | a cluster's (alpha %g us, beta %g GB/s) | allreduce share |" %
          (args.alpha * 1e6, args.beta / 1e9))
    print("|---:|---:|---:|---:|")
    prediction = []
    for ranks in (1, 2, 4, 8, 16):
        here = t_c / ranks + t_opt + ring_seconds(n, ranks, ab["alpha_s"], ab["beta_bytes_per_s"])
        ar = ring_seconds(n, ranks, args.alpha, args.beta)
        there = t_c / ranks + t_opt + ar
        prediction.append({"ranks": ranks, "here_s": here, "cluster_s": there})
        print(f"| {ranks} | {here * 1e3:.1f} ms | {there * 1e3:.1f} ms | {ar / there:.0%} |")
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "data_parallel.json"), "w", encoding="utf-8") as f:
        json.dump({"runs": runs, "best": best, "prediction": prediction, "cluster": {"alpha": args.alpha,
                   "beta": args.beta}}, f, indent=1)


if __name__ == "__main__":
    main()
