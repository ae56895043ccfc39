r"""Student copies whose exercises provably fail until solved.

``python -m lessons.exercises make OUT_DIR`` writes a copy of the repository (its git-tracked
files) in which every solution region of the lessons and of the library code is replaced by a
stub raising ``NotImplementedError("lesson NN: <hint>")``. A region is the lines between a
marker line ``# BEGIN SOLUTION lesson NN: <one-line hint>`` and a marker line
``# END SOLUTION``; in a lesson file ``NN_topic.py`` the ``lesson NN`` tag may be left out
(``# BEGIN SOLUTION: <hint>``) and means that lesson. The markers stay in the copy, around the
stub, so the student sees where to write.

``python -m lessons.exercises verify`` proves that the exercises mean something, in copies under
a temporary directory, with ``pytest -m lessonNN`` run as subprocesses:

1. student copy (every region stubbed): each lesson's tests FAIL;
2. full copy (nothing stubbed): each lesson's tests pass;
3. graded in order: for each lesson N, with the regions of lessons <= N solved and those of
   lessons > N stubbed, lesson N's tests pass (lesson 03 never needs lesson 08's solution);
4. each region alone stubbed (everything else solved): its lesson's tests FAIL, so no region
   is dead weight; lessons and ``lessonNN`` pytest markers with no region are listed;
5. each earlier lesson's regions alone stubbed: lesson N's tests fail exactly for the lessons its
   ``# **Needs:** ...`` line names (the prerequisites a student must have solved first).

It prints a table and exits 1 on any failure.
"""
import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Only these top-level folders hold exercises; tests/ may quote markers inside strings.
SOURCE_DIRS = ("lessons", "minitensor", "models")

# Any line that looks like a marker is one, so a typo is an error rather than silently kept code.
_LOOSE_BEGIN = re.compile(r"^\s*#\s*BEGIN\s+SOLUTION\b")
_LOOSE_END = re.compile(r"^\s*#\s*END\s+SOLUTION\b")
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?: lesson (?P<lesson>\d\d))?: (?P<hint>\S.*?)\s*$")
_END = re.compile(r"^[ \t]*# END SOLUTION\s*$")
_LESSON_FILE = re.compile(r"^(\d\d)_\w+\.py$")

PYTEST_FLAGS = ("-p", "no:cacheprovider", "-q", "-x")


class ExerciseError(Exception):
    """A marker problem or a refused operation; the message names file:line."""


@dataclass(frozen=True)
class Region:
    path: str  # relative to the repository root, with '/'
    begin: int  # 1-based line of the BEGIN marker
    end: int  # 1-based line of the END marker
    lesson: str  # "04"
    hint: str
    indent: str

    @property
    def where(self):
        return f"{self.path}:{self.begin}"

    def stub(self):
        message = json.dumps(f"lesson {self.lesson}: {self.hint}", ensure_ascii=False)
        return f"{self.indent}raise NotImplementedError({message})"


def find_regions(text, path):
    """The solution regions of one file's text, in order; ExerciseError on a bad marker.

    ``path`` (relative, '/'-separated) names the file in errors and gives lesson files their
    default lesson number.
    """
    m = _LESSON_FILE.match(Path(path).name)
    default = m.group(1) if m and Path(path).parent.name == "lessons" else None
    regions, open_at = [], None
    for no, line in enumerate(text.splitlines(), 1):
        if _LOOSE_BEGIN.match(line):
            if open_at is not None:
                raise ExerciseError(f"{path}:{no}: BEGIN SOLUTION inside the region opened at line {open_at[0]}")
            b = _BEGIN.match(line)
            lesson = b and (b.group("lesson") or default)
            if not lesson:
                raise ExerciseError(f"{path}:{no}: untagged marker; write "
                                    f"'# BEGIN SOLUTION lesson NN: <one-line hint>'")
            open_at = (no, lesson, b.group("hint"), b.group("indent"))
        elif _LOOSE_END.match(line):
            if open_at is None:
                raise ExerciseError(f"{path}:{no}: END SOLUTION without a BEGIN SOLUTION")
            if not _END.match(line):
                raise ExerciseError(f"{path}:{no}: malformed marker; write '# END SOLUTION'")
            begin, lesson, hint, indent = open_at
            regions.append(Region(path, begin, no, lesson, hint, indent))
            open_at = None
    if open_at is not None:
        raise ExerciseError(f"{path}:{open_at[0]}: BEGIN SOLUTION never closed by an END SOLUTION")
    _check_inside_functions(text, path, regions)
    return regions


