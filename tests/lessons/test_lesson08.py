r"""Checks for lesson 08 (GPT fine-tuning). Run with `pytest -m lesson08`.

The exercises are three regions of models/gpt/finetune.py: the input transforms in
``TaskEncoder.sequences``, the $L_1$ targets in ``EncodedSplit.batch`` and the head in
``GPTForTasks.forward``. They are tested directly on a small hand-made vocabulary (no
corpus needed) and through the lesson's globals (the lesson is executed once per module
with runpy).
"""
import numpy as np
import pytest

import minitensor.functional as F
from models.data import CharTokenizer
from models.gpt.finetune import IGNORE, EncodedSplit, GPTForTasks, TaskEncoder
from models.gpt import GPT, GPTConfig

pytestmark = pytest.mark.lesson08

CHARS = "\n abcdefghijklmnopqrstuvwxyz.$"  # '$' is also a character: the delimiter must not be it
TOK = CharTokenizer(CHARS)
V = TOK.vocab_size
S, D, E = V, V + 1, V + 2
ATOL = 1e-12


def enc(text):
    return TOK.encode(text).tolist()


def model(fmt, n_labels, seed=0, n_ctx=32):
    config = GPTConfig(vocab_size=V, n_ctx=n_ctx, d_model=16, n_layer=2, n_head=2, init_std=0.2)
    transformer = GPTForTasks.add_special_tokens(GPT(config, rng=seed, dtype=np.float64), rng=seed)
    return GPTForTasks(transformer, fmt, n_labels, rng=seed).eval()


def logits_of(m, fmt, examples, labels=("no", "yes")):
    split = TaskEncoder(TOK, fmt, m.transformer.config.n_ctx).encode(examples, list(labels), fmt)
    ids, last, _, y = split.batch(np.arange(len(split)))
    return m(ids, last, len(y)).numpy()


# ------------------------------------------------------------------ exercise 1: the input transforms

def test_transform_layouts():
    assert TaskEncoder(TOK, "classification", 32).sequences({"text": "a b$"}) == [[S, *enc("a b$"), E]]
    assert TaskEncoder(TOK, "entailment", 32).sequences({"premise": "ab", "hypothesis": "c"}) == \
        [[S, *enc("ab"), D, *enc("c"), E]]
    assert TaskEncoder(TOK, "similarity", 32).sequences({"text_a": "ab", "text_b": "xyz"}) == \
        [[S, *enc("ab"), D, *enc("xyz"), E], [S, *enc("xyz"), D, *enc("ab"), E]]
    assert TaskEncoder(TOK, "multiple_choice", 32).sequences({"context": "q", "choices": ["a", "bc", "d"]}) == \
        [[S, *enc("q"), D, *enc(c), E] for c in ("a", "bc", "d")]


def test_transform_special_ids_and_character_dollar_differ():
    seq = TaskEncoder(TOK, "entailment", 32).sequences({"premise": "$", "hypothesis": "$"})[0]
    assert seq == [S, TOK.encode("$")[0], D, TOK.encode("$")[0], E] and D != TOK.encode("$")[0]


def test_transform_refuses_too_long_and_unknown():
    with pytest.raises(ValueError, match="n_ctx"):
        TaskEncoder(TOK, "classification", 5).sequences({"text": "abcd"})  # 4 + 2 special tokens > 5
    assert len(TaskEncoder(TOK, "classification", 6).sequences({"text": "abcd"})[0]) == 6
    with pytest.raises(ValueError, match="example"):
        TaskEncoder(TOK, "classification", 32).sequences({"text": "ABC"})


def test_lesson_layouts(lesson):
    assert lesson["layouts"] == {"classification": True, "entailment": True, "similarity": True,
                                 "multiple_choice": True}
    v = lesson["V"]
    assert [len(s) for s in lesson["encoded"]["next-speech"]] and len(lesson["encoded"]["next-speech"]) == 4
    for seqs in lesson["encoded"].values():
        for q in seqs:
            assert q[0] == v and q[-1] == v + 2 and v not in q[1:] and v + 2 not in q[:-1]


# ------------------------------------------------------------------ exercise 2: the L_1 targets

def reference_targets(seqs, t):
    out = np.full((len(seqs), t), IGNORE)
    for r, q in enumerate(seqs):
        for i in range(len(q) - 1):
            if q[i + 1] < V:
                out[r, i] = q[i + 1]
    return out


def test_batch_padding_last_and_targets():
    seqs = [[[S, *enc("ab"), D, *enc("c"), E]], [[S, *enc("hello"), D, *enc("wo"), E]], [[S, D, E]]]
    split = EncodedSplit(seqs, np.array([0, 1, 1]), V)
    ids, last, targets, labels = split.batch([0, 1, 2])
    flat = [s[0] for s in seqs]
    t = max(len(q) for q in flat)
    assert ids.shape == (3, t) and labels.tolist() == [0, 1, 1]
    assert last.tolist() == [len(q) - 1 for q in flat]
    for r, q in enumerate(flat):
        assert ids[r, :len(q)].tolist() == q and np.all(ids[r, len(q):] == 0)  # right padding
    np.testing.assert_array_equal(targets, reference_targets(flat, t))
    assert (targets != IGNORE).sum(axis=1).tolist() == [3, 7, 0]  # one per text character
    assert np.all(targets[ids >= V] != E) and not np.isin(targets, [S, D, E]).any()


