r"""GPT-1's tokenizer: character-level BPE over lower-cased words, ``</w>`` marking a word's end.

GPT-1 (Radford et al. 2018, section 4.1) used "a bytepair encoding (BPE) vocabulary with 40,000
merges" (Sennrich et al. 2016), learnt on BooksCorpus. Encoding has two stages.

**Words.** The text is normalised and cut into words the way Hugging Face's ``OpenAIGPTTokenizer``
does it (BERT's "basic tokenizer"), in this order:

1. *clean*: delete U+0000, U+FFFD and control/format characters (every Unicode category ``C*``
   except tab, newline and carriage return); turn tab, newline, carriage return and every space
   separator (``Zs``) into a plain space;
2. *CJK*: put spaces around each CJK ideograph, so each is a word of its own;
3. *lower-case*, then *strip accents*: decompose (NFD, ``é`` -> ``e`` + U+0301) and drop the
   combining marks (category ``Mn``);
4. *split* at whitespace, and cut each punctuation character out as a word of its own (ASCII
   punctuation ``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~`` and every ``P*`` category).

``"Don't stop—Café!"`` becomes ``don ' t stop — cafe !``.

**Symbols.** A word's symbols are its characters, and the last one carries the end-of-word
marker ``</w>``: ``cafe`` -> ``c a f e</w>``. The marker is what lets BPE learn that ``e</w>``
(an "e" that ends a word) differs from an "e" inside one, and what lets decoding put the spaces
back. Merges are then applied by rank (:func:`models.tokenizers.bpe.apply_merges`); a resulting
token missing from the vocabulary becomes ``<unk>``.

**Decoding** joins the tokens, turns each ``</w>`` into a space and strips the ends: the words
come back separated by single spaces, lower-cased (``don ' t stop — cafe !``). Case, accents
and the original spacing are lost; that is the price of a small character vocabulary.

What differs from OpenAI's original
-----------------------------------
OpenAI's code (``text_utils.py`` of *finetune-transformer-lm*) first repaired the text with
``ftfy.fix_text`` (mojibake, curly quotes, ligatures), then standardised it (``text_standardize``:
the dashes ``—`` ``–`` ``―`` became ``-``, ``…`` became ``...``, ``´`` became ``'``, spaces were put
around runs of some punctuation, and each newline became a word of its own), cut words with
spaCy's English tokenizer, which splits contractions as ``do n't`` and keeps ``e.g.`` or ``U.S.``
whole, and lower-cased each word without stripping accents. Hugging Face falls back to BERT's
basic tokenizer when ``ftfy`` or ``spaCy`` is missing, and its current ``OpenAIGPTTokenizer``
(backed by the Rust ``tokenizers`` library) always uses that fallback; we follow the fallback,
which needs neither library. So ``don't`` is ``don ' t`` here (spaCy: ``do n't``), ``café`` is
``cafe``, newlines are dropped, and text cut by OpenAI's pipeline for the released vocabulary
may be cut differently here.

Against Hugging Face's ``OpenAIGPTTokenizer`` on the same files, the ids agree (tested) except:
its normaliser's Unicode tables are older than Python's ``unicodedata``, so a character assigned
or re-categorised since (an Arabic mark of Unicode 14: a mark here, stripped; unassigned there,
kept as ``<unk>``) is treated differently; and it finds the text ``<unk>`` in the input and encodes
it as the special token, where we encode it as the characters ``< unk >``. (Its older pure-Python
version lower-cased whole words, giving Greek's final ``ς``; the current one, and we, give ``σ``.)
"""
from __future__ import annotations

import unicodedata

from .bpe import BPETokenizer

__all__ = ["END_OF_WORD", "GPT1BPE", "normalize", "split_words", "word_symbols"]

#: The suffix that marks the last symbol of a word.
END_OF_WORD = "</w>"

#: The ASCII characters BERT counts as punctuation: all that are neither letters, digits, space nor
#: controls, so ``$ + < = > ^ ` | ~`` count although Unicode files them as symbols (``S*``).
ASCII_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# The CJK ideograph blocks BERT puts spaces around (CJK Unified Ideographs and Extensions A-E, the
# compatibility ideographs and their supplement). Hangul and kana are not among them: Korean puts
# spaces between words, and Japanese text is rare enough in English corpora not to matter.
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_control(ch: str) -> bool:
    """Deleted by step 1: U+0000, U+FFFD, and categories ``C*`` other than tab, newline, return."""
    return ch in "\x00\ufffd" or (unicodedata.category(ch)[0] == "C" and ch not in "\t\n\r")


def is_space(ch: str) -> bool:
    """Made a plain space by step 1: tab, newline, carriage return and the space separators ``Zs``."""
    return ch in "\t\n\r" or unicodedata.category(ch) == "Zs"


def is_cjk(ch: str) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in _CJK)


def is_punctuation(ch: str) -> bool:
    """A word of its own in step 4: :data:`ASCII_PUNCTUATION` or a ``P*`` category (Pc Pd Ps Pe Pi Pf Po)."""
    return ch in ASCII_PUNCTUATION or unicodedata.category(ch)[0] == "P"


def _table(text: str, rule) -> dict:
    """A :meth:`str.translate` table: ``rule(ch)`` for each distinct character of ``text`` that it changes.
    Deciding once per distinct character (a few hundred) rather than once per character (millions)
    is what makes normalising the whole corpus take a fraction of a second."""
    table = {}
    for ch in set(text):
        new = rule(ch)
        if new != ch:
            table[ord(ch)] = new
    return table


def _clean(ch: str):
    """Steps 1-3 for one character, except the accents: deleted, a space, spaced out, or lower-cased."""
    if is_control(ch):
        return None  # str.translate deletes it
    if is_space(ch):
        return " "
    # Lower-casing one character at a time, as Hugging Face's normaliser does: str.lower on the whole
    # text would apply Greek's final-sigma rule ("ΟΔΟΣ" -> "οδος", ending in ς instead of σ).
    return f" {ch} " if is_cjk(ch) else ch.lower()


def normalize(text: str) -> str:
    """Steps 1-3 of the module docstring: cleaned, CJK spaced out, lower-cased, accents stripped."""
    text = text.translate(_table(text, _clean))
    if text.isascii():  # the common case: nothing to decompose
        return text
    text = unicodedata.normalize("NFD", text)
    return text.translate(_table(text, lambda ch: None if unicodedata.category(ch) == "Mn" else ch))


def split_words(text: str) -> list:
    """``text`` normalised and cut into words (steps 1-4 of the module docstring): each punctuation
    character gets spaces around it, then the text is split at whitespace."""
    text = normalize(text)
    return text.translate(_table(text, lambda ch: f" {ch} " if is_punctuation(ch) else ch)).split()


def word_symbols(word: str) -> tuple:
    """A word's base symbols: its characters, the last one marked, ``"low"`` -> ``("l", "o", "w</w>")``."""
    return (*word[:-1], word[-1] + END_OF_WORD)


class GPT1BPE(BPETokenizer):
    """GPT-1's tokenizer from ``vocab`` (token -> id) and ``merges`` (pairs, rank order).

    A token that the merges produce but the vocabulary lacks (a character never seen in training)
    becomes ``<unk>``; without ``<unk>`` in the vocabulary that is an error.
    """

    def words(self, text: str) -> list:
        return [(word, word_symbols(word)) for word in split_words(text)]

    def decode(self, ids) -> str:
        """Tokens joined, each ``</w>`` a space, ends stripped: ``"low</w> er</w>"`` -> ``"low er"``."""
        return "".join(self.tokens(ids)).replace(END_OF_WORD, " ").strip()
