"""How the lesson site reads a lesson: jupytext's py:percent, with the exercises' solutions folded away.

The site shows every lesson executed, so a solution would otherwise sit in the open on the page:
the code of a cell that holds a solution region, or the source of a library function with one that
a cell prints (``show(softmax_vjp, source=True)``). :func:`read_lesson` tags such cells for myst-nb:
``hide-input`` folds the cell's code, ``hide-output`` its printed output, each behind a collapsed
"show" element a reader must click. The lesson files themselves are unchanged.

Lessons print the docstrings they discuss with their ``show()`` helper, as plain text (a lesson also
runs as a script). On the site, a hidden cell after the one that defines ``show`` wraps it with
:func:`typeset_show`, so a docstring's derivation is rendered as Markdown and its math typeset like
the rest of the page.
"""
from __future__ import annotations

import ast
import inspect
import re
from functools import lru_cache

import jupytext

from . import exercises


@lru_cache(maxsize=None)
def solution_owners() -> frozenset:
    """The names of the functions (and ``Class.method``) that hold a solution region, in the library
    and in the lessons: a cell printing one of them would print its solution."""
    sources, regions = exercises.collect()
    names = set()
    for path, (text, file_regions) in sources.items():
        if not file_regions:
            continue
        tree = ast.parse(text)
        functions = (ast.FunctionDef, ast.AsyncFunctionDef)
        methods = {id(item): f"{node.name}.{item.name}" for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                   for item in node.body if isinstance(item, functions)}
        for r in file_regions:
            for node in ast.walk(tree):  # every function around the region: Class.method or a plain name
                if isinstance(node, functions) and node.lineno <= r.begin <= node.end_lineno:
                    names.add(methods.get(id(node), node.name))
    return frozenset(names)


def prints_a_solution(source: str) -> bool:
    """Whether a cell prints the source code of a function that holds a solution region."""
    if "source=True" not in source and "getsource(" not in source:
        return False
    return any(name in source for name in solution_owners())


_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?(?:[^`<]*?<)?([^`<>]+?)>?`")  # :func:`~a.b.c` -> `c`
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def docstring_markdown(doc: str) -> str:
    """A docstring's reST literals and cross-reference roles as Markdown code; its $...$ math is kept."""
    doc = _LITERAL.sub(lambda m: f"`{m.group(1)}`", doc)
    return _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", doc)


def typeset_show(show):
    """``show`` (a lesson's helper), but a docstring is displayed as Markdown, its math typeset."""
    from IPython.display import Markdown, display  # noqa: PLC0415  (in the site's kernels only)

    def typeset(obj, source=False):
        if source:
            return show(obj, source=True)
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
        display(Markdown(f"**{name}** (docstring)\n\n{docstring_markdown(inspect.getdoc(obj) or '')}"))
        return None

    return typeset


_WRAP_SHOW = "from lessons.site_reader import typeset_show\nshow = typeset_show(show)"


def read_lesson(text: str, **kwargs):
    """The notebook of one py:percent lesson, its solution cells tagged ``hide-input`` / ``hide-output``."""
    nb = jupytext.reads(text, fmt="py:percent", **kwargs)
    defines_show = next((i for i, c in enumerate(nb.cells)
                         if c.cell_type == "code" and re.search(r"^def show\(", c.source, re.M)), None)
    if defines_show is not None:
        wrap = jupytext.reads(f"# %% tags=[\"remove-cell\"]\n{_WRAP_SHOW}\n", fmt="py:percent").cells[0]
        nb.cells.insert(defines_show + 1, wrap)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if any(line.strip().startswith("# BEGIN SOLUTION") for line in cell.source.splitlines()):
            tags.append("hide-input")
        if prints_a_solution(cell.source):
            tags.append("hide-output")
        if tags:
            cell.metadata["tags"] = sorted(set(tags))
    return nb
