r"""Byte-pair encoding (BPE) tokenizers, written by hand: GPT-1's and GPT-2's (RoBERTa's).

A character model predicts one character per step; a BPE model predicts a *token*, a frequent
piece of a word (``"Ġthe"``, ``"ing</w>"``), so the same context window covers several times more
text: 3.0 characters per token on the Shakespeare validation plays after 4,000 byte-level merges
learnt on the train plays (``benchmarks/tokenizer_train.py``). BPE builds its vocabulary bottom-up: start from characters (GPT-1) or bytes (GPT-2) and
repeatedly merge the most frequent adjacent pair into a new symbol (:mod:`.train`). To encode new
text, replay those merges in the order they were learnt (:mod:`.bpe`).

::

    from models.tokenizers import load_bpe, train_bpe

    tok = train_bpe(text, vocab_size=1000, kind="byte-level", out="runs/bpe-1000")
    tok = load_bpe("runs/bpe-1000", kind="byte-level")   # vocab.json + merges.txt, as Hugging Face writes them
    ids = tok.encode("ROMEO: But, soft!")                 # no special token added
    tok.decode(ids)                                       # "ROMEO: But, soft!" (byte-level is lossless)

The modules: :mod:`.bpe` (applying merges, the shared tokenizer class), :mod:`.gpt1` (lower-cased
words, ``</w>`` end markers), :mod:`.byte_level` (GPT-2's bytes and pre-tokenisation pattern),
:mod:`.charclass` (``\p{L}``-style classes for ``re``), :mod:`.train` (learning merges),
:mod:`.files` (reading and writing the two files), :mod:`.cli` (``python -m models tokenizer``).
"""
from __future__ import annotations

from .bpe import BPETokenizer, apply_merges, merge_pair
from .byte_level import ByteLevelBPE, bytes_to_unicode, pretokenize
from .files import read_merges, read_vocab
from .gpt1 import GPT1BPE, split_words
from .train import KINDS, check_kind, learn_merges, train_bpe

__all__ = [
    "KINDS",
    "BPETokenizer",
    "ByteLevelBPE",
    "GPT1BPE",
    "apply_merges",
    "bytes_to_unicode",
    "learn_merges",
    "load_bpe",
    "merge_pair",
    "pretokenize",
    "split_words",
    "train_bpe",
]


def load_bpe(directory, kind: str = "byte-level") -> BPETokenizer:
    """The tokenizer stored in ``directory`` (``vocab.json`` + ``merges.txt``): ``kind`` is "gpt1"
    (GPT-1, ``openai-gpt``) or "byte-level" (GPT-2, RoBERTa)."""
    check_kind(kind)
    vocab, merges = read_vocab(directory), read_merges(directory)
    try:
        return KINDS[kind](vocab, merges)
    except ValueError as e:
        raise ValueError(f"load_bpe: {directory!r}: {e}") from None
