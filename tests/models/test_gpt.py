"""GPT-1 (models/gpt/model.py) against an independent dense NumPy reference, plus its API and errors."""
import json
import math

import numpy as np
import pytest

import minitensor as mt
from minitensor.testing import directional_check
from models.gpt import GPT, GPTConfig, load_hf_checkpoint

V = 13


def tiny_config(**overrides):
    # init_std 0.3, not GPT-1's 0.02: with tiny weights the attention is nearly uniform and the
    # gradients of the query/key weights (~1e-10) would be too small for a meaningful comparison.
    kw = {"vocab_size": V, "n_ctx": 8, "d_model": 16, "n_layer": 2, "n_head": 2, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
              "resid_pdrop": 0.0, "init_std": 0.3}
    kw.update(overrides)
    return GPTConfig(**kw)


def tiny_model(seed=0, dtype=np.float64, **overrides):
    model = GPT(tiny_config(**overrides), rng=seed, dtype=dtype)
    # Non-trivial biases and LN parameters, so the parity test exercises them (init makes them 0/1).
    rng = np.random.default_rng(seed + 100)
    for name, p in model.named_parameters():
        if name.endswith(".bias") or ".ln_" in name:
            p.data = p.data + rng.normal(0, 0.1, p.shape).astype(dtype)
    return model


def ids_batch(b=2, t=8, seed=1):
    return np.random.default_rng(seed).integers(0, V, (b, t))


# ---------------------------------------------------------------------- the dense reference

def ref_layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def ref_gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def ref_logits(P, ids, cfg):
    """The GPT-1 forward pass written plainly: loops over heads, an explicit causal mask."""
    _b, t = ids.shape
    d, nh = cfg.d_model, cfg.n_head
    dh = d // nh
    We, Wp = P["tokens_embed.weight"], P["positions_embed.weight"]
    h = We[ids] + Wp[:t][None]  # h_0 = U W_e + W_p
    future = np.triu(np.ones((t, t), bool), k=1)  # j > i
    for layer in range(cfg.n_layer):
        def g(k, layer=layer):
            return P[f"h.{layer}.{k}"]
        qkv = h @ g("attn.c_attn.weight").T + g("attn.c_attn.bias")
        q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
        heads = []
        for i in range(nh):
            sl = slice(i * dh, (i + 1) * dh)
            s = q[..., sl] @ np.swapaxes(k[..., sl], 1, 2) / math.sqrt(dh)  # (B, T, T)
            s = np.where(future, -np.inf, s)
            e = np.exp(s - s.max(-1, keepdims=True))
            heads.append((e / e.sum(-1, keepdims=True)) @ v[..., sl])
        a = np.concatenate(heads, -1) @ g("attn.c_proj.weight").T + g("attn.c_proj.bias")
        h = ref_layer_norm(h + a, g("ln_1.weight"), g("ln_1.bias"), cfg.layer_norm_eps)
        f = ref_gelu(h @ g("mlp.c_fc.weight").T + g("mlp.c_fc.bias")) @ g("mlp.c_proj.weight").T + g("mlp.c_proj.bias")
        h = ref_layer_norm(h + f, g("ln_2.weight"), g("ln_2.bias"), cfg.layer_norm_eps)
    return h @ We.T  # tied output


def ref_loss(P, ids, targets, cfg):
    z = ref_logits(P, ids, cfg)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1).mean()


# ---------------------------------------------------------------------- parity

