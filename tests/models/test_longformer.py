"""Longformer (models/longformer/model.py) against a dense NumPy reference with an explicit allowed-key mask."""
import json
import math

import numpy as np
import pytest

import minitensor as mt
from minitensor.testing import directional_check
from models.longformer import Longformer, LongformerConfig, load_hf_checkpoint
from models.longformer import LongformerForSequenceClassification

V, PAD = 17, 1


def tiny_config(**overrides):
    # init_std 0.3, not 0.02: with tiny weights attention is nearly uniform and a wrong mask would
    # hardly change the outputs. Window 4 (2 keys each side) and T = 13 (not a window multiple).
    kw = {"vocab_size": V, "d_model": 16, "n_layer": 2, "n_head": 4, "d_ff": 24, "max_len": 32,
          "attention_window": [4, 2], "dilation": [[1, 2, 1, 3], 1], "hidden_dropout": 0.0,
          "attention_dropout": 0.0, "init_std": 0.3, "pad_id": PAD}
    kw.update(overrides)
    return LongformerConfig(**kw)


def tiny_model(seed=0, **overrides):
    model = Longformer(tiny_config(**overrides), rng=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 100)  # non-trivial biases and LN parameters
    for name, p in model.named_parameters():
        if name.endswith(".bias") or "LayerNorm" in name:
            p.data = p.data + rng.normal(0, 0.1, p.shape)
    return model


def ids_batch(b=2, t=13, seed=1):
    return np.random.default_rng(seed).integers(2, V, (b, t))  # no pad ids (PAD = 1)


# ---------------------------------------------------------------------- the dense reference

