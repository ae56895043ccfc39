"""The one place that knows whether an array lives in NumPy (CPU) or CuPy (CUDA GPU).

Ops never import numpy or cupy to choose an array library: they ask
:func:`get_array_module` for the module that owns their inputs (``xp``) and call
``xp.exp``, ``xp.matmul``... so one op class serves both devices. CuPy is an
optional extra; on a machine without it nothing here imports it.
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import math
import os
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


def int_from_env(name: str, minimum: int):
    """The integer in environment variable ``name`` (None when unset); a clear error below ``minimum``."""
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {text!r}")
    return value


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


def scatter_add(target, index, values) -> None:
    """``target[index] += values`` with repeated indices accumulated (unbuffered)."""
    if _is_cupy_array(target):
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)


@lru_cache(maxsize=None)
def _openblas_threads():
    """(get, set) of the thread count of the OpenBLAS bundled with NumPy, or None.

    NumPy's wheels ship OpenBLAS under a prefixed name (``scipy_openblas_*64_``);
    a NumPy built on MKL, Accelerate or a system BLAS gives None, and the
    callers then leave the threading alone.
    """
    root = os.path.dirname(np.__file__)
    for lib in glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*")) + \
            glob.glob(os.path.join(root, ".dylibs", "*openblas*")):
        try:
            dll = ctypes.CDLL(lib)  # already loaded by NumPy: this only looks it up
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"), ("openblas", "")):
            get = getattr(dll, f"{prefix}_get_num_threads{suffix}", None)
            set_ = getattr(dll, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                set_.argtypes, set_.restype = [ctypes.c_int], None
                get.restype = ctypes.c_int
                return get, set_
    return None


@contextlib.contextmanager
def single_threaded_blas(xp):
    """Run NumPy's BLAS on one thread inside the block (a no-op for CuPy or a BLAS we cannot steer).

    For a STACK of small products (attention's (T, Dh) @ (Dh, T) per batch and
    head) NumPy calls BLAS once per matrix, and OpenBLAS splits each small call
    over its threads: the wake-up and join of every call then costs more than
    the product itself, and on a machine whose cores are busy with other work a
    thread may wait a whole scheduler slice to run (seconds per step, measured).
    """
    threads = _openblas_threads() if xp is np else None
    if threads is None:
        yield
        return
    get, set_ = threads
    before = get()
    if before == 1:
        yield
        return
    set_(1)
    try:
        yield
    finally:
        set_(before)


@lru_cache(maxsize=None)
def _scipy_erf():
    try:
        from scipy.special import erf  # noqa: PLC0415  (optional, exact and fast)
    except ImportError:
        return None
    return erf


_math_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    """Elementwise error function, exact to double precision on both backends.

    NumPy has no ``erf``; SciPy's is used when installed, otherwise Python's
    ``math.erf`` element by element (exact, but slow: only the exact GELU needs it).
    """
    if _is_cupy_array(x):
        from cupyx.scipy.special import erf as cupy_erf  # noqa: PLC0415

        return cupy_erf(x)
    fast = _scipy_erf()
    if fast is not None:
        return np.asarray(fast(x), dtype=x.dtype)
    return np.asarray(_math_erf(x), dtype=x.dtype)  # frompyfunc gives objects (a float for 0-d input)


def uniform(rng: np.random.Generator, shape, like):
    """Uniform [0, 1) samples of ``shape`` with ``like``'s dtype, on ``like``'s device.

    Drawn from the NumPy ``rng`` so that a seed gives the same numbers on every
    device; on the GPU they are then copied over.
    """
    sample = rng.random(shape, dtype=_uniform_dtype(like))
    return to_device(sample, device_of(like)) if _is_cupy_array(like) else sample


def keep_mask(rng: np.random.Generator, shape, p: float, like):
    """``uniform(rng, shape, like) >= p`` without ever holding the full-size uniform array.

    The samples are drawn in chunks into one small buffer that stays in cache,
    and only the boolean mask is written out. A Generator fills an array in
    order, and drawing it in pieces continues the same stream, so the mask is
    identical to the one-shot version for the same ``rng`` state (a test checks it).
    """
    keep = np.empty(shape, dtype=bool)
    flat = keep.reshape(-1)
    buffer = np.empty(max(1, min(flat.size, 1 << 16)), dtype=_uniform_dtype(like))
    for start in range(0, flat.size, buffer.size):
        chunk = buffer[: min(buffer.size, flat.size - start)]
        rng.random(out=chunk, dtype=chunk.dtype)
        np.greater_equal(chunk, p, out=flat[start:start + chunk.size])
    return to_device(keep, device_of(like)) if _is_cupy_array(like) else keep


def _uniform_dtype(like):
    return like.dtype if like.dtype in (np.float32, np.float64) else np.float32