def test_forward_matches_dense_reference():
    model = tiny_model()
    ids = ids_batch()
    got = model(ids).numpy()
    want = ref_logits(model.state_dict(), ids, model.config)
    assert got.shape == (2, 8, V)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,entries", [
    ("tokens_embed.weight", [(3, 0), (7, 5)]),      # used by both the input lookup and the tied output
    ("positions_embed.weight", [(0, 1), (5, 9)]),
    ("h.0.attn.c_attn.weight", [(2, 3), (20, 1), (40, 7)]),  # a q row, a k row, a v row
    ("h.0.ln_1.weight", [(4,)]),
    ("h.1.mlp.c_fc.weight", [(10, 2)]),
    ("h.1.mlp.c_proj.bias", [(6,)]),
    ("h.1.ln_2.bias", [(0,)]),
])
def test_gradient_matches_reference_central_differences(name, entries):
    model = tiny_model()
    ids, targets = ids_batch(seed=2), ids_batch(seed=3)
    loss = model.lm_loss(ids, targets)
    np.testing.assert_allclose(loss.item(), ref_loss(model.state_dict(), ids, targets, model.config), rtol=1e-10)
    loss.backward()
    grad = dict(model.named_parameters())[name].grad
    P, eps = model.state_dict(), 1e-6
    for pos in entries:
        orig = P[name][pos]
        P[name][pos] = orig + eps
        plus = ref_loss(P, ids, targets, model.config)
        P[name][pos] = orig - eps
        minus = ref_loss(P, ids, targets, model.config)
        P[name][pos] = orig
        numeric = (plus - minus) / (2 * eps)
        assert abs(numeric) > 1e-7, "a zero gradient would make this check vacuous"
        np.testing.assert_allclose(grad[pos], numeric, rtol=1e-5, atol=1e-9)


def test_directional_check_through_all_parameters():
    model = tiny_model(n_layer=1)
    ids, targets = ids_batch(t=6, seed=4), ids_batch(t=6, seed=5)
    params = model.parameters()
    names = [n for n, _ in model.named_parameters()]

    def loss(*ps):
        for (n, p), new in zip(model.named_parameters(), ps):
            assert p is new
        return model.lm_loss(ids, targets)

    assert len(names) == len(params)
    assert directional_check(loss, *params, n_directions=3)


def test_causality_future_tokens_do_not_change_earlier_logits():
    model = tiny_model().eval()
    ids = ids_batch(b=1)
    changed = ids.copy()
    changed[0, 5:] = (changed[0, 5:] + 1) % V
    a, b = model(ids).numpy(), model(changed).numpy()
    np.testing.assert_array_equal(a[0, :5], b[0, :5])
    assert not np.allclose(a[0, 5:], b[0, 5:])  # the changed positions do see the change


def test_position_embeddings_matter():
    model = tiny_model().eval()
    ids = np.full((1, 4), 3)  # the same token everywhere: only W_p tells the positions apart
    out = model(ids).numpy()
    assert not np.allclose(out[0, 0], out[0, 1])


def test_lm_loss_ignore_index():
    model = tiny_model()
    ids, targets = ids_batch(seed=6), ids_batch(seed=7)
    targets[0, :3] = -1
    logits = model(ids).numpy()
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    keep = targets != -1
    want = -np.take_along_axis(logp, np.where(keep, targets, 0)[..., None], -1)[..., 0][keep].mean()
    np.testing.assert_allclose(model.lm_loss(ids, targets, ignore_index=-1).item(), want, rtol=1e-10)


# ---------------------------------------------------------------------- init, dropout, config

def test_init_follows_gpt1():
    model = GPT(GPTConfig(vocab_size=50, n_ctx=16, d_model=64, n_layer=1, n_head=4), rng=0)
    p = dict(model.named_parameters())
    assert p["h.0.mlp.c_fc.weight"].dtype == np.float32
    assert abs(p["h.0.mlp.c_fc.weight"].numpy().std() - 0.02) < 0.001
    assert abs(p["tokens_embed.weight"].numpy().std() - 0.02) < 0.002
    assert not p["h.0.attn.c_attn.bias"].numpy().any()
    np.testing.assert_array_equal(p["h.0.ln_2.weight"].numpy(), 1.0)
    assert not p["h.0.ln_2.bias"].numpy().any()
    # the same seed gives the same weights
    again = GPT(model.config, rng=0).state_dict()
    assert all(np.array_equal(again[k], v) for k, v in model.state_dict().items())


