r"""One benchmark, an older commit and the working tree, measured in turns on the same machine.

    python benchmarks/side_by_side.py --old 084d16c benchmarks/overhead.py --repeats 30

checks the commit out into a temporary git worktree, then runs the benchmark script of
each tree (its own copy, with its own ``minitensor`` and ``models`` first on the path)
``--rounds`` times, old and new alternately, so that a change in the machine's load
falls on both. Every run's output is printed as it finishes, labelled; the figures are
read from there (each benchmark prints its own table).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(tree: Path, script: str, args: list, label: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    print(f"===== {label}: {script} {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, str(tree / script), *args], cwd=tree, env=env, check=False)
    return done.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the commit to compare with (any git revision)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each tree, in turns (default 2)")
    ap.add_argument("script", help="the benchmark, relative to the repository root (benchmarks/NAME.py)")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    opts = ap.parse_args(argv)
    if opts.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {opts.rounds}")
    if not (REPO / opts.script).is_file():
        ap.error(f"no benchmark {opts.script} in {REPO}")
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old), opts.old], check=True)
        try:
            if not (old / opts.script).is_file():
                print(f"side_by_side: {opts.script} does not exist at {opts.old}", file=sys.stderr)
                return 2
            failed = 0
            for i in range(opts.rounds):
                failed += run(old, opts.script, opts.args, f"old {opts.old}, round {i + 1}") != 0
                failed += run(REPO, opts.script, opts.args, f"new (working tree), round {i + 1}") != 0
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
