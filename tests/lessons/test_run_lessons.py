"""Every lesson runs top to bottom as a student runs it: ``python lessons/NN_topic.py``."""
import os
import subprocess
import sys

import pytest

from lessons import LESSON_DIR, lesson_files

LESSONS = lesson_files()


def test_lessons_exist():
    numbers = [f.name[:2] for f in LESSONS]
    assert numbers == [f"{i:02d}" for i in range(len(numbers))], numbers  # 00, 01, ... with no gap
    assert len(numbers) >= 15, numbers  # the tour (00) to the GPU (14)


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs(path):
    result = subprocess.run([sys.executable, str(path)], cwd=LESSON_DIR.parent, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.stdout.strip(), f"{path.name} printed nothing"


def test_run_all_command_rejects_unknown_lesson():
    result = subprocess.run([sys.executable, "-m", "lessons", "99"], cwd=LESSON_DIR.parent,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no lesson numbered 99" in result.stderr