def test_dropout_is_seeded_and_resumable():
    cfg = tiny_config(embd_pdrop=0.1, attn_pdrop=0.1, resid_pdrop=0.1)
    ids = ids_batch()
    m1, m2 = GPT(cfg, rng=3, dtype=np.float64), GPT(cfg, rng=3, dtype=np.float64)
    l1, l2 = m1.lm_loss(ids, ids).item(), m2.lm_loss(ids, ids).item()
    assert l1 == l2
    assert l1 != m1.eval().lm_loss(ids, ids).item()  # dropout was active while training
    m1.train()
    state = m1.get_rng_state()
    first = m1.lm_loss(ids, ids).item()
    second = m1.lm_loss(ids, ids).item()
    assert first != second  # fresh masks each step
    m1.set_rng_state(state)
    assert m1.lm_loss(ids, ids).item() == first
    json.dumps(state)  # JSON-able, so a checkpoint's metadata can carry it


def test_config_dict_round_trip_and_presets():
    cfg = GPTConfig.preset("tiny", vocab_size=65)
    assert (cfg.n_ctx, cfg.d_model, cfg.n_layer, cfg.n_head, cfg.d_ff) == (128, 128, 4, 4, 512)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert GPTConfig.from_dict(d) == cfg
    g = GPTConfig.preset("gpt1")
    assert (g.vocab_size, g.n_ctx, g.d_model, g.n_layer, g.n_head, g.d_ff) == (40478, 512, 768, 12, 12, 3072)
    assert g.num_parameters() == 116_534_784  # HF's openai-gpt has 116.53M parameters
    for c in (cfg, tiny_config(), tiny_config(d_ff=24)):
        assert GPT(c, rng=0).num_parameters() == c.num_parameters()


@pytest.mark.parametrize("call,match", [
    (lambda: GPTConfig.preset("huge", 10), "unknown preset"),
    (lambda: GPTConfig.preset("tiny"), "vocab_size is required"),
    (lambda: GPTConfig(vocab_size=10, d_model=30, n_head=4), "not divisible"),
    (lambda: GPTConfig(vocab_size=0), "vocab_size must be a positive int"),
    (lambda: GPTConfig(vocab_size=10, attn_pdrop=1.0), "attn_pdrop"),
    (lambda: GPTConfig.from_dict({"vocab_size": 10, "n_embd": 8}), "unknown fields"),
])
def test_config_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_gpt1_preset_constructs_and_runs():
    model = GPT(GPTConfig.preset("gpt1"), rng=0).eval()
    assert model.num_parameters() == 116_534_784
    with mt.no_grad():
        logits = model(np.array([[1, 2, 3, 4]]))
    assert logits.shape == (1, 4, 40478) and logits.dtype == np.float32
    assert np.isfinite(logits.numpy()).all()


def test_forward_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="n_ctx=8"):
        model(np.zeros((1, 9), np.int64))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="integers"):
        model(np.zeros((1, 4)))
    with pytest.raises(IndexError, match="out of range"):
        model(np.array([[1, V]]))


# ---------------------------------------------------------------------- generation

def test_generate_is_deterministic_with_a_seed():
    model = tiny_model()
    prompt = np.array([1, 2, 3])
    a = model.generate(prompt, 12, rng=7)
    assert a.shape == (12,) and a.dtype == np.int64 and ((0 <= a) & (a < V)).all()
    np.testing.assert_array_equal(a, model.generate(prompt, 12, rng=np.random.default_rng(7)))
    assert not np.array_equal(a, model.generate(prompt, 12, rng=8))
    assert model.training  # the mode is restored after sampling in eval mode


def test_top_k_1_is_greedy_argmax():
    model = tiny_model(resid_pdrop=0.3)  # dropout must be off while generating
    ids = [4, 0]
    out = model.generate(np.array(ids), 10, top_k=1, rng=0)
    model.eval()
    for tok in out:
        window = np.array(ids[-model.config.n_ctx:])[None]
        assert tok == model(window).numpy()[0, -1].argmax()
        ids.append(int(tok))