def test_batch_targets_multi_sequence_and_order():
    seqs = [[[S, *enc("ab"), D, *enc(c), E] for c in ("x", "yz")], [[S, *enc("q"), D, *enc(c), E] for c in ("m", "n")]]
    split = EncodedSplit(seqs, np.array([1, 0]), V)
    ids, _, targets, labels = split.batch([1, 0])
    flat = seqs[1] + seqs[0]
    assert labels.tolist() == [0, 1] and ids.shape[0] == 4
    np.testing.assert_array_equal(targets, reference_targets(flat, ids.shape[1]))


def test_lesson_l1_by_hand(lesson):
    assert lesson["l1_targets_match"] is True
    assert max(lesson["loss_diffs"]) < 1e-10
    l3, l2, l1 = lesson["library"]
    assert abs(l3 - (l2 + lesson["LAMBDA"] * l1)) < 1e-10


# ------------------------------------------------------------------ exercise 3: the head

def test_head_reads_the_last_token_and_padding_is_invisible():
    m = model("classification", 3)
    ex = [{"text": "ab", "label": "no"}, {"text": "the longest of all.", "label": "yes"}]
    alone = logits_of(m, "classification", ex[:1])
    both = logits_of(m, "classification", ex)
    np.testing.assert_allclose(both[0], alone[0], rtol=0, atol=ATOL)
    assert both.shape == (2, 3)
    # the logits are the head applied to h at <e> (position len - 1), not at the padded end
    ids = np.array([[S, *enc("ab"), E]])
    h = m.transformer.hidden_states(ids).numpy()[0, -1]
    np.testing.assert_allclose(alone[0], h @ m.head.weight.numpy().T + m.head.bias.numpy(), rtol=0, atol=ATOL)


def test_similarity_sums_both_orders_and_is_symmetric():
    m = model("similarity", 2)
    ab = {"text_a": "to be", "text_b": "or not", "label": "no"}
    ba = {"text_a": "or not", "text_b": "to be", "label": "no"}
    got = logits_of(m, "similarity", [ab, ba])
    np.testing.assert_allclose(got[0], got[1], rtol=0, atol=ATOL)
    seqs = TaskEncoder(TOK, "similarity", 32).sequences(ab)
    h = sum(m.transformer.hidden_states(np.array([q])).numpy()[0, -1] for q in seqs)
    np.testing.assert_allclose(got[0], h @ m.head.weight.numpy().T + m.head.bias.numpy(), rtol=0, atol=ATOL)


def test_multiple_choice_one_score_per_choice_and_permutation():
    m = model("multiple_choice", 1)
    choices = ["a", "bb", "ccc", "dd"]
    perm = [3, 1, 0, 2]
    q = {"context": "which", "choices": choices, "label": 0}
    p = {"context": "which", "choices": [choices[k] for k in perm], "label": 0}
    got = logits_of(m, "multiple_choice", [q, p], labels=())
    assert got.shape == (2, 4)
    np.testing.assert_allclose(got[1], got[0][perm], rtol=0, atol=ATOL)
    for k, c in enumerate(choices):
        seq = [S, *enc("which"), D, *enc(c), E]
        h = m.transformer.hidden_states(np.array([seq])).numpy()[0, -1]
        np.testing.assert_allclose(got[0, k], (h @ m.head.weight.numpy().T + m.head.bias.numpy())[0], atol=ATOL)


def test_loss_is_l2_plus_lambda_l1():
    m = model("entailment", 2)
    ex = [{"premise": "ab", "hypothesis": "c", "label": "yes"}, {"premise": "hello", "hypothesis": "xy", "label": "no"}]
    split = TaskEncoder(TOK, "entailment", 32).encode(ex, ["no", "yes"], "t")
    batch = split.batch([0, 1])
    l3, l2, l1 = (float(x.numpy()) for x in m.loss(batch, 0.5))
    logits, lm = m(batch[0], batch[1], 2, with_lm=True)
    assert abs(l2 - float(F.cross_entropy(logits, batch[3]).numpy())) < ATOL
    assert abs(l1 - float(F.cross_entropy(lm, batch[2], ignore_index=IGNORE).numpy())) < ATOL
    assert abs(l3 - (l2 + 0.5 * l1)) < ATOL
    l3_0, _, l1_0 = m.loss(batch, 0.0)
    assert l1_0 is None and abs(float(l3_0.numpy()) - l2) < ATOL


def test_lesson_head_demos(lesson):
    assert lesson["h_first_spread"] == 0.0 and lesson["h_last_spread"] > 1e-2
    assert lesson["pad_diff"] < ATOL and lesson["left_diff"] > 1e-3
    assert lesson["sim_diff"] < ATOL and lesson["one_order_diff"] > 1e-2
    assert lesson["mc_diff"] < ATOL
    np.testing.assert_allclose(lesson["mc_probs"].sum(axis=-1), 1.0)


# ------------------------------------------------------------------ the fine-tuning demonstration

def test_demo_pretraining_lowered_the_loss(lesson):
    losses = lesson["pretrain_losses"]
    assert len(losses) == lesson["PRETRAIN_STEPS"]
    assert np.mean(losses[-20:]) < np.log(lesson["V"]) - 1.0  # well below a uniform guess


def test_demo_task_is_split_by_play_and_balanced(lesson):
    task = lesson["demo_task"]
    assert task.format == "classification" and task.labels == ["corrupted", "real"]
    for split, examples in task.splits.items():
        labels = [x["label"] for x in examples]
        assert labels.count("real") == labels.count("corrupted") > 0, split
    assert lesson["majority"] == 0.5


def test_demo_pretrained_model_beats_the_majority_baseline(lesson):
    # With the lesson's seeds the pretrained model reaches ~0.85 on 96 held-out examples.
    assert lesson["pretrained_acc"] > lesson["majority"] + 0.2
    assert set(lesson["demo_results"]) == {"pretrained", "from scratch"}
