"""The ``lesson`` fixture: the globals of lesson NN, run once per test module; reference kernels.

Every test here runs with ``kernels.use("reference")``: the exercises are formulas, and a
fast kernel registered under the same name would otherwise stand in for the student's code.

A test module named ``test_lessonNN.py`` gets lesson ``lessons/NN_*.py``. In the
student copy a lesson stops at its first unfinished exercise; the fixture turns
that into one short failure naming the exercise instead of a traceback per test.
"""
import re
import runpy

import pytest

from lessons import lesson_files
from minitensor import kernels


@pytest.fixture(scope="module", autouse=True)
def reference_kernels():
    """The formulas alone, for the whole module (a lesson run by the fixture below may set it too)."""
    with kernels.use("reference"):
        yield


def lesson_path(number: str):
    matches = [p for p in lesson_files() if p.name.startswith(f"{number}_")]
    assert len(matches) == 1, f"expected one lesson file numbered {number}, found {matches}"
    return matches[0]


@pytest.fixture(scope="module")
def lesson(request):
    number = re.search(r"test_lesson(\d\d)$", request.module.__name__).group(1)
    path = lesson_path(number)
    try:
        return runpy.run_path(str(path), run_name=f"lesson{number}")
    except NotImplementedError as exc:
        pytest.fail(f"{path.name} stops at an unfinished exercise: {exc}", pytrace=False)
