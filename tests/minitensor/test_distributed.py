"""minitensor/distributed.py without MPI: the batch split, the buckets, the one-process world."""
import numpy as np
import pytest

import minitensor as mt
from minitensor import distributed as dist


def test_shard_slices_cover_the_batch_in_rank_order():
    rows = np.arange(12)
    parts = [rows[dist.shard_slice(12, r, 3)] for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), rows)
    assert [len(p) for p in parts] == [4, 4, 4]
    assert dist.shard_slice(5, 0, 1) == slice(0, 5)


def test_a_batch_that_does_not_split_equally_is_refused():
    with pytest.raises(ValueError, match="a batch of 6 cannot be split equally over 4 ranks: make --batch-size"):
        dist.shard_slice(6, 0, 4)


def test_buckets_are_consecutive_and_capped():
    sizes = [10, 10, 10, 100, 5, 5]
    got = dist.buckets(sizes, itemsize=4, limit=100)  # 25 float32 entries per bucket
    assert got == [[0, 1], [2], [3], [4, 5]]  # 100 entries: alone (over the cap, never split)
    assert [i for b in got for i in b] == list(range(len(sizes)))
    assert dist.buckets([], 4) == []


def test_single_process_changes_nothing(monkeypatch):
    for name in dist.LAUNCHER_SIZE:
        monkeypatch.delenv(name, raising=False)
    world = dist.world()
    assert isinstance(world, dist.SingleProcess) and (world.rank, world.size, world.is_root) == (0, 1, True)
    p = mt.Tensor(np.ones(3, np.float32), requires_grad=True)
    p.grad = np.array([1.0, 2.0, 3.0], np.float32)
    before = p.grad
    world.broadcast_parameters([p])
    world.average_gradients([p])
    assert p.grad is before and world.mean(2.5) == 2.5 and world.gather_rows([before])[0] is before
    world.check_same("anything", {"a": 1})


def test_launched_size_reads_the_launchers_variables(monkeypatch):
    for name in dist.LAUNCHER_SIZE:
        monkeypatch.delenv(name, raising=False)
    assert dist.launched_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert dist.launched_size() == 3
    monkeypatch.setenv("PMI_SIZE", "2")
    assert dist.launched_size() == 2


def test_several_ranks_without_mpi4py_is_an_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpi4py(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(builtins, "__import__", no_mpi4py)
    with pytest.raises(dist.DistributedError, match=r"one of 2 ranks .* mpi4py is not installed: pip install"):
        dist.world()
