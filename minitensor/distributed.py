r"""Data parallelism: N processes train one model, each on its slice of every batch.

Every process (a *rank*) holds a full copy of the parameters. At each step it computes the gradient
of the loss on its own slice of the batch; the ranks then AVERAGE their gradients, so that each one
holds the gradient of the whole batch, and all take the same optimizer step: the copies never
drift apart. Why the average is the right gradient: for a loss that is a mean over the $B$ examples
of the batch, split into $N$ equal slices $S_r$ of $B/N$ examples,

$$\nabla \frac1B \sum_{i=1}^B \ell_i = \frac1N \sum_{r=1}^N \Big(\nabla \frac{N}{B} \sum_{i \in S_r} \ell_i\Big),$$

the mean over ranks of each rank's own mean-loss gradient. (It stops being exact where a loss is not
a mean over independent examples: a mean over a varying number of tokens per slice, batch
statistics, or dropout masks, which each rank draws for its own slice.)

The pieces, as ChainerMN and PyTorch's DistributedDataParallel have them:

- :func:`world` finds out whether this process was started by ``mpiexec`` with more than one rank;
  then it talks to the others through MPI (mpi4py, the ``distributed`` extra), otherwise it is a
  :class:`SingleProcess` whose operations do nothing.
- :meth:`MPIWorld.broadcast_parameters` copies rank 0's parameters to every rank, once, at the start.
- :meth:`MPIWorld.average_gradients` packs the gradients into a few flat buffers (*buckets* of at
  most :data:`BUCKET_BYTES`) and sums each over the ranks with one ``Allreduce``, then divides by
  $N$: one call per bucket instead of one per parameter, because every call pays a latency.
- Every collective waits at most ``timeout`` seconds (``MINITENSOR_DIST_TIMEOUT``, default
  :data:`DEFAULT_TIMEOUT`): a rank that died or stalled makes the others stop with a message
  naming what they waited for, instead of hanging forever.

Only NumPy arrays go through MPI here (a CuPy array would go through NCCL; see the GPU issue).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np

from .kernels import int_from_env

__all__ = ["BUCKET_BYTES", "DEFAULT_TIMEOUT", "DistributedError", "MPIWorld", "SingleProcess", "buckets",
           "launched_size", "shard_slice", "world"]

BUCKET_BYTES = 4 << 20  # 4 MiB of gradient per Allreduce (a parameter larger than that is a bucket alone)
DEFAULT_TIMEOUT = 600.0  # seconds a rank waits for the others in one collective (validation runs on rank 0 alone)
#: The variables by which MPI launchers tell a process how many ranks were started: MPICH's Hydra (and
#: Intel MPI), Open MPI.
LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


class DistributedError(RuntimeError):
    """A collective that could not complete: the ranks disagree, or one of them did not answer in time."""


def launched_size() -> int:
    """How many ranks the MPI launcher started (1 when this process was not started by ``mpiexec``)."""
    for name in LAUNCHER_SIZE:
        n = int_from_env(name, minimum=1)
        if n is not None:
            return n
    return 1


def shard_slice(n: int, rank: int, size: int) -> slice:
    """Rank ``rank``'s rows of a batch of ``n`` rows split into ``size`` equal, consecutive slices."""
    if n % size:
        raise ValueError(f"a batch of {n} cannot be split equally over {size} ranks: make --batch-size a multiple "
                         f"of the number of processes")
    k = n // size
    return slice(rank * k, (rank + 1) * k)


def buckets(sizes, itemsize: int, limit: int = BUCKET_BYTES) -> list:
    """Consecutive runs of parameter indices whose gradients fill at most ``limit`` bytes each (a larger
    parameter makes a bucket alone): ``[[0, 1, 2], [3], ...]`` for the parameters' ``sizes``."""
    out, current, used = [], [], 0
    for i, n in enumerate(sizes):
        if current and used + n * itemsize > limit:
            out.append(current)
            current, used = [], 0
        current.append(i)
        used += n * itemsize
    if current:
        out.append(current)
    return out


class SingleProcess:
    """One process: rank 0 of 1. Every operation leaves the arrays as they are."""

    rank, size, is_root = 0, 1, True

    def broadcast_parameters(self, params) -> None:
        pass

    def average_gradients(self, params) -> None:
        pass

    def mean(self, value: float) -> float:
        return value

    def gather_rows(self, arrays):
        return arrays

    def check_same(self, what: str, value) -> None:
        pass


