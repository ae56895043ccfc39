"""Transformer-XL (models/transformer_xl/model.py) against an independent NumPy reference written from the
equations (explicit relative distances, no rel-shift), plus memory semantics, stop-gradient, errors,
presets and Hugging Face checkpoints."""
import json
import math

import numpy as np
import pytest

import minitensor as mt
from minitensor.testing import directional_check
from models.transformer_xl import TransformerXL, TransformerXLConfig, load_hf_checkpoint

V = 11


def tiny_config(**overrides):
    # init_std 0.3, not 0.02: with tiny weights attention is nearly uniform and the position terms
    # (b), (d) would hardly matter, so a wrong relative index could slip through.
    kw = {"vocab_size": V, "d_model": 8, "n_layer": 2, "n_head": 2, "d_head": 3, "d_inner": 12, "tgt_len": 5,
          "mem_len": 4, "dropout": 0.0, "dropatt": 0.0, "init_std": 0.3}
    kw.update(overrides)
    return TransformerXLConfig(**kw)


def tiny_model(seed=0, dtype=np.float64, **overrides):
    model = TransformerXL(tiny_config(**overrides), rng=seed, dtype=dtype)
    # Non-trivial biases and LN parameters, so the parity test exercises them (init makes them 0/1).
    rng = np.random.default_rng(seed + 100)
    for name, p in model.named_parameters():
        if name.endswith(".bias") or "layer_norm" in name:
            p.data = p.data + rng.normal(0, 0.1, p.shape).astype(dtype)
    return model


def ids_batch(b=2, t=5, seed=1):
    return np.random.default_rng(seed).integers(0, V, (b, t))


# ---------------------------------------------------------------------- the plain NumPy reference

def ref_sinusoid(dist, d, order):
    """R_b for an integer array of distances: sin/cos interleaved (ours) or sines then cosines (HF)."""
    inv = 1.0 / 10000.0 ** (np.arange(0, d, 2) / d)
    ang = dist[..., None] * inv
    if order == "concat":
        return np.concatenate([np.sin(ang), np.cos(ang)], -1)
    out = np.empty(dist.shape + (d,))
    out[..., 0::2], out[..., 1::2] = np.sin(ang), np.cos(ang)
    return out


def ref_ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def ref_forward(P, ids, mems, cfg, order="interleaved", record=None):
    """Transformer-XL written plainly from section 1.2.3: every R_{i-j} looked up by its distance."""
    b_, t = ids.shape
    d, nh, dh = cfg.d_model, cfg.n_head, cfg.d_head
    hd = nh * dh
    m = 0 if mems is None else mems[0].shape[1]
    klen = m + t
    i, j = np.arange(t)[:, None], np.arange(klen)[None, :]
    dist = m + i - j  # query i sits at absolute position m + i, key j at j
    allowed = dist >= 0
    if cfg.same_length:  # every query sees its last mem_len keys (itself included) at most
        allowed &= dist < cfg.mem_len
    dist = np.maximum(dist, 0)
    if cfg.clamp_len > 0:
        dist = np.minimum(dist, cfg.clamp_len)
    R = ref_sinusoid(dist, d, order)  # (T, K, d): R_{i-j} for every pair
    h = P["word_emb.weight"][ids] * math.sqrt(d)
    hids = []
    for n in range(cfg.n_layer):
        def g(k, n=n):
            return P[f"layers.{n}.{k}"]
        u = g("dec_attn.r_w_bias") if cfg.untie_r else P["r_w_bias"]
        v = g("dec_attn.r_r_bias") if cfg.untie_r else P["r_r_bias"]
        hids.append(h)
        ht = h if m == 0 else np.concatenate([mems[n], h], 1)
        ln = (g("dec_attn.layer_norm.weight"), g("dec_attn.layer_norm.bias"), cfg.layer_norm_eps)
        x = ref_ln(ht, *ln) if cfg.pre_lnorm else ht
        W = g("dec_attn.qkv_net.weight")
        q = (x[:, m:] @ W[:hd].T).reshape(b_, t, nh, dh)
        k = (x @ W[hd:2 * hd].T).reshape(b_, klen, nh, dh)
        val = (x @ W[2 * hd:].T).reshape(b_, klen, nh, dh)
        pk = (R @ g("dec_attn.r_net.weight").T).reshape(t, klen, nh, dh)  # W_{k,R} R_{i-j}
        terms = {"a": np.einsum("bihd,bjhd->bhij", q, k),
                 "b": np.einsum("bihd,ijhd->bhij", q, pk),
                 "c": np.broadcast_to(np.einsum("hd,bjhd->bhj", u, k)[:, :, None, :], (b_, nh, t, klen)),
                 "d": np.broadcast_to(np.einsum("hd,ijhd->hij", v, pk)[None], (b_, nh, t, klen))}
        s = sum(terms.values()) / math.sqrt(dh)
        if record is not None:
            record.append({**terms, "scores": s, "mask": allowed})
        s = np.where(allowed, s, -np.inf)
        e = np.exp(s - s.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        attn = np.einsum("bhij,bjhd->bihd", p, val).reshape(b_, t, hd)
        o = h + attn @ g("dec_attn.o_net.weight").T
        o = o if cfg.pre_lnorm else ref_ln(o, *ln)
        ln2 = (g("pos_ff.layer_norm.weight"), g("pos_ff.layer_norm.bias"), cfg.layer_norm_eps)

        def ff(z, n=n):
            z = np.maximum(z @ g("pos_ff.CoreNet.0.weight").T + g("pos_ff.CoreNet.0.bias"), 0)
            return z @ g("pos_ff.CoreNet.3.weight").T + g("pos_ff.CoreNet.3.bias")
        h = o + ff(ref_ln(o, *ln2)) if cfg.pre_lnorm else ref_ln(o + ff(o), *ln2)
    logits = h @ P["word_emb.weight"].T + P["crit.out_layers.0.bias"]
    new_mems = []
    for n in range(cfg.n_layer):
        cat = hids[n] if m == 0 else np.concatenate([mems[n], hids[n]], 1)
        new_mems.append(cat[:, max(0, cat.shape[1] - cfg.mem_len):])
    return logits, new_mems


def ref_ce(logits, targets):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], -1).mean()


