"""Weight initialisation shared by the models."""
from __future__ import annotations

import numpy as np

__all__ = ["generators", "normal"]


def normal(rng: np.random.Generator, shape, std: float, dtype) -> np.ndarray:
    r"""$\mathcal N(0, \mathrm{std}^2)$ of ``shape``, drawn directly in ``dtype`` (a ``np.dtype``): for GPT-1's
    117M parameters a float64 draw would need twice the memory for nothing."""
    return rng.standard_normal(shape, dtype=dtype) * dtype.type(std)


def generators(name: str, config, config_class: type, rng, dtype) -> tuple:
    """``(dtype, rng, dropout_rng)`` for a model ``name`` built from ``config``, after checking its arguments.

    ``config`` must be a ``config_class`` and ``dtype`` a float dtype (TypeErrors naming the model). ``rng``
    (a Generator, a seed or None) draws the weights; ``dropout_rng`` is a child generator seeded from it,
    so that the dropout masks do not depend on how many numbers the initialisation drew, and vice versa.
    """
    if not isinstance(config, config_class):
        raise TypeError(f"{name}: config must be a {config_class.__name__}, got {type(config).__name__}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{name}: dtype must be a float dtype, got {dtype}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return dtype, rng, np.random.default_rng(rng.integers(2**63))
