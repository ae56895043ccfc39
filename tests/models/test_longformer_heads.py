"""Longformer task heads (models/longformer/heads.py): QA (question tokens global, -inf non-answer
logits, loss, predict_spans) and the causal LM (causality, window >= 2T equals dense causal attention),
plus attention dropout wired through the encoder."""
import numpy as np
import pytest

import minitensor as mt
import models.longformer.hf_checkpoint as lf_hf
import models.longformer.model as lf
from minitensor.attention import causal_mask, scaled_dot_product_attention
from minitensor.testing import directional_check
from models.longformer import Longformer, LongformerConfig
from models.longformer import (
    LongformerForCausalLM,
    LongformerForQuestionAnswering,
    LongformerForSequenceClassification,
)

V = 17


def cfg(**overrides):
    kw = {"vocab_size": V, "d_model": 16, "n_layer": 2, "n_head": 4, "d_ff": 24, "max_len": 40,
          "attention_window": 4, "dilation": 1, "hidden_dropout": 0.0, "attention_dropout": 0.0,
          "init_std": 0.3, "pad_id": 1}
    kw.update(overrides)
    return LongformerConfig(**kw)


def ids_batch(b=2, t=20, seed=1):
    return np.random.default_rng(seed).integers(2, V, (b, t))


def qa_inputs(t=20):
    ids = ids_batch(t=t)
    q = np.zeros((2, t), bool)
    q[:, 1:4] = True  # question tokens 1..3
    pad = np.ones((2, t), bool)
    pad[1, -3:] = False  # example 1 has 3 pad tokens
    ids[1, -3:] = 1
    return ids, q, pad


# ---------------------------------------------------------------------- QA

def test_qa_question_tokens_are_global():
    model = LongformerForQuestionAnswering(cfg(n_layer=1), rng=0, dtype=np.float64).eval()
    ids, q, _ = qa_inputs()
    start, _ = model(ids, q)
    far = ids.copy()
    far[:, 2] = (far[:, 2] - 1) % (V - 2) + 2  # change a question token
    start2, _ = model(far, q)
    # position 15 is far beyond the window (w/2 = 2) of token 2, yet changes: it attends to the global token
    assert not np.allclose(start.numpy()[:, 15], start2.numpy()[:, 15])
    # the same change with no question mask at position 2 leaves position 15 untouched (one layer, window 4)
    q_none = q.copy()
    q_none[:, :] = False
    q_none[:, 10] = True  # some global token, not position 2
    a, _ = model(ids, q_none)
    b, _ = model(far, q_none)
    np.testing.assert_allclose(a.numpy()[:, 15], b.numpy()[:, 15], rtol=1e-12)


def test_qa_masked_positions_are_minus_inf_and_shapes():
    model = LongformerForQuestionAnswering(cfg(), rng=0, dtype=np.float64)
    ids, q, pad = qa_inputs()
    start, end = model(ids, q, pad)
    assert start.shape == end.shape == (2, 20)
    masked = q | ~pad
    for x in (start.numpy(), end.numpy()):
        assert np.all(np.isneginf(x[masked]))
        assert np.all(np.isfinite(x[~masked]))
    names = [n for n, _ in model.named_parameters()]
    assert "qa_outputs.weight" in names and "qa_outputs.bias" in names


def test_qa_loss_by_hand_and_gradient_finite():
    model = LongformerForQuestionAnswering(cfg(), rng=0, dtype=np.float64)
    ids, q, pad = qa_inputs()
    starts, ends = np.array([5, 9]), np.array([7, 12])
    start, end = model(ids, q, pad)

    def ce(logits, gold):
        x = logits.numpy()
        ok = np.isfinite(x)
        lse = np.log(np.where(ok, np.exp(np.where(ok, x, 0) - x[ok].max()), 0).sum(1)) + x[ok].max()
        return np.mean(lse - x[np.arange(2), gold])

    want = (ce(start, starts) + ce(end, ends)) / 2
    loss = model.loss(ids, q, starts, ends, pad)
    np.testing.assert_allclose(float(loss.numpy()), want, rtol=1e-12)
    loss.backward()
    assert all(np.all(np.isfinite(p.grad)) for p in model.parameters() if p.grad is not None)


def test_qa_directional_check():
    model = LongformerForQuestionAnswering(cfg(n_layer=1), rng=0, dtype=np.float64)
    ids, q, pad = qa_inputs(t=12)
    params = model.parameters()
    assert directional_check(lambda *ps: model.loss(ids, q, [5, 7], [6, 8], pad), *params, n_directions=2)


