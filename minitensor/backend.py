"""The one place that knows whether an array lives in NumPy (CPU) or CuPy (CUDA GPU).

Ops never import numpy or cupy to choose an array library: they ask
:func:`get_array_module` for the module that owns their inputs (``xp``) and call
``xp.exp``, ``xp.matmul``... so one op class serves both devices. CuPy is an
optional extra; on a machine without it nothing here imports it.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

DEVICES = ("cpu", "cuda")


def _is_cupy_array(x) -> bool:
    # Checking the type's module avoids importing cupy on CPU-only machines.
    return type(x).__module__.startswith("cupy")


@lru_cache(maxsize=None)
def _cupy():
    try:
        import cupy  # noqa: PLC0415  (optional dependency, imported lazily)
    except ImportError:
        return None
    return cupy


def gpu_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA device."""
    cp = _cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CUDA driver missing or broken: no GPU for us
        return False


def get_array_module(*xs):
    """Return ``cupy`` if any of ``xs`` is a CuPy array, else ``numpy``."""
    for x in xs:
        if _is_cupy_array(x):
            return _cupy()
    return np


def device_of(x) -> str:
    """'cuda' for a CuPy array, 'cpu' otherwise."""
    return "cuda" if _is_cupy_array(x) else "cpu"


def check_device(device: str) -> str:
    device = str(device)
    if device.startswith("cuda"):
        device = "cuda"
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    if device == "cuda" and not gpu_available():
        reason = "CuPy is not installed (pip install -e '.[gpu]')" if _cupy() is None else "CuPy sees no CUDA device"
        raise RuntimeError(f"device 'cuda' requested but no GPU is usable here: {reason}")
    return device


def to_device(x, device: str):
    """Move an array to ``device`` ('cpu' or 'cuda'); a no-op when it is already there."""
    device = check_device(device)
    if device == "cpu":
        return to_numpy(x)
    if _is_cupy_array(x):
        return x
    return _cupy().asarray(x)


def to_numpy(x) -> np.ndarray:
    """A NumPy array with the data of ``x`` (copied off the GPU when needed)."""
    if _is_cupy_array(x):
        return x.get()
    return np.asarray(x)
