r"""Two tasks about who speaks in a scene: a character's NAME is the question, the scene is the document.

``speaks`` (classification, answered as SQuAD 2.0 is: a span or "no answer" on CLS; CLS and the question global)
    ``<s> NAME $ scene`` -> does NAME speak in this scene? "yes": one of the scene's speakers, and the
    model shows where, by marking NAME's first line (the span ``first-line`` asks for); "no": a character
    who speaks elsewhere in the same play but not in this scene, and the model marks CLS, the span (0, 0),
    as BERT marks SQuAD 2.0's unanswerable questions. Per scene, as many "yes" as "no"
    (:data:`PER_SCENE` of each at most), so the majority class scores one half; scored by whether the
    model answers (any span) or not (CLS), the class. Why not a classifier on CLS's vector: one was
    tried first, eight times, and never left one half (README); the span gives the model a position to
    learn from, where the class alone is one bit per question.
``first-line`` (span extraction; the question's tokens global)
    ``<s> NAME $ scene`` -> the span of the first line NAME speaks in the scene (the line after their
    first ``NAME:`` header). The model has to find the header that matches the question among the
    scene's speakers, then mark the line under it.

Both give a scene longer than the model allows as its first characters (what fits after the
question) and ask only about speakers whose first line (right under their first header) lies in that
part, so every label can be read from the input; "no" characters do not speak anywhere in the whole
scene. The examples are drawn by a generator seeded by the task and the play
(:func:`models.data.task_rng`), the same on every machine; the splits are by play, as everywhere.

**Renamed speakers** (training only): each time a training question is drawn, every speaker of its
scene and the question's character get new names, one random name each from the training plays' cast
(:func:`rename_speakers`; the same name for the same speaker throughout the scene, the question and
the answer's offsets moved to match). A model cannot then answer from the names it has seen, only by
matching the question against the scene's headers: the entity anonymisation of reading-comprehension
datasets (Hermann et al., 2015), which had the same reason. Validation and test read the plays as written.

A program that looks for the line ``NAME:`` answers both exactly: the tasks measure whether the
model LEARNS that search, from examples, across a whole scene. Baselines that do not read the scene
for the question, reported beside the model: the majority class and the **cast prior** (``speaks``:
"yes" when the character speaks in at least a fraction of its play's scenes, the fraction that
scores best on the training examples), the **first speaker's** and the **most frequent speaker's**
first line (``first-line``).
"""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from .. import data
from .heads import LongformerForQuestionAnswering
from .longdoc import Encoded, LongdocTokenizer, _speeches, corpus_scenes, encode_qa

__all__ = ["PER_SCENE", "LongformerFirstLine", "LongformerSpeaks", "Renamer", "build_first_line", "build_speaks",
           "cast_prior", "check_first_line_example", "encode_speaks", "first_line_baselines", "rename_speakers",
           "training_cast"]

PER_SCENE = 3  # speaks: "yes" and "no" questions per scene (each); first-line: twice as many questions per scene
# (5 speakers in a median scene); at 512 characters, 2,792 and 1,415 training questions
LABELS = ("no", "yes")  # speaks' classes: label index 1 = the character speaks
LONGEST_LINE = 64  # first-line's longest span decoded: the corpus' lines are at most 61 characters


def _first_speeches(text: str) -> dict:
    """NAME -> that speaker's first speech in ``text``, in the order the speakers first speak."""
    first = {}
    for sp in _speeches(text):
        first.setdefault(text[sp.name_start:sp.name_end], sp)
    return first


def _room(max_len: int, name: str) -> int:
    """Characters of the scene that fit after ``<s> NAME $`` in ``max_len`` tokens."""
    return max_len - 2 - len(name)


def _check_max_len(max_len: int, where: str) -> None:
    if not isinstance(max_len, int) or max_len < 64:
        raise ValueError(f"{where}: max_len must be an int >= 64 (room for a name and some of the scene), got {max_len!r}")


def _each_scene(corpus, task: str):
    """``(split, scene, its first speeches, the play's share of scenes per speaker, rng)`` for every scene;
    ``rng`` the task's generator of the scene's play (one per play, :func:`models.data.task_rng`)."""
    for split in data.SPLITS:
        by_play = {}
        for scene in corpus_scenes(corpus, split):
            by_play.setdefault(scene.play, []).append(scene)
        for play, play_scenes in by_play.items():
            firsts = [_first_speeches(s.text) for s in play_scenes]
            share = Counter(name for f in firsts for name in f)
            share = {name: n / len(play_scenes) for name, n in share.items()}
            rng = data.task_rng(task, play)
            for scene, first in zip(play_scenes, firsts):
                yield split, scene, first, share, rng


