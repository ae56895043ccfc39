# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 15 — Data parallelism: N processes, one model, gradients averaged by allreduce
#
# **Needs:** the exercises of lesson 04 solved first (its tests and code call them).
#
# GPT-1 was trained on 8 GPUs for a month. The standard way to use more than one device (or
# core, or machine) for one model is **data parallelism**: every process — a *rank* — holds a
# whole copy of the model, reads its own slice of each batch, and before each optimizer step the
# ranks average their gradients, so that every copy takes the same step and they never drift
# apart. This lesson covers:
#
# 1. why the average of the ranks' gradients IS the whole batch's gradient, checked in float64,
#    and the two places where it is not (a mean over a varying count; dropout);
# 2. the **ring allreduce**, the algorithm that averages the gradients, derived step by step and
#    simulated in NumPy (exercises 1 and 2: its two phases);
# 3. its cost: why each rank sends about twice the gradient whatever $N$ is, and the α–β model;
# 4. the real thing: `minitensor/distributed.py` over MPI, and
#    `mpiexec -n 2 python -m models train gpt`.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` in this file is blanked out in
# the student copy: those are the exercises listed at the end.

# %%
import os
import shutil
import subprocess
import sys
import time

import numpy as np

import minitensor as mt
import minitensor.functional as F
from minitensor import distributed, nn

np.set_printoptions(precision=4, suppress=True, linewidth=110)
LESSON_START = time.perf_counter()

# %% [markdown]
# ## 1. The average of the slices' gradients is the batch's gradient
#
# A training loss is a mean over the $B$ examples of the batch, $L = \frac1B \sum_{i=1}^B \ell_i$.
# Cut the batch into $N$ equal slices $S_1, \dots, S_N$ of $B/N$ examples, one per rank. Rank $r$
# computes the gradient of ITS mean loss, $g_r = \nabla \frac{N}{B} \sum_{i \in S_r} \ell_i$. Then
#
# $$\frac1N \sum_{r=1}^N g_r = \frac1N \sum_r \frac{N}{B} \sum_{i \in S_r} \nabla \ell_i
#   = \frac1B \sum_{i=1}^B \nabla \ell_i = \nabla L,$$
#
# because the gradient is linear and the slices cover the batch once. So the mean of the ranks'
# gradients is exactly the gradient one process would compute on the whole batch, and every rank
# can take the same optimizer step. Checked on a small classifier in float64: the whole batch
# on one "rank", then four slices of two examples each.

# %%
rng = np.random.default_rng(0)
B, D, H, C, N = 8, 5, 16, 3, 4
x = rng.standard_normal((B, D))
y = rng.integers(0, C, size=B)


class Classifier(nn.Module):
    def __init__(self):
        self.hidden = nn.Linear(D, H, rng=np.random.default_rng(1), dtype=np.float64)
        self.out = nn.Linear(H, C, rng=np.random.default_rng(2), dtype=np.float64)

    def forward(self, x):
        return self.out(mt.tanh(self.hidden(mt.tensor(x))))


model = Classifier()


def gradients(x, y, ignore_index=None):
    """Every parameter's gradient of the mean cross-entropy on (x, y)."""
    for p in model.parameters():
        p.grad = None
    F.cross_entropy(model(x), y, ignore_index=ignore_index).backward()
    return [p.grad.copy() for p in model.parameters()]


