r"""minitensor/kernels/threads.py: cache-sized blocks over threads, and the matrix product shared between them.

The module promises three things, each checked here:

* :func:`~minitensor.kernels.threads.blocks` tiles an array exactly once, never cutting an
  axis at or after the reduction axis, with pieces of about ``target`` entries;
* :func:`~minitensor.kernels.threads.run_blocks` calls ``fn`` once per index on up to
  :func:`~minitensor.kernels.threads.num_threads` threads, re-raises the first error, and
  runs nested calls on the calling thread (no deadlock);
* the numbers do not depend on the thread count: masked softmax, tanh-GELU, dropout
  and every matrix product give BIT-IDENTICAL results (``np.array_equal``) for 1, 2
  and 3 threads, in float32 and float64, and agree with plain NumPy.

The blocked kernels call ``for_blocks`` with the default ``target`` (``BLOCK_ELEMENTS``),
so the fixed shapes below are larger than
131,072 entries and each test asserts that its shape really is split into several blocks.
Matrix products are threaded only above ``MATMUL_MIN_MACS`` multiply-adds, and the
fixed shapes are above it too (asserted as well).
"""
import contextlib
import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minitensor as mt
import minitensor.functional as F
from minitensor import kernels
from minitensor.kernels import threads as kernel_threads
from minitensor.attention import causal_mask, masked_softmax
from minitensor.kernels.threads import single_threaded_blas

THREADS = (1, 2, 3)
DTYPES = (np.float32, np.float64)
CLOSE = {np.float32: {"rtol": 2e-5, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-13}}
# two orders of summing the same products (values of size ~sqrt(k) here): a few ulps apart at most
ROUNDING = {np.float32: {"rtol": 1e-5, "atol": 1e-4}, np.float64: {"rtol": 1e-12, "atol": 1e-11}}
JOIN_S = 30.0  # a join longer than this means a deadlock (every call here takes well under a second)

# hypothesis + the autouse fixture below: the fixture only restores the thread count, so sharing it
# between the examples of one test is harmless
HYP = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@pytest.fixture(autouse=True)
def fast_kernels():
    """These tests are about the CPU kernels: run them even under MINITENSOR_KERNELS=reference."""
    with kernels.use("fast"):
        yield


@pytest.fixture(autouse=True)
def restore_threads():
    """Every test leaves the thread count as it found it, whatever it set or however it failed."""
    before = kernel_threads.num_threads()
    yield
    kernel_threads.set_num_threads(before)


@contextlib.contextmanager
def using_threads(n):
    before = kernel_threads.num_threads()
    kernel_threads.set_num_threads(n)
    try:
        yield
    finally:
        kernel_threads.set_num_threads(before)


def per_thread_count(fn):
    """``fn()`` run with 1, 2 and 3 threads; a list of its results."""
    results = []
    for n in THREADS:
        with using_threads(n):
            results.append(fn())
    return results


def assert_all_equal(results, what, exact=True):
    """Every thread count gave the same arrays (and dtypes) as one thread: bit for bit when ``exact``,
    else to rounding (a matrix product split into row pieces; see kernel_threads.matmul)."""
    first = results[0]
    for n, other in zip(THREADS[1:], results[1:]):
        for i, (a, b) in enumerate(zip(first, other)):
            assert a.dtype == b.dtype and a.shape == b.shape, f"{what}[{i}]: {n} threads changed shape/dtype"
            if exact:
                assert np.array_equal(a, b), (
                    f"{what}[{i}]: {n} threads differ from 1 thread (max |diff| {np.max(np.abs(a - b)) if a.size else 0})")
            else:
                np.testing.assert_allclose(b, a, **ROUNDING[a.dtype.type], err_msg=f"{what}[{i}]: {n} threads")


