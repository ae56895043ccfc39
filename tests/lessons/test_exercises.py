"""lessons/exercises.py: solution regions found and stubbed, marker errors, the student copy.

Fast: no pytest run inside (``python -m lessons.exercises verify`` does those, in .ci/run).
"""
import ast
import subprocess
import sys
import textwrap

import pytest

from lessons import exercises
from lessons.exercises import ExerciseError, find_regions, stub_text

B = "# BEGIN SOLUTION"  # spelled apart so this file holds no marker line itself
E = "# END SOLUTION"

TOY = textwrap.dedent(f"""\
    def outer(x):
        def inner(y):
            {B} lesson 04: return y squared
            return y * y
            {E}

        if x > 0:
            {B} lesson 02: "quoted" hint
            z = inner(x)
            return z + 1
            {E}
        return 0
    """)


def run_toy(text, *args):
    ns = {}
    exec(compile(text, "toy.py", "exec"), ns)  # noqa: S102 (the toy module under test)
    return ns["outer"](*args)


def test_tags_parsed():
    regions = find_regions(TOY, "minitensor/toy.py")
    assert [(r.begin, r.end, r.lesson, r.hint, r.indent) for r in regions] == [
        (3, 5, "04", "return y squared", " " * 8),
        (8, 11, "02", '"quoted" hint', " " * 8),
    ]


def test_stub_keeps_indentation_hint_and_nested_functions():
    regions = find_regions(TOY, "minitensor/toy.py")
    assert run_toy(TOY, 3) == 10
    out = stub_text(TOY, regions)
    lines = out.splitlines()
    assert lines[3] == '        raise NotImplementedError("lesson 04: return y squared")'
    assert lines[2].strip() == f"{B} lesson 04: return y squared" and lines[4].strip() == E  # markers kept
    assert lines[8] == '        raise NotImplementedError("lesson 02: \\"quoted\\" hint")'
    assert "y * y" not in out and "z + 1" not in out
    assert run_toy(out, -1) == 0  # code outside the regions still runs
    with pytest.raises(NotImplementedError, match='lesson 02: "quoted" hint'):
        run_toy(out, 3)
    # only the inner function's region stubbed: the exception comes from the nested function
    only_inner = stub_text(TOY, regions, lambda r: r.lesson == "04")
    with pytest.raises(NotImplementedError, match="lesson 04: return y squared"):
        run_toy(only_inner, 3)
    # the stubbed text parses to the same functions
    def names(t):
        return sorted(n.name for n in ast.walk(ast.parse(t)) if isinstance(n, ast.FunctionDef))
    assert names(out) == names(TOY) == ["inner", "outer"]


def test_stubbing_twice_is_stable():
    once = stub_text(TOY, find_regions(TOY, "minitensor/toy.py"))
    assert stub_text(once, find_regions(once, "minitensor/toy.py")) == once


def test_lesson_file_defaults_to_its_number():
    text = f"def f():\n    {B}: the hint\n    return 1\n    {E}\n"
    (r,) = find_regions(text, "lessons/07_topic.py")
    assert (r.lesson, r.hint) == ("07", "the hint")
    (r,) = find_regions(text.replace(B + ":", B + " lesson 03:"), "lessons/07_topic.py")
    assert r.lesson == "03"  # an explicit tag wins
    with pytest.raises(ExerciseError, match=r"minitensor/x.py:2: untagged"):
        find_regions(text, "minitensor/x.py")


@pytest.mark.parametrize("text, message", [
    (f"def f():\n    {B}\n    return 1\n    {E}\n", r"m.py:2: untagged"),
    (f"def f():\n    {B} lesson 04:\n    return 1\n    {E}\n", r"m.py:2: untagged"),  # no hint
    (f"def f():\n    {B} lesson 4: hint\n    return 1\n    {E}\n", r"m.py:2: untagged"),
    (f"def f():\n    #BEGIN SOLUTION lesson 04: hint\n    return 1\n    {E}\n", r"m.py:2: untagged"),
    (f"def f():\n    {B} lesson 04: hint\n    return 1\n", r"m.py:2: BEGIN SOLUTION never closed"),
    (f"def f():\n    return 1\n    {E}\n", r"m.py:3: END SOLUTION without"),
    (f"def f():\n    {B} lesson 04: a\n    {B} lesson 04: b\n    return 1\n    {E}\n", r"m.py:3: BEGIN SOLUTION inside"),
    (f"def f():\n    {B} lesson 04: a\n    return 1\n    {E} here\n", r"m.py:4: malformed"),
    (f"{B} lesson 04: hint\nX = 1\n{E}\n", r"m.py:1: region is not inside a function"),
    (f"class C:\n    {B} lesson 04: hint\n    X = 1\n    {E}\n", r"m.py:2: region is not inside a function"),
])
def test_marker_errors_name_file_and_line(text, message):
    with pytest.raises(ExerciseError, match=message):
        find_regions(text, "minitensor/m.py")