def ref_ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def ref_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def allowed_mask(t, window, d, is_global, real):
    """(T, T) bool, written from the paper: local row i sees real keys i + m d, |m| <= w/2, plus every
    global key; a global row sees every real key."""
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    band = ((j - i) % d == 0) & (np.abs(j - i) <= (window // 2) * d)
    local = band | is_global[None, :]
    return np.where(is_global[:, None], True, local) & real[None, :]


def ref_layer(P, pre, h, cfg, layer, glob, real):
    b_, t, d = h.shape
    nh, dh = cfg.n_head, d // cfg.n_head

    def lin(name, x):
        return x @ P[f"{pre}{name}.weight"].T + P[f"{pre}{name}.bias"]

    proj = {n: lin(f"attention.self.{n}", h) for n in ("query", "key", "value", "query_global", "key_global",
                                                       "value_global")}
    out = np.zeros_like(h)
    for b in range(b_):
        for hh in range(nh):
            sl = slice(hh * dh, (hh + 1) * dh)
            mask = allowed_mask(t, cfg.attention_window[layer], cfg.dilation[layer][hh], glob[b], real[b])
            for name_q, name_k, name_v, rows in (("query", "key", "value", ~glob[b]),
                                                 ("query_global", "key_global", "value_global", glob[b])):
                s = proj[name_q][b, :, sl] @ proj[name_k][b, :, sl].T / math.sqrt(dh)  # (T, T)
                s = np.where(mask, s, -np.inf)
                e = np.exp(s - s.max(-1, keepdims=True))
                o = (e / e.sum(-1, keepdims=True)) @ proj[name_v][b, :, sl]
                out[b, rows, sl] = o[rows]
    a = ref_ln(h + lin("attention.output.dense", out), P[f"{pre}attention.output.LayerNorm.weight"],
               P[f"{pre}attention.output.LayerNorm.bias"], cfg.layer_norm_eps)
    f = lin("output.dense", ref_gelu(lin("intermediate.dense", a)))
    return ref_ln(a + f, P[f"{pre}output.LayerNorm.weight"], P[f"{pre}output.LayerNorm.bias"], cfg.layer_norm_eps)


def ref_forward(P, ids, cfg, glob, real):
    glob = glob & real
    nonpad = (ids != cfg.pad_id).astype(int)
    pos = np.cumsum(nonpad, 1) * nonpad + cfg.pad_id  # RoBERTa's offset
    h = (P["embeddings.word_embeddings.weight"][ids] + P["embeddings.position_embeddings.weight"][pos]
         + P["embeddings.token_type_embeddings.weight"][0])
    h = ref_ln(h, P["embeddings.LayerNorm.weight"], P["embeddings.LayerNorm.bias"], cfg.layer_norm_eps)
    for layer in range(cfg.n_layer):
        h = ref_layer(P, f"encoder.layer.{layer}.", h, cfg, layer, glob, real)
    return h


def masks(b=2, t=13):
    glob = np.zeros((b, t), bool)
    glob[0, [0, 7]] = True
    glob[1, 5] = True
    real = np.ones((b, t), bool)
    real[1, 10:] = False  # the second sequence is padded
    return glob, real


# ---------------------------------------------------------------------- parity

def test_one_layer_matches_dense_reference():
    model = tiny_model()
    cfg = model.config
    rng = np.random.default_rng(3)
    h = rng.standard_normal((2, 13, cfg.d_model))
    glob, real = masks()
    got = model.encoder.layer[0](mt.tensor(h), global_mask=glob & real, padding_mask=real).numpy()
    want = ref_layer(model.state_dict(), "encoder.layer.0.", h, cfg, 0, glob & real, real)
    np.testing.assert_allclose(got[real], want[real], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("with_masks", [False, True])
def test_forward_matches_dense_reference(with_masks):
    model = tiny_model()
    ids = ids_batch()
    glob, real = masks() if with_masks else (np.zeros((2, 13), bool), np.ones((2, 13), bool))
    ids = np.where(real, ids, PAD)
    got = model(ids, global_mask=glob if with_masks else None, padding_mask=real if with_masks else None).numpy()
    want = ref_forward(model.state_dict(), ids, model.config, glob, real)
    assert got.shape == (2, 13, 16)
    np.testing.assert_allclose(got[real], want[real], rtol=1e-10, atol=1e-12)


def test_global_token_attends_to_all_and_is_attended_by_all():
    model = tiny_model(n_layer=1, attention_window=2, dilation=1)  # one key on each side
    ids = ids_batch(b=1, t=16)
    far = ids.copy()
    far[0, 15] = (far[0, 15] - 1) % (V - 2) + 2  # another non-pad token, far from 0 and 8
    glob = np.zeros((1, 16), bool)
    glob[0, 0] = True
    a, b = model(ids, global_mask=glob).numpy(), model(far, global_mask=glob).numpy()
    assert not np.allclose(a[0, 0], b[0, 0])  # the global token sees position 15
    np.testing.assert_array_equal(a[0, 8], b[0, 8])  # a local token does not
    first = ids.copy()
    first[0, 0] = (first[0, 0] - 1) % (V - 2) + 2
    c = model(first, global_mask=glob).numpy()
    assert not np.allclose(a[0, 8], c[0, 8])  # every token sees the global token
    np.testing.assert_array_equal(model(ids).numpy()[0, 8], model(first).numpy()[0, 8])  # not when local


def test_padding_invariance():
    model = tiny_model().eval()
    ids = ids_batch(b=1, t=9)
    glob = np.zeros((1, 9), bool)
    glob[0, [0, 4]] = True
    base = model(ids, global_mask=glob, padding_mask=np.ones((1, 9), bool)).numpy()
    padded = np.concatenate([ids, np.full((1, 6), PAD)], axis=1)
    real = np.arange(15)[None] < 9
    gpad = np.concatenate([glob, np.ones((1, 6), bool)], axis=1)  # pads marked global are ignored
    out = model(padded, global_mask=gpad, padding_mask=real).numpy()
    np.testing.assert_allclose(out[0, :9], base[0], rtol=1e-12, atol=1e-12)


def test_directional_check_through_all_parameters():
    cfg = tiny_config(n_layer=1, attention_window=4, dilation=[[1, 2, 1, 1]])
    model = LongformerForSequenceClassification(cfg, 3, rng=0, dtype=np.float64)
    ids = ids_batch(t=10, seed=4)
    glob, real = masks(t=10)
    params = model.parameters()

    def loss(*ps):
        return model.loss(ids, [0, 2], global_mask=glob, padding_mask=real)

    assert len(params) == len(list(model.named_parameters()))
    assert directional_check(loss, *params, n_directions=3)


def test_classification_makes_cls_global_and_returns_logits():
    cfg = tiny_config(n_layer=1, attention_window=2, dilation=1)
    model = LongformerForSequenceClassification(cfg, 3, rng=0, dtype=np.float64).eval()
    ids = ids_batch(b=2, t=16)
    logits = model(ids).numpy()
    assert logits.shape == (2, 3)
    far = ids.copy()
    far[:, 15] = (far[:, 15] - 1) % (V - 2) + 2
    assert not np.allclose(model(far).numpy(), logits)  # CLS (global) sees the last token in one layer


# ---------------------------------------------------------------------- config, API, loader

def test_config_normalises_and_round_trips():
    cfg = tiny_config(attention_window=6, dilation=2)
    assert cfg.attention_window == [6, 6] and cfg.dilation == [[2] * 4, [2] * 4]
    assert LongformerConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    base = LongformerConfig.preset("base")
    assert (base.n_layer, base.d_model, base.n_head, base.max_len) == (12, 768, 12, 4096)
    assert base.attention_window == [512] * 12 and base.n_positions == 4098
    assert LongformerConfig.preset("tiny", vocab_size=10).vocab_size == 10


@pytest.mark.parametrize("overrides,field", [
    ({"attention_window": 3}, "attention_window"),
    ({"attention_window": [4]}, "attention_window"),
    ({"dilation": 0}, "dilation"),
    ({"dilation": [1, [1, 2]]}, "dilation"),
    ({"d_model": 18}, "n_head"),
    ({"n_layer": 0}, "n_layer"),
    ({"hidden_dropout": 1.0}, "hidden_dropout"),
    ({"pad_id": V}, "pad_id"),
    ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
])
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)


def test_config_from_dict_and_preset_errors():
    with pytest.raises(ValueError, match="unknown fields"):
        LongformerConfig.from_dict({"vocab_size": 5, "n_ctx": 3})
    with pytest.raises(ValueError, match="vocab_size"):
        LongformerConfig.from_dict({"d_model": 8})
    with pytest.raises(ValueError, match="unknown preset"):
        LongformerConfig.preset("huge")


def test_forward_input_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="max_len"):
        model(np.full((1, 33), 2))
    with pytest.raises(TypeError, match="integers"):
        model(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="shape"):
        model(ids_batch(), padding_mask=np.ones((2, 12), bool))
    with pytest.raises(TypeError, match="bool"):
        model(ids_batch(), global_mask=np.ones((2, 13), int))


def _hf_heads(layout, d, vocab_size):
    """The keys (and shapes) each Hugging Face class writes beside its encoder (transformers 5.24 and 4.57;
    2 labels): none of them is part of our encoder, and the loader skips them."""
    return {"bare": {"pooler.dense.weight": (d, d), "pooler.dense.bias": (d,)},
            "masked-lm": {"lm_head.dense.weight": (d, d), "lm_head.dense.bias": (d,), "lm_head.layer_norm.weight": (d,),
                          "lm_head.layer_norm.bias": (d,), "lm_head.bias": (vocab_size,)},  # no tied decoder
            "sequence-classification": {"classifier.dense.weight": (d, d), "classifier.dense.bias": (d,),
                                        "classifier.out_proj.weight": (2, d), "classifier.out_proj.bias": (2,)},
            "question-answering": {"qa_outputs.weight": (2, d), "qa_outputs.bias": (2,)},
            "token-classification": {"classifier.weight": (2, d), "classifier.bias": (2,)},
            "multiple-choice": {"longformer.pooler.dense.weight": (d, d), "longformer.pooler.dense.bias": (d,),
                                "classifier.weight": (1, d), "classifier.bias": (1,)}}[layout]


def _write_hf(tmp_path, model, state=None, old_buffers=False, layout="masked-lm"):
    """``model`` with exactly the keys ``save_pretrained(d, safe_serialization=True)`` writes (key sets checked
    against transformers 5.24 and 4.57), by default those of ``LongformerForMaskedLM``: ``longformer.*`` (no
    pooler) and the head ``lm_head.dense.*``, ``lm_head.layer_norm.*``, ``lm_head.bias`` (its tied decoder is
    not stored). ``layout`` "bare" is ``LongformerModel`` (no prefix, with ``pooler.*``); "sequence-classification",
    "question-answering", "token-classification", "multiple-choice" are the other ``LongformerFor*`` classes
    (:func:`_hf_heads`). ``state`` replaces the encoder's arrays (under our names). ``old_buffers`` adds the
    ``embeddings.position_ids`` and ``embeddings.token_type_ids`` (1, n) that older RoBERTa-family checkpoints hold."""
    cfg = model.config
    hf = {"model_type": "longformer", "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
          "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head, "intermediate_size": cfg.d_ff,
          "attention_window": cfg.attention_window, "max_position_embeddings": cfg.max_len + cfg.pad_id + 1,
          "pad_token_id": cfg.pad_id, "layer_norm_eps": cfg.layer_norm_eps, "hidden_act": "gelu",
          "type_vocab_size": 1, "hidden_dropout_prob": 0.0}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    prefix = "" if layout == "bare" else "longformer."
    state = {prefix + k: v for k, v in (model.state_dict() if state is None else state).items()}
    rng = np.random.default_rng(7)
    state.update({k: rng.normal(0, 1, shape) for k, shape in _hf_heads(layout, cfg.d_model, cfg.vocab_size).items()})
    if old_buffers:
        n = cfg.max_len + cfg.pad_id + 1
        state[f"{prefix}embeddings.position_ids"] = np.arange(n)[None]
        state[f"{prefix}embeddings.token_type_ids"] = np.zeros((1, n), np.int64)
    mt.save(state, tmp_path / "model.safetensors")
    return state


@pytest.mark.parametrize("layout,old_buffers", [("masked-lm", False), ("masked-lm", True), ("bare", False),
                                                ("bare", True), ("sequence-classification", False),
                                                ("question-answering", False), ("token-classification", False),
                                                ("multiple-choice", False)])
def test_load_hf_checkpoint_round_trip(tmp_path, layout, old_buffers):
    model = tiny_model(dilation=1)  # HF Longformer has no dilation
    _write_hf(tmp_path, model, old_buffers=old_buffers, layout=layout)
    loaded = load_hf_checkpoint(tmp_path, dtype=np.float64)
    assert loaded.config.max_len == model.config.max_len and not loaded.training
    ids = ids_batch()
    glob, real = masks()
    np.testing.assert_allclose(loaded(ids, glob, real).numpy(), model.eval()(ids, glob, real).numpy(), rtol=1e-12)


@pytest.mark.parametrize("key,value,match", [
    ("longformer.embeddings.position_ids", lambda n: np.arange(n)[None] + 1, "differs from the positions"),
    ("longformer.embeddings.position_ids", lambda n: np.arange(n + 1)[None], "has shape"),
    ("longformer.embeddings.token_type_ids", lambda n: np.ones((1, n), np.int64), "differs from zeros"),
    ("embeddings.position_ids", lambda n: np.arange(n)[None][:, ::-1], "differs from the positions"),  # bare
])
def test_load_hf_checkpoint_checks_old_buffers(tmp_path, key, value, match):
    # position_ids used to be skipped by its name's suffix, whatever it held
    model = tiny_model(dilation=1)
    layout = "masked-lm" if key.startswith("longformer.") else "bare"
    state = _write_hf(tmp_path, model, old_buffers=True, layout=layout)
    state[key] = value(model.config.max_len + model.config.pad_id + 1)
    mt.save(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=f"buffer '{key}' {match}"):
        load_hf_checkpoint(tmp_path)


def test_load_hf_checkpoint_errors(tmp_path):
    model = tiny_model(dilation=1)
    state = model.state_dict()
    state.pop("encoder.layer.1.attention.self.key_global.weight")
    _write_hf(tmp_path, model, state)
    with pytest.raises(ValueError, match="missing keys.*key_global"):
        load_hf_checkpoint(tmp_path)
    state = model.state_dict()
    state["embeddings.LayerNorm.bias"] = np.zeros(3)
    _write_hf(tmp_path, model, state)
    with pytest.raises(ValueError, match="embeddings.LayerNorm.bias.*shape"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_checkpoint(tmp_path)


# ---------------------------------------------------------------------- documents through RoBERTa's tokenizer

def test_encode_documents_frames_pads_and_runs_through_a_loaded_checkpoint(tmp_path):
    """A Longformer directory with RoBERTa-style tokenizer files: documents become <s> text </s> <pad>...,
    the mask marks the real tokens, the loaded encoder reads them, and Hugging Face's RobertaTokenizer
    (when installed) gives the same ids and mask."""
    from models.longformer import encode_documents, load_hf_tokenizer
    from models.tokenizers import train_bpe

    text = "ROMEO: But, soft! what light through yonder window breaks?\nJULIET: Ay me!\n" * 4
    train_bpe(text, vocab_size=300, kind="byte-level", out=tmp_path)
    tokenizer = load_hf_tokenizer(tmp_path)
    model = tiny_model(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, max_len=40)
    _write_hf(tmp_path, model)
    docs = ["ROMEO: But, soft!", "JULIET: Ay me! what light"]
    ids, mask = encode_documents(tokenizer, docs, max_len=model.config.max_len)
    for row, m, doc in zip(ids, mask, docs):
        real = row[m]
        assert real[0] == tokenizer.bos_id and real[-1] == tokenizer.eos_id
        assert tokenizer.decode(real[1:-1]) == doc and (row[~m] == tokenizer.pad_id).all()
    loaded = load_hf_checkpoint(tmp_path)
    out = loaded(ids, padding_mask=mask).numpy()
    assert out.shape == (*ids.shape, model.config.d_model) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="document 0 is .* tokens .* longer than max_len=5"):
        encode_documents(tokenizer, docs, max_len=5)
    with pytest.raises(TypeError, match="list of str"):
        encode_documents(tokenizer, "one document", max_len=40)
    transformers = pytest.importorskip("transformers")
    theirs = transformers.RobertaTokenizer.from_pretrained(str(tmp_path))(docs, padding=True)
    np.testing.assert_array_equal(ids, theirs["input_ids"])
    np.testing.assert_array_equal(mask, np.asarray(theirs["attention_mask"], dtype=bool))


def test_load_hf_tokenizer_needs_the_special_tokens(tmp_path):
    from models.longformer import load_hf_tokenizer
    from models.tokenizers import train_bpe

    train_bpe("a few words, and a few more", vocab_size=262, kind="byte-level", special_tokens=["<unk>"],
              out=tmp_path)
    with pytest.raises(ValueError, match="no <s> token"):
        load_hf_tokenizer(tmp_path)