def _first_line_names(first: dict, max_len: int) -> list:
    """The speakers of ``first`` (:func:`_first_speeches`) whose first line, right under their first
    ``NAME:`` header, fits in the context a question of theirs leaves (:func:`_room`)."""
    return [n for n, sp in first.items() if sp.lines and sp.lines[0][0] + len(sp.lines[0][1]) <= _room(max_len, n)
            and sp.lines[0][0] == sp.name_end + 2]


def build_speaks(corpus: data.Corpus | None = None, max_len: int = 2048, per_scene: int = PER_SCENE) -> dict:
    """``{split: [example]}``; an example: ``{"play", "scene", "question", "context", "label", "cast_share",
    "answer", "answer_start", "answer_end"}``, label "yes" or "no", cast_share the fraction of the play's
    scenes in which the character speaks; the answer is NAME's first line for "yes" (as in
    :func:`build_first_line`), None (and its offsets None) for "no"."""
    corpus = corpus or data.load_shakespeare()
    _check_max_len(max_len, "build_speaks")
    out = {split: [] for split in data.SPLITS}
    for split, scene, first, share, rng in _each_scene(corpus, "speaks"):
        yes = _first_line_names(first, max_len)
        no = [n for n in sorted(share) if n not in first]  # the play's cast
        k = min(per_scene, len(yes), len(no))
        for label, names in (("yes", yes), ("no", no)):
            for i in sorted(rng.choice(len(names), size=k, replace=False)) if k else []:
                name = names[i]
                ex = {"play": scene.play, "scene": scene.index, "question": name,
                      "context": scene.text[:_room(max_len, name)], "label": label, "cast_share": share[name],
                      "answer": None, "answer_start": None, "answer_end": None}
                if label == "yes":
                    offset, line = first[name].lines[0]
                    ex.update(answer=line, answer_start=offset, answer_end=offset + len(line))
                out[split].append(ex)
    return out


def cast_prior(train_examples: list, examples: list) -> float:
    """Accuracy on ``examples`` of answering "yes" when ``cast_share`` >= a threshold, the threshold that
    scores best on ``train_examples``: knowing the play's cast, not reading the scene."""
    if not examples:
        return float("nan")

    def accuracy(exs, t):
        return sum((e["cast_share"] >= t) == (e["label"] == "yes") for e in exs) / len(exs)

    best = max(sorted({e["cast_share"] for e in train_examples}), key=lambda t: accuracy(train_examples, t))
    return accuracy(examples, best)


def encode_speaks(examples: list, tok: LongdocTokenizer) -> Encoded:
    """``<s> NAME $ context``, the question mask over ``<s> NAME $``, label 1 for "yes"; the span of NAME's
    first line for "yes", (0, 0), CLS, for "no"."""
    answers = [ex if ex["label"] == "yes" else {**ex, "answer_start": 0, "answer_end": 1} for ex in examples]
    enc = encode_qa(answers, tok, max_answer_len=LONGEST_LINE)
    labels = np.array([LABELS.index(ex["label"]) for ex in examples], dtype=np.int64)
    no = labels == 0
    enc.starts[no], enc.ends[no] = 0, 0
    return dataclasses.replace(enc, kind="span-or-none", labels=labels)


def build_first_line(corpus: data.Corpus | None = None, max_len: int = 2048, per_scene: int = 2 * PER_SCENE) -> dict:
    """``{split: [example]}`` in :func:`models.longformer.longdoc.build_speaker_qa`'s format: question =
    a speaker's NAME, answer = the first line of their first speech, ``context[answer_start:answer_end]``."""
    corpus = corpus or data.load_shakespeare()
    _check_max_len(max_len, "build_first_line")
    out = {split: [] for split in data.SPLITS}
    for split, scene, first, _, rng in _each_scene(corpus, "first-line"):
        names = _first_line_names(first, max_len)
        for i in sorted(rng.choice(len(names), size=min(per_scene, len(names)), replace=False)):
            name = names[i]
            offset, line = first[name].lines[0]
            out[split].append({"play": scene.play, "scene": scene.index, "question": name,
                               "context": scene.text[:_room(max_len, name)], "answer": line,
                               "answer_start": offset, "answer_end": offset + len(line)})
    return out