# ---------------------------------------------------------------------- parity

@pytest.mark.parametrize("overrides", [
    {},
    {"untie_r": True, "pre_lnorm": True},
    {"same_length": True, "mem_len": 3},
    {"clamp_len": 2, "mem_len": 6},
])
def test_two_segments_with_memory_match_reference(overrides):
    model = tiny_model(**overrides)
    cfg, P = model.config, model.state_dict()
    ids1, ids2 = ids_batch(seed=1), ids_batch(t=4, seed=2)
    logits1, mems1 = model(ids1)
    want1, ref_mems1 = ref_forward(P, ids1, None, cfg)
    np.testing.assert_allclose(logits1.numpy(), want1, rtol=1e-10, atol=1e-12)
    assert len(mems1) == cfg.n_layer
    for got, want in zip(mems1, ref_mems1):
        assert isinstance(got, np.ndarray) and got.shape == (2, min(cfg.mem_len, 5), 8)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    logits2, mems2 = model(ids2, mems1)
    want2, ref_mems2 = ref_forward(P, ids2, ref_mems1, cfg)
    np.testing.assert_allclose(logits2.numpy(), want2, rtol=1e-10, atol=1e-12)
    for got, want in zip(mems2, ref_mems2):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # The memory really is used: the same segment without it gives other logits.
    assert not np.allclose(model(ids2)[0].numpy(), logits2.numpy())


def test_score_terms_match_reference_and_sum_to_the_scores():
    model = tiny_model()
    ids1, ids2 = ids_batch(seed=3), ids_batch(t=3, seed=4)
    _, mems = model(ids1)
    got = model.score_terms(ids2, mems)
    record = []
    ref_forward(model.state_dict(), ids2, mems, model.config, record=record)
    assert len(got) == 2
    for layer, want in zip(got, record):
        mask = want["mask"]
        np.testing.assert_array_equal(layer["mask"], mask)
        assert layer["a"].shape == (2, 2, 3, 7)  # (B, H, L, M + L), M = 4
        for name in ("a", "b", "c", "d", "scores"):
            np.testing.assert_allclose(layer[name][..., mask], want[name][..., mask], rtol=1e-10, atol=1e-12)
            assert np.isnan(layer[name][..., ~mask]).all()  # forbidden (future) keys are not shown
        total = (layer["a"] + layer["b"] + layer["c"] + layer["d"]) / math.sqrt(3)
        np.testing.assert_allclose(total[..., mask], layer["scores"][..., mask], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(layer["probs"].sum(-1), 1.0, rtol=1e-12)
        assert (layer["probs"][..., ~mask] == 0).all()
        # (c) does not depend on the query, (d) not on the batch
        np.testing.assert_allclose(layer["c"][:, :, 0, :4], layer["c"][:, :, 2, :4])
        np.testing.assert_allclose(layer["d"][0][..., mask], layer["d"][1][..., mask])


def test_loss_matches_reference_and_gradients_pass_a_directional_check():
    model = tiny_model()
    ids1, ids2, targets = ids_batch(seed=5), ids_batch(t=4, seed=6), ids_batch(t=4, seed=7)
    _, mems = model(ids1)
    loss, _ = model.loss(ids2, targets, mems)
    want = ref_ce(ref_forward(model.state_dict(), ids2, mems, model.config)[0], targets)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-10)
    params = model.parameters()
    assert len(params) == len(list(model.named_parameters())) == len(model.state_dict())

    def fn(*ps):
        return model.loss(ids2, targets, mems)[0]

    assert directional_check(fn, *params, n_directions=3)
    # every parameter, u and v included, gets a non-zero gradient (the check is not vacuous)
    fn().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.abs(p.grad).max() > 0, name


