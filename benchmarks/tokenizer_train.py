r"""How fast does our BPE trainer learn merges, and how much do they compress? (issue 19)

For each kind of tokenizer (GPT-2's byte-level BPE, GPT-1's character BPE with ``</w>``) and each
number of merges in ``--merges`` (default 256, 1000, 2000, 4000), :func:`models.tokenizers.train_bpe`
learns the merges on the Shakespeare train split (32 plays, about 4.2 M characters) and the result
encodes the validation split (3 unseen plays). Printed per row:

* ``vocab``: tokens in all (base symbols + tokens the merges made + special tokens);
* ``train s``: seconds of :func:`train_bpe`, pre-tokenisation and counting of the words included;
* ``chars/token``: validation characters per token (a character model has 1.0); for GPT-1 the
  characters include the spaces and newlines that its words drop;
* ``encode k chars/s``: the speed of encoding the validation split (its words' merges cached).

Then, to show what the incremental pair counts (:mod:`models.tokenizers.train`) save, the naive
trainer that recounts every pair of every word after each merge (the reference of
``tests/models/test_tokenizers.py``) runs ``--naive-merges`` merges on the same words: its time
per merge, times 4000, is what 4000 merges would cost it.

Run: ``python benchmarks/tokenizer_train.py`` (``--merges 256 1000`` or ``--kinds gpt1`` for a subset).
"""
from __future__ import annotations

import argparse
import platform
import time
from collections import Counter

from models.data import load_shakespeare
from models.tokenizers import merge_pair, train_bpe
from models.tokenizers.train import SPECIAL_TOKENS, word_counts


def naive_seconds_per_merge(counts_of_words: dict, merges: int) -> float:
    """Seconds per merge of the recount-everything trainer (same tie-break as the incremental one)."""
    words = [(list(w), n) for w, n in counts_of_words.items()]
    start = time.perf_counter()
    for _ in range(merges):
        counts = Counter()
        for w, n in words:
            for pair in zip(w, w[1:]):
                counts[pair] += n
        best = min(counts, key=lambda p: (-counts[p], p))
        words = [(merge_pair(w, best, best[0] + best[1]), n) for w, n in words]
    return (time.perf_counter() - start) / merges


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=["byte-level", "gpt1"], default=["byte-level", "gpt1"])
    parser.add_argument("--merges", nargs="+", type=int, default=[256, 1000, 2000, 4000])
    parser.add_argument("--naive-merges", type=int, default=10, help="merges timed for the naive trainer (0: skip)")
    args = parser.parse_args(argv)

    corpus = load_shakespeare()
    train, validation = corpus.train, corpus.validation
    print(f"python {platform.python_version()}, {platform.machine()}; train split {len(train):,} characters, "
          f"validation {len(validation):,}")
    print(f"{'kind':<11} {'merges':>6} {'vocab':>6} {'train s':>8} {'chars/token':>12} {'encode k chars/s':>17}")
    for kind in args.kinds:
        counted = word_counts(train, kind)
        if kind == "byte-level":
            base = 256
        else:
            base = 2 * len({ch for word in counted for symbol in word for ch in symbol.removesuffix("</w>")})
        for merges in args.merges:
            start = time.perf_counter()
            tok = train_bpe(train, base + merges + len(SPECIAL_TOKENS[kind]), kind)
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            n_tokens = len(tok.encode(validation))
            encode = time.perf_counter() - start
            print(f"{kind:<11} {len(tok.merges):>6} {tok.vocab_size:>6} {seconds:>8.1f} "
                  f"{len(validation) / n_tokens:>12.3f} {len(validation) / encode / 1e3:>17.0f}")
        if args.naive_merges:
            per_merge = naive_seconds_per_merge(counted, args.naive_merges)
            print(f"{kind:<11} naive recount ({len(counted):,} distinct words): {per_merge:.3f} s per merge "
                  f"-> {4000 * per_merge / 60:.0f} min for 4000 merges")


if __name__ == "__main__":
    main()
