r"""Seconds per GPT training step: minitensor vs NumPy matmul peak (and PyTorch eager CPU).

Shapes (``--shape``, default all three), d_ff=4d, float32, GPT-1 dropouts 0.1 and none:

- ``benchmark`` (issue 5, "Speed"): V=65, T=256, B=16, d=256, 4 layers, 8 heads;
- ``tiny``: the tiny preset at the old ``train gpt`` batch, V=76, T=128, B=32, d=128, 4 layers, 4 heads;
- ``recipe``: the shape ``python -m models train gpt --preset tiny`` trains at today
  (``models/gpt/recipe.py``'s DEFAULTS, its batch and context).

One step = forward + backward (cross-entropy on seeded random ids) + AdamW step. Timed after 2
warm-up steps.

Each (framework, dropout) measurement runs in a fresh Python process, and the processes are
interleaved over ``--rounds`` rounds (default 3) of ``--repeats`` steps each (default 5): two
frameworks in one process would share the C allocator's state (glibc moves its mmap threshold
as big blocks are freed), and a noisy machine drifts over a minute. Reported per framework:
the median and the best step over all rounds; the ratio is taken of the medians.

FLOPs are counted analytically, 2 FLOPs per multiply-add, N = B*T tokens:

    per layer  : 2*N*d*(3d)        c_attn (Q, K, V projection)
               + 2*N*d*d           c_proj (attention output)
               + 2*N*d*d_ff * 2    MLP c_fc and c_proj
               + 2*B*T*T*d         attention scores Q K^T (all heads; full T x T, as computed)
               + 2*B*T*T*d         attention mix P V
    output     : 2*N*d*V           tied output projection h_n W_e^T
    step       : 3 * forward       (backward ~ 2x forward: gradients w.r.t. inputs and weights)

Element-wise work (LayerNorm, GELU, softmax, dropout, Adam) is not counted.
The achieved GFLOP/s is compared with float32 NumPy matmul throughput measured in the same
run ((4096x256) @ (256x1024), best of N). Targets: >= 30% of the matmul throughput, and a
time ratio minitensor / PyTorch eager CPU <= 1.0 when PyTorch is installed.

Run: ``python benchmarks/gpt_step.py [--shape benchmark tiny recipe] [--repeats N] [--rounds R] [--no-torch]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

import minitensor as mt
from minitensor.kernels import threads as kernel_threads
from minitensor.optim import AdamW
from models.gpt import GPT, GPTConfig
from models.gpt.recipe import DEFAULTS

#: name -> (V, T, B, d, layers, heads)
SHAPES = {
    "benchmark": (65, 256, 16, 256, 4, 8),
    "tiny": (76, 128, 32, 128, 4, 4),
    "recipe": (76, DEFAULTS["seq_len"], DEFAULTS["batch_size"], 128, 4, 4),
}


def step_flops(vocab, t, b, d, n_layer, heads):
    n, d_ff = b * t, 4 * d
    per_layer = 2 * n * d * 3 * d + 2 * n * d * d + 2 * 2 * n * d * d_ff + 2 * (2 * b * t * t * d)
    forward = n_layer * per_layer + 2 * n * d * vocab
    return 3 * forward


def time_steps(step, repeats, warmup=2):
    """Seconds of each of ``repeats`` steps, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def numpy_matmul_gflops(n_rep=20):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 256), dtype=np.float32)
    w = rng.standard_normal((256, 1024), dtype=np.float32)
    out = np.empty((4096, 1024), np.float32)
    for _ in range(3):
        np.matmul(a, w, out=out)
    best = math.inf
    for _ in range(n_rep):
        t0 = time.perf_counter()
        np.matmul(a, w, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * 4096 * 256 * 1024 / best / 1e9


def data(shape, seed=0):
    V, T, B = shape[:3]
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, size=(B, T + 1), dtype=np.int64)
    return ids[:, :-1].copy(), ids[:, 1:].copy()


def minitensor_step_fn(shape, pdrop):
    V, T, _, D, L, H = shape
    cfg = GPTConfig(vocab_size=V, n_ctx=T, d_model=D, n_layer=L, n_head=H,
                    embd_pdrop=pdrop, attn_pdrop=pdrop, resid_pdrop=pdrop)
    model = GPT(cfg, rng=0, dtype=np.float32)
    model.train()
    opt = AdamW(model.parameters(), lr=1e-4)
    x, y = data(shape)

    def step():
        opt.zero_grad()
        loss = model.lm_loss(x, y)
        loss.backward()
        opt.step()
        return loss

    return step


