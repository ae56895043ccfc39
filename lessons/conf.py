"""Sphinx configuration of the lesson site: ``python -m sphinx -b html lessons lessons/_build/html``.

The source directory is ``lessons/`` itself: the py:percent lesson files are read through jupytext
and executed by myst-nb on every build (a lesson that raises fails the build), ``index.md`` pulls
in README.md, and ``api/`` documents the docstrings of ``minitensor`` and ``models``. MathJax 3 is
served from the site (the ``sphinx-mathjax-offline`` package copies it to ``_static/mathjax``), so
neither the build nor a reader's browser needs the network.
"""
import atexit
import os
import re
import shutil
import sys
import tempfile

project = "minitensor"
author = "the minitensor authors"
copyright = "the minitensor authors, MIT licence"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # ships MathJax 3; the hyphenated name is the package's import name
]

# Only these are pages: the lessons (NN_topic.py), the index and the API reference. The rest of
# lessons/ (conf.py, __init__.py, __main__.py, exercises.py) is Python, not a page.
include_patterns = ["index.md", "api/*.rst", "[0-9][0-9]_*.py"]
exclude_patterns = ["_build", "**/__pycache__"]

# py:percent lessons are notebooks to myst-nb, through jupytext; lessons/site_reader.py also folds
# each exercise's solution (its cell's code, or a printed library source) behind a "show" toggle.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: `lessons`
nb_custom_formats = {".py": ["lessons.site_reader.read_lesson", {}]}
nb_execution_mode = "force"          # every build runs every lesson: outputs shown are today's
nb_execution_timeout = 1800          # per cell; the longest lesson cell trains a tiny model
nb_execution_raise_on_error = True   # a lesson that raises fails the build
nb_execution_show_tb = True
nb_merge_streams = True
nb_render_markdown_format = "myst"   # Markdown outputs (typeset docstrings) parsed with the math extensions

# The kernels that execute the lessons run on this machine over local TCP, and ipykernel warns about
# that once per lesson ("Kernel is running over TCP without encryption"): noise in every build log.
# They inherit this process's environment, so an IPython profile of the build's own (removed at exit)
# sets their log level to errors only.
_ipython_dir = tempfile.mkdtemp(prefix="minitensor-ipython-")
atexit.register(shutil.rmtree, _ipython_dir, ignore_errors=True)
os.makedirs(os.path.join(_ipython_dir, "profile_default"))
with open(os.path.join(_ipython_dir, "profile_default", "ipython_kernel_config.py"), "w", encoding="utf-8") as _f:
    _f.write('c.IPKernelApp.log_level = "ERROR"\n')
os.environ["IPYTHONDIR"] = _ipython_dir
# ...and import this repository's packages (their working folder is lessons/): the site reader's
# typeset_show for one (lessons/site_reader.py).
_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_root, os.environ.get("PYTHONPATH")]))

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# Served from _static/mathjax by sphinx-mathjax-offline (never a CDN).
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_title = "minitensor lessons"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "search_bar_text": "Search the lessons",
}
# "auto" follows the reader's light/dark preference (unset, the theme logs a console error on a
# first visit); a favicon of our own, or the browser asks for /favicon.ico and gets a 404.
html_context = {"default_mode": "auto"}
html_static_path = ["_static"]
html_css_files = ["wide.css"]  # a text column as wide as the window (lessons/_static/wide.css)
html_favicon = "_static/favicon.svg"
html_show_sourcelink = False
html_copy_source = False

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# --- $...$ in docstrings -------------------------------------------------------------------------
# The ops' derivations are written as $...$ / $$...$$ in raw docstrings (STYLE.md: the derivation
# sits in the docstring above the op), which reST does not know. Rewrite them as :math: roles,
# leaving ``literals`` alone (a docstring may name the `$` token in code).
_LITERAL = re.compile(r"``.*?``", re.DOTALL)
# $$...$$ first, then $...$ (not `\$`, not across a blank line, no space just inside the dollars).
_MATH = re.compile(
    r"\$\$(?P<display>.+?)\$\$"
    r"|(?<![\\$\w])\$(?=\S)(?P<inline>[^$\n]*?(?:\n(?!\s*\n)[^$\n]*?)*)(?<=\S)\$(?![\w$])",
    re.DOTALL,
)


def _math(m, text):
    if m.group("display") is None:
        body = " ".join(line.strip() for line in m.group("inline").splitlines())
        return ":math:`" + body + "`"
    body = [line.strip() for line in m.group("display").strip().splitlines()]
    line_start = text.rfind("\n", 0, m.start()) + 1
    indent = text[line_start:m.start()]
    line_end = text.find("\n", m.end())
    alone = not indent.strip() and not text[m.end():None if line_end < 0 else line_end].strip()
    if not alone:  # $$...$$ inside a sentence: inline, displaystyle
        return r":math:`\displaystyle " + " ".join(body) + "`"
    # on its own lines: a math directive (a blank line around it, the paragraph's indentation)
    return "\n" + indent + ".. math::\n\n" + "\n".join(indent + "   " + b for b in body) + "\n"


def _dollars_to_math(text):
    parts, last = [], 0
    for m in _LITERAL.finditer(text):
        parts.append(_convert(text[last:m.start()]))
        parts.append(m.group(0))
        last = m.end()
    parts.append(_convert(text[last:]))
    return "".join(parts)


def _convert(text):
    return _MATH.sub(lambda m: _math(m, text), text)


def _docstring_math(app, what, name, obj, options, lines):
    if not any("$" in line for line in lines):
        return
    new = _dollars_to_math("\n".join(lines)).split("\n")
    lines[:] = new


def setup(app):
    app.connect("autodoc-process-docstring", _docstring_math)