# ---------------------------------------------------------------------- memory semantics

def test_stop_gradient_no_gradient_into_memory_and_no_graph_in_new_mems():
    model = tiny_model()
    ids1, ids2, targets = ids_batch(seed=8), ids_batch(t=4, seed=9), ids_batch(t=4, seed=10)
    _, mems = model(ids1)
    emb = model.word_emb.weight
    # Memories that carry a graph back to a parameter: SG must cut it.
    mem_tensors = [mt.Tensor(m, requires_grad=True) * 1.0 + emb[ids1[:, :4]] * 0.0 for m in mems]
    assert all(t.requires_grad for t in mem_tensors)
    leaves = [mt.Tensor(m, requires_grad=True) for m in mems]
    loss, new_mems = model.loss(ids2, targets, leaves)
    loss.backward()
    assert all(leaf.grad is None for leaf in leaves)
    model.zero_grad()
    model.loss(ids2, targets, mem_tensors)[0].backward()
    with_graph = emb.grad.copy()
    model.zero_grad()
    model.loss(ids2, targets, mems)[0].backward()
    np.testing.assert_array_equal(with_graph, emb.grad)  # nothing flowed through the memory into the embedding
    assert all(isinstance(m, np.ndarray) and not isinstance(m, mt.Tensor) for m in new_mems)
    assert all(m.base is None for m in new_mems)  # own copies: no larger buffer kept alive


def test_new_mems_are_the_last_mem_len_layer_inputs():
    model = tiny_model(mem_len=3)
    ids = ids_batch(t=5, seed=11)
    _, mems = model(ids)
    assert [m.shape for m in mems] == [(2, 3, 8)] * 2
    h0 = model.word_emb.weight.numpy()[ids] * math.sqrt(8)  # layer 0's input: the scaled embedding
    np.testing.assert_allclose(mems[0], h0[:, -3:], rtol=1e-14)
    # A short segment after it: the memory slides, keeping the old positions still in range.
    ids2 = ids_batch(t=2, seed=12)
    _, mems2 = model(ids2, mems)
    h0b = model.word_emb.weight.numpy()[ids2] * math.sqrt(8)
    np.testing.assert_allclose(mems2[0], np.concatenate([mems[0][:, -1:], h0b], 1), rtol=1e-14)
    # mem_len 0: no recurrence; zero-length memories behave as no memory.
    model0 = tiny_model(mem_len=0)
    logits, empty = model0(ids)
    assert [m.shape for m in empty] == [(2, 0, 8)] * 2
    np.testing.assert_array_equal(model0(ids, empty)[0].numpy(), logits.numpy())
    np.testing.assert_array_equal(model0(ids, model0.init_mems(2))[0].numpy(), logits.numpy())


