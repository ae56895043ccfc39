"""The training loop: exact resume, metrics log, atomic checkpoints, validation bpc, learning."""
import importlib.util
import itertools
import json
import math
import os

import numpy as np
import pytest

import minitensor as mt
import minitensor.io
from models import checkpoint as ck
from models import train as tr
from models.evaluate import cached_bpc, evaluate_bpc
from models.gpt.recipe import DEFAULTS as GPT_DEFAULTS
from models.transformer_xl import recipe as txl_recipe
from models.data import CharTokenizer
from models.gpt import GPT, GPTConfig
from models.transformer_xl import TransformerXL, TransformerXLConfig

TEXT = ("To be, or not to be, that is the question:\n"
        "Whether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\n"
        "Or to take arms against a sea of troubles\n") * 3
TOK = CharTokenizer.from_text(TEXT)
IDS = TOK.encode(TEXT)
TRAIN_IDS, VAL_IDS = IDS[:400], IDS[400:]



def has_matplotlib():
    return importlib.util.find_spec("matplotlib") is not None

def tiny_config(**kw):
    return GPTConfig(vocab_size=TOK.vocab_size, **{"n_ctx": 16, "d_model": 16, "n_layer": 2, "n_head": 2, **kw})


def run(out_dir, model, cfg, **kw):
    return tr.train(model, TRAIN_IDS, VAL_IDS, cfg, str(out_dir), tokenizer_dict=TOK.to_dict(),
                    model_config_dict=model.config.to_dict(), log=lambda *a: None, **kw)


def small_cfg(**kw):
    return tr.TrainConfig(**{**GPT_DEFAULTS, "steps": 8, "batch_size": 3, "seq_len": 12, "lr": 3e-3, "warmup": 2, "eval_every": 3,
                             "eval_batches": 2, "ckpt_every": 100, "seed": 5, **kw})


