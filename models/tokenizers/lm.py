r"""Byte-pair encoding as a language model's tokenizer: ``python -m models train gpt --tokenizer bpe``.

A character model and a BPE model predict different things, one character or one token per
step, so their losses per step cannot be compared. What can be compared is **bits per
character**: the bits a model spends on a text, in all, divided by the text's characters,

$$\text{bpc} = \frac{-\sum_i \log_2 P(u_i \mid u_{<i})}{\text{characters spelled by } u_1 \dots u_n},$$

which for a character model is the familiar mean over positions. A byte-level token spells a
whole number of UTF-8 bytes; the characters it spells are the bytes that START a character
(those not of the form ``10xxxxxx``), so the counts of consecutive tokens add up to the
characters of the text they decode to, even where a token ends inside a character (the em dash
of the plays is three bytes). :attr:`BPETextTokenizer.chars_per_id` holds that count per id.

Only the byte-level kind is offered for training: it is lossless, so "the text's characters" are
the plays' own. GPT-1's kind lower-cases and drops whitespace (:mod:`.gpt1`).
"""
from __future__ import annotations

import numpy as np

from .byte_level import ByteLevelBPE, unicode_to_bytes
from .train import train_bpe

__all__ = ["BPETextTokenizer", "LMTokenizer", "lm_tokenizer_from_dict"]


class BPETextTokenizer:
    """A :class:`~models.tokenizers.ByteLevelBPE` with what a language model's run needs of its tokenizer
    (the interface of :class:`models.data.CharTokenizer`): ids as an int64 array, ``to_dict`` /
    ``from_dict`` for the checkpoint's metadata (the vocabulary and merges themselves), and the
    characters each id spells (:attr:`chars_per_id`)."""

    def __init__(self, bpe: ByteLevelBPE):
        if not isinstance(bpe, ByteLevelBPE):
            raise TypeError(f"BPETextTokenizer: expected a ByteLevelBPE, got {type(bpe).__name__}")
        self.bpe = bpe
        to_byte = unicode_to_bytes()
        special = set(bpe.SPECIAL.values())
        counts = [0 if token in special else sum(1 for ch in token if to_byte[ch] & 0xC0 != 0x80)
                  for token in bpe.id_to_token]
        self.chars_per_id = np.asarray(counts, dtype=np.int64)  # (V,): characters each id spells

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETextTokenizer:
        """Byte-level merges learnt from ``text`` until the vocabulary has ``vocab_size`` tokens."""
        return cls(train_bpe(text, vocab_size, kind="byte-level"))

    @property
    def vocab_size(self) -> int:
        return self.bpe.vocab_size

    def encode(self, text: str) -> np.ndarray:
        """``text`` as a 1-D int64 array of ids (no special token added)."""
        return np.asarray(self.bpe.encode(text), dtype=np.int64)

    def decode(self, ids) -> str:
        """The text of a 1-D sequence of ids (lossless for the ids :meth:`encode` gives)."""
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"BPETextTokenizer.decode: expected a 1-D sequence of ids, got shape {arr.shape}")
        return self.bpe.decode(arr.tolist())

    def to_dict(self) -> dict:
        """A JSON-able description (stored in checkpoint metadata): the vocabulary and the merges."""
        return {"type": "bpe", "kind": "byte-level", "vocab": dict(self.bpe.vocab),
                "merges": [list(pair) for pair in self.bpe.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> BPETextTokenizer:
        if not isinstance(d, dict) or d.get("type") != "bpe":
            raise ValueError(f"BPETextTokenizer.from_dict: not a BPE tokenizer (type {d.get('type') if isinstance(d, dict) else d!r})")
        if d.get("kind") != "byte-level" or "vocab" not in d or "merges" not in d:
            raise ValueError("BPETextTokenizer.from_dict: needs kind 'byte-level', 'vocab' and 'merges'")
        return cls(ByteLevelBPE(d["vocab"], [tuple(pair) for pair in d["merges"]]))

    def __eq__(self, other) -> bool:
        return isinstance(other, BPETextTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"BPETextTokenizer(vocab_size={self.vocab_size}, merges={len(self.bpe.merges)})"


def lm_tokenizer_from_dict(d: dict):
    """The tokenizer a checkpoint's metadata describes: characters (``type`` "char", the default) or BPE."""
    from ..data import CharTokenizer  # noqa: PLC0415  (models.data does not import the tokenizers)

    kind = d.get("type", "char") if isinstance(d, dict) else None
    if kind == "bpe":
        return BPETextTokenizer.from_dict(d)
    return CharTokenizer.from_dict(d)


class LMTokenizer:
    """The tokenizer column of a language model's :class:`models.recipe.Kind`: rebuilds either kind."""

    from_dict = staticmethod(lm_tokenizer_from_dict)
