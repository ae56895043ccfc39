"""The student copy runs the student's code, with the documented commands exactly as written.

A student makes the copy (``python -m lessons.exercises make DIR``) with this checkout installed in
the active environment, then works from the copy's root: ``python -m lessons NN`` and bare
``pytest -m lessonNN``. Both must import the COPY's minitensor, models and lessons (so its stubs are
what runs), never the install's; and in the checkout itself the bare ``pytest -m lessonNN`` must
collect and pass (test folders named like the packages must not shadow them).
"""
import os
import subprocess
import sys

import pytest

from lessons import exercises


def student_env():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing but what a student has
    env.update(MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", OPENBLAS_NUM_THREADS="1")
    return env


def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, env=student_env(), capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def copy_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "copy"
    made = subprocess.run([sys.executable, "-m", "lessons.exercises", "make", str(out)], cwd=exercises.REPO,
                          env=student_env(), capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    assert f"cd {out}" in made.stdout and "python -m lessons 01" in made.stdout  # how to start
    return out


def test_a_lesson_run_in_the_copy_stops_at_the_copys_stub(copy_dir):
    done = run([sys.executable, "-m", "lessons", "02"], copy_dir)
    assert done.returncode != 0
    assert "NotImplementedError: lesson 02:" in done.stderr, done.stderr[-2000:]
    assert str(copy_dir) in done.stderr  # the traceback is in the copy's files, not the install's


def test_bare_pytest_in_the_copy_runs_the_copys_stubs(copy_dir):
    done = run([*exercises.pytest_command(), "-m", "lesson02", "-x", "-q", "-p", "no:cacheprovider"], copy_dir)
    assert done.returncode == 1, done.stdout[-2000:]
    # the stub raised: only the copy's minitensor/autograd.py has one (the checkout's holds the solution)
    assert "NotImplementedError: lesson 02:" in done.stdout and "minitensor/autograd.py:" in done.stdout


def test_bare_pytest_in_the_checkout_collects_and_passes():
    done = run([*exercises.pytest_command(), "-m", "lesson02", "-q", "-p", "no:cacheprovider"], exercises.REPO)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout.strip().splitlines()[-1]
