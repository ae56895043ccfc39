"""The lessons: runnable jupytext (py:percent) files, one per topic, read in order.

``python -m lessons`` runs them all in order; ``python -m lessons 03`` runs one.
"""
from pathlib import Path

LESSON_DIR = Path(__file__).resolve().parent


def lesson_files():
    """The lesson files in reading order (``NN_topic.py``)."""
    return sorted(p for p in LESSON_DIR.glob("[0-9][0-9]_*.py"))
