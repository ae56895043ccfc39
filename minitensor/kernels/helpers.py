r"""The helper threads that share a kernel's blocks with the calling thread, and how they wait.

:func:`~minitensor.kernels.threads.run_blocks` hands one job to each helper and runs it on the
calling thread too; the caller then waits until every helper has finished. A job is handed over
and collected through one lock per helper and direction, two lock operations per helper and op
(an executor would build a future, a condition and a queue entry for each).

How a thread waits matters more than it seems. A thread asleep on a lock costs nothing, but on a
machine whose idle cores halt (virtual machines commonly do, this project's among them) waking it
takes tens of microseconds, and the caller, asleep while the helper finishes, needs a second
wake-up: a training step of the README's main command makes 82 hand-overs. So where it is safe
the helpers **spin**: a helper waits for its next job, and the caller for the helper, in the C
library's ``pthread_spin_lock`` called through ctypes, which releases the interpreter lock while
it waits. Both cores stay awake, and two blocks of 2^17 entries run 1.16-1.28 times as fast as on
one thread instead of 0.96-1.07 times (``benchmarks/thread_handover.py``; the main command's step
takes 2-8% less time without dropout, 5-10% with it). A helper
that has had no job for ``MINITENSOR_SPIN_MS`` milliseconds (default 20) is parked on its
sleeping lock by a watchdog thread, so an idle process uses no CPU; ``MINITENSOR_SPIN_MS=0``
never spins.

Spinning takes a whole core while it waits, so it is used only where no other work needs that
core: the C library has spin locks (Linux), the threads fit on the cores this process may use,
and no MPI launcher started several ranks (each rank's helper would spin on a core another rank
computes on). Otherwise every wait sleeps, as OpenMP runtimes do past their spin time.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time

from . import int_from_env

SPIN_MS = 20  # default milliseconds a helper spins after its last job before it is parked
_PARK = object()  # the job that sends a spinning helper back to its sleeping lock


def spin_seconds() -> float:
    """How long idle helpers keep spinning: ``MINITENSOR_SPIN_MS`` (default :data:`SPIN_MS`), in seconds."""
    ms = int_from_env("MINITENSOR_SPIN_MS", minimum=0)
    return (SPIN_MS if ms is None else ms) / 1000


def usable_cores() -> int:
    """The cores this process may run on (a container or ``taskset`` may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _several_mpi_ranks() -> bool:
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):  # MPICH's and Open MPI's launchers set one
        text = os.environ.get(name, "1")
        if text.isdigit() and int(text) > 1:
            return True
    return False


class SpinLocks:
    """The C library's ``pthread_spin_*`` through ctypes: ``wait`` spins without the interpreter lock."""

    NAMES = ("pthread_spin_init", "pthread_spin_lock", "pthread_spin_unlock")

    def __init__(self, libc):
        self._init, self._lock, self._unlock = (getattr(libc, name) for name in self.NAMES)
        self._init.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self._lock.argtypes = self._unlock.argtypes = [ctypes.c_void_p]
        self._cells = []  # the locks' memory, kept alive with the pool

    @classmethod
    def load(cls) -> "SpinLocks | None":
        """The spin locks of this process's C library, or None where it has none."""
        try:
            libc = ctypes.CDLL(None)  # the symbols already loaded: the C library's among them
        except (OSError, TypeError):  # Windows has no such handle
            return None
        if not all(hasattr(libc, name) for name in cls.NAMES):  # macOS has no pthread spin locks
            return None
        return cls(libc)

    def new_locked(self) -> int:
        """A new spin lock, already taken (its address): ``release`` hands it to one ``wait``."""
        cell = (ctypes.c_int * 16)()  # 64 bytes: one lock per cache line, so two never share one
        self._cells.append(cell)
        address = ctypes.addressof(cell)
        if self._init(address, 0) != 0 or self._lock(address) != 0:
            raise OSError("pthread_spin_init failed")
        return address

    def wait(self, address: int) -> None:
        """Take the lock at ``address``, spinning in C (the GIL released) until another thread releases it."""
        self._lock(address)

    def release(self, address: int) -> None:
        self._unlock(address)


