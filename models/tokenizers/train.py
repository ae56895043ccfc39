r"""Learning BPE merges from text (Sennrich et al. 2016, "Neural Machine Translation of Rare
Words with Subword Units", Algorithm 1), with incremental pair counts.

The algorithm
-------------
Cut the training text into words (GPT-1's or GPT-2's pre-tokenisation) and count how often each
distinct word occurs: ``{"the": 27000, "thee": 3100, ...}``. Each word starts as its base symbols.
Then, until the vocabulary is full:

1. count every adjacent pair of symbols over the corpus: the pair ``(a, b)`` scores the sum of
   the frequencies of the words it occurs in, once per occurrence;
2. take the most frequent pair (ties: the smallest pair, comparing ``a`` then ``b`` as strings, so
   the result does not depend on dict or set order);
3. record the merge ``a b`` and replace it by the new symbol ``ab`` in every word, left to right.

A worked example: the words ``low`` x5, ``lower`` x2, ``newest`` x6, ``widest`` x3, with GPT-1's
end marker on each last symbol. The pair counts at the start::

    (e, s) 9   (s, t</w>) 9   (w, e) 8   (l, o) 7   (e, w) 6   (n, e) 6   (o, w</w>) 5   ...

    merge  pair       count  why this pair                       the words it changes
    1      e s        9      tied with (s, t</w>); "e" < "s"     newest = n e w es t</w>, widest = w i d es t</w>
    2      es t</w>   9                                          newest = n e w est</w>,  widest = w i d est</w>
    3      l o        7      (w, e) fell to 2: newest lost it    low = lo w</w>,          lower = lo w e r</w>
    4      e w        6      tied with (n, e) and (w, est</w>)   newest = n ew est</w>
    5-8    ew est</w>, n ewest</w>, lo w</w>, d est</w>, ...

With these merges ``lowest`` encodes as ``lo w est</w>`` and ``newer`` as ``n ew e r</w>``: pieces
learnt from other words combine into words never seen.

Incremental counts
------------------
Recounting every pair after every merge costs a pass over all words per merge: on the 32,000
distinct words of the Shakespeare train split that is about 0.17 s per merge in Python, 11 minutes
for 4,000 merges (``benchmarks/tokenizer_train.py``), where the version below takes 2-3 seconds. But a merge of ``(a, b)`` only
changes the words that contain ``a b``, and in each of them only the pairs around the merged
spots. So we keep

* ``counts``: pair -> its current count, and
* ``where``: pair -> the set of words (indices) that contain it,

and after a merge visit only ``where[(a, b)]``: for each of those words, subtract the counts of its
old pairs, merge, add the counts of its new pairs, and update ``where`` for the pairs it lost or
gained. The merges of one step typically touch a few hundred words out of tens of thousands.

To find the most frequent pair fast, the counts also live in a heap of ``(-count, pair)``: the
smallest entry is the largest count with the smallest pair, the tie-break of step 2. Changing a
count pushes a new entry and leaves the old one in the heap ("lazy deletion"); an entry popped
whose count no longer equals ``counts[pair]`` is stale and skipped. Every pair has a fresh entry,
so the first fresh entry popped is the true maximum.

The files written
-----------------
``vocab.json`` holds, in id order:

* byte-level: the 256 byte symbols in byte order (id = byte value), then each merge's result in
  merge order, then the special tokens (default ``<s> </s> <pad> <unk>``; GPT-2 likewise puts its
  ``<|endoftext|>`` last);
* gpt1: the characters seen in training sorted by code point, then the same characters with
  ``</w>`` (so every seen character can end a word), then the merges' results, then ``<unk>``.

A merge whose result is already a token (``a bc`` after ``ab c``) is recorded but adds no id, so
``vocab_size`` counts tokens, not merges. Training stops early when no adjacent pair is left.
"""
from __future__ import annotations

import heapq
import os
from collections import Counter, defaultdict

from .bpe import merge_pair
from .byte_level import ByteLevelBPE, bytes_to_unicode, pretokenize, to_symbols
from .gpt1 import END_OF_WORD, GPT1BPE, split_words, word_symbols

__all__ = ["KINDS", "SPECIAL_TOKENS", "learn_merges", "train_bpe", "word_counts"]

#: The tokenizer class of each kind.
KINDS = {"byte-level": ByteLevelBPE, "gpt1": GPT1BPE}
#: Special tokens appended to the vocabulary by default, per kind.
SPECIAL_TOKENS = {"byte-level": ("<s>", "</s>", "<pad>", "<unk>"), "gpt1": ("<unk>",)}


