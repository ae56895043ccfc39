"""lessons/site_reader.py: what the site folds away and how it shows docstrings (no kernel, no build)."""
import pytest

jupytext = pytest.importorskip("jupytext", reason="pip install -e '.[lessons]' or '.[docs]'")

from lessons import lesson_files, site_reader  # noqa: E402  (after the skip)

pytestmark = pytest.mark.site


def lesson(number):
    path = next(p for p in lesson_files() if p.name.startswith(number))
    return site_reader.read_lesson(path.read_text(encoding="utf-8"))


def test_solution_cells_are_folded_and_printed_solutions_too():
    nb = lesson("06")
    tags = {i: c.metadata.get("tags", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    with_region = [i for i, c in enumerate(nb.cells)
                   if c.cell_type == "code" and "# BEGIN SOLUTION" in c.source]
    assert len(with_region) == 2 and all("hide-input" in tags[i] for i in with_region)
    prints_vjp = [i for i, c in enumerate(nb.cells) if "show(softmax_vjp, source=True)" in c.source]
    assert prints_vjp and all("hide-output" in tags[i] for i in prints_vjp)
    plain = [i for i, t in tags.items() if not t]
    assert len(plain) > 5  # the rest of the lesson stays in the open


def test_show_is_wrapped_right_after_it_is_defined():
    nb = lesson("04")
    i = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "def show(" in c.source)
    wrap = nb.cells[i + 1]
    assert wrap.metadata["tags"] == ["remove-cell"] and "show = typeset_show(show)" in wrap.source
    assert not any("typeset_show" in c.source for c in lesson("01").cells)  # lesson 01 has no show()


def test_docstring_markdown_keeps_math_and_turns_roles_into_code():
    doc = r"See :func:`~minitensor.functional.cross_entropy`, :class:`Tensor` and ``x + 1``: $\bar x = \bar y$."
    assert site_reader.docstring_markdown(doc) == r"See `cross_entropy`, `Tensor` and `x + 1`: $\bar x = \bar y$."