def _check_inside_functions(text, path, regions):
    """A stub at module level would stop the import: every region must sit in a function body."""
    if not regions or not path.endswith(".py"):
        return
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise ExerciseError(f"{path}:{exc.lineno}: does not parse: {exc.msg}") from None
    # (def line, last code line, def's indentation); the END marker may follow the last code line
    spans = [(n.lineno, n.end_lineno, n.col_offset) for n in ast.walk(tree)
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for r in regions:
        if not any(lo < r.begin <= hi and len(r.indent) > col for lo, hi, col in spans):
            raise ExerciseError(f"{r.where}: region is not inside a function body "
                                f"(a stub there would break the import)")


def stub_text(text, regions, stubbed=lambda region: True):
    """``text`` with the body of every region for which ``stubbed(region)`` holds replaced by its stub."""
    lines = text.splitlines(keepends=True)
    newline = "\n"
    for r in sorted(regions, key=lambda r: r.begin, reverse=True):
        if stubbed(r):
            lines[r.begin:r.end - 1] = [r.stub() + newline]
    return "".join(lines)


def tracked_files(repo=REPO):
    """The git-tracked files that exist in the working tree, relative to ``repo``."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return [p for p in out.split("\0") if p and (repo / p).is_file()]


def _has_exercises(path):
    return path.endswith(".py") and path.split("/", 1)[0] in SOURCE_DIRS


def collect(repo=REPO, files=None):
    """{path: (text, regions)} for every source file, and the list of all regions."""
    files = tracked_files(repo) if files is None else files
    sources = {}
    for p in files:
        if _has_exercises(p):
            text = (repo / p).read_text(encoding="utf-8")
            sources[p] = (text, find_regions(text, p))
    return sources, [r for _, rs in sources.values() for r in rs]


def write_copy(out_dir, repo=REPO, stubbed=lambda region: True, files=None, sources=None):
    """Copy the tracked files of ``repo`` to ``out_dir``, stubbing the regions ``stubbed`` selects.

    Every stubbed file is compiled; a failure names the region that breaks it. Returns the
    regions stubbed.
    """
    out_dir = Path(out_dir)
    files = tracked_files(repo) if files is None else files
    if sources is None:
        sources, _ = collect(repo, files)
    done = []
    for p in files:
        dest = out_dir / p
        dest.parent.mkdir(parents=True, exist_ok=True)
        if p not in sources or not any(stubbed(r) for r in sources[p][1]):
            shutil.copy2(repo / p, dest)
            continue
        text, regions = sources[p]
        new = stub_text(text, regions, stubbed)
        _check_compiles(new, p, text, regions, stubbed)
        dest.write_text(new, encoding="utf-8")
        shutil.copymode(repo / p, dest)
        done += [r for r in regions if stubbed(r)]
    return done


def _check_compiles(new, path, text, regions, stubbed):
    try:
        compile(new, path, "exec")
    except SyntaxError as whole:
        for r in regions:  # which region alone breaks it
            if stubbed(r):
                try:
                    compile(stub_text(text, regions, lambda x, r=r: x == r), path, "exec")
                except SyntaxError as exc:
                    raise ExerciseError(f"{r.where}: the stubbed file does not compile: {exc.msg} "
                                        f"(line {exc.lineno})") from None
        raise ExerciseError(f"{path}: the stubbed file does not compile: {whole.msg} (line {whole.lineno})") from None


def make(out_dir, repo=REPO):
    """The student copy: every region stubbed. Refuses an existing non-empty ``out_dir``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExerciseError(f"{out_dir}: exists and is not an empty directory; give a new or empty one")
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_copy(out_dir, repo)


# ---------------------------------------------------------------- verify

_NEEDS = re.compile(r"^# \*\*Needs:\*\* (?P<text>.*)$", re.MULTILINE)


def declared_needs(lesson, repo=REPO):
    """The earlier lessons whose exercises lesson ``lesson`` says it needs, from its ``# **Needs:** ...``
    line (every two-digit number on it; "none" for none); None when the lesson has no such line."""
    path = next((repo / "lessons").glob(f"{lesson}_*.py"))
    m = _NEEDS.search(path.read_text(encoding="utf-8"))
    return None if m is None else re.findall(r"\b\d\d\b", m.group("text"))


def lesson_numbers(repo=REPO):
    return sorted(p.name[:2] for p in (repo / "lessons").glob("[0-9][0-9]_*.py"))


def pytest_markers(repo=REPO):
    """The ``lessonNN`` markers declared in pyproject.toml."""
    text = (repo / "pyproject.toml").read_text(encoding="utf-8")
    return sorted(set(re.findall(r'"lesson(\d\d):', text)))


def marked_test_files(copy_dir, lesson):
    """The test files that apply ``pytest.mark.lessonNN``, relative to ``copy_dir``.

    Collecting only these instead of the whole suite (~1,200 tests) saves ~3 s per run; with no
    such file the whole suite is collected, so "nothing collected" is reported as it is.
    """
    mark = re.compile(rf"\bmark\.lesson{lesson}\b")
    return sorted(str(p.relative_to(copy_dir)) for p in (Path(copy_dir) / "tests").rglob("test_*.py")
                  if mark.search(p.read_text(encoding="utf-8")))


def pytest_command() -> list:
    """``pytest`` as a student types it: the executable beside this Python (``python -m pytest`` where
    there is none)."""
    exe = Path(sys.executable).with_name("pytest.exe" if os.name == "nt" else "pytest")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pytest"]


def run_pytest(copy_dir, lesson, timeout=600):
    """(exit code, last line, seconds, output) of ``pytest -m lessonNN`` inside ``copy_dir``."""
    # Exactly the student's command, bare `pytest` in the copy's root with this install active and no
    # PYTHONPATH: pyproject's `pythonpath = ["."]` is what makes it import the copy's packages.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"OPENBLAS_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"})
    start = time.perf_counter()
    try:
        res = subprocess.run([*pytest_command(), *PYTEST_FLAGS, "-m", f"lesson{lesson}",
                              *marked_test_files(copy_dir, lesson)],
                             cwd=copy_dir, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        rc, out = res.returncode, res.stdout + res.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = -1, f"timed out after {timeout} s\n{exc.stdout or ''}"
    lines = [x for x in out.strip().splitlines() if x.strip()]
    return rc, (lines[-1] if lines else ""), time.perf_counter() - start, out


def _stub_lessons(out):
    """The lessons whose stubs show up in pytest output, e.g. ['02']."""
    return sorted(set(re.findall(r"(?:NotImplementedError\W+|unfinished exercise: )lesson (\d\d):", out)))


def verify(jobs=2, repo=REPO, per_region=True, stream=sys.stdout):
    start = time.perf_counter()
    files = tracked_files(repo)
    sources, regions = collect(repo, files)
    lessons = lesson_numbers(repo)
    markers = pytest_markers(repo)
    by_lesson = {n: [r for r in regions if r.lesson == n] for n in lessons}
    testable = [n for n in lessons if by_lesson[n] and n in markers]

    # A copy is named by the set of regions it stubs; identical copies (the last graded
    # copy is the full copy) are built and tested once.
    copies, runs = {}, {}
    tmp = Path(tempfile.mkdtemp(prefix="minitensor-exercises-"))

    def copy_for(stubbed_set):
        key = frozenset(stubbed_set)
        if key not in copies:
            d = tmp / f"copy{len(copies):02d}"
            write_copy(d, repo, lambda r: r in key, files, sources)
            copies[key] = d
        return key

    try:
        plan = []  # (check, lesson, key, expect_pass, region)
        student = copy_for(regions)
        full = copy_for(())
        for n in testable:
            plan.append(("student", n, student, False, None))
            plan.append(("full", n, full, True, None))
            plan.append(("graded", n, copy_for(r for r in regions if r.lesson > n), True, None))
        if per_region:
            for r in regions:
                if r.lesson in testable:
                    plan.append(("region", r.lesson, copy_for([r]), False, r))
        declared = {n: declared_needs(n, repo) for n in testable}
        for n in testable:  # (5) an earlier lesson's exercises alone stubbed: fails exactly if declared
            for k in testable:
                if k < n:
                    plan.append(("needs", n, copy_for(by_lesson[k]), k not in (declared[n] or ()), k))
        print(f"{len(regions)} regions in {len(sources)} files; {len(copies)} copies in {tmp}; "
              f"{len({(k, n) for _, n, k, _, _ in plan})} pytest runs on {jobs} workers", file=stream, flush=True)

        # the passing runs (whole lesson suites) first, the quick failures fill in behind them
        todo = list(dict.fromkeys((k, n) for _, n, k, e, _ in sorted(plan, key=lambda p: not p[3])))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for (k, n), res in zip(todo, pool.map(lambda kn: run_pytest(copies[kn[0]], kn[1]), todo)):
                runs[(k, n)] = res
    finally:  # the copies go, also when a marker error stops the build
        shutil.rmtree(tmp, ignore_errors=True)

    failures = []

    def outcome(check, n, key, expect_pass, region):
        rc, last, secs, out = runs[(key, n)]
        if expect_pass:
            ok = rc == 0
            text = "pass" if ok else f"FAIL rc={rc}: {last}"
        else:
            # rc 1: tests failed. Not 2 (collection error), 5 (nothing collected) or a timeout.
            ok = rc == 1
            seen = _stub_lessons(out)
            text = f"fails ({'stub ' + ','.join(seen) if seen else 'assertion'})" if ok else \
                f"NOT FAILING rc={rc}: {last}"
        if not ok:
            failures.append(f"{check} lesson {n}" + (f" {region.where}" if region else "") + f": {text}")
        return ok, f"{text} {secs:.0f}s"

    table = [("lesson", "regions", "(1) student copy fails", "(2) full copy passes", "(3) graded copy passes")]
    for n in testable:
        cells = [outcome(c, n, k, e, r)[1] for c, m, k, e, r in plan if m == n and c not in ("region", "needs")]
        table.append((n, str(len(by_lesson[n])), *cells))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print(file=stream)
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=stream)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=stream)

    if per_region:
        print("\n(4a) each region alone stubbed, its lesson's tests fail:", file=stream)
        for c, n, k, e, r in plan:
            if c == "region":
                print(f"  lesson {n}  {r.where:<42} {outcome(c, n, k, e, r)[1]}", file=stream)

    print("\n(5) the earlier exercises each lesson needs (one earlier lesson's regions stubbed at a time):",
          file=stream)
    for n in testable:
        measured = [k for c, m, key, e, k in plan if c == "needs" and m == n and runs[(key, n)][0] != 0]
        wrong = [k for c, m, key, e, k in plan if c == "needs" and m == n and (runs[(key, n)][0] == 0) != e]
        crashed = [k for c, m, key, e, k in plan if c == "needs" and m == n and runs[(key, n)][0] not in (0, 1)]
        says = "no Needs line" if declared[n] is None else ", ".join(declared[n]) or "none"
        ok = declared[n] is not None and not wrong and not crashed
        print(f"  lesson {n}  needs {', '.join(measured) or 'none'}; its Needs line says {says}"
              f"{'' if ok else '  MISMATCH'}", file=stream)
        if not ok:
            failures.append(f"needs lesson {n}: measured {', '.join(measured) or 'none'}, declared {says}"
                            + (f" (pytest errors with {', '.join(crashed)} stubbed)" if crashed else ""))

    print("\n(4b) with no exercise:", file=stream)
    no_region = [n for n in lessons if not by_lesson[n]]
    print(f"  lessons with no region: {', '.join(no_region) or 'none'}", file=stream)
    no_marker = [n for n in lessons if by_lesson[n] and n not in markers]
    print(f"  lessons with regions but no lessonNN pytest marker: {', '.join(no_marker) or 'none'}", file=stream)
    for n in no_marker:
        failures.append(f"lesson {n}: regions but no pytest marker lesson{n} to test them")
    orphans = [m for m in markers if m not in lessons or not by_lesson.get(m)]
    print(f"  lessonNN pytest markers with no region: {', '.join(orphans) or 'none'}", file=stream)
    stray = [r for r in regions if r.lesson not in lessons]
    for r in stray:
        failures.append(f"{r.where}: tagged lesson {r.lesson}, which has no lesson file")
    print(f"  regions tagged with a lesson that does not exist: "
          f"{', '.join(r.where for r in stray) or 'none'}", file=stream)

    total = time.perf_counter() - start
    print(f"\n{len(runs)} pytest runs, total {total:.0f} s with {jobs} workers", file=stream)
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=stream)
        return 1
    print("all exercise checks passed", file=stream)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lessons.exercises",
                                     description="Student copies with the solutions stubbed, and proof they mean something.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_make = sub.add_parser("make", help="write a student copy of the repository to OUT_DIR")
    p_make.add_argument("out_dir", metavar="OUT_DIR")
    p_verify = sub.add_parser("verify", help="check that stubs fail, solutions pass, lessons are graded in order")
    p_verify.add_argument("--jobs", type=int, default=2, help="pytest processes at once (default 2)")
    p_verify.add_argument("--no-per-region", dest="per_region", action="store_false",
                          help="skip check (4a), one copy per region")
    args = parser.parse_args(argv)
    try:
        if args.command == "make":
            done = make(args.out_dir)
            lessons = sorted({r.lesson for r in done})
            print(f"wrote {args.out_dir}: {len(done)} regions stubbed (lessons {', '.join(lessons)}).\n"
                  f"Work there, from its root, with this install's environment active:\n"
                  f"  cd {args.out_dir}\n"
                  f"  python -m lessons {lessons[0]}      # runs lesson {lessons[0]} on the copy's code; stops at "
                  f"its first unfinished exercise\n"
                  f"  pytest -m lesson{lessons[0]} -x    # checks that lesson's exercises; fails until they are solved")
            return 0
        return verify(jobs=args.jobs, per_region=args.per_region)
    except ExerciseError as exc:
        print(f"python -m lessons.exercises: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