def check_kind(kind) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}: choose from {', '.join(map(repr, KINDS))}")


def word_counts(text: str, kind: str = "byte-level") -> dict:
    """The distinct words of ``text`` as tuples of base symbols -> how often each occurs."""
    check_kind(kind)
    if kind == "byte-level":
        return {tuple(to_symbols(piece)): n for piece, n in Counter(pretokenize(text)).items()}
    return {word_symbols(word): n for word, n in Counter(split_words(text)).items()}


def learn_merges(counts_of_words: dict, new_tokens: int) -> list:
    """The merges BPE learns from ``counts_of_words`` (tuple of symbols -> frequency), in order,
    until ``new_tokens`` new symbols exist or no pair is left (the algorithm of the module docstring)."""
    words = [list(symbols) for symbols in counts_of_words]  # each word's current symbols
    freqs = list(counts_of_words.values())
    counts = defaultdict(int)  # pair -> sum of the frequencies of its occurrences
    where = defaultdict(set)  # pair -> indices of the words holding it
    for i, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:]):
            counts[pair] += freqs[i]
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)
    known = {s for symbols in words for s in symbols}
    merges, made = [], 0
    while made < new_tokens and heap:
        negative, pair = heapq.heappop(heap)
        if counts.get(pair) != -negative:
            continue  # stale: the count changed after this entry was pushed
        merged = pair[0] + pair[1]
        merges.append(pair)
        if merged not in known:
            known.add(merged)
            made += 1
        changed = set()
        for i in where.pop(pair):
            old = words[i]
            new = words[i] = merge_pair(old, pair, merged)
            delta = defaultdict(int)  # pair -> (occurrences in new) - (occurrences in old)
            for p in zip(old, old[1:]):
                delta[p] -= 1
            for p in zip(new, new[1:]):
                delta[p] += 1
            new_pairs = set(zip(new, new[1:]))
            for p, d in delta.items():
                if d == 0:
                    continue
                counts[p] += d * freqs[i]
                changed.add(p)
                if p == pair:
                    continue  # its index was popped above; the pair is gone from every word
                if p in new_pairs:
                    where[p].add(i)
                else:
                    where[p].discard(i)
        for p in changed:
            c = counts[p]
            if c == 0:
                del counts[p]
                where.pop(p, None)
            else:
                heapq.heappush(heap, (-c, p))
    return merges


def train_bpe(text: str, vocab_size: int, kind: str = "byte-level", *, special_tokens=None, out=None):
    """A tokenizer of ``kind`` ("byte-level" or "gpt1") with ``vocab_size`` tokens learnt from ``text``;
    when ``out`` is given, its ``vocab.json`` and ``merges.txt`` are written there.

    ``vocab_size`` counts everything: base symbols, merges' results and ``special_tokens`` (default
    :data:`SPECIAL_TOKENS` of the kind). The vocabulary is smaller only when the text runs out of pairs.
    """
    check_kind(kind)
    if not isinstance(text, str):
        raise TypeError(f"train_bpe: text must be a str, got {type(text).__name__}")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise TypeError(f"train_bpe: vocab_size must be an int, got {vocab_size!r}")
    specials = list(SPECIAL_TOKENS[kind] if special_tokens is None else special_tokens)
    counted = word_counts(text, kind)
    if kind == "byte-level":
        base = [bytes_to_unicode()[b] for b in range(256)]
    else:
        chars = sorted({ch for word in counted for symbol in word for ch in symbol.removesuffix(END_OF_WORD)})
        base = chars + [ch + END_OF_WORD for ch in chars]
    clash = sorted(set(specials) & set(base)) or sorted(s for s in set(specials) if specials.count(s) > 1)
    if clash:
        raise ValueError(f"train_bpe: special token {clash[0]!r} is also a base symbol or given twice")
    smallest = len(base) + len(specials)
    if vocab_size < smallest:
        raise ValueError(f"train_bpe: vocab_size {vocab_size} is smaller than the base vocabulary: {len(base)} "
                         f"{'bytes' if kind == 'byte-level' else 'symbols of the text'} + {len(specials)} special "
                         f"token(s) = {smallest}")
    merges = learn_merges(counted, vocab_size - smallest)
    tokens = list(base)
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    for s in specials:
        if s in seen:  # a merge made it: it cannot also be special
            raise ValueError(f"train_bpe: special token {s!r} is also a token the merges made")
        tokens.append(s)
    tokenizer = KINDS[kind]({token: i for i, token in enumerate(tokens)}, merges)
    if out is not None:
        tokenizer.save(os.fspath(out))
    return tokenizer
