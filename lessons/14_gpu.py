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
# # Lesson 14 — The same code on a GPU
#
# Every op of minitensor is written once. Its `forward` and `backward` never import NumPy
# to do arithmetic: they ask the backend which array library owns their inputs and call it,
# `xp.exp`, `xp.matmul`, ... With NumPy arrays `xp` is NumPy; with CuPy arrays (CUDA GPU
# memory) it is CuPy, which mirrors NumPy's API and runs each call as a GPU kernel. This lesson:
#
# 1. the one place that knows about devices (`minitensor/backend.py`) and an op that uses it;
# 2. what `.to("cuda")` moves, and what it does not;
# 3. what crosses between host and GPU in a training step, and why `float(loss)` waits;
# 4. checkpoints and random numbers across devices;
# 5. a GPT training step on the CPU, and on the GPU when this machine has one.
#
# It runs on a CPU-only machine and says there what the GPU run would show. Install CuPy with
# `pip install -e '.[gpu]'` (CUDA 12; `.[gpu13]` for CUDA 13); `tests/gpu/` then runs the op
# tests on the GPU.

# %%
import importlib.util
import inspect
import textwrap
import time

import numpy as np

import minitensor as mt
import minitensor.functional as F
from minitensor import backend
from minitensor.ops.unary import Exp
from models.gpt import GPT, GPTConfig

LESSON_START = time.perf_counter()
GPU = backend.gpu_available()
print(f"CuPy installed: {importlib.util.find_spec('cupy') is not None}; usable CUDA GPU: {GPU}")

# %% [markdown]
# ## 1. One op, two array libraries
#
# `get_array_module(*arrays)` returns `cupy` if any argument is a CuPy array, else `numpy`.
# An op's forward and backward start from it. Here is `Exp`, whole:

# %%
print(textwrap.indent(inspect.getsource(Exp), "    "))
a = np.ones(3, np.float32)
print("get_array_module(numpy array) ->", backend.get_array_module(a).__name__)

# %% [markdown]
# Nothing else changes between devices. The autograd engine, the models and the training
# loop never branch on the device; they only move data with `backend.to_device(array,
# "cuda"|"cpu")`, which is a no-op when the array is already there.
#
# The one exception is deliberate and kept apart: a formula may have a faster **kernel** for one
# device, registered in `minitensor/kernels/` under the formula's name (lesson 00 lists them).
# The CPU has kernels for the big elementwise ops and the matrix product; on the GPU, CuPy's own
# `erf` and atomic `scatter_add` stand in for those two formulas, and every other op runs its
# formula through CuPy. `MINITENSOR_KERNELS=reference` runs the formulas alone on either device.
#
# ## 2. What `.to("cuda")` moves
#
# * `Tensor.to(device)` returns a COPY on the device, a new leaf: gradients do not flow back
#   across a device move (move inputs before building the graph, not in the middle of it).
# * `Module.to(device)` moves every parameter in place (and its gradient if it has one), so
#   references held elsewhere (an optimizer's parameter list) stay valid.
# * An optimizer's moment buffers are created on the device of their parameter at its first
#   step; a loaded optimizer state is moved there too.
# * Masks built with NumPy (`causal_mask`, padding masks, the band's index arrays) are moved by
#   the op that uses them, once per call — small integer or boolean arrays.
#
# On this machine we can show the CPU half of each statement; the GPU half is the same call
# with "cuda".

# %%
x = mt.tensor(np.arange(4.0, dtype=np.float32), requires_grad=True)
same = x.to("cpu")
print("x.to(device it is already on) is x itself:", same is x)
layer = mt.nn.Linear(4, 2, rng=np.random.default_rng(0))
weight_before = layer.weight
layer.to("cpu")
print("Module.to keeps the Parameter objects (moves their data in place):", layer.weight is weight_before)
try:
    backend.check_device("cuda")
    print("a 'cuda' device is usable here")
except RuntimeError as e:
    print("asking for 'cuda' here fails with a clear message:", e)