@pytest.mark.parametrize("mem_len", [6, 9])
def test_segments_with_full_memory_equal_one_long_segment(mem_len):
    # With a memory covering every earlier token (mem_len >= L1) and same_length off, each layer of
    # segment 2 attends to exactly the states the long run computes for positions < L1: equal logits.
    model = tiny_model(mem_len=mem_len)
    ids = ids_batch(t=10, seed=13)
    long_logits, _ = model(ids)
    first, mems = model(ids[:, :6])
    second, _ = model(ids[:, 6:], mems)
    np.testing.assert_allclose(first.numpy(), long_logits.numpy()[:, :6], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(second.numpy(), long_logits.numpy()[:, 6:], rtol=1e-10, atol=1e-12)


def test_short_memory_does_not_equal_one_long_segment():
    model = tiny_model(mem_len=2)  # the memory forgets 4 of the 6 earlier tokens
    ids = ids_batch(t=10, seed=13)
    long_logits, _ = model(ids)
    _, mems = model(ids[:, :6])
    second, _ = model(ids[:, 6:], mems)
    assert not np.allclose(second.numpy(), long_logits.numpy()[:, 6:])


def test_causality_with_memory():
    model = tiny_model()
    _, mems = model(ids_batch(seed=14))
    ids = ids_batch(t=5, seed=15)
    changed = ids.copy()
    changed[:, 3:] = (changed[:, 3:] + 1) % V
    a, b = model(ids, mems)[0].numpy(), model(changed, mems)[0].numpy()
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert not np.allclose(a[:, 3:], b[:, 3:])


# ---------------------------------------------------------------------- errors, config, dropout

def test_mems_errors():
    model = tiny_model()
    ids = ids_batch()
    _, mems = model(ids)
    with pytest.raises(ValueError, match="mems has 1 arrays, expected n_layer=2"):
        model(ids, mems[:1])
    with pytest.raises(ValueError, match=r"mems\[1\] has shape \(4, 8\)"):
        model(ids, [mems[0], mems[1][0]])
    with pytest.raises(ValueError, match=r"mems\[0\] has shape \(4, 2, 8\).*transpose\(1, 0, 2\)"):
        model(ids, [m.transpose(1, 0, 2) for m in mems])
    with pytest.raises(ValueError, match=r"expected \(B, M, d\) = \(1, M, 8\)"):
        model(ids[:1], mems)
    with pytest.raises(ValueError, match="same length"):
        model(ids, [mems[0], mems[1][:, 1:]])
    with pytest.raises(ValueError, match="dtype float32, the model float64"):
        model(ids, [m.astype(np.float32) for m in mems])
    with pytest.raises(ValueError, match="must be a list"):
        model(ids, mems[0])
    with pytest.raises(ValueError, match=r"shape \(B, L\)"):
        model(np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="integers"):
        model(np.zeros((1, 4)))
    with pytest.raises(IndexError, match="out of range"):
        model(np.array([[1, V]]))


def test_config_presets_round_trip_and_parameter_count():
    tiny = TransformerXLConfig.preset("tiny", vocab_size=65)
    assert (tiny.d_model, tiny.n_layer, tiny.n_head, tiny.d_head, tiny.d_inner, tiny.tgt_len, tiny.mem_len) == \
        (128, 4, 4, 32, 512, 64, 64)
    base = TransformerXLConfig.preset("base")
    assert (base.vocab_size, base.d_model, base.n_layer, base.n_head, base.d_head, base.d_inner, base.tgt_len,
            base.mem_len) == (204, 512, 12, 8, 64, 2048, 512, 512)
    assert TransformerXLConfig.from_dict(json.loads(json.dumps(base.to_dict()))) == base
    for c in (tiny, tiny_config(), tiny_config(untie_r=True)):
        assert TransformerXL(c, rng=0).num_parameters() == c.num_parameters()
    # 12 x (4 d^2 (qkv, r_net) ... ): the enwik8 base model has about 41M parameters
    assert 40e6 < base.num_parameters() < 42e6


@pytest.mark.parametrize("call,match", [
    (lambda: TransformerXLConfig.preset("huge", 10), "unknown preset"),
    (lambda: TransformerXLConfig.preset("tiny"), "vocab_size is required"),
    (lambda: TransformerXLConfig(vocab_size=10, d_model=7), "d_model=7 must be even"),
    (lambda: TransformerXLConfig(vocab_size=0), "vocab_size must be a positive int"),
    (lambda: TransformerXLConfig(vocab_size=10, d_head=0), "d_head must be a positive int"),
    (lambda: TransformerXLConfig(vocab_size=10, mem_len=-1), "mem_len must be an int >= 0"),
    (lambda: TransformerXLConfig(vocab_size=10, clamp_len=1.5), "clamp_len"),
    (lambda: TransformerXLConfig(vocab_size=10, dropatt=1.0), "dropatt"),
    (lambda: TransformerXLConfig(vocab_size=10, same_length="yes"), "same_length must be a bool"),
    (lambda: TransformerXLConfig.from_dict({"vocab_size": 10, "n_embd": 8}), "unknown fields"),
])
def test_config_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_dropout_is_seeded_and_off_in_eval():
    cfg = tiny_config(dropout=0.2, dropatt=0.1)
    ids = ids_batch()
    m1, m2 = TransformerXL(cfg, rng=3, dtype=np.float64), TransformerXL(cfg, rng=3, dtype=np.float64)
    l1, l2 = m1.loss(ids, ids)[0].item(), m2.loss(ids, ids)[0].item()
    assert l1 == l2
    state = m1.get_rng_state()
    again = m1.loss(ids, ids)[0].item()
    assert again != l1
    m1.set_rng_state(state)
    assert m1.loss(ids, ids)[0].item() == again
    m1.eval()
    assert m1.loss(ids, ids)[0].item() == m1.loss(ids, ids)[0].item()


def test_tiny_preset_runs_in_float32():
    model = TransformerXL(TransformerXLConfig.preset("tiny", vocab_size=20), rng=0).eval()
    ids = np.random.default_rng(0).integers(0, 20, (2, 16))
    with mt.no_grad():
        _, mems = model(ids)
        logits2, mems2 = model(ids, mems)
    assert logits2.dtype == np.float32 and logits2.shape == (2, 16, 20)
    assert [m.shape for m in mems2] == [(2, 32, 128)] * 4
    assert np.isfinite(logits2.numpy()).all()


# ---------------------------------------------------------------------- Hugging Face checkpoints

def perm_interleaved(d):
    """ours[:, perm] ordering: column 2j <- sin j (HF column j), 2j+1 <- cos j (HF column d/2 + j)."""
    perm = np.empty(d, np.int64)
    perm[0::2], perm[1::2] = np.arange(d // 2), np.arange(d // 2) + d // 2
    return perm


def hf_state(model):
    """``model`` in HF's TransfoXLLMHeadModel naming, with r_net in HF's sines-then-cosines order."""
    state = {}
    for name, array in model.state_dict().items():
        if name.endswith("r_net.weight"):
            hf = np.empty_like(array)
            hf[:, perm_interleaved(array.shape[1])] = array  # ours = hf[:, perm]
            array = hf
        key = ("transformer.word_emb.emb_layers.0.weight" if name == "word_emb.weight"
               else name if name.startswith("crit.") else "transformer." + name)
        state[key] = array.astype(np.float32)
    return state


def write_hf_checkpoint(directory, model, extra_config=None, drop=(), tied_copy=False, change=None, bare=False):
    """``model`` with exactly the keys ``TransfoXLLMHeadModel.save_pretrained(d, safe_serialization=True)``
    writes (transformers 4.57, the last with Transformer-XL): ``transformer.*`` with the persistent buffer
    ``transformer.pos_emb.inv_freq``, and ``crit.out_layers.0.bias``; the tied ``crit.out_layers.0.weight``
    is not stored (``tied_copy`` adds it, as older checkpoints have it). ``bare``: TransfoXLModel's keys,
    no ``transformer.`` prefix and no ``crit.``. Key sets checked against 4.57.6 with ``untie_r=True``; with
    ``untie_r=False`` HF refuses to write safetensors (its layers share ``r_w_bias``), so those files hold
    the shared ``transformer.r_w_bias``/``r_r_bias`` once, as a conversion that drops duplicates would."""
    c = model.config
    config = {"vocab_size": c.vocab_size, "d_model": c.d_model, "d_embed": c.d_model, "n_layer": c.n_layer,
              "n_head": c.n_head, "d_head": c.d_head, "d_inner": c.d_inner, "mem_len": c.mem_len,
              "clamp_len": c.clamp_len if c.clamp_len else -1, "same_length": c.same_length, "untie_r": c.untie_r,
              "pre_lnorm": c.pre_lnorm, "div_val": 1, "cutoffs": [], "adaptive": False, "attn_type": 0,
              "dropout": 0.1, "dropatt": 0.0, "layer_norm_epsilon": c.layer_norm_eps, "init_std": 0.02,
              "model_type": "transfo-xl", "architectures": ["TransfoXLLMHeadModel"]}
    config.update(extra_config or {})
    (directory / "config.json").write_text(json.dumps(config))
    state = hf_state(model)
    d = c.d_model  # HF's PositionalEmbedding buffer, computed in float32 as it does
    state["transformer.pos_emb.inv_freq"] = 1 / (10000 ** (np.arange(0.0, d, 2.0, dtype=np.float32) / d))
    if bare:
        state = {k.removeprefix("transformer."): v for k, v in state.items() if not k.startswith("crit.")}
    if tied_copy:
        state["crit.out_layers.0.weight"] = state["transformer.word_emb.emb_layers.0.weight"].copy()
    for key in drop:
        del state[key]
    for key, value in (change or {}).items():
        state[key] = value
    mt.save(state, str(directory / "model.safetensors"))
    return state


def hf_as_ours_names(state):
    """The raw HF arrays under our names, NOT permuted: for the reference in HF's convention."""
    out = {}
    for key, array in state.items():
        if key.endswith("pos_emb.inv_freq"):
            continue  # a buffer, not a parameter
        name = ("word_emb.weight" if key == "transformer.word_emb.emb_layers.0.weight"
                else key.removeprefix("transformer."))
        out[name] = array.astype(np.float64)
    return out


@pytest.mark.parametrize("overrides", [{}, {"untie_r": True, "same_length": True, "clamp_len": 3}])
def test_load_hf_checkpoint_matches_hf_convention_reference(tmp_path, overrides):
    model = tiny_model(dtype=np.float32, **overrides).eval()
    state = write_hf_checkpoint(tmp_path, model, tied_copy=bool(overrides))
    loaded = TransformerXL.load_hf_checkpoint(tmp_path, dtype=np.float64)
    assert isinstance(loaded, TransformerXL) and not loaded.training
    assert loaded.config.dropout == 0.1 and loaded.config.clamp_len == model.config.clamp_len
    ids1, ids2 = ids_batch(seed=20), ids_batch(t=3, seed=21)
    # Our round trip: the same function as the model that was written.
    np.testing.assert_allclose(loaded(ids1)[0].numpy(), model(ids1)[0].numpy().astype(np.float64), rtol=1e-5,
                               atol=1e-5)
    # HF's convention: R as sines then cosines, memory starting as mem_len zero vectors, (M, B, d) layout.
    P, cfg = hf_as_ours_names(state), loaded.config
    hf_mems = [np.zeros((cfg.mem_len, 2, cfg.d_model)) for _ in range(cfg.n_layer)]  # HF's init_mems
    ours_mems = loaded.init_mems(2, zero_filled=True)
    for segment in (ids1, ids2):
        want, ref_new = ref_forward(P, segment, [m.transpose(1, 0, 2) for m in hf_mems], cfg, order="concat")
        got, ours_mems = loaded(segment, ours_mems)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)
        hf_mems = [m.transpose(1, 0, 2) for m in ref_new]  # back to HF's time-major memory
        for ours, hf in zip(ours_mems, hf_mems):
            np.testing.assert_allclose(ours, hf.transpose(1, 0, 2), rtol=1e-10, atol=1e-12)
    # Without the permutation of r_net the function would differ: the check above is not vacuous.
    wrong, _ = ref_forward(P, ids1, [np.zeros((2, cfg.mem_len, 8))] * cfg.n_layer, cfg, order="interleaved")
    assert not np.allclose(wrong, loaded(ids1, loaded.init_mems(2, zero_filled=True))[0].numpy(), atol=1e-6)


def test_load_hf_checkpoint_missing_key(tmp_path):
    write_hf_checkpoint(tmp_path, tiny_model(), drop=("transformer.layers.1.pos_ff.layer_norm.bias",))
    with pytest.raises(ValueError, match=r"missing keys \['transformer.layers.1.pos_ff.layer_norm.bias'\]"):
        load_hf_checkpoint(tmp_path)
    write_hf_checkpoint(tmp_path, tiny_model(), drop=("transformer.word_emb.emb_layers.0.weight",), tied_copy=True)
    load_hf_checkpoint(tmp_path)  # only the tied output copy stored: still loads


def test_load_hf_checkpoint_shape_mismatch_and_unexpected(tmp_path):
    write_hf_checkpoint(tmp_path, tiny_model(),
                        change={"transformer.layers.0.dec_attn.r_net.weight": np.zeros((8, 6), np.float32)})
    with pytest.raises(ValueError, match=r"'transformer.layers.0.dec_attn.r_net.weight' has shape \(8, 6\).*"
                                         r"expected \(6, 8\)"):
        load_hf_checkpoint(tmp_path)
    write_hf_checkpoint(tmp_path, tiny_model(), change={"transformer.layers.5.pos_ff.layer_norm.weight":
                                                         np.ones(8, np.float32)})
    with pytest.raises(ValueError, match=r"unexpected keys \['transformer.layers.5.pos_ff.layer_norm.weight'\]"):
        load_hf_checkpoint(tmp_path)
    write_hf_checkpoint(tmp_path, tiny_model(), tied_copy=True,
                        change={"crit.out_layers.0.weight": np.zeros((V, 8), np.float32)})
    with pytest.raises(ValueError, match="untied output"):
        load_hf_checkpoint(tmp_path)
    write_hf_checkpoint(tmp_path, tiny_model(untie_r=True), extra_config={"untie_r": False})
    with pytest.raises(ValueError, match="missing keys"):  # shared u, v expected, per-layer ones found
        load_hf_checkpoint(tmp_path)


def test_load_hf_checkpoint_checks_the_sinusoid_frequencies(tmp_path):
    d = 8
    hf = 1 / (10000 ** (np.arange(0.0, d, 2.0, dtype=np.float32) / d))
    slightly_off = hf * np.array([1, 1, 1, 1 + 1e-4], np.float32)  # the smallest frequency, 1e-3, off by 1e-7
    for wrong, match in ((1 / (1000 ** (np.arange(0.0, d, 2.0, dtype=np.float32) / d)), "differs from the frequencies"),
                         (slightly_off, r"differs from the frequencies .* by up to 1e-07"),
                         (np.ones(d, np.float32), r"has shape \(8,\), expected \(4,\)")):
        write_hf_checkpoint(tmp_path, tiny_model(), change={"transformer.pos_emb.inv_freq": wrong})
        with pytest.raises(ValueError, match=f"buffer 'transformer.pos_emb.inv_freq' .*{match}"):
            load_hf_checkpoint(tmp_path)


def test_load_hf_checkpoint_of_the_bare_model_is_one_clear_error(tmp_path):
    write_hf_checkpoint(tmp_path, tiny_model(), bare=True)
    with pytest.raises(ValueError, match=r"bare TransfoXLModel checkpoint, without the LM head "
                                         r"\(crit.out_layers.0.bias\).*TransfoXLLMHeadModel checkpoint") as info:
        load_hf_checkpoint(tmp_path)
    assert "missing keys" not in str(info.value)
    mt.save({"tokens_embed.weight": np.zeros((V, 8), np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing keys") as info:  # not TransfoXLModel's names: not called one
        load_hf_checkpoint(tmp_path)
    assert "TransfoXLModel" not in str(info.value)


@pytest.mark.parametrize("extra,match", [
    ({"cutoffs": [5, 8], "div_val": 4, "adaptive": True}, "adaptive input/softmax"),
    ({"cutoffs": [5]}, "not supported"),
    ({"d_embed": 4}, "d_embed=4"),
    ({"attn_type": 2}, "attn_type=2"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings"),
])
def test_load_hf_checkpoint_unsupported_configs(tmp_path, extra, match):
    write_hf_checkpoint(tmp_path, tiny_model(), extra_config=extra)
    with pytest.raises(ValueError, match=match):
        load_hf_checkpoint(tmp_path)


def test_load_hf_checkpoint_bad_files(tmp_path):
    write_hf_checkpoint(tmp_path, tiny_model())
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg["d_head"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="d_head"):
        load_hf_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_checkpoint(tmp_path / "nowhere")
    write_hf_checkpoint(tmp_path, tiny_model())
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pickle"):
        load_hf_checkpoint(tmp_path)


# ---------------------------------------------------------------------- ablation: absolute positions

def ref_forward_absolute(P, ids, mems, cfg):
    """The section 1.2.2 baseline written plainly: h^0 = sqrt(d) E + U_{1:L} (positions 0..L-1 in EVERY
    segment, the sinusoid formula), memory concatenated, ordinary q.k scores, the memory-aware causal mask."""
    b_, t = ids.shape
    d, nh, dh = cfg.d_model, cfg.n_head, cfg.d_head
    hd = nh * dh
    m = 0 if mems is None else mems[0].shape[1]
    klen = m + t
    dist = m + np.arange(t)[:, None] - np.arange(klen)[None, :]
    allowed = dist >= 0
    if cfg.same_length:
        allowed &= dist < cfg.mem_len
    h = P["word_emb.weight"][ids] * math.sqrt(d) + ref_sinusoid(np.arange(t), d, "interleaved")
    hids = []
    for n in range(cfg.n_layer):
        def g(k, n=n):
            return P[f"layers.{n}.{k}"]
        hids.append(h)
        ht = h if m == 0 else np.concatenate([mems[n], h], 1)
        ln = (g("dec_attn.layer_norm.weight"), g("dec_attn.layer_norm.bias"), cfg.layer_norm_eps)
        x = ref_ln(ht, *ln) if cfg.pre_lnorm else ht
        W = g("dec_attn.qkv_net.weight")
        q = (x[:, m:] @ W[:hd].T).reshape(b_, t, nh, dh)
        k = (x @ W[hd:2 * hd].T).reshape(b_, klen, nh, dh)
        val = (x @ W[2 * hd:].T).reshape(b_, klen, nh, dh)
        s = np.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(dh)
        s = np.where(allowed, s, -np.inf)
        e = np.exp(s - s.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        attn = np.einsum("bhij,bjhd->bihd", p, val).reshape(b_, t, hd)
        o = h + attn @ g("dec_attn.o_net.weight").T
        o = o if cfg.pre_lnorm else ref_ln(o, *ln)
        ln2 = (g("pos_ff.layer_norm.weight"), g("pos_ff.layer_norm.bias"), cfg.layer_norm_eps)

        def ff(z, n=n):
            z = np.maximum(z @ g("pos_ff.CoreNet.0.weight").T + g("pos_ff.CoreNet.0.bias"), 0)
            return z @ g("pos_ff.CoreNet.3.weight").T + g("pos_ff.CoreNet.3.bias")
        h = o + ff(ref_ln(o, *ln2)) if cfg.pre_lnorm else ref_ln(o + ff(o), *ln2)
    logits = h @ P["word_emb.weight"].T + P["crit.out_layers.0.bias"]
    new_mems = []
    for n in range(cfg.n_layer):
        cat = hids[n] if m == 0 else np.concatenate([mems[n], hids[n]], 1)
        new_mems.append(cat[:, max(0, cat.shape[1] - cfg.mem_len):])
    return logits, new_mems


@pytest.mark.parametrize("overrides", [{}, {"pre_lnorm": True}, {"same_length": True, "mem_len": 3}])
def test_absolute_positions_two_segments_with_memory_match_reference(overrides):
    model = tiny_model(positions="absolute", **overrides)
    cfg, P = model.config, model.state_dict()
    ids1, ids2 = ids_batch(seed=1), ids_batch(t=4, seed=2)
    logits1, mems1 = model(ids1)
    want1, ref_mems1 = ref_forward_absolute(P, ids1, None, cfg)
    np.testing.assert_allclose(logits1.numpy(), want1, rtol=1e-10, atol=1e-12)
    for got, want in zip(mems1, ref_mems1):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    logits2, mems2 = model(ids2, mems1)
    want2, ref_mems2 = ref_forward_absolute(P, ids2, ref_mems1, cfg)
    np.testing.assert_allclose(logits2.numpy(), want2, rtol=1e-10, atol=1e-12)
    for got, want in zip(mems2, ref_mems2):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert not np.allclose(model(ids2)[0].numpy(), logits2.numpy())  # the memory is used
    # and it is not the relative model: same config otherwise, other function
    assert not np.allclose(ref_forward(tiny_model(**overrides).state_dict(), ids1, None, cfg)[0], want1)


def test_absolute_positions_loss_gradients_pass_a_directional_check():
    model = tiny_model(positions="absolute")
    ids1, ids2, targets = ids_batch(seed=5), ids_batch(t=4, seed=6), ids_batch(t=4, seed=7)
    _, mems = model(ids1)
    loss, _ = model.loss(ids2, targets, mems)
    want = ref_ce(ref_forward_absolute(model.state_dict(), ids2, mems, model.config)[0], targets)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-10)
    params = model.parameters()

    def fn(*ps):
        return model.loss(ids2, targets, mems)[0]

    assert directional_check(fn, *params, n_directions=3)
    fn().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and np.abs(p.grad).max() > 0, name


def test_absolute_positions_parameters():
    rel, ab = tiny_model(), tiny_model(positions="absolute")
    rel_names, ab_names = set(dict(rel.named_parameters())), set(dict(ab.named_parameters()))
    gone = {"r_w_bias", "r_r_bias"} | {f"layers.{n}.dec_attn.r_net.weight" for n in range(2)}
    assert gone <= rel_names
    assert ab_names == rel_names - gone  # no W_{k,R}, no u, no v; everything else named as before
    for c in (ab.config, TransformerXLConfig.preset("tiny", vocab_size=65, positions="absolute")):
        assert TransformerXL(c, rng=0).num_parameters() == c.num_parameters()
    c = rel.config
    hd = c.n_head * c.d_head
    assert rel.num_parameters() - ab.num_parameters() == c.n_layer * c.d_model * hd + 2 * hd
    # old configs (saved before the field existed) are relative
    d = rel.config.to_dict()
    assert d.pop("positions") == "relative"
    assert TransformerXLConfig.from_dict(d).positions == "relative"
    assert TransformerXLConfig.from_dict(ab.config.to_dict()) == ab.config


def test_absolute_positions_collide_across_segments():
    """Every segment adds the same U_{1:L}: position i of the memory and position i of the current
    segment carry the same code, so identical text in both gets identical keys and scores."""
    model = tiny_model(positions="absolute", mem_len=10).eval()
    d, t = model.config.d_model, 5
    ids1, ids2 = ids_batch(seed=1), ids_batch(seed=2)
    _, mems1 = model(ids1)
    _, mems2 = model(ids2, mems1)
    h0 = mems2[0]  # layer 0's input, h^0, of both segments: (B, 2t, d)
    emb = model.word_emb.weight.data * math.sqrt(d)
    codes1 = h0[:, :t] - emb[ids1]
    codes2 = h0[:, t:] - emb[ids2]
    u = ref_sinusoid(np.arange(t), d, "interleaved")  # U_{1:L}: positions 0..L-1
    np.testing.assert_allclose(codes1, np.broadcast_to(u, codes1.shape), atol=1e-12)
    np.testing.assert_allclose(codes2, codes1, atol=1e-12)  # the collision
    # The same text repeated: a query cannot tell memory key j from current key j (absolute), while
    # relative positions see them at distances that differ by M.
    _, mem = model(ids1)
    a = model.score_terms(ids1, mem)[0]["scores"]  # (B, H, t, M + t), M = t
    rel = tiny_model(mem_len=10).eval()
    _, rmem = rel(ids1)
    r = rel.score_terms(ids1, rmem)[0]["scores"]
    for i in range(t):
        np.testing.assert_allclose(a[:, :, i, :i + 1], a[:, :, i, t:t + i + 1], atol=1e-12)
        assert not np.allclose(r[:, :, i, :i + 1], r[:, :, i, t:t + i + 1])


def test_absolute_positions_score_terms_have_only_a():
    model = tiny_model(positions="absolute")
    _, mems = model(ids_batch(seed=3))
    layers = model.score_terms(ids_batch(t=3, seed=4), mems)
    for layer in layers:
        assert set(layer) == {"a", "scores", "probs", "mask"}
        mask = layer["mask"]
        np.testing.assert_allclose(layer["a"][..., mask] / math.sqrt(3), layer["scores"][..., mask], rtol=1e-12)


@pytest.mark.parametrize("kw,match", [
    ({"positions": "rotary"}, "positions must be one of"),
    ({"positions": "absolute", "untie_r": True}, "untie_r and clamp_len"),
    ({"positions": "absolute", "clamp_len": 3}, "untie_r and clamp_len"),
])
def test_positions_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        TransformerXLConfig(vocab_size=10, **kw)