class Helpers:
    """``n`` helper threads for :func:`~minitensor.kernels.threads.run_blocks`; see the module docstring.

    One caller at a time hands out jobs (it holds ``busy``); a second caller meanwhile runs its
    blocks alone. ``spin``: seconds an idle helper keeps spinning (default :func:`spin_seconds`;
    0 never spins, and neither does a pool that the checks of the module docstring refuse).
    """

    def __init__(self, n: int, spin: float | None = None):
        spin = spin_seconds() if spin is None else spin
        self.busy = threading.Lock()
        self.job = None
        self.closed = False
        self.start = [threading.Lock() for _ in range(n)]  # the sleeping hand-over, both ways
        self.done = [threading.Lock() for _ in range(n)]
        for lock in self.start + self.done:
            lock.acquire()
        safe = spin > 0 and n + 1 <= usable_cores() and not _several_mpi_ranks()
        self.spin = SpinLocks.load() if safe else None
        self.spinning = [False] * n  # how helper i waits for its next job: spinning or asleep
        if self.spin is not None:
            self.spin_s, self.last = spin, time.monotonic()
            self.spin_start = [self.spin.new_locked() for _ in range(n)]
            self.spin_done = [self.spin.new_locked() for _ in range(n)]
            self.active = threading.Event()  # set while some helper spins: the watchdog watches
            self.stopping = threading.Event()
            self.watchdog = threading.Thread(target=self._watch, name="minitensor-watchdog", daemon=True)
            self.watchdog.start()
        self.threads = [threading.Thread(target=self._serve, args=(i,), name=f"minitensor-{i}", daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def _serve(self, i: int) -> None:
        spinning = False  # decided, like the caller's copy in self.spinning, by the job just done
        while True:
            if spinning:
                self.spin.wait(self.spin_start[i])
            else:
                self.start[i].acquire()
            job = self.job
            try:
                if job is None:
                    return
                if job is not _PARK:
                    job()
            except BaseException:  # noqa: BLE001  (the job records its own errors; a helper must not die)
                pass
            finally:
                spinning = self.spin is not None and job is not _PARK
                if self.spin is not None:
                    self.spin.release(self.spin_done[i])
                else:
                    self.done[i].release()

    def _hand_out(self, job, helpers) -> None:
        self.job = job
        for i in helpers:
            if self.spinning[i]:
                self.spin.release(self.spin_start[i])
            else:
                self.start[i].release()
            self.spinning[i] = self.spin is not None and job is not _PARK

    def _collect(self, helpers) -> None:
        for i in helpers:
            if self.spin is not None:
                self.spin.wait(self.spin_done[i])
            else:
                self.done[i].acquire()
        self.job = None

    def run(self, job, count: int) -> None:
        """Run ``job()`` on ``count`` helpers and on the calling thread (which holds ``busy``); return when all have finished."""
        helpers = range(count)
        self._hand_out(job, helpers)
        try:
            job()
        finally:
            self._collect(helpers)
            if self.spin is not None:
                self.last = time.monotonic()
                if not self.active.is_set():
                    self.active.set()

    def _watch(self) -> None:
        """Park every spinning helper once no job has come for ``spin_s`` seconds."""
        while True:
            self.active.wait()
            if self.closed:
                return
            idle = time.monotonic() - self.last
            if idle < self.spin_s:
                self.stopping.wait(self.spin_s - idle)
                continue
            if not self.busy.acquire(blocking=False):  # a job is running: look again later
                self.stopping.wait(self.spin_s / 4)
                continue
            try:
                if not self.closed and time.monotonic() - self.last >= self.spin_s:
                    spinning = [i for i, s in enumerate(self.spinning) if s]
                    self._hand_out(_PARK, spinning)
                    self._collect(spinning)
                    self.active.clear()
            finally:
                self.busy.release()

    def close(self) -> None:
        with self.busy:
            self.closed = True
            self._hand_out(None, range(len(self.threads)))
            for t in self.threads:
                t.join()
        if self.spin is not None:
            self.stopping.set()
            self.active.set()
            self.watchdog.join()
