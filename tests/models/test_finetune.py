"""Fine-tuning: the input transforms, padding, the head per format, L_3 = L_2 + lambda L_1, training, files."""
import numpy as np
import pytest

import minitensor as mt
import minitensor.functional as F
from minitensor.testing import directional_check
from models import data
from models.gpt import tasks
from models.gpt.finetune import (
    IGNORE,
    FinetuneConfig,
    GPTForTasks,
    TaskEncoder,
    evaluate,
    finetune,
    load_finetuned,
    majority_accuracy,
    save_finetuned,
)
from models.gpt import GPT, GPTConfig

TOK = data.CharTokenizer("abcdefgh xyz")  # V = 12: <s> = 12, $ = 13, <e> = 14
S, D, E = 12, 13, 14


def enc(fmt, n_ctx=32):
    return TaskEncoder(TOK, fmt, n_ctx)


def test_the_four_input_transforms():
    assert enc("classification").sequences({"text": "ab", "label": "x"}) == [[S, 0, 1, E]]
    assert enc("entailment").sequences({"premise": "a", "hypothesis": "bc", "label": "x"}) == [[S, 0, D, 1, 2, E]]
    assert enc("similarity").sequences({"text_a": "a", "text_b": "bc", "label": "x"}) == [[S, 0, D, 1, 2, E],
                                                                                         [S, 1, 2, D, 0, E]]
    assert enc("multiple_choice").sequences({"context": "a", "choices": ["b", "cd"], "label": 0}) == [
        [S, 0, D, 1, E], [S, 0, D, 2, 3, E]]


def test_too_long_and_unknown_characters_are_errors_naming_the_example():
    with pytest.raises(ValueError, match=r"train: example 1 needs 12 tokens .* n_ctx=10"):
        enc("classification", n_ctx=10).encode([{"text": "a", "label": "p"}, {"text": "a" * 10, "label": "p"}],
                                                ["p", "q"], "train")
    with pytest.raises(ValueError, match=r"test: example 0: .*character 'Q' at position 1 is not in the vocabulary"):
        enc("classification").encode([{"text": "aQ", "label": "p"}], ["p", "q"], "test")


def test_batch_pads_right_and_scores_only_text_characters():
    split = enc("entailment").encode([{"premise": "ab", "hypothesis": "c", "label": "yes"},
                                      {"premise": "a", "hypothesis": "b", "label": "no"}], ["no", "yes"], "train")
    ids, last, targets, labels = split.batch([0, 1])
    np.testing.assert_array_equal(ids, [[S, 0, 1, D, 2, E], [S, 0, D, 1, E, 0]])
    np.testing.assert_array_equal(last, [5, 4])  # the <e> of each sequence
    np.testing.assert_array_equal(labels, [1, 0])
    # Next characters only: <s> -> a, a -> b, b -> ($ ignored), $ -> c, c -> (<e> ignored), <e> -> (nothing).
    np.testing.assert_array_equal(targets, [[0, 1, IGNORE, 2, IGNORE, IGNORE], [0, IGNORE, 1, IGNORE, IGNORE, IGNORE]])


def tiny_model(fmt, n_labels=2, seed=0, dtype=np.float64, dropout=0.0):
    cfg = GPTConfig(vocab_size=TOK.vocab_size, n_ctx=32, d_model=16, n_layer=2, n_head=2,
                    embd_pdrop=dropout, attn_pdrop=dropout, resid_pdrop=dropout)
    gpt = GPT(cfg, rng=seed, dtype=dtype)
    GPTForTasks.add_special_tokens(gpt, rng=seed + 1)
    return GPTForTasks(gpt, fmt, n_labels, clf_pdrop=dropout, rng=seed + 2)


