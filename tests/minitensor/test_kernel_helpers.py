r"""minitensor/kernels/helpers.py: the helper threads, spinning while busy and parked when idle.

What is promised, and checked here:

* a spinning pool and a sleeping one run the same jobs on the same threads, errors included;
* a spinning helper is parked once no job has come for ``spin`` seconds: the process then uses no
  CPU (measured with ``time.process_time``), and the next job wakes it and it spins again;
* spinning is refused (every wait sleeps) with ``spin=0``, with more threads than usable cores and
  under an MPI launcher with several ranks; ``MINITENSOR_SPIN_MS`` is read and checked;
* ``close`` ends every thread, the watchdog's included, whatever state the helpers are in.
"""
import threading
import time

import numpy as np
import pytest

from minitensor.kernels import helpers
from minitensor.kernels.helpers import Helpers

pytestmark = pytest.mark.skipif(helpers.SpinLocks.load() is None or helpers.usable_cores() < 2,
                                reason="needs pthread spin locks and two usable cores")


@pytest.fixture(autouse=True)
def single_rank(monkeypatch):
    """The tests may run under mpiexec (several ranks), which refuses spinning: clear the launcher's variables."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MINITENSOR_SPIN_MS"):
        monkeypatch.delenv(name, raising=False)


def run_on_both(pool):
    """A job that waits at a barrier for two threads, run by ``pool``: the names of the threads that ran it."""
    names, barrier = [], threading.Barrier(2, timeout=10.0)

    def job():
        barrier.wait()
        names.append(threading.current_thread().name)

    with pool.busy:
        pool.run(job, 1)
    return sorted(names)


def cpu_seconds_while_idle(seconds):
    start = time.process_time()
    time.sleep(seconds)
    return time.process_time() - start


@pytest.mark.parametrize("spin", [0.0, 0.02])
def test_a_job_runs_on_the_caller_and_the_helper(spin):
    pool = Helpers(1, spin=spin)
    try:
        assert (pool.spin is not None) == (spin > 0)
        for _ in range(3):  # again and again: each hand-over leaves the locks ready for the next
            assert run_on_both(pool) == sorted([threading.current_thread().name, "minitensor-0"])
    finally:
        pool.close()
    assert not any(t.is_alive() for t in pool.threads)


def test_an_idle_spinning_helper_is_parked_and_uses_no_cpu():
    pool = Helpers(1, spin=0.05)
    try:
        run_on_both(pool)
        assert pool.spinning == [True]
        # while it spins, a core is busy: the process uses CPU though every thread here is idle
        assert cpu_seconds_while_idle(0.02) > 0.01
        deadline = time.monotonic() + 5.0
        while pool.spinning[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.spinning == [False] and not pool.active.is_set()
        assert cpu_seconds_while_idle(0.2) < 0.02  # parked: asleep on its lock
        assert run_on_both(pool) == sorted([threading.current_thread().name, "minitensor-0"])
        assert pool.spinning == [True]  # woken, it spins again
    finally:
        pool.close()
    assert not pool.watchdog.is_alive()


def test_a_sleeping_pool_uses_no_cpu_between_jobs():
    pool = Helpers(1, spin=0)
    try:
        run_on_both(pool)
        assert cpu_seconds_while_idle(0.1) < 0.02
    finally:
        pool.close()


def test_a_job_that_raises_leaves_the_spinning_pool_usable():
    pool = Helpers(1, spin=0.02)
    errors = []

    def job():
        try:
            if threading.current_thread().name == "minitensor-0":
                raise KeyError("helper failed")
        except KeyError as e:
            errors.append(e)
        raise RuntimeError("the helper's loop must survive this too")

    try:
        with pool.busy, pytest.raises(RuntimeError):
            pool.run(job, 1)
        assert len(errors) == 1
        assert len(run_on_both(pool)) == 2
    finally:
        pool.close()


def test_spinning_is_refused_where_it_would_take_a_core_from_work(monkeypatch):
    cores = helpers.usable_cores()
    pool = Helpers(cores, spin=0.02)  # cores + 1 threads with the caller: one core would be shared
    try:
        assert pool.spin is None
        names = []
        with pool.busy:
            pool.run(lambda: names.append(1), cores)
        assert len(names) == cores + 1
    finally:
        pool.close()
    monkeypatch.setenv("PMI_SIZE", "2")
    pool = Helpers(1, spin=0.02)
    assert pool.spin is None
    pool.close()


def test_the_spin_time_comes_from_the_environment(monkeypatch):
    assert helpers.spin_seconds() == helpers.SPIN_MS / 1000
    monkeypatch.setenv("MINITENSOR_SPIN_MS", "0")
    assert helpers.spin_seconds() == 0
    pool = Helpers(1)
    assert pool.spin is None
    pool.close()
    monkeypatch.setenv("MINITENSOR_SPIN_MS", "7")
    assert helpers.spin_seconds() == 0.007


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", ""])
def test_a_bad_spin_time_is_named(monkeypatch, value):
    monkeypatch.setenv("MINITENSOR_SPIN_MS", value)
    with pytest.raises(ValueError, match="MINITENSOR_SPIN_MS"):
        helpers.spin_seconds()


def test_close_while_parked_and_while_spinning():
    for wait in (0.0, 0.1):  # closed while the helper spins, then once it has been parked
        pool = Helpers(1, spin=0.03)
        run_on_both(pool)
        time.sleep(wait)
        pool.close()
        assert not any(t.is_alive() for t in pool.threads) and not pool.watchdog.is_alive()


def test_blocks_on_a_spinning_pool_give_the_numbers_of_one_thread():
    from minitensor.kernels import threads  # noqa: PLC0415

    x = np.random.default_rng(0).standard_normal((8, 1 << 15)).astype(np.float32)
    expected = np.exp(x)
    before = threads._pool
    threads._pool = Helpers(threads.num_threads() - 1, spin=0.02) if threads.num_threads() > 1 else None
    try:
        out = np.empty_like(x)
        threads.run_blocks(lambda i: np.exp(x[i], out=out[i]), range(8))
        assert np.array_equal(out, expected)
    finally:
        if threads._pool is not None:
            threads._pool.close()
        threads._pool = before
