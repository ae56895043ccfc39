"""Zero-shot heuristics: log-likelihoods read off the LM, the gain after a context, the per-format decisions."""
import numpy as np
import pytest

import minitensor as mt
from models import data
from models.gpt import GPT, GPTConfig, tasks
from models.gpt.zero_shot import NEUTRAL, gains, log_probs, scores, zero_shot_accuracy

TOK = data.CharTokenizer("abcdefgh xyz\n")


def model(seed=0):
    cfg = GPTConfig(vocab_size=TOK.vocab_size, n_ctx=24, d_model=16, n_layer=2, n_head=2,
                    embd_pdrop=0.1, attn_pdrop=0.1, resid_pdrop=0.1)
    return GPT(cfg, rng=seed, dtype=np.float64).train()  # dropout must be off while scoring


def one_by_one(m, a, b):
    """log P(b | a) from one unpadded forward pass, summed position by position."""
    ids = np.concatenate([TOK.encode(a), TOK.encode(b)])
    with mt.no_grad():
        m.eval()
        logp = mt.functional.log_softmax(m(ids[None]), axis=-1).numpy()[0]
        m.train()
    return sum(logp[len(a) - 1 + i, ids[len(a) + i]] for i in range(len(b)))


PAIRS = [("abc", "de"), ("h", "gfedcba"), ("x yz", "a"), ("abcdefgh", "hgfedcba xyz")]


def test_log_probs_sum_the_continuation_s_tokens_whatever_the_batch():
    m = model()
    want = [one_by_one(m, a, b) for a, b in PAIRS]
    np.testing.assert_allclose(log_probs(m, TOK, PAIRS, batch_size=3), want, rtol=1e-12)
    np.testing.assert_allclose(log_probs(m, TOK, PAIRS, batch_size=1), want, rtol=1e-12)
    assert m.training  # the caller's mode comes back
    np.testing.assert_allclose(gains(m, TOK, PAIRS), [one_by_one(m, a, b) - one_by_one(m, NEUTRAL, b)
                                                      for a, b in PAIRS], rtol=1e-10)


def test_too_long_or_empty_pairs_are_refused():
    with pytest.raises(ValueError, match=r"n_ctx=24"):
        log_probs(model(), TOK, [("a" * 20, "b" * 5)])
    with pytest.raises(ValueError, match="at least one"):
        log_probs(model(), TOK, [("", "b")])


def task(fmt, labels, examples):
    return tasks.Task("t", fmt, labels, {"train": examples, "validation": examples[:2], "test": examples[2:]})


def test_each_format_decides_from_its_scores():
    m = model(1)
    mc = task("multiple_choice", [], [{"context": "abc", "choices": ["de", "xy", "hh"], "label": k} for k in (0, 1, 2, 0)])
    s = scores(m, TOK, mc, "validation")
    assert s.shape == (2, 3)
    np.testing.assert_allclose(s[0], gains(m, TOK, [("abc", "de"), ("abc", "xy"), ("abc", "hh")]), rtol=1e-12)
    held = [*mc.splits["validation"], *mc.splits["test"]]
    want = np.mean([np.argmax(gains(m, TOK, [(ex["context"], c) for c in ex["choices"]])) == ex["label"] for ex in held])
    assert zero_shot_accuracy(m, TOK, mc) == pytest.approx(want)

    pairs = [("abc", "de"), ("ab", "cd"), ("hg", "fe"), ("x", "yz")]
    sim = task("similarity", ["different", "same"],
               [{"text_a": a, "text_b": b, "label": lab} for (a, b), lab in zip(pairs, ["same", "different"] * 2)])
    both = np.maximum(gains(m, TOK, pairs), gains(m, TOK, [(b, a) for a, b in pairs]))
    np.testing.assert_allclose(scores(m, TOK, sim, "train"), both, rtol=1e-12)
    threshold = np.median(both)  # the training split is all four here
    want = np.mean((both > threshold) == np.array([True, False, True, False]))
    assert zero_shot_accuracy(m, TOK, sim) == pytest.approx(want)

    cls = task("classification", ["corrupted", "real"], [{"text": t, "label": "real"} for t in ("abc", "hhh", "xyz", "a")])
    per_token = log_probs(m, TOK, [(NEUTRAL, t) for t in ("abc", "hhh", "xyz", "a")]) / np.array([3, 3, 3, 1])
    np.testing.assert_allclose(scores(m, TOK, cls, "train"), per_token, rtol=1e-12)
    ent = [{"premise": a, "hypothesis": b, "label": lab} for (a, b), lab in zip(pairs, ["yes", "no"] * 2)]
    np.testing.assert_allclose(scores(m, TOK, task("entailment", ["no", "yes"], ent), "train"), gains(m, TOK, pairs),
                               rtol=1e-12)
    word_order = tasks.Task("word-order", "entailment", ["no", "yes"], {"train": ent})  # scored by likelihood
    np.testing.assert_allclose(scores(m, TOK, word_order, "train"),
                               log_probs(m, TOK, pairs) / np.array([2, 2, 2, 2]), rtol=1e-12)
    with pytest.raises(ValueError, match="needs two"):
        scores(m, TOK, task("classification", ["a", "b", "c"], cls.splits["train"]), "train")