def test_special_tokens_are_new_rows_and_old_rows_stay():
    gpt = GPT(GPTConfig(vocab_size=12, n_ctx=8, d_model=8, n_layer=1, n_head=2), rng=0, dtype=np.float64)
    before = gpt.tokens_embed.weight.data.copy()
    GPTForTasks.add_special_tokens(gpt, rng=1)
    after = gpt.tokens_embed.weight.data
    assert after.shape == (15, 8) and gpt.config.vocab_size == 15
    np.testing.assert_array_equal(after[:12], before)
    assert 0 < after[12:].std() < 0.1  # N(0, 0.02) like the other rows
    assert gpt(np.array([[12, 0, 13, 1, 14]])).shape == (1, 5, 15)  # tied output covers them too


def test_padding_does_not_change_an_examples_logits():
    model = tiny_model("classification").eval()
    split = enc("classification").encode([{"text": "ab", "label": "p"}, {"text": "abcdefgh" * 2, "label": "q"}],
                                         ["p", "q"], "x")
    alone = model(*split.batch([0])[:2], 1).data
    padded = model(*split.batch([0, 1])[:2], 2).data
    np.testing.assert_allclose(padded[0], alone[0], rtol=1e-12, atol=1e-12)


def test_similarity_is_order_free_and_multiple_choice_is_permutation_equivariant():
    sim = tiny_model("similarity").eval()
    e = enc("similarity")
    ab = e.encode([{"text_a": "abc", "text_b": "hgf", "label": "p"}], ["p", "q"], "x")
    ba = e.encode([{"text_a": "hgf", "text_b": "abc", "label": "p"}], ["p", "q"], "x")
    np.testing.assert_allclose(sim(*ab.batch([0])[:2], 1).data, sim(*ba.batch([0])[:2], 1).data, rtol=1e-12)

    mc = tiny_model("multiple_choice", n_labels=1).eval()
    e = enc("multiple_choice")
    one = e.encode([{"context": "ab", "choices": ["c", "dd", "xyz"], "label": 0}], [], "x")
    two = e.encode([{"context": "ab", "choices": ["xyz", "c", "dd"], "label": 1}], [], "x")
    s1, s2 = mc(*one.batch([0])[:2], 1).data, mc(*two.batch([0])[:2], 1).data
    assert s1.shape == (1, 3)
    np.testing.assert_allclose(s2[0], s1[0, [2, 0, 1]], rtol=1e-12)


def test_l3_is_l2_plus_lambda_l1_and_matches_a_plain_computation():
    model = tiny_model("entailment").eval()
    split = enc("entailment").encode([{"premise": "ab", "hypothesis": "ccd", "label": "yes"},
                                      {"premise": "h", "hypothesis": "x", "label": "no"}], ["no", "yes"], "x")
    batch = split.batch([0, 1])
    l3, l2, l1 = model.loss(batch, lm_coef=0.5)
    ids, last, targets, labels = batch
    # L_2 by hand: log-softmax of the head on h of <e>.
    h = model.transformer.hidden_states(ids).data
    z = h[np.arange(2), last] @ model.head.weight.data.T + model.head.bias.data
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    assert float(l2.data) == pytest.approx(-logp[np.arange(2), labels].mean(), rel=1e-12)
    # L_1 by hand: the mean next-character loss over the scored positions only.
    lm = model.transformer(ids).data
    lp = lm - np.log(np.exp(lm).sum(-1, keepdims=True))
    mask = targets != IGNORE
    assert float(l1.data) == pytest.approx(-lp[mask, targets[mask]].mean(), rel=1e-12)
    assert float(l3.data) == pytest.approx(float(l2.data) + 0.5 * float(l1.data), rel=1e-12)
    l3_no_lm, _, none = model.loss(batch, lm_coef=0.0)
    assert none is None and float(l3_no_lm.data) == pytest.approx(float(l2.data), rel=1e-12)


@pytest.mark.parametrize("fmt", ["classification", "similarity", "multiple_choice"])
def test_gradient_of_l3_matches_finite_differences(fmt):
    model = tiny_model(fmt, n_labels=1 if fmt == "multiple_choice" else 3).eval()
    example = {"classification": {"text": "abc", "label": "r"},
               "similarity": {"text_a": "ab", "text_b": "hx", "label": "r"},
               "multiple_choice": {"context": "ab", "choices": ["c", "de"], "label": 1}}[fmt]
    split = enc(fmt).encode([example], ["p", "q", "r"], "x")
    batch = split.batch([0])
    params = model.parameters()
    assert directional_check(lambda *ps: model.loss(batch, 0.5)[0], *params)


