r"""What every byte-pair encoder shares: applying merges by rank, ids, decoding checks.

A BPE tokenizer is two tables:

* the **merges**, an ordered list of symbol pairs ``(a, b)``; the line number of a pair in
  ``merges.txt`` is its **rank**, and rank 0 was learnt first (it was the most frequent pair of
  the training text);
* the **vocabulary**, ``token -> id``, which holds every base symbol and every merge's result ``ab``.

Encoding a word (a piece of text that pre-tokenisation cut out) starts from its base symbols,
characters for GPT-1 or bytes for GPT-2, and repeats one step until nothing changes:

1. look at every adjacent pair of the current symbols and find the one of lowest rank;
2. if no adjacent pair is a merge at all, stop;
3. otherwise replace **every** occurrence of that pair, left to right, by the merged symbol.

That replays the order in which training learnt the merges, so a word is cut the way the training
text taught. Example with the merges ``e r`` (rank 0), ``l o`` (rank 1), ``lo w`` (rank 2)::

    l o w e r  ->  l o w er  ->  lo w er  ->  low er

Left to right matters when a pair overlaps itself: with the merge ``a a``, ``a a a`` becomes
``aa a``, not ``a aa``.
"""
from __future__ import annotations

import numbers

from .files import write_vocab_and_merges

__all__ = ["BPETokenizer", "apply_merges", "merge_pair"]


def merge_pair(symbols: list, pair: tuple, merged: str) -> list:
    """``symbols`` with every occurrence of ``pair`` replaced by ``merged``, scanning left to right
    (an occurrence that overlaps one already merged is skipped)."""
    # BEGIN SOLUTION lesson 07: merge_pair: one merge step of lesson 07's section 0, left to right over the symbols
    first, second = pair
    out, i, n = [], 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == first and symbols[i + 1] == second:
            out.append(merged)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out
    # END SOLUTION


def apply_merges(symbols, ranks: dict) -> list:
    """The symbols of one word after the merges of ``ranks`` (``(a, b) -> rank``), lowest rank first
    (steps 1-3 of the module docstring)."""
    # BEGIN SOLUTION lesson 07: apply_merges: the encoding rule of lesson 07's section 0 (the lowest-ranked adjacent pair first, until none is a merge)
    symbols = list(symbols)
    while len(symbols) > 1:
        best, best_rank = None, None
        for pair in zip(symbols, symbols[1:]):
            rank = ranks.get(pair)
            if rank is not None and (best_rank is None or rank < best_rank):
                best, best_rank = pair, rank
        if best is None:
            break
        symbols = merge_pair(symbols, best, best[0] + best[1])
    return symbols
    # END SOLUTION


class BPETokenizer:
    """The part of GPT-1's and GPT-2's tokenizers that does not depend on how text becomes symbols.

    ``vocab`` maps each token to its id (ids must be exactly ``0 .. len(vocab) - 1``); ``merges`` is
    the list of pairs in rank order. Every part and result of a merge must be in ``vocab`` (the
    same check Hugging Face's ``tokenizers`` makes). A subclass supplies :meth:`words` (text ->
    the base symbols of each word) and :meth:`decode`.
    """

    #: Tokens that are read from the vocabulary as special ids when present.
    SPECIAL = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"}
    #: Words remembered by :meth:`encode`; the cache is emptied when it grows past this many.
    CACHE_SIZE = 100_000

    def __init__(self, vocab: dict, merges: list):
        name = type(self).__name__
        if not isinstance(vocab, dict) or not vocab:
            raise ValueError(f"{name}: vocab must be a non-empty dict token -> id")
        for token, i in vocab.items():
            if not isinstance(token, str) or not isinstance(i, int) or isinstance(i, bool):
                raise ValueError(f"{name}: vocab entries must be str -> int, got {token!r} -> {i!r}")
        ids = sorted(vocab.values())
        if ids != list(range(len(vocab))):
            missing = sorted(set(range(len(vocab))) - set(ids))
            raise ValueError(f"{name}: vocab ids must be 0..{len(vocab) - 1}, each once; "
                             f"{f'{missing[0]} is missing' if missing else 'an id appears twice'}")
        self.vocab = dict(vocab)
        self.id_to_token = [""] * len(vocab)
        for token, i in vocab.items():
            self.id_to_token[i] = token
        self.merges = [tuple(pair) for pair in merges]
        self.ranks = {}
        for rank, pair in enumerate(self.merges):
            if pair in self.ranks:
                raise ValueError(f"{name}: merge {' '.join(pair)!r} appears twice "
                                 f"(ranks {self.ranks[pair]} and {rank})")
            for token in (*pair, pair[0] + pair[1]):
                if token not in self.vocab:
                    raise ValueError(f"{name}: merge {rank} {' '.join(pair)!r} uses {token!r}, "
                                     "which is not in the vocab")
            self.ranks[pair] = rank
        self._cache = {}

    # ----------------------------------------------------------------- ids

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _special_id(self, key):
        return self.vocab.get(self.SPECIAL[key])

    @property
    def bos_id(self):
        """The id of ``<s>``, or None when the vocabulary has none."""
        return self._special_id("bos")

    @property
    def eos_id(self):
        """The id of ``</s>``, or None."""
        return self._special_id("eos")

    @property
    def pad_id(self):
        """The id of ``<pad>``, or None."""
        return self._special_id("pad")

    @property
    def unk_id(self):
        """The id of ``<unk>``, or None."""
        return self._special_id("unk")

    # ----------------------------------------------------------------- encode / decode

    def words(self, text: str) -> list:
        """``text`` cut into words, each a string key and the tuple of its base symbols."""
        raise NotImplementedError

    def word_ids(self, symbols: tuple) -> list:
        """The ids of one word's base symbols after the merges; a symbol outside the vocabulary
        becomes ``<unk>`` (an error when the vocabulary has none)."""
        out = []
        for token in apply_merges(symbols, self.ranks):
            i = self.vocab.get(token, self.unk_id)
            if i is None:
                raise ValueError(f"{type(self).__name__}.encode: {token!r} is not in the vocabulary, "
                                 "which has no <unk>")
            out.append(i)
        return out

    def encode(self, text: str) -> list:
        """``text`` as a list of ids. No special token is added."""
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__}.encode: expected str, got {type(text).__name__}")
        ids = []
        for key, symbols in self.words(text):
            cached = self._cache.get(key)
            if cached is None:
                if len(self._cache) >= self.CACHE_SIZE:
                    self._cache.clear()
                cached = self._cache[key] = self.word_ids(symbols)
            ids.extend(cached)
        return ids

    def tokens(self, ids) -> list:
        """The token strings of ``ids``; a clear error for an id that is not an int of the vocabulary."""
        ids = list(ids) if not isinstance(ids, list) else ids
        n = len(self.id_to_token)
        out = []
        for position, i in enumerate(ids):
            if not isinstance(i, numbers.Integral) or isinstance(i, bool):
                raise TypeError(f"{type(self).__name__}.decode: id at position {position} is {i!r}, not an integer")
            if not 0 <= i < n:
                raise ValueError(f"{type(self).__name__}.decode: id {int(i)} at position {position} is outside "
                                 f"the vocabulary [0, {n})")
            out.append(self.id_to_token[i])
        return out

    def decode(self, ids) -> str:
        raise NotImplementedError

    def save(self, directory) -> None:
        """Write ``vocab.json`` and ``merges.txt`` to ``directory`` (created if needed), atomically."""
        write_vocab_and_merges(directory, self.vocab, self.merges)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, merges={len(self.merges)})"
