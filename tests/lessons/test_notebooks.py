"""Every lesson opened as a notebook runs: jupytext converts it, a Jupyter kernel executes it (nbclient),
from the repository's root as README says. Skipped without the ``lessons`` (or ``docs``) extra; .ci/run
runs it with the site's tests (``pytest -m notebook``)."""
import os

import pytest

from lessons import lesson_files
from lessons.exercises import REPO

jupytext = pytest.importorskip("jupytext", reason="pip install -e '.[lessons]'")
nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[lessons]'")
pytest.importorskip("ipykernel", reason="pip install -e '.[lessons]'")

pytestmark = pytest.mark.notebook


@pytest.mark.parametrize("path", lesson_files(), ids=lambda p: p.name[:2])
def test_a_lesson_runs_as_a_notebook(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    nb = jupytext.read(path)
    assert any(c.cell_type == "markdown" for c in nb.cells) and any(c.cell_type == "code" for c in nb.cells)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs, f"{path.name} printed nothing as a notebook"
    assert not [o for o in outputs if o.get("output_type") == "error"]
