r"""Character classes for Python's ``re``, spelled out code point by code point.

GPT-2's pre-tokeniser is written with ``\p{L}`` (any letter) and ``\p{N}`` (any number), Unicode
properties that the third-party ``regex`` module knows and the standard library's ``re`` does not.
Rather than depend on ``regex`` (the project needs only NumPy), we build the same classes for ``re``:
walk every code point once, ask :func:`unicodedata.category` for its general category (``Lu``, ``Ll``,
``Nd``, ``Zs``, ...), and write the runs of consecutive code points that belong to the class as ranges,
``[A-Za-z\u00aa\u00b5...]``. The walk over the 1.1 million code points takes about a third of a second,
once per process (:func:`functools.cache`); matching then runs at ``re``'s C speed, where a loop in
Python calling ``str.isalpha`` on each of the corpus' 4 million characters would take seconds.

The classes follow this Python's Unicode database (``unicodedata.unidata_version``). Where it is older
than the ``regex`` module's, code points assigned since then are "unassigned" (category ``Cn``) here:
the only place the two can disagree.

Whitespace is spelled out too, because two definitions are in use: ``str.isspace`` (and ``re``'s ``\s``)
counts the information separators U+001C..U+001F as space, ``regex``'s ``\s`` (Unicode's
``White_Space`` property, which GPT-2's pattern meant) does not.
"""
from __future__ import annotations

import functools
import sys
import unicodedata

__all__ = ["char_class", "letters", "numbers", "white_space"]


@functools.cache
def _categories() -> tuple:
    """The general category of every code point, indexed by code point."""
    return tuple(unicodedata.category(chr(c)) for c in range(sys.maxunicode + 1))


def _escape(c: int) -> str:
    # \uXXXX / \UXXXXXXXX escapes keep the pattern printable and free of characters that re would
    # read as syntax inside a class (']', '-', '\\', '^').
    return f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}"


def char_class(member) -> str:
    """The inside of a ``re`` character class (no brackets) holding every code point ``c`` for which
    ``member(c, category)`` is true; each run of consecutive members is written as one range ``a-b``."""
    chosen = [member(c, cat) for c, cat in enumerate(_categories())]
    parts, c, n = [], 0, len(chosen)
    while c < n:
        if not chosen[c]:
            c += 1
            continue
        start = c
        while c + 1 < n and chosen[c + 1]:
            c += 1
        parts.append(_escape(start) if start == c else f"{_escape(start)}-{_escape(c)}")
        c += 1
    return "".join(parts)


@functools.cache
def letters() -> str:
    r"""``\p{L}``: the categories Lu Ll Lt Lm Lo (the same set as ``str.isalpha``)."""
    return char_class(lambda c, cat: cat[0] == "L")


@functools.cache
def numbers() -> str:
    r"""``\p{N}``: the categories Nd Nl No (not ``str.isnumeric``, which also holds Han letters such as 一)."""
    return char_class(lambda c, cat: cat[0] == "N")


@functools.cache
def white_space() -> str:
    r"""Unicode's ``White_Space``, ``regex``'s ``\s``: ``str.isspace`` without U+001C..U+001F."""
    return char_class(lambda c, cat: chr(c).isspace() and not 0x1C <= c <= 0x1F)