def test_stub_that_breaks_compilation_is_named(tmp_path):
    # a region holding only part of a statement: the stub leaves a 'try:' with no 'except'
    text = f"def f(x):\n    try:\n        {B} lesson 05: hint\n        x = 1\n    except ValueError:\n        pass\n        {E}\n"
    repo = tmp_path / "repo"
    (repo / "minitensor").mkdir(parents=True)
    (repo / "minitensor" / "m.py").write_text(text)
    sources = {"minitensor/m.py": (text, find_regions(text, "minitensor/m.py"))}
    with pytest.raises(ExerciseError, match=r"minitensor/m.py:3: the stubbed file does not compile"):
        exercises.write_copy(tmp_path / "out", repo, files=["minitensor/m.py"], sources=sources)


def test_make_refuses_a_non_empty_out_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ExerciseError, match="not an empty directory"):
        exercises.make(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    result = subprocess.run([sys.executable, "-m", "lessons.exercises", "make", str(tmp_path)],
                            cwd=exercises.REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "not an empty directory" in result.stderr


def test_make_on_the_repository_stubs_every_region_and_compiles(tmp_path):
    sources, regions = exercises.collect()
    assert len(regions) >= 13
    assert {r.path.split("/")[0] for r in regions} == {"lessons", "minitensor", "models"}
    lessons = exercises.lesson_numbers()
    assert {r.lesson for r in regions} <= set(lessons)
    for r in regions:  # a lesson file's regions belong to that lesson
        if r.path.startswith("lessons/"):
            assert r.path.split("/")[1][:2] == r.lesson, r.where

    out = tmp_path / "student"
    done = exercises.make(out)
    assert sorted(done, key=lambda r: r.where) == sorted(regions, key=lambda r: r.where)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(exercises.tracked_files())
    for path, (text, file_regions) in sources.items():
        copied = (out / path).read_text(encoding="utf-8")
        compile(copied, path, "exec")
        if not file_regions:
            assert copied == text, path
            continue
        lines = copied.splitlines()
        stubs = [i for i, line in enumerate(lines) if "raise NotImplementedError(\"lesson " in line]
        assert len(stubs) == len(file_regions), path
        for i, r in zip(stubs, file_regions):
            assert lines[i] == r.stub() and lines[i].startswith(r.indent + "raise"), r.where
            assert lines[i - 1].strip().startswith(B) and lines[i + 1].strip() == E, r.where
        assert find_regions(copied, path) != [] and len(find_regions(copied, path)) == len(file_regions)


def test_verify_collects_only_the_marked_test_files():
    assert exercises.marked_test_files(exercises.REPO, "03") == ["tests/lessons/test_lesson03.py"]
    assert exercises.marked_test_files(exercises.REPO, "99") == []  # then the whole suite is collected
    assert exercises._stub_lessons("NotImplementedError: lesson 04: x\n"
                                   "03_x.py stops at an unfinished exercise: lesson 02: y") == ["02", "04"]


def test_every_lesson_with_exercises_says_what_it_needs_and_how_to_check():
    """The top says which earlier exercises must be solved first (verify's check 5 measures it);
    the end gives the command that grades this lesson, stopping at the first failure."""
    _, regions = exercises.collect()
    graded = sorted({r.lesson for r in regions})
    for n in graded:
        needs = exercises.declared_needs(n)
        assert needs is not None, f"lesson {n} has exercises but no '# **Needs:** ...' line"
        assert all(k < n for k in needs), f"lesson {n} needs a later lesson: {needs}"
        text = next((exercises.REPO / "lessons").glob(f"{n}_*.py")).read_text(encoding="utf-8")
        assert f"Check your work with `pytest -m lesson{n} -x`" in text, n