def run_in_thread(fn):
    """Call ``fn()`` on a helper thread, fail if it has not finished within JOIN_S; return its result."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001  (reported to the test below)
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(JOIN_S)
    assert not t.is_alive(), f"did not finish within {JOIN_S} s (deadlock?)"
    if "error" in box:
        raise box["error"]
    return box["result"]


# ====================================================================== blocks

@st.composite
def block_shapes(draw, max_entries=6000):
    """0-4 dims, sides 0..40 (zero-size sides included), at most ``max_entries`` entries in all."""
    ndim = draw(st.integers(0, 4), label="ndim")
    shape, entries = [], 1
    for _ in range(ndim):
        side = draw(st.integers(0, min(40, max_entries // max(1, entries))))
        shape.append(side)
        entries *= max(1, side)
    return tuple(shape)


def check_tiling(shape, axis, target):
    bl = kernel_threads.blocks(shape, axis, target)
    ndim = len(shape)
    cut_limit = ndim if axis is None else (axis % ndim if ndim else 0)  # axes >= cut_limit must stay whole
    whole = shape[cut_limit:]
    size = math.prod(shape)
    assert len(bl) >= 1
    if size <= target:
        assert bl == [(...,)], f"{size} entries <= target {target} must be one block, got {len(bl)}"
    values = np.arange(size).reshape(shape)
    count = np.zeros(shape, dtype=np.int64)
    for ix in bl:
        assert isinstance(ix, tuple)
        for part in ix:
            assert part is Ellipsis or isinstance(part, int) or (isinstance(part, slice) and part.step in (None, 1)), ix
        view = count[ix]
        assert view.base is count, f"{ix} does not give a view"
        assert values[ix].shape == view.shape
        if whole:  # the trailing axes, from `axis` on, keep their full extent (even if leading axes were dropped)
            assert view.shape[view.ndim - len(whole):] == whole, (shape, axis, ix, view.shape)
        # about `target` entries: never more, unless one whole trailing sub-array is already bigger
        assert view.size <= max(target, math.prod(whole)), (shape, axis, target, ix)
        view += 1
    assert np.all(count == 1), f"blocks{shape, axis, target} cover some entries {count.min()}..{count.max()} times"


@settings(max_examples=300, **HYP)
@given(shape=block_shapes(), data=st.data(), target=st.integers(1, 500))
def test_blocks_cover_every_entry_once_and_keep_trailing_axes_whole(shape, data, target):
    ndim = len(shape)
    axis = data.draw(st.none() | st.integers(-ndim, ndim - 1), label="axis") if ndim else None
    check_tiling(shape, axis, target)


@pytest.mark.parametrize("shape, axis", [
    ((3, 10, 70, 90), -1), ((3, 10, 70, 90), -2), ((3, 10, 70, 90), None), ((3, 10, 70, 90), 1),
    ((2, 300, 257), -1), ((2, 300, 257), -2), ((2, 300, 257), None), ((140000,), None), ((140000,), 0),
])
def test_blocks_with_the_default_target(shape, axis):
    """The sizes the op tests below rely on: split into several blocks at the default target."""
    check_tiling(shape, axis, kernel_threads.BLOCK_ELEMENTS)
    n = len(kernel_threads.blocks(shape, axis))
    if axis == 0 or (len(shape) == 1 and axis is not None):
        assert n == 1  # a reduction over every axis: nothing may be cut
    else:
        assert n > 1


@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("target", [0, 1, 500])
def test_blocks_of_a_0d_shape(axis, target):
    assert kernel_threads.blocks((), axis, target) == [(...,)]
    x = np.zeros(())
    view = x[kernel_threads.blocks((), axis, target)[0]]
    view += 1  # (...,) gives a view even of a 0-d array
    assert x == 1


def test_blocks_of_zero_size_shapes_are_one_block():
    for shape in [(0,), (3, 0, 5), (0, 40, 40, 40), (40, 40, 40, 0)]:
        for axis in [None, -1, 1 % len(shape)]:
            assert kernel_threads.blocks(shape, axis, 1) == [(...,)]


# ====================================================================== run_blocks

@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("n", [0, 1, 2, 5, 64])
def test_run_blocks_calls_fn_once_per_index(threads, n):
    kernel_threads.set_num_threads(threads)
    seen, lock = [], threading.Lock()
    index_list = [("block", i) for i in range(n)]

    def fn(ix):
        with lock:
            seen.append(ix)

    kernel_threads.run_blocks(fn, index_list)
    assert sorted(seen) == index_list


def barrier_run(threads, timeout=10.0):
    """run_blocks over `threads` indices, each waiting until all of them run at once: proves `threads` threads."""
    barrier = threading.Barrier(threads, timeout=timeout)
    names, lock = set(), threading.Lock()

    def fn(ix):
        barrier.wait()  # BrokenBarrierError (not a hang) if fewer threads than blocks run at once
        with lock:
            names.add(threading.current_thread().name)

    kernel_threads.run_blocks(fn, list(range(threads)))
    return names


@pytest.mark.parametrize("threads", [2, 3])
def test_run_blocks_really_uses_that_many_threads(threads):
    kernel_threads.set_num_threads(threads)
    for _ in range(2):  # twice: the calling thread is usable again after a run
        names = barrier_run(threads)
        assert len(names) == threads and threading.current_thread().name in names


def test_changing_the_thread_count_replaces_the_pool():
    kernel_threads.set_num_threads(2)
    assert len(barrier_run(2)) == 2
    kernel_threads.set_num_threads(3)
    assert kernel_threads.num_threads() == 3
    assert len(barrier_run(3)) == 3
    kernel_threads.set_num_threads(1)
    seen = []
    kernel_threads.run_blocks(lambda ix: seen.append(threading.current_thread()), range(5))
    assert seen == [threading.current_thread()] * 5  # 1 thread: everything on the caller
    kernel_threads.set_num_threads(2)
    assert len(barrier_run(2)) == 2


@pytest.mark.parametrize("threads", THREADS)
def test_run_blocks_reraises_an_error_and_the_pool_still_works(threads):
    kernel_threads.set_num_threads(threads)

    def fn(ix):
        if ix == 3:
            raise ValueError(f"boom in block {ix}")

    for _ in range(2):
        with pytest.raises(ValueError, match="boom in block 3"):
            kernel_threads.run_blocks(fn, list(range(20)))
    seen, lock = [], threading.Lock()

    def ok(ix):
        with lock:
            seen.append(ix)

    kernel_threads.run_blocks(ok, list(range(20)))
    assert sorted(seen) == list(range(20))
    if threads > 1:
        assert len(barrier_run(threads)) == threads


@pytest.mark.parametrize("threads", [2, 3])
def test_run_blocks_reraises_an_error_from_a_pool_thread(threads):
    """The failing call runs on a helper thread (not the caller): its error still reaches the caller."""
    kernel_threads.set_num_threads(threads)
    caller = threading.current_thread()
    barrier = threading.Barrier(threads, timeout=10.0)

    def fn(ix):
        barrier.wait()  # every index on its own thread
        if threading.current_thread() is not caller:
            raise KeyError(f"helper failed on {ix}")

    with pytest.raises(KeyError, match="helper failed on"):
        kernel_threads.run_blocks(fn, list(range(threads)))
    assert len(barrier_run(threads)) == threads


@pytest.mark.parametrize("threads", THREADS)
def test_nested_run_blocks_does_not_deadlock(threads):
    kernel_threads.set_num_threads(threads)
    seen, lock = [], threading.Lock()

    def inner(outer_ix):
        def fn(ix):
            with lock:
                seen.append((outer_ix, ix))
        return fn

    def outer(ix):
        kernel_threads.run_blocks(inner(ix), list(range(7)))

    run_in_thread(lambda: kernel_threads.run_blocks(outer, list(range(2 * threads + 1))))
    assert sorted(seen) == [(i, j) for i in range(2 * threads + 1) for j in range(7)]
    # and nesting from the test's own thread, one level deeper
    seen.clear()
    run_in_thread(lambda: kernel_threads.run_blocks(lambda i: kernel_threads.run_blocks(outer, [i]), list(range(5))))
    assert sorted(seen) == [(i, j) for i in range(5) for j in range(7)]
    if threads > 1:
        assert len(barrier_run(threads)) == threads  # the nested runs left the pool usable


# ====================================================================== thread count settings

@pytest.mark.parametrize("bad", [0, -1, 1.5, True, False, "2", None])
def test_set_num_threads_rejects_bad_values(bad):
    kernel_threads.set_num_threads(2)
    with pytest.raises(ValueError, match="set_num_threads"):
        kernel_threads.set_num_threads(bad)
    assert kernel_threads.num_threads() == 2  # unchanged


def test_set_num_threads_sets_the_count():
    for n in (3, 1, 2):
        kernel_threads.set_num_threads(n)
        assert kernel_threads.num_threads() == n


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", ""])
def test_bad_environment_variable_is_named(monkeypatch, value):
    monkeypatch.setenv("MINITENSOR_NUM_THREADS", value)
    with pytest.raises(ValueError, match="MINITENSOR_NUM_THREADS"):
        kernel_threads._default_threads()


def test_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("MINITENSOR_NUM_THREADS", "3")
    assert kernel_threads._default_threads() == 3
    monkeypatch.delenv("MINITENSOR_NUM_THREADS")
    assert kernel_threads._default_threads() >= 1


# ====================================================================== masked softmax: bit-identical

SOFTMAX_SHAPES = [(3, 10, 70, 90), (2, 300, 257)]


def make_mask(kind, shape, axis, rng):
    if kind == "causal":  # (T_q, T_k), broadcast; with axis=-2 the columns past T_q are fully masked
        return causal_mask(shape[-2], shape[-1])
    mask = rng.random(shape) < 0.7
    rows = np.moveaxis(mask, axis, -1)  # a view of the mask: rows along `axis`
    rows[rng.random(rows.shape[:-1]) < 0.15] = False  # some fully-masked rows
    return mask


def softmax_reference(scores, mask, axis, upstream):
    s = np.where(np.broadcast_to(mask, scores.shape), scores, -np.inf)
    m = s.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m)
    total = e.sum(axis=axis, keepdims=True)
    p = np.where(total > 0, e / np.where(total > 0, total, 1), 0)
    grad = p * (upstream - (upstream * p).sum(axis=axis, keepdims=True))
    return p, grad


def softmax_run(scores, mask, axis, upstream):
    s = mt.Tensor(scores.copy(), requires_grad=True)
    p = masked_softmax(s, mask, axis=axis)
    p.backward(upstream)
    return p.numpy().copy(), s.grad.copy()


def check_masked_softmax(scores, mask, axis, upstream):
    results = per_thread_count(lambda: softmax_run(scores, mask, axis, upstream))
    assert_all_equal(results, f"masked_softmax{scores.shape} axis={axis}")
    p, grad = results[0]
    assert p.dtype == scores.dtype and grad.dtype == scores.dtype
    p_ref, grad_ref = softmax_reference(scores.astype(np.float64), mask, axis, upstream.astype(np.float64))
    np.testing.assert_allclose(p, p_ref, **CLOSE[scores.dtype.type], err_msg="forward")
    np.testing.assert_allclose(grad, grad_ref, **CLOSE[scores.dtype.type], err_msg="gradient")
    dead = ~np.broadcast_to(mask, scores.shape).any(axis=axis)
    assert np.all(np.moveaxis(p, axis, -1)[dead] == 0) and np.all(np.moveaxis(grad, axis, -1)[dead] == 0)
    return dead


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_kind", ["causal", "random"])
@pytest.mark.parametrize("axis", [-1, -2])
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_masked_softmax_is_bit_identical_for_every_thread_count(shape, axis, mask_kind, dtype):
    assert len(kernel_threads.blocks(shape, axis)) > 1, "the shape must be split for this test to mean anything"
    rng = np.random.default_rng([len(shape), -axis, mask_kind == "causal", dtype == np.float32])
    scores = (rng.standard_normal(shape) * 3).astype(dtype)
    upstream = rng.standard_normal(shape).astype(dtype)
    mask = make_mask(mask_kind, shape, axis, rng)
    dead = check_masked_softmax(scores, mask, axis, upstream)
    if mask_kind == "random":
        assert dead.any(), "the test should include fully-masked rows"


@settings(max_examples=12, **HYP)
@given(data=st.data())
def test_masked_softmax_drawn_shapes(data):
    """Mid-sized shapes: some stay one block, some are split (unevenly); any axis; a non-contiguous layout too."""
    ndim = data.draw(st.integers(1, 4), label="ndim")
    shape = tuple(data.draw(st.integers(1, 4), label="lead") for _ in range(ndim - 2)) + tuple(
        data.draw(st.integers(1, 300), label="side") for _ in range(min(ndim, 2)))
    axis = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    scores = (rng.standard_normal(shape) * 3).astype(dtype)
    if data.draw(st.booleans(), label="transposed layout"):
        scores = np.ascontiguousarray(scores.T).T  # same values, Fortran order
    upstream = rng.standard_normal(shape).astype(dtype)
    mask = make_mask("random", shape, axis, rng)
    check_masked_softmax(scores, mask, axis, upstream)


# ====================================================================== GELU and dropout: bit-identical

ELEMENTWISE_SHAPES = [(3, 10, 70, 90), (2, 300, 257), (140001,)]


def gelu_reference(x, upstream):
    k, c = math.sqrt(2 / math.pi), 0.044715
    t = np.tanh(k * (x + c * x**3))
    y = 0.5 * x * (1 + t)
    dy = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x)
    return y, dy * upstream


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_gelu_tanh_is_bit_identical_for_every_thread_count(shape, dtype):
    assert len(kernel_threads.blocks(shape)) > 1
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    upstream = rng.standard_normal(shape).astype(dtype)

    def run():
        t = mt.Tensor(x.copy(), requires_grad=True)
        y = F.gelu(t, approximate="tanh")
        y.backward(upstream)
        return y.numpy().copy(), t.grad.copy()

    results = per_thread_count(run)
    assert_all_equal(results, f"gelu{shape}")
    y_ref, g_ref = gelu_reference(x.astype(np.float64), upstream.astype(np.float64))
    np.testing.assert_allclose(results[0][0], y_ref, **CLOSE[dtype])
    np.testing.assert_allclose(results[0][1], g_ref, **CLOSE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4096, 96), (3, 700, 257)])
def test_layer_norm_is_bit_identical_for_every_thread_count(shape, dtype):
    assert len(kernel_threads.blocks(shape, -1)) > 1
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    w, b = rng.standard_normal(shape[-1]).astype(dtype), rng.standard_normal(shape[-1]).astype(dtype)
    upstream = rng.standard_normal(shape).astype(dtype)

    def run():
        tx, tw, tb = (mt.Tensor(a.copy(), requires_grad=True) for a in (x, w, b))
        y = F.layer_norm(tx, tw, tb)
        y.backward(upstream)
        return y.numpy().copy(), tx.grad.copy(), tw.grad.copy(), tb.grad.copy()

    results = per_thread_count(run)
    assert_all_equal(results, f"layer_norm{shape}")
    x64, u64 = x.astype(np.float64), upstream.astype(np.float64)
    xhat = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    g = u64 * w
    gx = (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True)) / np.sqrt(
        x64.var(-1, keepdims=True) + 1e-5)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else CLOSE[dtype]
    np.testing.assert_allclose(results[0][0], xhat * w + b, **tol)
    np.testing.assert_allclose(results[0][1], gx, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
def test_dropout_is_bit_identical_for_every_thread_count(shape, dtype):
    assert len(kernel_threads.blocks(shape)) > 1
    p = 0.3
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    upstream = rng.standard_normal(shape).astype(dtype)

    def run():
        t = mt.Tensor(x.copy(), requires_grad=True)
        y = F.dropout(t, p, rng=np.random.default_rng(1234))  # the same mask for every thread count
        y.backward(upstream)
        return y.numpy().copy(), t.grad.copy()

    results = per_thread_count(run)
    assert_all_equal(results, f"dropout{shape}")
    keep = np.random.default_rng(1234).random(shape, dtype=dtype) >= p
    scale = dtype(1 / (1 - p))
    np.testing.assert_allclose(results[0][0], x * scale * keep, **CLOSE[dtype])
    np.testing.assert_allclose(results[0][1], upstream * scale * keep, **CLOSE[dtype])
    assert np.all(results[0][0][~keep] == 0) and np.all(results[0][1][~keep] == 0)


# ====================================================================== matmul through tensors
#
# A stack is shared out by whole matrices, each one the same single-threaded BLAS call whatever the
# thread count: bit-identical. ONE matrix product split into row pieces agrees only to rounding: OpenBLAS
# may block a smaller piece differently (seen in float64 with k = 64 on an AVX-512 EPYC), as its own
# threads do too.

def macs(a_shape, b_shape):
    batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    return math.prod(batch) * a_shape[-2] * a_shape[-1] * b_shape[-1]


def operand(rng, shape, dtype, transposed):
    if transposed:  # the same kind of values stored as the transpose of a C array (what `x.T` gives)
        return np.swapaxes(rng.standard_normal(shape[:-2] + shape[::-1][:2]).astype(dtype), -1, -2)
    return rng.standard_normal(shape).astype(dtype)


MATMUL_CASES = {
    "2d": ((4096, 64), (64, 300), False, False),
    "2d a transposed": ((4096, 64), (64, 300), True, False),
    "2d b transposed": ((4096, 64), (64, 300), False, True),
    "stacked": ((8, 4, 128, 64), (8, 4, 64, 128), False, False),
    "stacked b transposed": ((8, 4, 128, 64), (8, 4, 64, 128), False, True),
    "broadcast stacks": ((1, 4, 128, 64), (8, 1, 64, 128), False, False),
    "stack @ matrix": ((8, 512, 64), (64, 300), False, False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(MATMUL_CASES))
def test_tensor_matmul_is_bit_identical_for_every_thread_count(case, dtype):
    a_shape, b_shape, a_t, b_t = MATMUL_CASES[case]
    assert macs(a_shape, b_shape) >= kernel_threads.MATMUL_MIN_MACS, "the product must be large enough to be threaded"
    rng = np.random.default_rng(3)
    a, b = operand(rng, a_shape, dtype, a_t), operand(rng, b_shape, dtype, b_t)
    out_shape = np.broadcast_shapes(a_shape[:-2], b_shape[:-2]) + (a_shape[-2], b_shape[-1])
    upstream = rng.standard_normal(out_shape).astype(dtype)

    def run():
        ta, tb = mt.Tensor(a, requires_grad=True), mt.Tensor(b, requires_grad=True)
        y = ta @ tb
        y.backward(upstream)
        return y.numpy().copy(), ta.grad.copy(), tb.grad.copy()

    results = per_thread_count(run)
    a64, b64, u64 = a.astype(np.float64), b.astype(np.float64), upstream.astype(np.float64)
    with single_threaded_blas():  # OpenBLAS's own threads on a stack of small products: slow on a busy machine
        y_ref = np.matmul(a64, b64)
        ga_ref = np.matmul(u64, np.swapaxes(b64, -1, -2))
        gb_ref = np.matmul(np.swapaxes(a64, -1, -2), u64)
    ga_ref = ga_ref.sum(axis=tuple(range(ga_ref.ndim - a.ndim)))  # broadcast axes summed back
    gb_ref = gb_ref.sum(axis=tuple(range(gb_ref.ndim - b.ndim)))
    ga_ref = ga_ref.sum(axis=tuple(i for i, s in enumerate(a.shape[:-2]) if s == 1), keepdims=True)
    gb_ref = gb_ref.sum(axis=tuple(i for i, s in enumerate(b.shape[:-2]) if s == 1), keepdims=True)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else CLOSE[dtype]
    for n, (y, ga, gb) in zip(THREADS, results):  # right for every thread count...
        np.testing.assert_allclose(y, y_ref, **tol, err_msg=f"forward, {n} threads")
        np.testing.assert_allclose(ga, ga_ref, **tol, err_msg=f"grad a, {n} threads")
        np.testing.assert_allclose(gb, gb_ref, **tol, err_msg=f"grad b, {n} threads")
    assert_all_equal(results, case, exact=case.startswith(("stacked", "broadcast")))  # ...and the same between them


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape", [(4096, 64), (16, 256, 64)])
def test_linear_layer_is_bit_identical_for_every_thread_count(x_shape, dtype):
    rng = np.random.default_rng(4)
    layer = mt.nn.Linear(64, 300, rng=np.random.default_rng(5), dtype=dtype)
    w0, b0 = layer.weight.data.copy(), layer.bias.data.copy()
    x = rng.standard_normal(x_shape).astype(dtype)
    upstream = rng.standard_normal(x_shape[:-1] + (300,)).astype(dtype)
    assert macs((math.prod(x_shape[:-1]), 64), (64, 300)) >= kernel_threads.MATMUL_MIN_MACS

    def run():
        layer.weight.grad = layer.bias.grad = None
        t = mt.Tensor(x, requires_grad=True)
        y = layer(t)
        y.backward(upstream)
        return y.numpy().copy(), t.grad.copy(), layer.weight.grad.copy(), layer.bias.grad.copy()

    results = per_thread_count(run)
    x2, u2 = x.reshape(-1, 64).astype(np.float64), upstream.reshape(-1, 300).astype(np.float64)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else CLOSE[dtype]
    for n, (y, gx, gw, gb) in zip(THREADS, results):
        np.testing.assert_allclose(y.reshape(-1, 300), x2 @ w0.T.astype(np.float64) + b0, **tol, err_msg=f"{n} threads")
        np.testing.assert_allclose(gx.reshape(-1, 64), u2 @ w0.astype(np.float64), **tol, err_msg=f"{n} threads")
        np.testing.assert_allclose(gw, u2.T @ x2, **tol, err_msg=f"{n} threads")
        np.testing.assert_allclose(gb, u2.sum(axis=0), **tol, err_msg=f"{n} threads")
    assert_all_equal(results, f"Linear{x_shape}", exact=False)


# ====================================================================== kernels.threads.matmul directly

DIRECT_CASES = [  # a shape, b shape, bias?, a transposed?
    ((4096, 64), (64, 300), True, False),
    ((4096, 64), (64, 300), False, True),
    ((1, 8192), (8192, 1024), True, False),  # one row: fewer pieces than threads
    ((3, 700), (700, 2048), False, False),  # 3 rows over 2 threads: uneven pieces
    ((5, 7), (7, 3), True, False),  # below MATMUL_MIN_MACS: one whole call
    ((0, 64), (64, 300), True, False),  # zero rows
    ((4096, 0), (0, 300), True, False),  # empty sum: zeros (+ bias)
    ((8, 4, 128, 64), (8, 4, 64, 128), True, False),
    ((1, 4, 128, 64), (8, 1, 64, 128), False, False),
    ((128, 64), (32, 64, 128), True, True),  # a matrix broadcast over b's stack
    ((2, 3, 4, 5), (5, 6), True, False),  # small stack
    ((0, 128, 64), (0, 64, 128), True, False),  # empty stack
    ((7, 128, 64), (7, 64, 700), True, False),  # 7 matrices over 2-3 threads
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_shape, b_shape, with_bias, a_t", DIRECT_CASES)
def test_parallel_matmul_equals_numpy(a_shape, b_shape, with_bias, a_t, dtype):
    rng = np.random.default_rng(6)
    a, b = operand(rng, a_shape, dtype, a_t), rng.standard_normal(b_shape).astype(dtype)
    bias = rng.standard_normal(b_shape[-1]).astype(dtype) if with_bias else None
    results = per_thread_count(lambda: (kernel_threads.matmul(a, b, bias),))
    with single_threaded_blas():
        expected = np.matmul(a.astype(np.float64), b.astype(np.float64)) + (0 if bias is None else bias)
        dtype_ref = np.matmul(a[..., :1, :], b).dtype
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else CLOSE[dtype]
    for n, (out,) in zip(THREADS, results):
        assert out.shape == expected.shape and out.dtype == dtype_ref
        np.testing.assert_allclose(out, expected, **tol, err_msg=f"{n} threads")
    stack = math.prod(np.broadcast_shapes(a_shape[:-2], b_shape[:-2])) > 1
    assert_all_equal(results, f"kernel_threads.matmul{a_shape, b_shape}", exact=stack)


def test_parallel_matmul_of_mixed_dtypes():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((4096, 64)).astype(np.float32), rng.standard_normal((64, 300))
    results = per_thread_count(lambda: (kernel_threads.matmul(a, b),))
    for (out,) in results:
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-12, atol=1e-12)
    assert_all_equal(results, "float32 @ float64", exact=False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_t, b_t", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("threads", [2, 3])
def test_parallel_matmul_agrees_with_one_whole_call(threads, a_t, b_t, dtype):
    """Row pieces give what one single-threaded BLAS call gives, to rounding; the bias is added once."""
    rng = np.random.default_rng(8)
    a, b = operand(rng, (4096, 64), dtype, a_t), operand(rng, (64, 300), dtype, b_t)
    bias = rng.standard_normal(300).astype(dtype)
    kernel_threads.set_num_threads(threads)
    got, got_bias = kernel_threads.matmul(a, b), kernel_threads.matmul(a, b, bias)
    with single_threaded_blas():
        whole = np.matmul(a, b)
    np.testing.assert_allclose(got, whole, **ROUNDING[dtype])
    np.testing.assert_allclose(got_bias, whole + bias, **ROUNDING[dtype])


@pytest.mark.parametrize("bias_shape", [(4096, 300), (1, 300), (299,), ()])
def test_parallel_matmul_rejects_a_bias_that_is_not_one_per_column(bias_shape):
    a, b = np.ones((4096, 64)), np.ones((64, 300))
    with pytest.raises(ValueError, match="bias"):
        kernel_threads.matmul(a, b, np.zeros(bias_shape))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [2, 3])
def test_stacked_parallel_matmul_gives_the_numbers_of_one_whole_call(threads, dtype):
    """A stack is shared out by whole matrices: each one is the single-threaded BLAS call of the whole stack."""
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((8, 4, 128, 64)).astype(dtype), rng.standard_normal((8, 1, 64, 300)).astype(dtype)
    kernel_threads.set_num_threads(threads)
    got = kernel_threads.matmul(a, b)
    with single_threaded_blas():
        whole = np.matmul(a, b)
    assert np.array_equal(got, whole)


PAIR_CASES = [  # (a, b) and (c, d) shapes, as a backward pass pairs them, and odd mixes
    (((4096, 300), (300, 64)), ((64, 4096), (4096, 300))),  # a linear layer's two gradients
    (((8, 4, 128, 128), (8, 4, 128, 64)), ((8, 4, 128, 128), (8, 4, 128, 64))),  # attention's, stacks
    (((5, 7), (7, 3)), ((4096, 64), (64, 300))),  # one below MATMUL_MIN_MACS: run whole, the other shared
    (((7, 128, 64), (7, 64, 700)), ((3, 700), (700, 2048))),  # a stack and an uneven single product
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("first, second", PAIR_CASES)
def test_matmul_pair_equals_two_matmuls(first, second, dtype):
    """Two products in one go give, bit for bit, what two ``matmul`` calls give with as many threads
    (the same pieces: a training run's numbers do not change), and NumPy's products to rounding."""
    rng = np.random.default_rng(10)
    a, b, c, d = (rng.standard_normal(s).astype(dtype) for s in (*first, *second))
    results = per_thread_count(lambda: kernel_threads.matmul_pair(a, b, c, d))
    one_by_one = per_thread_count(lambda: (kernel_threads.matmul(a, b), kernel_threads.matmul(c, d)))
    with single_threaded_blas():
        expected = np.matmul(a, b), np.matmul(c, d)
    for n, got, alone in zip(THREADS, results, one_by_one):
        for out, out_alone, want in zip(got, alone, expected, strict=True):
            assert out.shape == want.shape and out.dtype == want.dtype
            assert np.array_equal(out, out_alone), f"{n} threads: not the numbers of matmul alone"
            np.testing.assert_allclose(out, want, **ROUNDING[dtype], err_msg=f"{n} threads")
