"""The files a run writes beside its checkpoint: JSON results and task files, the loss plot, the
output directory itself. Every file is written to a temporary name of its own beside the target
and renamed over it (the same rule as :func:`minitensor.save`): a crash leaves the old file or the
new one, never half of one, and the temporary is removed when the write fails. Temporary names are
unique (``.NAME.<random>.tmp``), so they can neither clash with a file of the user's nor with a
second writer; :func:`remove_leftovers` deletes those a killed process left behind."""
from __future__ import annotations

import json
import os

from minitensor.io import stale_temporaries, temporary_path


def write_atomic(path, write, binary=False) -> None:
    """Call ``write(f)`` on a fresh temporary file beside ``path`` (text, UTF-8, or ``binary``), then
    rename it to ``path``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory (give a file name)")
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj, indent=1) -> None:
    """``obj`` as JSON at ``path``, atomically; non-ASCII text is kept as it is."""
    write_atomic(path, lambda f: json.dump(obj, f, ensure_ascii=False, indent=indent))


def make_output_dir(path) -> str:
    """Create the directory ``path`` (and its parents) if needed; a clear error when a file has that name."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"--out {path!r} is a file, not a directory")
    os.makedirs(path, exist_ok=True)
    return path


def remove_leftovers(directory, names, log=print) -> list:
    """Delete the temporaries of ``names`` (files of ``directory``) that an interrupted write left there."""
    removed = [p for name in names for p in stale_temporaries(os.path.join(directory, name))]
    for p in removed:
        os.unlink(p)
    if removed:
        log(f"note: removed {len(removed)} temporary file(s) an interrupted write left in {directory!r}: "
            + ", ".join(os.path.basename(p) for p in removed))
    return removed
