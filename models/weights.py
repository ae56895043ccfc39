"""Weight initialisation shared by the models."""
from __future__ import annotations

import numpy as np

__all__ = ["normal"]


def normal(rng: np.random.Generator, shape, std: float, dtype) -> np.ndarray:
    r"""$\mathcal N(0, \mathrm{std}^2)$ of ``shape``, drawn directly in ``dtype`` (a ``np.dtype``): for GPT-1's
    117M parameters a float64 draw would need twice the memory for nothing."""
    return rng.standard_normal(shape, dtype=dtype) * dtype.type(std)
