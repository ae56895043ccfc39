r"""What a hand-over to the helper threads costs, with helpers that sleep and with helpers that spin.

minitensor's kernels hand part of an op's blocks to helper threads
(:mod:`minitensor.kernels.helpers`). A helper that sleeps on a lock between ops is slow to wake on
a machine whose idle cores halt, and so is the calling thread that sleeps while it waits for the
helper; by default the helpers and the caller spin in C instead while a computation is running.
This script measures both ways (``MINITENSOR_SPIN_MS=0`` is the sleeping one), at the shapes of
the README's main command:

1. ``handover``: ``np.exp`` over two blocks of N entries each, on the calling thread alone and on
   two threads; prints each time and the speed-up over one thread.
2. ``balance``: who does the work in a training step (forward + backward + AdamW at the recipe's
   shape): wall time, the calling thread's CPU time, and the helper's CPU time inside its jobs. A
   caller busy for nearly the whole step is the bottleneck: the serial work (AdamW, the engine,
   every op's Python and small NumPy calls) runs on it alone. (With spinning helpers the caller's
   CPU time includes its spinning waits; the sleeping line is the one that shows its work.)
3. ``step``: the same step with each kind of helper, alternated every few steps in one process
   (the host's drift then hits both alike); prints the medians and their ratio.

Run: ``python benchmarks/thread_handover.py [--what handover balance step] [--rounds R] [--pdrop P]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from minitensor.kernels import threads  # noqa: E402
from minitensor.kernels.helpers import Helpers  # noqa: E402

SIZES = (1 << 16, 1 << 17, 1 << 18, 1 << 20)  # entries per block: 2^17 is the kernels' block


def use(pool_kind: str):
    """Make ``threads`` use helpers that always sleep (``"sleeping"``) or spin while busy; returns the pool."""
    if threads._pool is not None:
        threads._pool.close()
    threads._pool = Helpers(threads.num_threads() - 1, spin=0 if pool_kind == "sleeping" else None)
    if pool_kind == "spinning" and threads._pool.spin is None:
        raise SystemExit("thread_handover: the helpers do not spin here (no pthread spin locks, more threads "
                         "than cores, several MPI ranks, or MINITENSOR_SPIN_MS=0)")
    return threads._pool


def median_us(fn, n=200):
    for _ in range(5):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * float(np.median(times))


def handover():
    print("np.exp over 2 blocks of N float32 entries; median of 200 calls")
    print(f"{'N':>9} | {'1 thread':>9} | {'sleeping helper':>22} | {'spinning helper':>22}")
    for size in SIZES:
        a = np.random.default_rng(0).standard_normal((2, size), dtype=np.float32)
        out = np.empty_like(a)

        def block(i):
            np.exp(a[i], out=out[i])

        one = median_us(lambda: [block(0), block(1)])
        cells = []
        for kind in ("sleeping", "spinning"):
            use(kind)
            t = median_us(lambda: threads.run_blocks(block, range(2)))
            cells.append(f"{t:8.0f} us ({one / t:4.2f}x)")
        print(f"{size:>9} | {one:6.0f} us | {cells[0]:>22} | {cells[1]:>22}")


def step_fn(pdrop):
    import importlib.util  # noqa: PLC0415

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt_step.py")
    spec = importlib.util.spec_from_file_location("gpt_step", path)
    gpt_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpt_step)
    return gpt_step.minitensor_step_fn(gpt_step.SHAPES["recipe"], pdrop)


def balance(pdrop, rounds):
    step = step_fn(pdrop)
    for kind in ("sleeping", "spinning"):
        balance_of(step, use(kind), kind, pdrop, rounds)


def balance_of(step, pool, kind, pdrop, rounds):
    for _ in range(3):
        step()
    helper_cpu = [0.0]
    plain_run = pool.run

    def timed_run(job, count):
        def job_timed():
            if threading.current_thread() is threading.main_thread():
                return job()
            t0 = time.thread_time()
            try:
                return job()
            finally:
                helper_cpu[0] += time.thread_time() - t0
        return plain_run(job_timed, count)

    pool.run = timed_run
    n = 5 * rounds
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for _ in range(n):
        step()
    cpu1, wall1 = time.thread_time(), time.perf_counter()
    del pool.run
    wall, caller = (wall1 - wall0) / n, (cpu1 - cpu0) / n
    print(f"{kind} helper, recipe step, dropout {pdrop}, {n} steps: wall {1e3 * wall:.1f} ms; calling thread's CPU "
          f"{1e3 * caller:.1f} ms ({100 * caller / wall:.0f}% of the wall); helper's CPU in its jobs "
          f"{1e3 * helper_cpu[0] / n:.1f} ms ({100 * helper_cpu[0] / n / wall:.0f}%)")


def step_ab(pdrop, rounds):
    step = step_fn(pdrop)
    for _ in range(3):
        step()
    times = {"sleeping": [], "spinning": []}
    for r in range(rounds):
        for kind in ("sleeping", "spinning") if r % 2 == 0 else ("spinning", "sleeping"):
            use(kind)
            step()  # one untimed step after the switch
            for _ in range(3):
                t0 = time.perf_counter()
                step()
                times[kind].append(time.perf_counter() - t0)
    use("sleeping")
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"recipe step, dropout {pdrop}, {rounds} rounds x 3 steps each, alternating: sleeping helper "
          f"{1e3 * med['sleeping']:.1f} ms, spinning helper {1e3 * med['spinning']:.1f} ms (medians); "
          f"ratio spinning/sleeping {med['spinning'] / med['sleeping']:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", nargs="+", choices=["handover", "balance", "step"],
                    default=["handover", "balance", "step"])
    ap.add_argument("--rounds", type=int, default=12, help="rounds of the step measurements (default 12)")
    ap.add_argument("--pdrop", type=float, default=0.0, help="dropout of the step (default 0, the main command's)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if not 0.0 <= args.pdrop < 1.0:
        ap.error("--pdrop must be in [0, 1)")
    if threads.num_threads() < 2:
        raise SystemExit("thread_handover: needs 2 threads or more (MINITENSOR_NUM_THREADS)")
    print(f"{os.cpu_count()} cores, {threads.num_threads()} minitensor threads, NumPy {np.__version__}")
    for what in args.what:
        {"handover": handover, "balance": lambda: balance(args.pdrop, args.rounds),
         "step": lambda: step_ab(args.pdrop, args.rounds)}[what]()


if __name__ == "__main__":
    main()
