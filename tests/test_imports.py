"""Every module of the two packages imports on its own, first thing in a fresh interpreter.

An import cycle hides while the package ``__init__`` happens to import its parts in a lucky
order; ``python -c "import models.longformer.mlm"`` (what a lesson or a user may write first)
then fails. One subprocess imports each module after forgetting every module of both packages.
"""
import subprocess
import sys
import textwrap

CHECK = textwrap.dedent("""
    import importlib, pkgutil, sys, traceback
    names = []
    for package in ("minitensor", "models"):
        module = importlib.import_module(package)
        names += [package] + [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
    failed = []
    for name in names:
        for loaded in [m for m in sys.modules if m.split(".")[0] in ("minitensor", "models")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (reported by name below)
            failed.append(f"{name}: {traceback.format_exc().strip().splitlines()[-1]}")
    print(len(names))
    print("\\n".join(failed))
""")


def test_every_module_imports_first_in_a_fresh_interpreter():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    count, *failed = done.stdout.strip().splitlines()
    assert int(count) > 60, done.stdout
    assert failed == [], "\n".join(failed)