def check_first_line_example(ex: dict) -> None:
    """Raise ValueError unless the span is the first line under the question's first ``NAME:`` header."""
    ctx, s, e = ex["context"], ex["answer_start"], ex["answer_end"]
    first = _first_speeches(ctx).get(ex["question"])
    if first is None:
        raise ValueError(f"first-line example of {ex['play']!r}: {ex['question']!r} does not speak in the context")
    if ctx[s:e] != ex["answer"] or not first.lines or first.lines[0] != (s, ex["answer"]):
        raise ValueError(f"first-line example of {ex['play']!r}: span [{s}, {e}) is not the first line "
                         f"{ex['question']!r} speaks")


def first_line_baselines(examples: list) -> dict:
    """Exact match of answering with the first line of (a) the scene's first speaker, (b) its most
    frequent speaker, whoever the question names."""
    hits = {"first_speaker_line": 0, "most_frequent_speaker_line": 0}
    for ex in examples:
        ctx = ex["context"]
        speeches = _speeches(ctx)
        first = _first_speeches(ctx)
        top = Counter(ctx[sp.name_start:sp.name_end] for sp in speeches).most_common(1)[0][0]
        for key, name in (("first_speaker_line", next(iter(first))), ("most_frequent_speaker_line", top)):
            lines = first[name].lines
            hits[key] += bool(lines) and lines[0][1] == ex["answer"]
    n = max(len(examples), 1)
    return {k: v / n for k, v in hits.items()}


def rename_speakers(example: dict, mapping: dict) -> dict:
    """``example`` with each ``NAME:`` header of its context, and its question, renamed by ``mapping``
    (NAME -> new name; a name it lacks is kept); a span's ``answer_start``/``answer_end`` move with the
    text before them. Dialogue that mentions a name is left as written."""
    ctx, parts, at, shift = example["context"], [], 0, 0
    start = example.get("answer_start")
    for sp in _speeches(ctx):
        old = ctx[sp.name_start:sp.name_end]
        new = mapping.get(old, old)
        parts += [ctx[at:sp.name_start], new]
        at = sp.name_end
        if start is not None and sp.name_end <= start:
            shift += len(new) - len(old)
    out = {**example, "context": "".join(parts) + ctx[at:],
           "question": mapping.get(example["question"], example["question"])}
    if start is not None:
        out["answer_start"], out["answer_end"] = start + shift, example["answer_end"] + shift
    return out


class Renamer:
    """Training questions, drawn renamed: ``redraw(index, rng)`` -> an :class:`Encoded` of the examples
    ``index`` with their speakers renamed at random (:func:`rename_speakers`), names from ``pool`` (the
    training plays' cast), one distinct name per speaker of the scene and the question."""

    def __init__(self, examples: list, pool: list, encode, max_len: int):
        self.examples, self.pool, self.encode, self.max_len = examples, sorted(set(pool)), encode, max_len

    def rename(self, ex: dict, rng: np.random.Generator) -> dict:
        """One example renamed, its context cut again to fit ``max_len`` with the new names. If the cut would
        lose the answer (a "yes" header, a first line), the example is kept as written."""
        names = list(_first_speeches(ex["context"]))
        names += [ex["question"]] if ex["question"] not in names else []
        if len(names) > len(self.pool):
            raise ValueError(f"Renamer: {len(names)} speakers in a scene, only {len(self.pool)} names to give")
        new = rng.choice(len(self.pool), size=len(names), replace=False)
        out = rename_speakers(ex, {old: self.pool[j] for old, j in zip(names, new)})
        out["context"] = out["context"][:_room(self.max_len, out["question"])]
        kept = out["answer_end"] is None or out["answer_end"] <= len(out["context"])  # "no": no answer to lose
        return out if kept else ex

    def __call__(self, index, rng: np.random.Generator) -> Encoded:
        return self.encode([self.rename(self.examples[i], rng) for i in index])


def training_cast(examples: list) -> list:
    """Every speaker name of the examples' contexts (the pool :class:`Renamer` draws from)."""
    return sorted({name for ex in examples for name in _first_speeches(ex["context"])})


# Checkpoints name their task by the model's class (models.recipes.kind_of): one class per task, the heads unchanged.
class LongformerSpeaks(LongformerForQuestionAnswering):
    """The ``speaks`` model: the span head with "no answer" on CLS (``no_answer``); the question's tokens
    and CLS global."""

    no_answer = True


class LongformerFirstLine(LongformerForQuestionAnswering):
    """The ``first-line`` model: the span head, the question's tokens global."""
