r"""The CPU kernels' machinery: an array's work cut into cache-sized blocks, spread over the cores.

NumPy runs each elementwise call on one core and in one pass over memory, so a
softmax written as ``max``, ``subtract``, ``exp``, ``sum``, ``divide`` reads and
writes the whole (B, H, T, T) score array five times from main memory, while
the other cores sit idle. Two changes fix most of that without leaving Python:

1. **Blocks.** A kernel runs its formula's NumPy steps on one block of rows at a time,
   about ``BLOCK_ELEMENTS`` entries (512 KiB of float32), which stays in the
   core's L2 cache between the steps: one trip to memory instead of five.
2. **Threads.** NumPy releases the GIL inside its loops, so the blocks can be
   shared between threads, one per core. The calling thread works too, and a
   block is taken from a shared counter when a thread is free, so a core that
   another program is using slows the op down only by its share. (How the
   helper threads wait for their work: :mod:`.helpers`.)

For the blocked kernels the numbers do not change: each block is computed by
the same calls as the whole array would be, and no reduction is ever cut
across a block (a row's ``sum`` is the same pairwise sum). A test checks the
results are bit-identical for every thread count. (Matrix products are split
too, by :func:`matmul`; see there.)

``MINITENSOR_NUM_THREADS`` (or :func:`set_num_threads`) sets the thread count;
1 keeps everything on the calling thread. (CuPy arrays never come here: a GPU
already runs a whole array in parallel.)
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import itertools
import math
import numbers
import os
import threading
from functools import lru_cache

import numpy as np

from . import buffers, int_from_env
from .helpers import Helpers, usable_cores

BLOCK_ELEMENTS = 1 << 17  # entries per block: 512 KiB of float32, half a core's L2 on this machine or less

_lock = threading.Lock()
_pool: "Helpers | None" = None
_inside = threading.local()  # set while a thread runs blocks: nested calls stay on that thread


def _default_threads() -> int:
    n = int_from_env("MINITENSOR_NUM_THREADS", minimum=1)
    if n is not None:
        return n
    return usable_cores()


_threads = _default_threads()


def _forget_pool_after_fork() -> None:
    global _pool
    _pool = None  # a forked child has none of the parent's threads: it starts its own pool when needed


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def num_threads() -> int:
    """How many threads (the caller included) share an op's blocks."""
    return _threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the blocked CPU ops from now on (1: the calling thread only)."""
    global _threads, _pool
    if not isinstance(n, numbers.Integral) or isinstance(n, (bool, np.bool_)) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    with _lock:
        if _pool is not None and n != _threads:
            _pool.close()
            _pool = None
        _threads = int(n)


def _get_pool() -> Helpers:
    global _pool
    with _lock:
        if _pool is None:
            _pool = Helpers(_threads - 1)
        return _pool


def blocks(shape, axis: int | None = None, target: int | None = None) -> list[tuple]:
    """Index tuples that tile an array of ``shape`` into pieces of about ``target`` entries
    (default :data:`BLOCK_ELEMENTS`, read at each call).

    Only axes before ``axis`` are cut, so a reduction over ``axis`` (and over
    every later axis) always sees whole rows; ``axis=None`` allows cutting any
    axis. ``x[ix]`` for each returned ``ix`` is a view, and together they cover
    ``x`` exactly once. An array of ``target`` entries or fewer is one block,
    ``(...,)``, which gives a view even of a 0-d array.
    """
    target = BLOCK_ELEMENTS if target is None else target
    ndim = len(shape)
    if axis is not None and ndim and not -ndim <= axis < ndim:
        raise ValueError(f"blocks: axis {axis} is out of range for shape {tuple(shape)}")
    cut_limit = ndim if axis is None else axis % ndim if ndim else 0
    if math.prod(shape) <= target or cut_limit == 0:
        return [(...,)]
    # The outermost axis k whose trailing sub-array, shape[k+1:], fits in a block is cut
    # into runs of `step` slices; every axis before k is walked one index at a time.
    k = next((k for k in range(ndim) if math.prod(shape[k + 1:]) <= target), ndim - 1)
    k = min(k, cut_limit - 1)
    step = max(1, target // max(1, math.prod(shape[k + 1:])))
    outer = itertools.product(*(range(n) for n in shape[:k]))
    runs = [slice(i, min(i + step, shape[k])) for i in range(0, shape[k], step)]
    return [head + (run,) for head in outer for run in runs]


def run_blocks(fn, index_list) -> None:
    """Call ``fn(ix)`` for every ``ix`` in ``index_list``, on up to :func:`num_threads` threads.

    Returns once every call has finished; the first exception raised by any
    call is raised here (after the others have stopped). ``fn`` must write only
    to the part of its outputs that ``ix`` selects.
    """
    n_threads = min(_threads, len(index_list))
    if n_threads <= 1 or getattr(_inside, "active", False):
        for ix in index_list:
            fn(ix)
        return
    pool = _get_pool()
    if not pool.busy.acquire(blocking=False):  # another thread is using the helpers: run alone
        for ix in index_list:
            fn(ix)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL: each block is taken once
    errors = []

    def worker():
        _inside.active = True
        try:
            for i in iter(counter.__next__, None):
                if i >= len(index_list) or errors:
                    return
                fn(index_list[i])
        except BaseException as e:  # noqa: BLE001  (raised by the caller once every thread is done)
            errors.append(e)
        finally:
            _inside.active = False

    try:
        pool.run(worker, n_threads - 1)
    finally:
        pool.busy.release()
    if errors:
        raise errors[0]


def for_blocks(fn, shape, axis: int | None = None, target: int | None = None) -> None:
    """``run_blocks(fn, blocks(shape, axis, target))``: ``fn`` once per block of an array of ``shape``."""
    run_blocks(fn, blocks(shape, axis, target))


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
def single_threaded_blas():
    """Run NumPy's BLAS on one thread inside the block (a no-op for a BLAS we cannot steer).

    For a STACK of small products (attention's (T, Dh) @ (Dh, T) per batch and
    head) NumPy calls BLAS once per matrix, and OpenBLAS splits each small call
    over its threads: the wake-up and join of every call then costs more than
    the product itself, and on a machine whose cores are busy with other work a
    thread may wait a whole scheduler slice to run (seconds per step, measured).
    """
    threads = _openblas_threads()
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


MATMUL_MIN_MACS = 1 << 22  # below ~4M multiply-adds (about a millisecond) one thread is as fast
MIN_ROWS = 16  # rows (or columns) per piece of one product, at least: a thinner piece is a slow call


def matmul(a, b, bias=None):
    """``np.matmul(a, b) (+ bias)``, its products shared between the threads, BLAS on one thread each.

    OpenBLAS has threads of its own, and after each call they keep spinning
    on their cores for a while, waiting for the next one; the blocked
    elementwise ops that run between two matrix products would then fight
    them for the same cores. So minitensor keeps BLAS to one thread per call
    and splits the product itself: a stack of matrices (attention's per-head
    products) by matrix, one large product by rows of the output (by columns
    when it is wider than tall). ``bias`` (broadcast over the rows) is added
    to each piece of the output while it is still in cache.

    A stack gives exactly the numbers of one call (each matrix is the same
    single-threaded BLAS call). A split product agrees to rounding, and is
    usually bit-identical too, but not always: OpenBLAS may choose another
    kernel for a smaller piece (float64, k = 64 is one such case here), just
    as its own threading does.
    """
    return matmuls([(a, b, bias)])[0]


def matmul_pair(a, b, c, d):
    """``(a @ b, c @ d)``: a layer's two gradients, the pieces of both shared by the threads in one go.

    Each product is cut exactly as :func:`matmul` cuts it alone (so the numbers are
    the same), and all the pieces go to the threads together: one hand-over to the
    other threads instead of two.
    """
    return tuple(matmuls([(a, b, None), (c, d, None)]))


def matmuls(products):
    """``[np.matmul(a, b) (+ bias) for a, b, bias in products]``, all their pieces shared by the threads at once."""
    threads = _threads
    outs, pieces = [], []
    for a, b, bias in products:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        if bias is not None and bias.shape != (n,):
            raise ValueError(f"matmul: bias must have shape ({n},), one per output column, got {bias.shape}")
        count = math.prod(batch)
        small = count * m * k * n < MATMUL_MIN_MACS or (count == 1 and max(m, n) < MIN_ROWS * threads)
        if threads == 1 or small:
            # a small stack still runs on one BLAS thread: see single_threaded_blas
            with single_threaded_blas() if count > 1 else contextlib.nullcontext():
                out = np.matmul(a, b)
            if bias is not None:
                out += bias
            outs.append(out)
            continue
        out = buffers.empty(batch + (m, n), np.result_type(a, b))
        outs.append(out)
        pieces += _pieces(a, b, bias, out, batch, threads)  # cut as matmul alone cuts it: the same numbers
    if pieces:
        def product(i):
            a, b, bias, out = pieces[i]
            np.matmul(a, b, out=out)
            if bias is not None:
                out += bias

        with single_threaded_blas():
            run_blocks(product, range(len(pieces)))
    return outs


def _pieces(a, b, bias, out, batch, parts):
    """``(a, b, bias, out)`` views that cut one product ``a @ b (+ bias)`` into about ``parts`` pieces."""
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if math.prod(batch) > 1:  # a run of whole matrices per piece; broadcast views keep a stride-0 axis free
        a, b = np.broadcast_to(a, batch + (m, k)), np.broadcast_to(b, batch + (k, n))
        return [(a[ix], b[ix], bias, out[ix]) for ix in blocks(batch, target=max(1, math.prod(batch) // (4 * parts)))]
    if m >= n:  # one large product, taller than wide: a slice of rows of `a` and of the output per piece
        return [(a[..., i:j, :], b, bias, out[..., i:j, :]) for i, j in _cuts(m, parts)]
    # wider than tall: a slice of columns of `b`, of the bias and of the output per piece
    return [(a, b[..., :, i:j], None if bias is None else bias[i:j], out[..., :, i:j]) for i, j in _cuts(n, parts)]


def _cuts(size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` near-equal consecutive ranges covering ``range(size)`` (fewer when ``size`` is small)."""
    parts = max(1, min(parts, size))
    edges = [size * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))