def test_predict_spans_matches_brute_force():
    model = LongformerForQuestionAnswering(cfg(), rng=3, dtype=np.float64)
    ids, q, pad = qa_inputs()
    model.train()
    for max_len in (1, 3, 30):
        got = model.predict_spans(ids, q, pad, max_answer_len=max_len)
        assert model.training  # mode restored
        model.eval()
        s, e = (x.numpy() for x in model(ids, q, pad))
        model.train()
        for b in range(2):
            best, arg = -np.inf, None
            for i in range(20):
                for j in range(i, min(20, i + max_len)):
                    if np.isfinite(s[b, i]) and np.isfinite(e[b, j]) and s[b, i] + e[b, j] > best:
                        best, arg = s[b, i] + e[b, j], (i, j)
            assert tuple(got[b]) == arg
    assert got.dtype.kind == "i" and got.shape == (2, 2)


def test_no_answer_is_the_cls_span_and_is_decoded_like_squad2():
    from models.longformer.cast_tasks import LongformerSpeaks

    ids, q, pad = qa_inputs()
    q[:, 0] = True  # <s> question $: CLS begins the question, as the speaker tasks lay it out
    with pytest.raises(ValueError, match="example 0: gold start 0 is a question or padding"):
        LongformerForQuestionAnswering(cfg(), rng=0, dtype=np.float64).loss(ids, q, [0, 5], [0, 6], pad)
    model = LongformerSpeaks(cfg(), rng=3, dtype=np.float64)
    s, e = (x.numpy() for x in model(ids, q, pad))
    assert np.all(np.isfinite(s[:, 0])) and np.all(np.isneginf(s[:, 1:4])) and np.all(np.isneginf(e[:, 1:4]))
    loss = model.loss(ids, q, [0, 5], [0, 6], pad)  # example 0: no answer
    loss.backward()
    assert np.isfinite(float(loss.numpy()))
    for max_len in (1, 3, 30):  # brute force: the null span (0, 0), or a span inside the context
        got = model.predict_spans(ids, q, pad, max_answer_len=max_len)
        for b in range(2):
            best, arg = s[b, 0] + e[b, 0], (0, 0)
            for i in range(4, 20):
                for j in range(i, min(20, i + max_len)):
                    if np.isfinite(s[b, i] + e[b, j]) and s[b, i] + e[b, j] > best:
                        best, arg = s[b, i] + e[b, j], (i, j)
            assert tuple(got[b]) == arg


def test_no_answer_decoding_on_chosen_logits():
    from models.longformer.cast_tasks import LongformerSpeaks

    model = LongformerSpeaks(cfg(), rng=0, dtype=np.float64)
    ids, q, _ = qa_inputs(t=8)
    q[:] = False
    q[:, :2] = True  # CLS and one question token

    def decode(start, end):
        model.forward = lambda *a, **k: (mt.Tensor(np.array(start, float)), mt.Tensor(np.array(end, float)))
        return [tuple(x) for x in model.predict_spans(ids, q, max_answer_len=3)]

    ninf = -np.inf
    base_s, base_e = [0.0, ninf, 1, 0, 0, 0, 0, 0], [0.0, ninf, 0, 2, 0, 0, 0, 0]
    assert decode([base_s] * 2, [base_e] * 2)[0] == (2, 3)  # 1 + 2 beats the null 0 + 0
    assert decode([[3.0] + base_s[1:]] * 2, [base_e] * 2)[0] == (0, 0)  # the null's 3 beats 3: ties go to it
    # CLS's start 5 with the context's end 2 would score 7, but no span starts on CLS except (0, 0) (score 5)
    assert decode([[5.0, ninf, 5.5, 0, 0, 0, 0, 0]] * 2, [base_e] * 2)[0] == (2, 3)


def test_qa_errors_name_the_example():
    model = LongformerForQuestionAnswering(cfg(), rng=0, dtype=np.float64)
    ids, q, pad = qa_inputs()
    with pytest.raises(ValueError, match="example 1: gold start 2 is a question or padding"):
        model.loss(ids, q, [5, 2], [6, 8], pad)
    with pytest.raises(ValueError, match="example 1: gold end 19 is a question or padding"):
        model.loss(ids, q, [5, 6], [6, 19], pad)
    with pytest.raises(ValueError, match="example 0: gold end 20 is out of range"):
        model.loss(ids, q, [5, 6], [20, 8], pad)
    with pytest.raises(ValueError, match="starts must be 2 ints"):
        model.loss(ids, q, [5], [6, 8], pad)
    with pytest.raises(TypeError, match="question_mask must be bool"):
        model(ids, q.astype(int))
    with pytest.raises(ValueError, match="max_answer_len"):
        model.predict_spans(ids, q, max_answer_len=0)


# ---------------------------------------------------------------------- causal LM

def test_lm_is_causal():
    model = LongformerForCausalLM(cfg(attention_window=[4, 6], dilation=[1, [1, 2, 1, 3]]), rng=0,
                                  dtype=np.float64)
    ids = ids_batch(b=1, t=20)
    ids[0, 5] = 1  # the pad id is an ordinary token for the LM
    base = model(ids).numpy()
    assert base.shape == (1, 20, V)
    for t in (0, 7, 19):
        x = ids.copy()
        x[0, t] = (x[0, t] - 1) % (V - 2) + 2
        out = model(x).numpy()
        np.testing.assert_array_equal(out[0, :t], base[0, :t])  # nothing before t changes
        assert not np.allclose(out[0, t], base[0, t])


