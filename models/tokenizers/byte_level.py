r"""Byte-level BPE, the tokenizer of GPT-2 and RoBERTa.

GPT-1's BPE works on characters, so a character never seen in training has no symbol and becomes
``<unk>``. GPT-2 (Radford et al. 2019, section 2.2) runs BPE on the **UTF-8 bytes** of the text
instead: 256 base symbols cover every possible text, nothing is ever unknown, and decoding gives
back exactly the text that was encoded.

Three steps, each a function below:

1. **Pre-tokenise** (:func:`pretokenize`): cut the text with GPT-2's pattern so that merges never
   cross the boundary between a word and the punctuation or space around it::

       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

   tried left to right at each position: an English contraction; an optional space and a run of
   letters; an optional space and a run of numbers; an optional space and a run of anything else
   except space; a run of spaces not followed by a non-space (the last space before a word is left
   to join that word, which is why ``"Ġthe"``, " the", is one token); any other run of spaces.
   ``"I'm  here!"`` becomes ``["I", "'m", " ", " here", "!"]``.
2. **Bytes to symbols** (:func:`bytes_to_unicode`): each piece is UTF-8 encoded and each byte is
   written as one printable character, so that tokens are readable strings and ``merges.txt`` can
   separate its two symbols by a space. The 188 bytes that are already printable, non-space
   characters (``!`` to ``~``, ``¡`` to ``¬``, ``®`` to ``ÿ``) stand for themselves; the other 68
   (controls, space, ``\xad``) are given the characters 256, 257, ... in byte order, so a space (byte
   32, the 33rd of them) is ``chr(256 + 32) = "Ġ"`` and a newline is ``"Ċ"``.
3. **Merge** each piece's symbols by rank (:func:`models.tokenizers.bpe.apply_merges`).

Decoding concatenates the tokens, maps each character back to its byte and decodes the bytes as
UTF-8 with ``errors="replace"``: a sequence of ids that cuts a multi-byte character in two decodes
to U+FFFD rather than failing.

The pattern uses ``\p{L}`` and ``\p{N}``, which Python's ``re`` lacks; :mod:`.charclass` spells
them out as ranges of code points, which gives the same matches as the ``regex`` module GPT-2 used
(checked in ``tests/models/test_tokenizers.py`` when ``regex`` is installed). Note that the
contractions are case-sensitive (``'S`` is not one) and ``\s`` is Unicode's ``White_Space``.

Against Hugging Face's ``RobertaTokenizer`` (``add_special_tokens=False``) on the same files the ids
agree (tested on any text), with one exception by design: it finds special tokens written in the
input text (``"a<s>b"``, ``"<mask>"``) and encodes each as its special id, where :meth:`encode`
treats all input as text, so a user's text can never forge a special token; place ``bos_id`` and
the others yourself.
"""
from __future__ import annotations

import functools
import re

from . import charclass
from .bpe import BPETokenizer

__all__ = ["ByteLevelBPE", "bytes_to_unicode", "pretokenize"]


@functools.cache
def bytes_to_unicode() -> dict:
    """Byte (0..255) -> the printable character that stands for it in tokens (step 2 above)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


@functools.cache
def unicode_to_bytes() -> dict:
    """The inverse table: symbol character -> byte."""
    return {ch: b for b, ch in bytes_to_unicode().items()}


@functools.cache
def gpt2_pattern() -> re.Pattern:
    """GPT-2's pre-tokenisation pattern, compiled for ``re`` (``\\p{L}``, ``\\p{N}``, ``\\s`` spelled out)."""
    L, N, S = charclass.letters(), charclass.numbers(), charclass.white_space()
    return re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+")


def pretokenize(text: str) -> list:
    """``text`` cut into GPT-2's pieces (step 1); joining them gives ``text`` back."""
    return gpt2_pattern().findall(text)


def to_symbols(piece: str) -> str:
    """One piece as its byte symbols, one character per byte (``" the"`` -> ``"Ġthe"``)."""
    table = bytes_to_unicode()
    try:
        data = piece.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"byte-level BPE: the text holds {piece[e.start]!r}, a lone surrogate, "
                         "which has no UTF-8 bytes") from None
    return "".join(table[b] for b in data)


class ByteLevelBPE(BPETokenizer):
    """GPT-2's / RoBERTa's tokenizer from ``vocab`` (token -> id) and ``merges`` (pairs, rank order).

    :meth:`encode` adds no special token; :attr:`bos_id`, :attr:`eos_id`, :attr:`pad_id` are the
    ids of ``<s>``, ``</s>``, ``<pad>`` when the vocabulary has them (RoBERTa's does), for the caller
    to place.
    """

    def words(self, text: str) -> list:
        out = []
        for piece in pretokenize(text):
            symbols = to_symbols(piece)
            out.append((symbols, symbols))  # a str is a sequence of its 1-character symbols
        return out

    def decode(self, ids) -> str:
        """The text of ``ids``: tokens joined, symbols back to bytes, UTF-8 with ``errors="replace"``.
        A special token (``<s>``, ...) decodes to its own text."""
        to_byte = unicode_to_bytes()
        special = set(self.SPECIAL.values())
        data = bytearray()
        for token in self.tokens(ids):
            if token in special:
                data += token.encode("utf-8")
                continue
            for ch in token:
                if ch not in to_byte:
                    raise ValueError(f"ByteLevelBPE.decode: token {token!r} holds {ch!r}, which stands for no byte "
                                     "(is this a byte-level vocabulary?)")
                data.append(to_byte[ch])
        return data.decode("utf-8", errors="replace")