def torch_step_fn(torch, shape, pdrop):
    V, T, _, D, L, H = shape
    nn = torch.nn
    torch.manual_seed(0)

    class Block(nn.Module):  # post-LN GPT-1 block, tanh GELU
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
            self.c_fc, self.m_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
            self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
            self.attn_drop, self.resid_drop = nn.Dropout(pdrop), nn.Dropout(pdrop)
            self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.c_attn(x).split(d, dim=-1)
            q, k, v = (z.view(b, t, H, d // H).transpose(1, 2) for z in (q, k, v))
            s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d // H))
            s = s.masked_fill(self.mask[:t, :t], float("-inf"))
            p = self.attn_drop(torch.softmax(s, dim=-1))
            a = (p @ v).transpose(1, 2).reshape(b, t, d)
            x = self.ln_1(x + self.resid_drop(self.c_proj(a)))
            m = self.m_proj(torch.nn.functional.gelu(self.c_fc(x), approximate="tanh"))
            return self.ln_2(x + self.resid_drop(m))

    class TGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
            self.drop = nn.Dropout(pdrop)
            self.h = nn.ModuleList(Block() for _ in range(L))

        def forward(self, ids):
            h = self.drop(self.wte(ids) + self.wpe(torch.arange(ids.shape[1])))
            for blk in self.h:
                h = blk(h)
            return h @ self.wte.weight.T  # tied output

    model = TGPT().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = (torch.from_numpy(a) for a in data(shape))

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    return step


def worker(framework, shape, pdrop, repeats):
    """One measurement, in this (fresh) process: prints a JSON line with the step times."""
    if framework == "torch":
        import torch  # noqa: PLC0415  (optional: the bench extra)

        torch.set_num_threads(os.cpu_count())
        times = time_steps(torch_step_fn(torch, shape, pdrop), repeats)
        info = {"version": torch.__version__, "threads": torch.get_num_threads()}
    else:
        times = time_steps(minitensor_step_fn(shape, pdrop), repeats)
        info = {"version": mt.__version__, "threads": kernel_threads.num_threads()}
    print(json.dumps({"times": times, **info}))


def measure(framework, shape_name, pdrop, repeats):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--shape", shape_name,
           "--pdrop", str(pdrop), "--repeats", str(repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"gpt_step: the {framework} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs="+", choices=list(SHAPES), default=list(SHAPES),
                    help="which shapes to time (default: all)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per process")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per (framework, shape, dropout)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--worker", choices=["minitensor", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--pdrop", type=float, default=0.1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeats < 1 or args.rounds < 1:
        ap.error("--repeats and --rounds must be >= 1")
    if args.worker:
        worker(args.worker, SHAPES[args.shape[0]], args.pdrop, args.repeats)
        return

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, NumPy {np.__version__}, minitensor {mt.__version__} "
          f"({kernel_threads.num_threads()} threads)")
    print(f"step = forward + backward + AdamW, float32; {args.rounds} fresh processes x {args.repeats} steps "
          "(after 2 warm-up) per line, interleaved")
    peak = numpy_matmul_gflops()
    print(f"NumPy float32 matmul (4096x256)@(256x1024), best of 20: {peak:.1f} GFLOP/s")

    frameworks = ["minitensor"]
    if not args.no_torch:
        try:
            import torch  # noqa: F401, PLC0415
            frameworks.append("torch")
        except ImportError:
            print("PyTorch: not installed; install it with `pip install torch` (CPU wheel) "
                  "or the `bench` extra, then rerun for the time ratio")
    runs = {(f, s, p): [] for s in args.shape for p in (0.1, 0.0) for f in frameworks}
    info = {}
    for _ in range(args.rounds):
        for key in runs:
            result = measure(*key, args.repeats)
            runs[key] += result["times"]
            info[key[0]] = result
    medians = {key: float(np.median(times)) for key, times in runs.items()}
    for shape_name in args.shape:
        V, T, B, D, L, H = shape = SHAPES[shape_name]
        flops = step_flops(*shape)
        print(f"\n{shape_name}: V={V} T={T} B={B} d={D} layers={L} heads={H} d_ff={4 * D}; "
              f"{flops / 1e9:.2f} GFLOP per step (analytic, 3 x forward)")
        for (framework, s, pdrop), times in runs.items():
            if s != shape_name:
                continue
            med, best = medians[framework, s, pdrop], min(times)
            name = "minitensor" if framework == "minitensor" else f"PyTorch {info['torch']['version']} eager CPU"
            line = (f"  {name} (dropout {pdrop}), {info[framework]['threads']} threads: median {med:.3f} s, "
                    f"best {best:.3f} s per step; {flops / med / 1e9:.1f} GFLOP/s (median)")
            if framework == "minitensor":
                line += f" = {100 * flops / med / 1e9 / peak:.0f}% of NumPy matmul"
            else:
                line += f"; ratio minitensor/PyTorch = {medians['minitensor', s, pdrop] / med:.2f} (target <= 1.0)"
            print(line)


if __name__ == "__main__":
    main()