def test_lm_forces_causal_config_and_positions_ignore_pad_ids():
    c = cfg()
    model = LongformerForCausalLM(c, rng=0, dtype=np.float64)
    assert model.config.causal and not c.causal
    assert all(layer.attention.self.causal for layer in model.longformer.encoder.layer)
    # pad_id tokens do not shift the positions of the following tokens
    captured = []
    orig = model.longformer.embeddings.position_embeddings.forward
    model.longformer.embeddings.position_embeddings.forward = lambda pos: (captured.append(np.array(pos)),
                                                                           orig(pos))[1]
    model(np.array([[3, 1, 1, 4]]))
    np.testing.assert_array_equal(captured[0], [[2, 3, 4, 5]])


def test_lm_with_window_2t_equals_dense_causal_attention(monkeypatch):
    t = 12
    model = LongformerForCausalLM(cfg(attention_window=2 * t), rng=0, dtype=np.float64)
    ids = ids_batch(b=2, t=t)
    banded = model(ids).numpy()
    calls = []

    def dense(q, k, v, *, window, dilation, causal, key_padding_mask, dropout, rng, **glob):
        assert causal and not glob and key_padding_mask is None
        calls.append(window)
        return scaled_dot_product_attention(q, k, v, causal_mask(q.shape[2], q.shape[2]))

    monkeypatch.setattr(lf, "banded_attention", dense)
    np.testing.assert_allclose(model(ids).numpy(), banded, rtol=1e-10, atol=1e-12)
    assert calls == [2 * t, 2 * t]  # both layers went through the dense causal attention
    # a window that does not cover the past differs
    monkeypatch.undo()
    small = LongformerForCausalLM(cfg(attention_window=4), rng=0, dtype=np.float64)
    assert not np.allclose(small(ids).numpy(), banded)


def test_lm_loss_by_hand_and_tied_output():
    model = LongformerForCausalLM(cfg(), rng=0, dtype=np.float64)
    model.lm_bias.data = np.random.default_rng(0).normal(0, 0.1, V)
    x, y = ids_batch(t=10, seed=2), ids_batch(t=10, seed=3)
    h = model.longformer(x, pad_positions=False).numpy()
    logits = h @ model.longformer.embeddings.word_embeddings.weight.numpy().T + model.lm_bias.numpy()
    np.testing.assert_allclose(model(x).numpy(), logits, rtol=1e-12)
    z = logits - logits.max(-1, keepdims=True)
    nll = np.log(np.exp(z).sum(-1)) - np.take_along_axis(z, y[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(model.lm_loss(x, y).numpy()), nll.mean(), rtol=1e-12)
    assert "lm_head" not in " ".join(n for n, _ in model.named_parameters())  # tied: no separate matrix


def test_lm_directional_check():
    model = LongformerForCausalLM(cfg(n_layer=1, attention_window=4, dilation=[[1, 2, 1, 1]]), rng=0,
                                  dtype=np.float64)
    x, y = ids_batch(t=9, seed=2), ids_batch(t=9, seed=3)
    assert directional_check(lambda *ps: model.lm_loss(x, y), *model.parameters(), n_directions=2)


# ---------------------------------------------------------------------- attention dropout in the encoder

def test_attention_dropout_training_only_and_resumable():
    c = cfg(attention_dropout=0.3)
    model = LongformerForCausalLM(c, rng=0, dtype=np.float64)
    x = ids_batch(t=12)
    model.eval()
    ev = model(x).numpy()
    model.eval()
    np.testing.assert_array_equal(model(x).numpy(), ev)  # eval: deterministic, no dropout
    model.train()
    state = model.get_rng_state()
    tr1 = model(x).numpy()
    assert not np.allclose(tr1, ev)
    model.set_rng_state(state)
    np.testing.assert_array_equal(model(x).numpy(), tr1)  # the masks come from the model's dropout_rng
    # with attention_dropout 0 and hidden_dropout 0, training equals eval
    plain = LongformerForCausalLM(cfg(), rng=0, dtype=np.float64)
    np.testing.assert_array_equal(plain(x).numpy(), ev)


def test_config_attention_dropout_and_causal_fields():
    c = cfg(attention_dropout=0.2, causal=True)
    assert LongformerConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="attention_dropout"):
        cfg(attention_dropout=1.0)
    with pytest.raises(ValueError, match="causal"):
        cfg(causal=1)
    assert lf_hf._HF_OPTIONAL["attention_probs_dropout_prob"] == "attention_dropout"


def test_sequence_classification_head_runs():
    model = LongformerForSequenceClassification(cfg(), 3, rng=0, dtype=np.float64)
    assert model(ids_batch()).shape == (2, 3)
    assert isinstance(Longformer(cfg(), rng=0), mt.nn.Module)
