"""Run the lessons in order: ``python -m lessons [NN ...]``."""
import argparse
import runpy
import sys
import time

from . import lesson_files


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lessons", description="Run the lessons in order.")
    parser.add_argument("numbers", nargs="*", help="lesson numbers to run (default: all), e.g. 01 04")
    args = parser.parse_args(argv)
    files = lesson_files()
    if args.numbers:
        wanted = {n.zfill(2) for n in args.numbers}
        unknown = wanted - {f.name[:2] for f in files}
        if unknown:
            parser.error(f"no lesson numbered {', '.join(sorted(unknown))}; have {', '.join(f.name[:2] for f in files)}")
        files = [f for f in files if f.name[:2] in wanted]
    for f in files:
        print(f"\n{'=' * 78}\n{f.name}\n{'=' * 78}", flush=True)
        start = time.perf_counter()
        runpy.run_path(str(f), run_name="__main__")
        print(f"--- {f.name} ran in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