def learnable_task():
    """Label: does the text contain 'z'? Learnable from characters alone."""
    rng = np.random.default_rng(0)

    def example():
        text = "".join(rng.choice(list("abcdefgh"), size=int(rng.integers(3, 10))))
        if rng.random() < 0.5:
            text = text[:2] + "z" + text[2:]
        return {"text": text, "label": "z" if "z" in text else "none"}

    return [example() for _ in range(256)], [example() for _ in range(64)]


def test_finetuning_learns_a_learnable_task_and_beats_the_majority():
    train_ex, test_ex = learnable_task()
    e = enc("classification")
    train, test = (e.encode(x, ["none", "z"], "x") for x in (train_ex, test_ex))
    model = tiny_model("classification", dtype=np.float32, dropout=0.1)
    before = evaluate(model, test)
    result = finetune(model, train, {"test": test}, FinetuneConfig(epochs=8, batch_size=16, lr=3e-3), log=lambda m: None)
    assert result["test"] >= 0.95 > majority_accuracy(train, test) + 0.3
    assert result["test"] == evaluate(model, test) and before < 0.8
    assert model.training  # evaluate restores the mode


def test_finetuning_is_reproducible_for_a_seed():
    train_ex, _ = learnable_task()
    train = enc("classification").encode(train_ex[:64], ["none", "z"], "x")
    runs = []
    for _ in range(2):
        model = tiny_model("classification", dtype=np.float32, dropout=0.1)
        records = []
        finetune(model, train, {}, FinetuneConfig(epochs=1, batch_size=16), log=lambda m: None, on_step=records.append)
        runs.append(([r["loss"] for r in records], model.head.weight.data.copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_save_and_load_finetuned_round_trip(tmp_path):
    model = tiny_model("multiple_choice", n_labels=1, dtype=np.float32).eval()
    split = enc("multiple_choice").encode([{"context": "ab", "choices": ["c", "d"], "label": 1}], [], "x")
    task = tasks.Task("t", "multiple_choice", [], {"train": []})
    save_finetuned(tmp_path / "finetuned.npz", model, task=task, tokenizer_dict=TOK.to_dict(),
                   cfg=FinetuneConfig(), init="none", accuracy={"test": 0.5})
    loaded, meta = load_finetuned(tmp_path)
    assert meta["task"]["format"] == "multiple_choice" and meta["accuracy"] == {"test": 0.5}
    np.testing.assert_array_equal(loaded(*split.batch([0])[:2], 1).data, model(*split.batch([0])[:2], 1).data)


def test_loading_something_else_as_a_finetuned_model_is_an_error(tmp_path):
    mt.save({"w": np.zeros(2)}, tmp_path / "finetuned.npz", metadata={"model": "gpt"})
    with pytest.raises(ValueError, match="is not a fine-tuned GPT"):
        load_finetuned(tmp_path)
    with pytest.raises(FileNotFoundError, match="no fine-tuned model"):
        load_finetuned(tmp_path / "nowhere")


@pytest.mark.parametrize("kwargs, message", [({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"),
                                             ({"lm_coef": -1.0}, "lm_coef"), ({"warmup": 1.0}, "warmup"),
                                             ({"clf_pdrop": 1.0}, "clf_pdrop")])
def test_bad_finetune_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**kwargs)


def test_cross_entropy_over_choices_is_the_multiple_choice_loss():
    # The MC head's task loss is a softmax over the S choices' scores, nothing else.
    model = tiny_model("multiple_choice", n_labels=1).eval()
    split = enc("multiple_choice").encode([{"context": "a", "choices": ["b", "c", "d"], "label": 2}], [], "x")
    batch = split.batch([0])
    scores = model(*batch[:2], 1)
    assert float(model.loss(batch, 0.0)[0].data) == pytest.approx(float(F.cross_entropy(scores, [2]).data))
