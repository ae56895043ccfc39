r"""Reusing the memory of large CPU temporaries, a caching allocator in miniature.

A training step allocates the same large arrays every time: attention's
(B, H, T, T) scores, probabilities and their gradients (33 MiB each at the
gpt_step benchmark's size). glibc serves a block that large with a fresh
``mmap`` and returns it to the system on ``free``, so every step the kernel
maps and zeroes those pages again: about 3 ms per such array here, tens of
milliseconds per step. (PyTorch's CUDA caching allocator exists for the same
reason on the GPU.)

:func:`empty` keeps the blocks of at least ``MIN_BYTES`` that it hands out, and
gives one back out again once nothing refers to it any more. "Nothing refers
to it" is read from CPython's reference count: every NumPy view of the block
holds a reference to it (views of views point straight at the owner), so the
count is back at its resting value exactly when no array uses the memory.

The cache holds at most ``MINITENSOR_BUFFER_CACHE_MB`` MiB (default 1024; 0
turns it off); :func:`clear` drops what is not in use. Free-threaded Python
builds, where reference counts are not exact, never cache.

Smaller arrays come from glibc's heap, and glibc gives that memory back too:
when more than its trim threshold lies free at the top of the heap (a few
MiB after a step frees its graph) it returns it to the system, and the next
step faults the same pages in again. At the tiny GPT's size (B=32, T=128,
d=128) that was a third of the step (0.30 s against 0.21 s). So on glibc
:func:`keep_freed_memory` also sets malloc's two thresholds, once, at import:
blocks under ``MIN_BYTES`` always come from the heap (the threshold no longer
moves), and up to the cache's limit of free heap is kept for the next step.
The cost is the same as the cache's: the process holds on to its peak
working set. ``MINITENSOR_BUFFER_CACHE_MB=0`` leaves malloc's defaults too.
"""
from __future__ import annotations

import ctypes
import math
import sys
import threading

import numpy as np

from ..backend import get_array_module
from . import int_from_env

MIN_BYTES = 16 << 20  # smaller blocks are reused by malloc itself (its mmap threshold grows to 32 MiB)


def _limit_bytes() -> int:
    mb = int_from_env("MINITENSOR_BUFFER_CACHE_MB", minimum=0)
    mb = 1024 if mb is None else mb
    gil_disabled = hasattr(sys, "_is_gil_enabled") and not sys._is_gil_enabled()
    return 0 if gil_disabled else mb << 20


_limit = _limit_bytes()
_blocks: list[np.ndarray] = []  # 1-D uint8 arrays that own their memory
_lock = threading.Lock()


def _resting_count() -> int:
    """The reference count of a cached block that no array uses, measured the way :func:`_free` does."""
    _blocks.append(np.empty(1, np.uint8))
    try:
        return sys.getrefcount(_blocks[-1])
    finally:
        _blocks.pop()


_RESTING = _resting_count()


def _free(i: int) -> bool:
    return sys.getrefcount(_blocks[i]) == _RESTING


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


def keep_freed_memory(limit_bytes: int) -> bool:
    """Tell glibc's malloc to keep up to ``limit_bytes`` of freed heap and to serve every block
    under ``MIN_BYTES`` from the heap; True when it took the settings (False off glibc, or at 0)."""
    if limit_bytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        libc.gnu_get_libc_version  # noqa: B018  (an AttributeError here: not glibc, e.g. musl)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MIN_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, limit_bytes))


MALLOC_TUNED = keep_freed_memory(_limit)


def empty(shape, dtype, xp=np):
    """``np.empty(shape, dtype)``, on a reused block when it is large and one is free.

    ``xp`` is the array module of the op's inputs: for CuPy this is plain
    ``cupy.empty`` (CuPy has its own memory pool).
    """
    if xp is not np:
        return xp.empty(shape, dtype)
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MIN_BYTES or nbytes > _limit:
        return np.empty(shape, dtype)
    with _lock:
        for i in range(len(_blocks)):
            if _blocks[i].nbytes == nbytes and _free(i):
                return _blocks[i].view(dtype).reshape(shape)
        held = sum(b.nbytes for b in _blocks)
        for i in reversed(range(len(_blocks))):  # over the limit: forget free blocks, newest first
            if held + nbytes <= _limit:
                break
            if _free(i):
                held -= _blocks.pop(i).nbytes
        if held + nbytes > _limit:
            return np.empty(shape, dtype)
        _blocks.append(np.empty(nbytes, np.uint8))
        return _blocks[-1].view(dtype).reshape(shape)


def empty_like(x, dtype=None):
    """:func:`empty` with ``x``'s shape (C order), its dtype unless ``dtype`` is given, on its device."""
    return empty(x.shape, x.dtype if dtype is None else dtype, get_array_module(x))


def clear() -> int:
    """Drop every cached block that no array uses; returns the bytes released."""
    with _lock:
        released = 0
        for i in reversed(range(len(_blocks))):
            if _free(i):
                released += _blocks.pop(i).nbytes
        return released


def cached_bytes() -> tuple[int, int]:
    """(bytes held by the cache, of which in use right now)."""
    with _lock:
        held = sum(b.nbytes for b in _blocks)
        used = sum(b.nbytes for i, b in enumerate(_blocks) if not _free(i))
        return held, used