def test_top_k_samples_only_the_k_most_likely():
    model = tiny_model().eval()
    prompt = np.array([5, 6])
    top2 = set(np.argsort(model(prompt[None]).numpy()[0, -1])[-2:])
    firsts = {int(model.generate(prompt, 1, top_k=2, temperature=5.0, rng=s)[0]) for s in range(30)}
    assert firsts == top2


def test_generate_slides_the_window_beyond_n_ctx():
    model = tiny_model()
    prompt = ids_batch(b=1, t=12)[0]  # longer than n_ctx=8
    out = model.generate(prompt, 10, rng=1)
    assert out.shape == (10,)
    # tokens that fell out of the window cannot influence anything
    other = prompt.copy()
    other[:4] = (other[:4] + 5) % V
    np.testing.assert_array_equal(out, model.generate(other, 10, rng=1))
    greedy = model.eval().generate(prompt, 1, top_k=1)
    assert greedy[0] == model(prompt[None, -8:]).numpy()[0, -1].argmax()


@pytest.mark.parametrize("kwargs,err,match", [
    ({"prompt_ids": np.array([], np.int64), "length": 3}, ValueError, "non-empty"),
    ({"prompt_ids": np.zeros((2, 2), np.int64), "length": 3}, ValueError, "1-D"),
    ({"prompt_ids": np.array([1, V]), "length": 3}, ValueError, f"id {V} is out of range"),
    ({"prompt_ids": np.array([1.0]), "length": 3}, TypeError, "integers"),
    ({"prompt_ids": np.array([1]), "length": -1}, ValueError, "length"),
    ({"prompt_ids": np.array([1]), "length": 3, "temperature": 0.0}, ValueError, "temperature"),
    ({"prompt_ids": np.array([1]), "length": 3, "top_k": 0}, ValueError, "top_k"),
    ({"prompt_ids": np.array([1]), "length": 3, "top_k": V + 1}, ValueError, "top_k"),
])
def test_generate_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        tiny_model().generate(**kwargs)


# ---------------------------------------------------------------------- Hugging Face checkpoints

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def write_hf_checkpoint(directory, model, layout="lm-head", old_buffers=False, extra_config=None, drop=(),
                        untransposed=()):
    """Write ``model`` with exactly the keys Hugging Face's ``save_pretrained(d, safe_serialization=True)``
    writes (checked against transformers 5.24 and 4.57), Conv1D weights as (in, out):

    * ``"lm-head"``, OpenAIGPTLMHeadModel: ``transformer.*``; the tied ``lm_head.weight`` is not stored;
    * ``"bare"``, OpenAIGPTModel: the same keys without the prefix;
    * ``"double-heads"``, OpenAIGPTDoubleHeadsModel of transformers 5: ``lm_head.weight`` INSTEAD of
      ``transformer.tokens_embed.weight`` (its tie goes that way), plus ``multiple_choice_head.summary.*``;
    * ``"double-heads-4"``, the same class in transformers 4.57: the ``"lm-head"`` keys plus
      ``multiple_choice_head.summary.*``.

    ``old_buffers`` adds what old PyTorch checkpoints also saved: the causal masks ``h.N.attn.bias``
    (1, 1, n, n) and ``position_ids`` (n,); current versions keep both out (non-persistent buffers)."""
    c = model.config
    config = {"afn": "gelu", "vocab_size": c.vocab_size, "n_positions": c.n_ctx, "n_embd": c.d_model,
              "n_layer": c.n_layer, "n_head": c.n_head, "layer_norm_epsilon": c.layer_norm_eps,
              "embd_pdrop": 0.1, "attn_pdrop": 0.1, "resid_pdrop": 0.1, "initializer_range": 0.02,
              "model_type": "openai-gpt", "architectures": ["OpenAIGPTLMHeadModel"]}
    config.update(extra_config or {})
    (directory / "config.json").write_text(json.dumps(config))
    prefix = "" if layout == "bare" else "transformer."
    state = {}
    for name, array in model.state_dict().items():
        if name in drop:
            continue
        if name.endswith(CONV1D) and name not in untransposed:
            array = array.T
        state[prefix + name] = array.astype(np.float32)
    if layout == "double-heads":
        state["lm_head.weight"] = state.pop("transformer.tokens_embed.weight")
    if layout.startswith("double-heads"):
        state["multiple_choice_head.summary.weight"] = np.ones((1, c.d_model), np.float32)
        state["multiple_choice_head.summary.bias"] = np.zeros(1, np.float32)
    if old_buffers:
        for i in range(c.n_layer):
            state[f"{prefix}h.{i}.attn.bias"] = np.tril(np.ones((c.n_ctx, c.n_ctx), np.float32))[None, None]
        state[f"{prefix}position_ids"] = np.arange(c.n_ctx)
    mt.save(state, str(directory / "model.safetensors"))
    return state


