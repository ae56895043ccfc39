"""The two files of a BPE tokenizer, in the layout Hugging Face reads and writes.

``vocab.json``
    One JSON object, token -> id, ids ``0 .. n-1``. Written with ``ensure_ascii=False`` (as
    Hugging Face does), so tokens stay readable: ``"Ġthe": 262``.

``merges.txt``
    UTF-8 text, one merge per line: the two symbols separated by ONE space, ``Ġ t``; the line order
    is the rank. An optional first line ``#version: 0.2`` is a header, not a merge (we always write
    it). Lines are separated by ``\\n`` only: :meth:`str.splitlines` would also cut at U+0085,
    U+2028 and the separators U+001C..U+001E, which a token may contain. Blank lines are skipped.

Both are written atomically (:func:`models.files.write_atomic`: a temporary file beside the
target, then :func:`os.replace`), so a crash leaves the old file or the new one, never half.
"""
from __future__ import annotations

import json
import os

from ..files import make_output_dir, write_atomic

__all__ = ["MERGES_FILE", "VOCAB_FILE", "read_merges", "read_vocab", "write_vocab_and_merges"]

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
#: The header line Hugging Face's ``tokenizers`` writes (and skips when reading).
HEADER = "#version: 0.2"


def _path(directory, name) -> str:
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"load_bpe: {directory!r} is not a directory (expected one holding "
                                f"{VOCAB_FILE} and {MERGES_FILE})")
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_bpe: no {name} in {directory!r}")
    return path


def read_vocab(directory) -> dict:
    """``vocab.json`` of ``directory``: a dict token -> id (checked to be str -> int)."""
    path = _path(directory, VOCAB_FILE)
    with open(path, encoding="utf-8") as f:
        try:
            vocab = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"load_bpe: {path!r} is not valid JSON: {e}") from e
    if not isinstance(vocab, dict):
        raise ValueError(f"load_bpe: {path!r} must hold a JSON object token -> id, got a {type(vocab).__name__}")
    for token, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool):
            raise ValueError(f"load_bpe: {path!r} maps {token!r} to {i!r}, not an integer id")
    return vocab


def read_merges(directory) -> list:
    """``merges.txt`` of ``directory``: the list of pairs ``(a, b)`` in rank order."""
    path = _path(directory, MERGES_FILE)
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    merges = []
    for number, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")  # a file saved with Windows line ends
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"load_bpe: {path!r} line {number}: expected two symbols separated by one space, "
                             f"got {line!r:.80}")
        merges.append((parts[0], parts[1]))
    return merges


def write_vocab_and_merges(directory, vocab: dict, merges: list) -> None:
    """Write ``vocab.json`` and ``merges.txt`` (with the ``#version`` header) to ``directory``."""
    directory = make_output_dir(directory)
    for a, b in merges:
        if not a or not b or any(c in s for s in (a, b) for c in " \n\r"):
            raise ValueError(f"write_vocab_and_merges: the merge {a!r} {b!r} cannot be written as a line "
                             "'a b' (a symbol is empty or holds a space or a line break)")
    ordered = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    write_atomic(os.path.join(directory, VOCAB_FILE),
                 lambda f: json.dump(ordered, f, ensure_ascii=False, indent=0))
    write_atomic(os.path.join(directory, MERGES_FILE),
                 lambda f: f.write("".join(f"{line}\n" for line in [HEADER, *(f"{a} {b}" for a, b in merges)])))