class MPIWorld:
    """The ranks of an ``mpiexec`` run, through an mpi4py communicator (``COMM_WORLD`` by default)."""

    def __init__(self, comm=None, timeout: float | None = None):
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        if timeout is None:
            timeout = float(os.environ.get("MINITENSOR_DIST_TIMEOUT", DEFAULT_TIMEOUT))
        if not timeout > 0:
            raise ValueError(f"MPIWorld: the timeout must be > 0 seconds, got {timeout}")
        self.timeout = timeout

    def _wait(self, request, what: str) -> None:
        """Wait for a non-blocking collective, at most ``self.timeout`` seconds; past that, say so and end
        every rank of the run (``Abort``): the others may be blocked in the same collective."""
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not request.Test():
            if time.monotonic() > deadline:
                sys.stderr.write(f"error: rank {self.rank} of {self.size} waited {self.timeout:g} s for the other "
                                 f"ranks in {what}; one of them has died or stalled. Stopping the run "
                                 "(MINITENSOR_DIST_TIMEOUT sets the wait).\n")
                sys.stderr.flush()
                time.sleep(0.5)  # for the launcher to pass the message on before it ends the ranks
                self.comm.Abort(1)
            time.sleep(pause)
            pause = min(1e-3, pause + 1e-5)  # first a few quick polls, then at most a millisecond apart

    @staticmethod
    def _host_only(params) -> None:
        device = next((type(p.data).__module__ for p in params if not isinstance(p.data, np.ndarray)), None)
        if device is not None:
            raise DistributedError(f"data parallelism over MPI moves NumPy arrays; these parameters are {device} "
                                   "arrays (a model on the GPU), whose NCCL path is not written yet")

    def broadcast_parameters(self, params) -> None:
        """Rank 0's parameters, copied into every rank's (in place)."""
        self._host_only(params)
        for p in params:
            data = np.ascontiguousarray(p.data)
            self._wait(self.comm.Ibcast(data, root=0), "the broadcast of the initial parameters")
            p.data[...] = data

    def average_gradients(self, params) -> None:
        r"""Every parameter's ``grad`` replaced by its mean over the ranks, bucket by bucket:
        $\bar g = \frac1N \sum_r g_r$. The ranks must agree on which parameters have a gradient."""
        present = [i for i, p in enumerate(params) if p.grad is not None]
        if not self._agree("the gradients' allreduce", present):
            raise DistributedError("the ranks disagree on which parameters have a gradient")
        by_dtype = {}  # one buffer holds one dtype
        for i in present:
            by_dtype.setdefault(params[i].grad.dtype, []).append(params[i])
        for dtype, group in by_dtype.items():
            for bucket in buckets([p.grad.size for p in group], dtype.itemsize):
                grads = [group[i].grad for i in bucket]
                flat = np.concatenate([g.reshape(-1) for g in grads])  # one buffer: one Allreduce
                self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM), "the gradients' allreduce")
                flat /= self.size
                at = 0
                for i, g in zip(bucket, grads):
                    group[i].grad = flat[at:at + g.size].reshape(g.shape)
                    at += g.size

    def gather_rows(self, arrays):
        """Every rank's ``arrays`` (each (rows, ...), the same shapes on every rank) stacked along the rows
        in rank order: the list on rank 0, None on the others."""
        out = []
        for a in arrays:
            a = np.ascontiguousarray(a)
            whole = np.empty((self.size * a.shape[0],) + a.shape[1:], a.dtype) if self.is_root else None
            self._wait(self.comm.Igather(a, whole, root=0), "the gathering of the memory")
            out.append(whole)
        return out if self.is_root else None

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (e.g. each rank's loss on its slice: the batch's loss)."""
        buf = np.array([value], dtype=np.float64)
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), "the loss's mean")
        return float(buf[0] / self.size)

    def _agree(self, what: str, value) -> bool:
        """Whether every rank holds the same JSON-able ``value`` (compared by a digest, in one allreduce)."""
        text = json.dumps(value, sort_keys=True, default=str)
        h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")  # the same on every rank
        both = np.array([h, -h], dtype=np.int64)  # max(h) == -max(-h) == h only if every rank has h
        self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, both, op=self.MPI.MAX), what)
        return bool(both[0] == -both[1])

    def check_same(self, what: str, value) -> None:
        """Raise :class:`DistributedError` on every rank unless all ranks hold the same JSON-able ``value``,
        naming the first rank and the first top-level key that differ from rank 0's."""
        if self._agree(what, value):
            return
        texts = self.comm.allgather(json.dumps(value, sort_keys=True, default=str))  # every rank answered above
        first = json.loads(texts[0])
        for r, other in enumerate(texts):
            if other != texts[0]:
                b = json.loads(other)
                keys = sorted(k for k in set(first) | set(b) if first.get(k) != b.get(k)) \
                    if isinstance(first, dict) and isinstance(b, dict) else []
                detail = f": {keys[0]} is {first.get(keys[0])!r} on rank 0, {b.get(keys[0])!r} on rank {r}" if keys else ""
                raise DistributedError(f"the ranks disagree on {what}{detail}")


def world():
    """This process's ranks: an :class:`MPIWorld` when ``mpiexec`` started more than one, else
    :class:`SingleProcess`. Started with several ranks but without mpi4py is an error (each rank would
    otherwise train alone and write the same files)."""
    n = launched_size()
    if n == 1:
        return SingleProcess()
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        raise DistributedError(f"this process is one of {n} ranks started by mpiexec, but mpi4py is not installed: "
                               "pip install -e '.[distributed]'") from None
    return MPIWorld()
