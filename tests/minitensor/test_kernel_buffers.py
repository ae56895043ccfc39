"""The cache of large CPU blocks (minitensor/kernels/buffers.py).

A block may be handed out again only when no array uses its memory; these
tests hold views, views of views and saved tensors to make sure it never is
while one exists, and check the limit and ``clear``.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from minitensor import kernels
from minitensor.kernels import buffers

BIG = (buffers.MIN_BYTES // 4,)  # float32 entries of exactly MIN_BYTES


@pytest.fixture(autouse=True)
def fast_kernels():
    """The kernels are what use the cache: run them even under MINITENSOR_KERNELS=reference."""
    with kernels.use("fast"):
        yield


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    buffers.clear()
    monkeypatch.setattr(buffers, "_limit", 4 * buffers.MIN_BYTES)
    yield
    buffers.clear()


def test_a_free_block_is_handed_out_again():
    a = buffers.empty(BIG, np.float32)
    address = a.__array_interface__["data"][0]
    del a
    b = buffers.empty(BIG, np.float32)
    assert b.__array_interface__["data"][0] == address
    assert buffers.cached_bytes() == (buffers.MIN_BYTES, buffers.MIN_BYTES)


@pytest.mark.parametrize("keep", ["array", "view", "view_of_view", "reshaped", "tensor"])
def test_a_block_in_use_is_never_handed_out(keep):
    import minitensor as mt

    a = buffers.empty(BIG, np.float32)
    a[:] = 7.0
    holders = {
        "array": lambda: a,
        "view": lambda: a[10:],
        "view_of_view": lambda: a[10:][::2][3:],
        "reshaped": lambda: a.reshape(2, -1).T,
        "tensor": lambda: mt.Tensor(a),
    }
    held = holders[keep]()
    del a
    b = buffers.empty(BIG, np.float32)
    b[:] = -1.0
    data = held.data if hasattr(held, "_ctx") else held
    assert np.all(data == 7.0), f"a block still used through a {keep} was handed out again"


def test_only_the_same_size_is_reused_and_sizes_below_min_bytes_are_not_cached():
    small = buffers.empty((1000,), np.float32)
    assert small.base is None and buffers.cached_bytes() == (0, 0)
    a = buffers.empty(BIG, np.float32)
    address = a.__array_interface__["data"][0]
    del a
    b = buffers.empty((BIG[0] + 4,), np.float32)  # another size: a new block
    assert b.__array_interface__["data"][0] != address
    c = buffers.empty((BIG[0] // 2,), np.float64)  # same bytes, another dtype and shape: reused
    assert c.__array_interface__["data"][0] == address and c.dtype == np.float64


def test_the_limit_is_kept_by_forgetting_free_blocks_and_then_by_not_caching():
    held = [buffers.empty(BIG, np.float32) for _ in range(4)]  # fills the 4 x MIN_BYTES limit
    extra = buffers.empty(BIG, np.float32)  # nothing free to forget: a plain array
    assert buffers.cached_bytes() == (4 * buffers.MIN_BYTES, 4 * buffers.MIN_BYTES)
    assert extra.base is None
    del held[:2]
    other = buffers.empty((BIG[0] * 2,), np.float32)  # needs 2 x MIN_BYTES: the two free blocks go
    assert other.base is not None
    assert buffers.cached_bytes() == (4 * buffers.MIN_BYTES, 4 * buffers.MIN_BYTES)


def test_clear_releases_free_blocks_only():
    kept = buffers.empty(BIG, np.float32)
    freed = buffers.empty(BIG, np.float32)
    del freed
    assert buffers.clear() == buffers.MIN_BYTES
    assert buffers.cached_bytes() == (buffers.MIN_BYTES, buffers.MIN_BYTES)
    del kept


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_a_bad_cache_size_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("MINITENSOR_BUFFER_CACHE_MB", value)
    with pytest.raises(ValueError, match="MINITENSOR_BUFFER_CACHE_MB"):
        buffers._limit_bytes()


def test_a_zero_limit_turns_the_cache_off(monkeypatch):
    monkeypatch.setattr(buffers, "_limit", 0)
    a = buffers.empty(BIG, np.float32)
    assert a.base is None and buffers.cached_bytes() == (0, 0)


def test_a_training_step_reuses_its_blocks_and_gives_the_same_numbers(monkeypatch):
    import minitensor as mt
    import minitensor.functional as F
    from minitensor.attention import causal_mask, masked_softmax

    rng = np.random.default_rng(0)
    s = mt.tensor(rng.standard_normal((4, 8, 384, 384)).astype(np.float32), requires_grad=True)  # 18 MiB

    def step():
        p = F.dropout(masked_softmax(s, causal_mask(384, 384)), 0.1, rng=np.random.default_rng(1))
        loss = (p * p).sum()
        s.grad = None
        loss.backward()
        return float(loss.item()), s.grad.copy()

    monkeypatch.setattr(buffers, "_limit", 64 * buffers.MIN_BYTES)
    first = step()
    blocks_after_one = [id(b) for b in buffers._blocks]
    second = step()
    assert len(blocks_after_one) >= 3  # softmax, dropout and their gradients
    assert [id(b) for b in buffers._blocks] == blocks_after_one  # the second step found them free
    assert first[0] == second[0] and np.array_equal(first[1], second[1])


KEEP_SCRIPT = """
import os
import numpy as np
from minitensor.kernels import buffers
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
arrays = [np.ones(1 << 18, np.float32) for _ in range(64)]  # 64 blocks of 1 MiB, every page touched
before = rss()
del arrays
print(buffers.MALLOC_TUNED, (before - rss()) >> 20)
"""


@pytest.mark.skipif(not buffers.MALLOC_TUNED and buffers._limit > 0, reason="malloc is not glibc's here")
@pytest.mark.parametrize("cache_mb,tuned", [("1024", True), ("0", False)])
def test_glibc_keeps_freed_heap_memory_unless_the_cache_is_off(cache_mb, tuned):
    """Tuned, 64 MiB of freed 1 MiB arrays stay with the process (the next step reuses the pages); with
    MINITENSOR_BUFFER_CACHE_MB=0 malloc's defaults return them to the system at once."""
    env = {**os.environ, "MINITENSOR_BUFFER_CACHE_MB": cache_mb}
    out = subprocess.run([sys.executable, "-c", KEEP_SCRIPT], env=env, capture_output=True, text=True, check=True)
    flag, released_mb = out.stdout.split()
    assert flag == str(tuned)
    assert (int(released_mb) < 8) if tuned else (int(released_mb) > 56), out.stdout


def test_keep_freed_memory_does_nothing_at_zero_or_off_linux(monkeypatch):
    assert buffers.keep_freed_memory(0) is False
    monkeypatch.setattr(buffers.sys, "platform", "darwin")
    assert buffers.keep_freed_memory(1 << 30) is False