# %% [markdown]
# ## 3. What crosses between host and GPU in a step
#
# A GPU works asynchronously: Python queues kernels and returns at once. Three things cross
# the PCIe bus in one training step of `models/train.py`:
#
# 1. the batch of token ids, host to GPU (B × T integers: a few kilobytes);
# 2. the dropout masks. `F.dropout` draws them from the NumPy generator on the host, then
#    copies them to the GPU (`F.uniform`). This is deliberate: a seed gives the SAME masks
#    on every device, so a CPU run and a GPU run of the same seed can be compared number for
#    number. The price is a host-to-GPU copy of one mask per dropout site per step;
# 3. the loss, GPU to host, when the loop logs `float(loss)`: the conversion waits until every
#    queued kernel has finished (a synchronisation), so step timings are honest.
#
# The dropout draw, as written:

# %%
print(textwrap.indent(inspect.getsource(F.dropout), "    "))
print(textwrap.indent(inspect.getsource(F.uniform), "    "))

# %% [markdown]
# ## 4. Checkpoints and random numbers
#
# `Module.state_dict()` returns NumPy copies, whatever the device, and `load_state_dict` copies
# each array onto its parameter's device. So a checkpoint written during a GPU run loads on a
# CPU-only machine and back (the files are `.npz` or `.safetensors`, never pickle). Shown on the
# CPU: a round trip through a file keeps every number.

# %%
import os  # noqa: E402
import tempfile  # noqa: E402

cfg = GPTConfig.preset("tiny", vocab_size=30, n_ctx=32, d_model=32, n_layer=2, n_head=2)
model = GPT(cfg, rng=0)
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "ckpt.safetensors")
    mt.save(model.state_dict(), path)
    fresh = GPT(cfg, rng=1)
    fresh.load_state_dict(mt.load(path))
same = all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
print(f"state_dict arrays are NumPy: {type(next(iter(model.state_dict().values()))).__name__}; "
      f"round trip exact: {same}")

# %% [markdown]
# ## 5. One training step, per device
#
# The tiny GPT of lesson 07 (4 layers, 128 wide), a batch of 16 × 128 characters, forward +
# backward + AdamW, with dropout. The same seed on every device: the losses agree to float32
# rounding (the kernels sum in a different order), not bit for bit.

# %%
def train_steps(device, steps=4, seed=0):
    cfg = GPTConfig.preset("tiny", vocab_size=65)
    model = GPT(cfg, rng=seed).to(device)
    opt = mt.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    x = backend.to_device(rng.integers(0, 65, size=(16, 128)), device)
    y = backend.to_device(rng.integers(0, 65, size=(16, 128)), device)
    losses, times = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = model.lm_loss(x, y)
        loss.backward()
        opt.step()
        losses.append(float(backend.to_numpy(loss.data)))  # waits for the device: an honest time
        times.append(time.perf_counter() - t0)
    return losses, min(times[1:])


cpu_losses, cpu_s = train_steps("cpu")
print(f"cpu : losses {np.round(cpu_losses, 4).tolist()}, {cpu_s:.3f} s per step")
if GPU:
    gpu_losses, gpu_s = train_steps("cuda")
    print(f"cuda: losses {np.round(gpu_losses, 4).tolist()}, {gpu_s:.3f} s per step "
          f"({cpu_s / gpu_s:.1f}x the CPU)")
    print(f"max |loss difference| {np.abs(np.subtract(cpu_losses, gpu_losses)).max():.1e}")
else:
    print("no GPU here: on a CUDA machine this cell runs the same steps with device 'cuda', prints "
          "losses equal to the CPU's up to float32 rounding, and the speed-up of one step. The GPU figures of "
          "the project (GPT steps against PyTorch on the same GPU, banded attention at 16k-64k tokens, "
          "Transformer-XL evaluation) go in the README when measured on one.")

# %% [markdown]
# What to expect, and why: at this size a GPU step is dominated by kernel launches, not
# arithmetic. Every op is one or a few CuPy calls, each a kernel launch of a few microseconds,
# forward and backward, for every layer: with arrays this small the GPU is far from busy.
# Larger models (GPT-1's 768 × 12 layers) and long sequences (Longformer's 16k tokens) give each
# kernel enough work to amortise its launch; that is where the speed-up grows. Fusing the chains
# of elementwise calls of softmax, layer norm and GELU into single kernels is how a framework
# closes the rest of the gap.

# %%
print(f"\nlesson 14 ran in {time.perf_counter() - LESSON_START:.1f} s")