@pytest.mark.parametrize("layout,old_buffers", [("lm-head", False), ("bare", False), ("double-heads", False),
                                                ("double-heads-4", False), ("lm-head", True), ("bare", True)])
def test_load_hf_checkpoint_round_trip(tmp_path, layout, old_buffers):
    model = tiny_model(dtype=np.float32).eval()
    write_hf_checkpoint(tmp_path, model, layout=layout, old_buffers=old_buffers)
    loaded = GPT.load_hf_checkpoint(tmp_path) if layout == "bare" else load_hf_checkpoint(tmp_path)
    assert isinstance(loaded, GPT) and not loaded.training
    assert loaded.config.d_ff == 4 * 16  # HF's MLP is always 4 * n_embd
    assert loaded.config.attn_pdrop == 0.1 and loaded.config.n_ctx == 8
    ids = ids_batch()
    np.testing.assert_array_equal(loaded(ids).numpy(), model(ids).numpy())


def test_load_hf_checkpoint_checks_the_tied_output(tmp_path):
    model = tiny_model(dtype=np.float32)
    state = write_hf_checkpoint(tmp_path, model)
    state["lm_head.weight"] = state["transformer.tokens_embed.weight"].copy()  # both stored, equal: fine
    mt.save(state, str(tmp_path / "model.safetensors"))
    load_hf_checkpoint(tmp_path)
    state["lm_head.weight"][0, 0] += 1.0  # an output layer that is not the embedding
    mt.save(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="lm_head.weight differs from the embedding.*untied output layer"):
        load_hf_checkpoint(tmp_path)


@pytest.mark.parametrize("key,value,match", [
    ("transformer.h.1.attn.bias", np.ones((1, 1, 8, 8), np.float32), "differs from the causal mask"),
    ("transformer.h.0.attn.bias", np.tril(np.ones((1, 1, 9, 9), np.float32)), r"shape \(1, 1, 9, 9\)"),
    ("transformer.position_ids", np.arange(1, 9)[None], "differs from the positions"),
])
def test_load_hf_checkpoint_checks_old_buffers(tmp_path, key, value, match):
    # these were skipped by name before, whatever they held
    state = write_hf_checkpoint(tmp_path, tiny_model(), old_buffers=True)
    state[key] = value
    mt.save(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=f"buffer '{key}' .*{match}"):
        load_hf_checkpoint(tmp_path)


def test_load_hf_checkpoint_accepts_position_ids_with_a_batch_axis(tmp_path):
    state = write_hf_checkpoint(tmp_path, tiny_model(), old_buffers=True)
    state["transformer.position_ids"] = np.arange(8)[None]  # (1, n), as RoBERTa-family buffers are
    mt.save(state, str(tmp_path / "model.safetensors"))
    load_hf_checkpoint(tmp_path)
    state["transformer.position_ids"] = np.arange(8)[:, None]  # (n, 1) is not a layout HF writes
    mt.save(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"buffer 'transformer.position_ids' has shape \(8, 1\), expected \(8,\)"):
        load_hf_checkpoint(tmp_path)


def test_load_hf_checkpoint_missing_key(tmp_path):
    write_hf_checkpoint(tmp_path, tiny_model(), drop=("h.1.ln_2.bias",))
    with pytest.raises(ValueError, match=r"missing keys \['h.1.ln_2.bias'\]"):
        load_hf_checkpoint(tmp_path)


