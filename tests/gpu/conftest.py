"""Everything under tests/gpu/ needs a CUDA GPU and CuPy.

Where there is none, each test here is marked skipped at collection time. The
check is :func:`minitensor.backend.gpu_available`, which only *tries* to import
CuPy: on a CPU-only machine without CuPy that is one failed import, nothing more.
Every test here also gets the ``gpu`` marker, so ``pytest -m "not gpu"`` leaves
them out entirely.
"""
from pathlib import Path

import pytest

from minitensor.backend import gpu_available

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # A hook in a sub-folder's conftest still sees the items of the whole session,
    # so pick out the ones that live in this folder.
    ours = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if not ours:
        return
    skip = None if gpu_available() else pytest.mark.skip(reason="needs a CUDA GPU and CuPy (pip install -e '.[gpu]')")
    for item in ours:
        item.add_marker(pytest.mark.gpu)
        if skip is not None:
            item.add_marker(skip)
