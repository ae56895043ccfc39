"""``python -m models tokenizer train``: learn BPE merges on the Shakespeare train split.

    python -m models tokenizer train --vocab-size 1000 --out runs/bpe-1000                # byte-level (GPT-2)
    python -m models tokenizer train --vocab-size 1000 --kind gpt1 --out runs/gpt1-1000    # GPT-1's

Writes ``vocab.json`` and ``merges.txt`` to ``--out`` (the files Hugging Face reads; load them back
with :func:`models.tokenizers.load_bpe`) and prints the first merges, the time training took and the
compression on the validation split: characters of the split per token. A directory that already
holds a tokenizer is refused unless ``--overwrite`` is given.
"""
from __future__ import annotations

import os
import time

from .train import KINDS


def add_parser(sub, integer) -> None:
    """Register ``tokenizer`` (with its action ``train``) on the subparsers ``sub`` of ``python -m models``;
    ``integer(low)`` is its argparse type for an integer >= ``low``."""
    p = sub.add_parser("tokenizer", help="train a BPE tokenizer (GPT-2's byte-level or GPT-1's) on Shakespeare",
                       description="Byte-pair encoding tokenizers written by hand (models/tokenizers).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    t = actions.add_parser("train", help="learn merges on the train split, report compression on validation",
                           description="Learn BPE merges on the Shakespeare train split; write vocab.json and "
                                       "merges.txt to --out; print the first merges, the time and the characters "
                                       "per token on the validation split.")
    t.add_argument("--vocab-size", type=integer(1), required=True,
                   help="tokens in all: base symbols (256 bytes, or gpt1's characters and their </w> forms), "
                        "merges and special tokens")
    t.add_argument("--kind", choices=KINDS, default="byte-level",
                   help="byte-level (GPT-2, RoBERTa: bytes, lossless) or gpt1 (lower-cased words, </w>) "
                        "(default: byte-level)")
    t.add_argument("--out", required=True, help="output directory for vocab.json and merges.txt")
    t.add_argument("--show", type=integer(0), default=20, help="print this many of the first merges (default: 20)")
    t.add_argument("--overwrite", action="store_true", help="replace the tokenizer --out already holds")


def _shown(symbol: str) -> str:
    """A symbol as it reads in merges.txt, with Python's escapes for what would not show (a newline)."""
    return symbol if symbol.isprintable() else repr(symbol)[1:-1]


def cmd_tokenizer(args) -> int:
    from ..data import load_shakespeare  # imported here so that --help stays instant
    from .files import MERGES_FILE, VOCAB_FILE
    from .train import SPECIAL_TOKENS, train_bpe

    if args.action != "train":
        raise ValueError(f"unknown tokenizer action {args.action!r}")
    out = os.fspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"--out {out!r} is a file, not a directory")
    existing = [name for name in (VOCAB_FILE, MERGES_FILE) if os.path.exists(os.path.join(out, name))]
    if existing and not args.overwrite:
        raise ValueError(f"--out {out!r} already holds {' and '.join(existing)}; pass --overwrite to replace them")
    corpus = load_shakespeare()
    start = time.perf_counter()
    tok = train_bpe(corpus.train, args.vocab_size, args.kind)
    seconds = time.perf_counter() - start
    tok.save(out)
    specials = len(SPECIAL_TOKENS[args.kind])
    print(f"{args.kind} BPE: {len(tok.merges)} merges learnt on the train split ({len(corpus.train):,} characters) "
          f"in {seconds:.1f} s")
    if tok.vocab_size < args.vocab_size:
        print(f"note: the text ran out of pairs; the vocabulary has {tok.vocab_size} tokens, not {args.vocab_size}")
    made = len({a + b for a, b in tok.merges})  # tokens the merges made (two merges may make the same)
    print(f"vocabulary: {tok.vocab_size} tokens = {tok.vocab_size - made - specials} base symbols + {made} made by "
          f"merges + {specials} special; wrote {os.path.join(out, VOCAB_FILE)} and {MERGES_FILE}")
    shown = tok.merges[: args.show]
    if shown:
        print(f"first {len(shown)} merges (rank: a b -> ab):")
        for rank, (a, b) in enumerate(shown):
            print(f"  {rank:5d}: {_shown(a)} {_shown(b)} -> {_shown(a + b)}")
    ids = tok.encode(corpus.validation)
    print(f"validation: {len(corpus.validation):,} characters -> {len(ids):,} tokens = "
          f"{len(corpus.validation) / max(len(ids), 1):.3f} characters per token")
    return 0