whole = gradients(x, y)
slices = [gradients(x[r * B // N:(r + 1) * B // N], y[r * B // N:(r + 1) * B // N]) for r in range(N)]
averaged = [sum(g[k] for g in slices) / N for k in range(len(whole))]
print("largest |mean of the 4 slices' gradients - the batch's gradient|:",
      max(float(np.abs(a - w).max()) for a, w in zip(averaged, whole)))

# %% [markdown]
# Zero up to rounding. Two things break the equality, and a real run must know them:
#
# * **A mean over a varying count.** A masked language model (Longformer's `--task mlm`) averages
#   over the masked positions only (`ignore_index`): a slice with 3 targets and one with 1 each
#   divide by their own count, and the mean of their means weighs the lonely target three times
#   too much. (The fix is to sum on each rank and divide by the total count, known after one more
#   allreduce.)
# * **Dropout.** Each rank draws its own masks for its own rows, so $N$ ranks do not draw the masks
#   one process would: the same distribution, not the same numbers. `models/train.py` gives rank
#   $r$ the dropout streams of rank 0 jumped $r$ times ahead, so a run is reproducible for a given
#   $N$, and the README's recipes train without dropout anyway.

# %%
y_masked = y.copy()
y_masked[[1, 7]] = -1  # ignored: slices (rows 0-1, 2-3, 4-5, 6-7) keep 1, 2, 2 and 1 targets
counts = [int((y_masked[r * 2:(r + 1) * 2] != -1).sum()) for r in range(N)]
whole = gradients(x, y_masked, ignore_index=-1)
per_rank = [gradients(x[r * 2:(r + 1) * 2], y_masked[r * 2:(r + 1) * 2], ignore_index=-1) for r in range(N)]
naive = [sum(g[k] for g in per_rank) / N for k in range(len(whole))]
weighted = [sum(c * g[k] for c, g in zip(counts, per_rank)) / sum(counts) for k in range(len(whole))]
print("targets per slice:", counts)
print(f"mean of the ranks' means:     off by {max(float(np.abs(a - w).max()) for a, w in zip(naive, whole)):.3g}")
print(f"weighted by the counts:       off by {max(float(np.abs(a - w).max()) for a, w in zip(weighted, whole)):.3g}")

# %% [markdown]
# ## 2. The ring allreduce
#
# An **allreduce** leaves on every rank the sum (here) of every rank's array. The obvious way —
# everyone sends its gradient to rank 0, rank 0 adds and sends the sum back — makes rank 0
# receive $(N-1)\,n$ numbers and send as many: its link is the bottleneck, and it grows with
# $N$. The **ring** spreads the work evenly. Place the ranks on a ring, rank $r$ sending only to
# rank $r+1$ (mod $N$), and cut each rank's array into $N$ chunks, $a_r[0], \dots, a_r[N-1]$.
#
# **Phase 1, reduce-scatter** ($N-1$ steps). At step $s = 0, 1, \dots, N-2$, every rank $r$ at
# once sends its chunk $c = (r - s) \bmod N$ to rank $r+1$, which ADDS it into its own chunk $c$.
# Follow chunk $c$: it starts on rank $c$, moves to $c+1$ collecting that rank's chunk, then to
# $c+2$, ... After $N-1$ steps it has visited every rank once, and sits, complete, on rank
# $c + N - 1 \equiv c - 1$. So rank $r$ ends holding the full sum of chunk $(r + 1) \bmod N$.
#
# **Phase 2, all-gather** ($N-1$ steps). Now each complete chunk must reach everyone. At step
# $s$, rank $r$ sends its chunk $(r + 1 - s) \bmod N$ — complete, since it was either completed
# here in phase 1 ($s = 0$) or received complete at the previous step — to rank $r+1$, which
# REPLACES its own copy. After $N-1$ steps every rank has every complete chunk.
#
# All the sends of a step happen at the same time. (In the ring a rank never sends, in a step, the
# chunk it receives in that step, so the order in which a simulation delivers them does not
# matter; reading every message first, as below, is what real ranks do.) **Exercise 1:** write
# `reduce_scatter(chunks)`; **exercise 2:** write `all_gather(chunks)`. `chunks` is an array of
# shape $(N, N, m)$: `chunks[r, c]` is rank $r$'s chunk $c$ of $m$ numbers. Each returns a new
# array (the input is left as it was).

# %%
def reduce_scatter(chunks):
    """Phase 1: after it, rank r holds the sum over all ranks of chunk (r + 1) % N (other chunks: partial sums)."""
    # BEGIN SOLUTION: reduce_scatter: N - 1 steps; at step s rank r sends chunk (r - s) % N to rank (r + 1) % N, which adds it
    n = chunks.shape[0]
    out = chunks.copy()
    for s in range(n - 1):
        sent = [(r, (r - s) % n, out[r, (r - s) % n].copy()) for r in range(n)]  # every message, then delivery
        for r, c, values in sent:
            out[(r + 1) % n, c] += values
    return out
    # END SOLUTION


def all_gather(chunks):
    """Phase 2: from rank r holding complete chunk (r + 1) % N, every rank ends with every complete chunk."""
    # BEGIN SOLUTION: all_gather: N - 1 steps; at step s rank r sends chunk (r + 1 - s) % N to rank (r + 1) % N, which replaces its own
    n = chunks.shape[0]
    out = chunks.copy()
    for s in range(n - 1):
        sent = [(r, (r + 1 - s) % n, out[r, (r + 1 - s) % n].copy()) for r in range(n)]
        for r, c, values in sent:
            out[(r + 1) % n, c] = values
    return out
    # END SOLUTION


def ring_allreduce(arrays):
    """Every rank's array replaced by the sum of all of them: each cut into N chunks, then the two phases."""
    n = len(arrays)
    if arrays[0].size % n:
        raise ValueError(f"ring_allreduce: {arrays[0].size} numbers do not cut into {n} equal chunks")
    done = all_gather(reduce_scatter(np.stack([a.reshape(n, -1) for a in arrays])))
    return [done[r].reshape(-1) for r in range(n)]


four = [np.arange(8.0) * (r + 1) for r in range(4)]
after_phase_1 = reduce_scatter(np.stack([np.array_split(a, 4) for a in four]))
print("after reduce-scatter, rank r's chunk (r+1) % 4 (complete sums):")
for r in range(4):
    print(f"  rank {r}, chunk {(r + 1) % 4}:", after_phase_1[r, (r + 1) % 4])
summed = ring_allreduce(four)
print("every rank after the allreduce:", summed[0], "== sum:", np.array_equal(summed[0], sum(four)),
      all(np.array_equal(s, summed[0]) for s in summed))

# %% [markdown]
# ## 3. What it costs
#
# Count what one rank sends: $2(N-1)$ messages (one per step of each phase) of $n/N$ numbers each,
# so $2\frac{N-1}{N}\,n$ — less than twice the gradient, whatever $N$ is. The ring's time is set
# by its slowest link, used for $2(N-1)$ steps. With the **α–β model** — a message costs a latency
# $\alpha$ plus its bytes over a bandwidth $\beta$ —
#
# $$t_{\text{allreduce}}(N) = 2(N-1)\,\alpha + 2\,\frac{N-1}{N}\,\frac{n}{\beta}.$$
#
# The bandwidth term stays below $2n/\beta$: adding ranks does not make the exchange slower, only
# the latency term grows. Meanwhile the compute of a step, for a fixed global batch, shrinks as
# $t_c/N$. So data parallelism pays while $t_c / N$ stays large next to the allreduce; the
# remedies when it does not are bigger batches per rank, fewer bigger messages (buckets, below),
# and overlapping the allreduce of one layer's gradients with the backward pass of the next.
# `benchmarks/data_parallel.py` fits $\alpha$ and $\beta$ on this machine and predicts a cluster
# (README: a GPT step of 3.12 MiB of gradient at the main command's shape).

# %%
def ring_seconds(n_bytes, ranks, alpha, beta):
    return 0.0 if ranks == 1 else 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * n_bytes / beta


grad_bytes = 3.12 * 2**20  # the README main command's GPT, float32
print(f"{'N':>3} {'sent per rank':>14} {'ring, 5 us / 10 GB/s':>21} {'to rank 0 and back':>19}")
for ranks in (2, 4, 8, 16, 64):
    naive = 2 * (ranks - 1) * grad_bytes  # rank 0 receives and sends N - 1 whole gradients
    print(f"{ranks:>3} {2 * (ranks - 1) / ranks * grad_bytes / 2**20:>10.2f} MiB "
          f"{ring_seconds(grad_bytes, ranks, 5e-6, 1e10) * 1e3:>17.2f} ms {naive / 1e10 * 1e3:>15.2f} ms")

# %% [markdown]
# ## 4. The real thing
#
# `minitensor/distributed.py` does this with MPI, the library clusters use (through mpi4py, the
# `distributed` extra, with MPICH's own wheel: no system MPI needed):
#
# * `world()` reads the launcher's variables: started by `mpiexec -n 2`, it is an `MPIWorld` of 2
#   ranks; started by plain `python`, a `SingleProcess` whose operations do nothing;
# * `broadcast_parameters` copies rank 0's weights to every rank once, at the start;
# * `average_gradients` packs the gradients into **buckets** of at most 4 MiB and sums each with one
#   `Allreduce` (MPI chooses the algorithm; for large messages a ring or its relatives), then
#   divides by $N$: one call per bucket, not per parameter, because every call pays $\alpha$;
# * every wait has a deadline, so a dead rank stops the run with a message instead of a hang.
#
# The training loop (`models/train.py`) gives rank $r$ rows $[rB/N, (r+1)B/N)$ of every batch, calls
# `average_gradients` between `backward()` and the optimizer step, and lets rank 0 alone validate
# and write files. The buckets of the README main command's GPT:

# %%
from models.gpt import GPT, GPTConfig  # noqa: E402  (here, where it is first used)

gpt = GPT(GPTConfig(vocab_size=76, n_ctx=128, d_model=128, n_layer=4, n_head=4), rng=0)
sizes = [p.data.size for p in gpt.parameters()]
print(f"{len(sizes)} parameters, {sum(sizes) * 4 / 2**20:.2f} MiB of float32 gradient")
for limit in (distributed.BUCKET_BYTES, 1 << 20):
    groups = distributed.buckets(sizes, itemsize=4, limit=limit)
    print(f"  buckets of at most {limit / 2**20:g} MiB: {len(groups)} Allreduce calls of "
          f"{[round(sum(sizes[i] for i in g) * 4 / 2**20, 2) for g in groups]} MiB")

# %% [markdown]
# With the extra installed, two ranks really exchange an array (skipped where MPI is absent):

# %%
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
CHECK = ("import numpy as np; from minitensor import distributed; w = distributed.world(); "
         "p = __import__('minitensor').Tensor(np.zeros(4, np.float32), requires_grad=True); "
         "p.grad = np.full(4, w.rank + 1.0, np.float32); w.average_gradients([p]); "
         "w.is_root and print(f'rank 0 of {w.size}: gradients 1 and 2 averaged into {p.grad}')")
try:
    import mpi4py  # noqa: F401
    have_mpi = MPIEXEC is not None
except ImportError:
    have_mpi = False
if have_mpi:
    run = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", CHECK], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, check=False)
    print(run.stdout.strip() or run.stderr.strip())
else:
    print("MPI is not installed here: pip install -e '.[distributed]', then run this cell again")

# %% [markdown]
# The whole training run is the same command under `mpiexec`:
#
# ```bash
# pip install -e '.[train,distributed]'
# mpiexec -n 2 python -m models train gpt
# ```
#
# It trains on the same examples as `python -m models train gpt` (`--batch-size` is the global
# batch), and `tests/models/test_data_parallel.py` checks that the losses agree step by step to
# float32 rounding. On this project's 2-core machine two ranks of one thread each took 103 ms a
# step against 136 ms for one process on two threads (README, `benchmarks/data_parallel.py`):
# each rank keeps its core busy without handing work to a helper thread and back.

# %%
print(f"\nlesson 15 ran in {time.perf_counter() - LESSON_START:.1f} s")

# %% [markdown]
# ## Exercises
#
# In the student copy two regions raise `NotImplementedError`; the lesson stops at the
# first one it meets, so do them in this order:
#
# 1. **`reduce_scatter(chunks)`** (section 2): the $N-1$ steps of phase 1.
# 2. **`all_gather(chunks)`** (section 2): the $N-1$ steps of phase 2.
#
# If you want more: count the messages and numbers each rank sends in your simulation and check
# $2(N-1)$ and $2\frac{N-1}{N}n$; or make `ring_allreduce` accept an array whose size $N$ does not
# divide (chunks of unequal sizes).
#
# Check your work with `pytest -m lesson15 -x` (from the repository's root; `-x` stops at the first failure).