def test_load_hf_checkpoint_shape_mismatch_names_key_and_shapes(tmp_path):
    write_hf_checkpoint(tmp_path, tiny_model(), untransposed=("h.0.mlp.c_fc.weight",))
    with pytest.raises(ValueError, match=r"'h.0.mlp.c_fc.weight' has shape \(64, 16\).*expected \(16, 64\)"):
        load_hf_checkpoint(tmp_path)
    write_hf_checkpoint(tmp_path, tiny_model(), extra_config={"n_positions": 10})
    with pytest.raises(ValueError, match=r"'positions_embed.weight' has shape \(8, 16\).*expected \(10, 16\)"):
        load_hf_checkpoint(tmp_path)


def test_load_hf_checkpoint_bad_config(tmp_path):
    write_hf_checkpoint(tmp_path, tiny_model(), extra_config={"afn": "relu"})
    with pytest.raises(ValueError, match="afn='relu'"):
        load_hf_checkpoint(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg["n_embd"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="n_embd"):
        load_hf_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path / "nowhere")


def test_load_hf_checkpoint_unexpected_key_and_no_weights(tmp_path):
    write_hf_checkpoint(tmp_path, tiny_model())
    state = mt.load(str(tmp_path / "model.safetensors"))
    state["transformer.h.5.ln_1.weight"] = np.ones(16, np.float32)
    mt.save(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected keys \['h.5.ln_1.weight'\]"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pickle"):
        load_hf_checkpoint(tmp_path)


# ---------------------------------------------------------------------- sample --hf: a GPT-1 directory end to end

def write_hf_gpt1_directory(directory, seed=0):
    """A tiny openai-gpt directory: GPT-1 tokenizer files learnt from a few lines, and a model whose
    vocabulary is that tokenizer's (weights as save_pretrained writes them)."""
    from models.tokenizers import train_bpe

    text = "the king is dead . long live the king !\nthe queen is here , and the king is there .\n" * 3
    tokenizer = train_bpe(text, vocab_size=60, kind="gpt1", out=directory)
    model = tiny_model(seed, dtype=np.float32, vocab_size=tokenizer.vocab_size).eval()
    write_hf_checkpoint(directory, model)
    return tokenizer, model


def test_sample_hf_runs_a_gpt1_directory_end_to_end(tmp_path, capsys):
    from models.__main__ import main

    tokenizer, model = write_hf_gpt1_directory(tmp_path)
    argv = ["sample", "--hf", str(tmp_path), "--prompt", "The King", "--length", "7", "--seed", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip()
    prompt_ids = np.asarray(tokenizer.encode("The King"))
    new_ids = model.generate(prompt_ids, 7, temperature=0.8, top_k=20, rng=np.random.default_rng(3))
    assert printed == tokenizer.decode([*prompt_ids.tolist(), *new_ids.tolist()])
    assert printed.startswith("the king")  # GPT-1's tokenizer lower-cases
    assert main(argv) == 0 and capsys.readouterr().out.strip() == printed  # the seed fixes the text


def test_sample_hf_errors(tmp_path, capsys):
    from models.__main__ import main

    tokenizer, _ = write_hf_gpt1_directory(tmp_path)
    assert main(["sample", "--hf", str(tmp_path), "--prompt", "  \n "]) == 2
    assert "no tokens" in capsys.readouterr().err
    write_hf_checkpoint(tmp_path, tiny_model(dtype=np.float32, vocab_size=tokenizer.vocab_size + 1))
    assert main(["sample", "--hf", str(tmp_path), "--prompt", "the king"]) == 2
    assert "vocab.json has" in capsys.readouterr().err
    (tmp_path / "merges.txt").unlink()
    assert main(["sample", "--hf", str(tmp_path), "--prompt", "the king"]) == 2
    assert "merges.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "--hf", str(tmp_path), "--ckpt", str(tmp_path)])