def test_resume_is_bit_exact(tmp_path):
    # Dropout is on (p=0.1 everywhere), so this also checks that the model's generators are restored.
    cfg = small_cfg()
    run(tmp_path / "straight", GPT(tiny_config(), rng=1), cfg)

    run(tmp_path / "resumed", GPT(tiny_config(), rng=1), cfg, stop_at=4)
    _, meta = ck.read_checkpoint(tmp_path / "resumed")
    assert meta["step"] == 4
    # Fresh objects, deliberately built from ANOTHER seed: everything must come from the checkpoint.
    result = run(tmp_path / "resumed", GPT(tiny_config(), rng=99), cfg, resume=True)
    assert result["step"] == 8

    a, meta_a = ck.read_checkpoint(tmp_path / "straight")
    b, meta_b = ck.read_checkpoint(tmp_path / "resumed")
    assert sorted(a) == sorted(b)
    assert any(k.startswith("optim.exp_avg_sq.") for k in a) and any(k.startswith("model.") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # bit for bit, params and optimizer state
    for k in ("step", "optim", "batch_rng_state", "model_rng_states"):
        assert meta_a[k] == meta_b[k], k
    assert len(meta_a["model_rng_states"]) >= 1  # the dropout generator(s) were found and saved

    def losses(d):
        with open(d / "metrics.jsonl") as f:
            return [(r["step"], r["loss"], r.get("val_bpc")) for r in map(json.loads, f)]

    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")  # the log was continued, not restarted


def test_resume_without_restoring_dropout_rng_differs(tmp_path, monkeypatch):
    # The negative control of the test above: skip restoring the model's generators and
    # the runs part ways, so that test really depends on them.
    cfg = small_cfg()
    run(tmp_path / "straight", GPT(tiny_config(), rng=1), cfg)
    run(tmp_path / "resumed", GPT(tiny_config(), rng=1), cfg, stop_at=4)
    monkeypatch.setattr(ck, "set_generator_states", lambda model, states: None)
    run(tmp_path / "resumed", GPT(tiny_config(), rng=99), cfg, resume=True)
    a, _ = ck.read_checkpoint(tmp_path / "straight")
    b, _ = ck.read_checkpoint(tmp_path / "resumed")
    assert not np.array_equal(a["model.tokens_embed.weight"], b["model.tokens_embed.weight"])


def test_metrics_jsonl_fields(tmp_path):
    cfg = small_cfg(steps=6, eval_every=3)
    result = run(tmp_path, GPT(tiny_config(), rng=0), cfg)
    with open(tmp_path / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for r in records:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(r)
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["tokens_per_s"] > 0
    assert [r["step"] for r in records if "val_bpc" in r] == [3, 6]
    assert records[-1]["val_bpc"] == result["val_bpc"]
    # The schedule: linear warmup over 2 steps to the peak, then cosine down towards min_lr = 0.
    lrs = [r["lr"] for r in records]
    assert lrs[0] == pytest.approx(cfg.lr / 2) and lrs[1] == pytest.approx(cfg.lr)
    assert lrs[2] == pytest.approx(cfg.lr)  # the cosine starts at the peak...
    assert all(x > y for x, y in itertools.pairwise(lrs[2:]))  # ...and only goes down


def test_checkpoint_loads_without_pickle_and_rebuilds_the_model(tmp_path):
    model = GPT(tiny_config(), rng=0)
    run(tmp_path, model, small_cfg(steps=2))
    # A plain npz with no object arrays: np.load refuses pickles, and still reads every member.
    with np.load(tmp_path / ck.CHECKPOINT_NAME, allow_pickle=False) as z:
        assert "model.tokens_embed.weight" in z.files
    loaded, tok_dict, meta = ck.load_checkpoint(tmp_path)
    assert tok_dict == TOK.to_dict() and meta["model"] == "gpt" and meta["step"] == 2
    assert not loaded.training
    for (name, p), (name2, q) in zip(model.named_parameters(), loaded.named_parameters()):
        assert name == name2
        np.testing.assert_array_equal(p.data, q.data)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = GPT(tiny_config(), rng=0)
    run(tmp_path, model, small_cfg(steps=2))
    path = tmp_path / ck.CHECKPOINT_NAME
    before = path.read_bytes()

    def crash(f, arrays, metadata):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(minitensor.io, "_write_npz", crash)
    opt = mt.optim.AdamW(model.parameters())
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(path, model, opt, step=3, batch_rng=np.random.default_rng(0), tokenizer_dict=TOK.to_dict(),
                           model_config_dict=model.config.to_dict(), train_config=small_cfg())
    assert path.read_bytes() == before  # the old checkpoint is untouched
    written = {"checkpoint.npz", "metrics.jsonl"} | ({"loss.png"} if has_matplotlib() else set())
    assert sorted(os.listdir(tmp_path)) == sorted(written)  # no temp file left


def test_load_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    mt.save({"w": np.zeros(2)}, tmp_path / "checkpoint.npz", metadata={"model": "transformer_xl", "step": 1})
    with pytest.raises(ValueError, match="transformer_xl"):
        ck.load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ck.load_checkpoint(tmp_path / "missing")


def test_val_bpc_matches_a_manual_computation():
    model = GPT(tiny_config(), rng=3, dtype=np.float64)
    ids = VAL_IDS[:50]  # 49 targets: 4 windows of 12 and a tail of 1
    model.train()
    state = model.dropout_rng.bit_generator.state
    got = evaluate_bpc(model, ids, batch_size=3, seq_len=12)
    assert model.training  # the caller's mode comes back
    assert model.dropout_rng.bit_generator.state == state  # eval draws no dropout masks

    # By hand: every window starts fresh; -log softmax of the true next id, averaged over ids[1:].
    model.eval()
    nats = []
    for start in range(0, 49, 12):
        x = ids[start:min(start + 12, 49)]
        y = ids[start + 1:start + 1 + len(x)]
        logits = model.forward(x[None, :]).data[0]  # (T, V)
        logits = logits - logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nats.extend(-logp[np.arange(len(y)), y])
    assert len(nats) == 49
    assert got == pytest.approx(np.mean(nats) / np.log(2), rel=1e-12)


def test_loss_goes_down_on_repetitive_text(tmp_path):
    cfg = small_cfg(steps=50, lr=1e-2, warmup=5, eval_every=50, batch_size=16, seq_len=16)
    model = GPT(tiny_config(d_model=32, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0), rng=0)
    first = evaluate_bpc(model, VAL_IDS, 8, 16)
    result = run(tmp_path, model, cfg)
    # At init the model guesses near-uniformly: about log2(V) ~ 5 bits. After 50 steps it has at
    # least the character frequencies and common pairs of this (repeated) text: ~3.2 bits.
    assert first > 4.5
    assert result["val_bpc"] < 0.75 * first
    with open(tmp_path / "metrics.jsonl") as f:
        losses = [json.loads(line)["loss"] for line in f]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5  # nats: the training loss fell too


def test_plot_is_skipped_with_a_note_without_matplotlib(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    notes = []
    run(tmp_path, GPT(tiny_config(), rng=0), small_cfg(steps=2))
    assert ck.plot_losses(str(tmp_path / "metrics.jsonl"), str(tmp_path / "loss.png"), log=notes.append) is False
    assert not (tmp_path / "loss.png").exists()
    assert "matplotlib" in notes[0]


def test_the_optimizer_takes_beta2_from_the_config(tmp_path, monkeypatch):
    made = []

    class Spy(mt.optim.AdamW):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(mt.optim, "AdamW", Spy)
    run(tmp_path / "r", GPT(tiny_config(), rng=0), small_cfg(steps=1, warmup=0, beta2=0.95))
    assert [opt.betas for opt in made] == [(0.9, 0.95)]


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="warmup"):
        tr.TrainConfig(**{**GPT_DEFAULTS, "steps": 5, "warmup": 10})
    with pytest.raises(ValueError, match="batch_size"):
        tr.TrainConfig(**{**GPT_DEFAULTS, "batch_size": 0})


# ----------------------------------------------------------------- Transformer-XL

def txl_config(**kw):
    return TransformerXLConfig(vocab_size=TOK.vocab_size, **{"d_model": 16, "n_layer": 2, "n_head": 2, "d_head": 8,
                                                             "d_inner": 32, "tgt_len": 12, "mem_len": 10, **kw})


def run_txl(out_dir, model, cfg, **kw):
    return tr.train(model, TRAIN_IDS, VAL_IDS, cfg, str(out_dir), tokenizer_dict=TOK.to_dict(),
                    model_config_dict=model.config.to_dict(), log=lambda *a: None, **kw)


def test_txl_resume_is_bit_exact_with_the_memory_saved(tmp_path):
    # 400 ids in 3 rows of 133 targets: 11 segments of 12 per pass, so 14 steps wrap around once.
    cfg = small_cfg(steps=14, eval_every=7)
    run_txl(tmp_path / "straight", TransformerXL(txl_config(), rng=1), cfg)
    run_txl(tmp_path / "resumed", TransformerXL(txl_config(), rng=1), cfg, stop_at=5)
    state, meta = ck.read_checkpoint(tmp_path / "resumed")
    assert meta["model"] == "txl" and meta["stream_state"]["position"] == 5
    assert [state[f"mems.{n}"].shape for n in range(2)] == [(3, 10, 16)] * 2  # carried into step 6
    run_txl(tmp_path / "resumed", TransformerXL(txl_config(), rng=99), cfg, resume=True)
    a, meta_a = ck.read_checkpoint(tmp_path / "straight")
    b, meta_b = ck.read_checkpoint(tmp_path / "resumed")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for k in ("step", "optim", "stream_state", "model_rng_states"):
        assert meta_a[k] == meta_b[k], k


def test_txl_resume_without_the_memory_differs(tmp_path, monkeypatch):
    # Negative control: resuming with an empty memory changes the run, so the test above needs mems.N.
    cfg = small_cfg(steps=8)
    run_txl(tmp_path / "straight", TransformerXL(txl_config(dropout=0.0), rng=1), cfg)
    run_txl(tmp_path / "resumed", TransformerXL(txl_config(dropout=0.0), rng=1), cfg, stop_at=4)
    monkeypatch.setattr(txl_recipe, "saved_mems", lambda state: None)
    run_txl(tmp_path / "resumed", TransformerXL(txl_config(dropout=0.0), rng=1), cfg, resume=True)
    a, _ = ck.read_checkpoint(tmp_path / "straight")
    b, _ = ck.read_checkpoint(tmp_path / "resumed")
    assert not np.array_equal(a["model.word_emb.weight"], b["model.word_emb.weight"])


def test_txl_memory_is_carried_and_reset_at_the_wrap_around(monkeypatch):
    seen = []
    model = TransformerXL(txl_config(), rng=0)
    original = model.loss

    def spy(ids, targets, mems=None):
        seen.append(None if mems is None else mems[0].copy())
        return original(ids, targets, mems)

    monkeypatch.setattr(model, "loss", spy)
    batches = tr.batches_for(model, TRAIN_IDS, small_cfg(), "cpu")
    assert batches.stream.segments_per_pass == 11
    prev = None
    for step in range(13):
        loss, n = batches.step_loss(model)
        assert n == 3 * 12
        if step in (0, 11):
            assert seen[-1] is None  # the first segment of a pass starts from an empty memory
        else:
            np.testing.assert_array_equal(seen[-1], prev)  # exactly what the previous step returned
        prev = batches.mems[0].copy()
        assert loss.requires_grad and all(isinstance(m, np.ndarray) for m in batches.mems)  # detached arrays


def test_txl_checkpoint_rebuilds_a_transformer_xl(tmp_path):
    model = TransformerXL(txl_config(), rng=0)
    run_txl(tmp_path, model, small_cfg(steps=2))
    loaded, _, meta = ck.load_checkpoint(tmp_path)
    assert isinstance(loaded, TransformerXL) and meta["model"] == "txl" and not loaded.training
    for (name, p), (name2, q) in zip(model.named_parameters(), loaded.named_parameters()):
        assert name == name2
        np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="'txl', not 'gpt'"):
        ck.load_checkpoint(tmp_path, expected_model="gpt")
    # Resuming a TXL checkpoint with a GPT is refused, naming both.
    with pytest.raises(ValueError, match="'txl', not 'gpt'"):
        run(tmp_path, GPT(tiny_config(), rng=0), small_cfg(steps=4), resume=True)


def test_txl_validation_is_the_cached_evaluation():
    model = TransformerXL(txl_config(), rng=0, dtype=np.float64)
    batches = tr.batches_for(model, TRAIN_IDS, small_cfg(batch_size=2, seq_len=7), "cpu")
    got = batches.validate(model, VAL_IDS, 3)["val_bpc"]
    assert got == cached_bpc(model, VAL_IDS, batch_size=2, seg_len=7, max_segments=3).bpc


def test_txl_loss_goes_down_on_repetitive_text(tmp_path):
    cfg = small_cfg(steps=40, lr=1e-2, warmup=4, eval_every=40, batch_size=4, seq_len=12)
    model = TransformerXL(txl_config(d_model=32, d_head=16, d_inner=64, dropout=0.0), rng=0)
    first = cached_bpc(model, VAL_IDS, batch_size=2, seg_len=12).bpc
    result = run_txl(tmp_path, model, cfg)
    assert first > 4.5  # near-uniform over the vocabulary at init
    assert result["val_bpc"] < 0.75 * first
