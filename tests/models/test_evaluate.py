"""models/evaluate.py: cached Transformer-XL evaluation and the vanilla sliding window, against
plain loops of single forward passes."""
import numpy as np
import pytest

import minitensor as mt
from models.evaluate import cached_bpc, vanilla_bpc, vanilla_windows
from models.gpt import GPT, GPTConfig
from models.transformer_xl import TransformerXL, TransformerXLConfig

V = 11
IDS = np.random.default_rng(0).integers(0, V, size=60)


def txl(**kw):
    cfg = TransformerXLConfig(vocab_size=V, **{"d_model": 16, "n_layer": 2, "n_head": 2, "d_head": 8, "d_inner": 32,
                                              "tgt_len": 5, "mem_len": 7, **kw})
    return TransformerXL(cfg, rng=3, dtype=np.float64)


def gpt(n_ctx=8):
    return GPT(GPTConfig(vocab_size=V, n_ctx=n_ctx, d_model=16, n_layer=2, n_head=2), rng=3, dtype=np.float64)


def nll(logits, targets):
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], axis=-1).sum()


def test_cached_equals_segments_with_explicitly_passed_memories():
    model = txl()
    model.train()
    rng_state = model.dropout_rng.bit_generator.state
    got = cached_bpc(model, IDS)  # batch 1, segments of tgt_len 5
    assert model.training and model.dropout_rng.bit_generator.state == rng_state  # mode back, no dropout drawn

    model.eval()
    nats, mems, count = 0.0, None, 0
    for a in range(0, 59, 5):  # 59 targets: 11 segments of 5 and one of 4
        x, y = IDS[a:min(a + 5, 59)][None], IDS[a + 1:min(a + 6, 60)][None]
        logits, mems = model.forward(x, mems)
        assert mems[0].shape[1] == min(7, a + x.shape[1])  # the memory grows to mem_len and stays there
        nats += nll(logits.data, y)
        count += y.size
    assert got.n_predicted == count == 59
    assert got.bpc == pytest.approx(nats / count / np.log(2), rel=1e-12)


def test_cached_with_slices_equals_each_slice_alone():
    model = txl(dropout=0.0)
    both = cached_bpc(model, IDS, batch_size=2, seg_len=4)  # 2 slices of 29 targets
    n = 29
    parts = [cached_bpc(model, IDS[b * n:(b + 1) * n + 1], seg_len=4) for b in range(2)]
    assert both.n_predicted == 58 == sum(p.n_predicted for p in parts)
    assert both.nats == pytest.approx(sum(p.nats for p in parts), rel=1e-10)


def test_cached_memory_matters_and_max_segments_counts():
    model = txl()
    with_memory = cached_bpc(model, IDS)
    model.config.mem_len = 0  # the same weights without recurrence: every segment starts afresh
    without = cached_bpc(model, IDS)
    assert with_memory.n_predicted == without.n_predicted
    assert with_memory.bpc != without.bpc
    assert cached_bpc(model, IDS, max_segments=3).n_predicted == 15


def test_a_memory_as_long_as_the_text_equals_one_pass_over_it():
    """``evaluate --mem-len``: the trained weights with another memory. With a memory at least as long as
    the text, every position sees every earlier one, exactly as one segment holding the whole text does."""
    from models.transformer_xl.recipe import RECIPE

    model = txl()  # trained with mem_len 7
    longer = RECIPE.with_memory(model, len(IDS))
    assert longer.config.mem_len == len(IDS) and longer.config.tgt_len == model.config.tgt_len
    assert all(np.array_equal(a, b) for a, b in zip(longer.state_dict().values(), model.state_dict().values()))
    assert RECIPE.with_memory(model, None) is model and RECIPE.with_memory(model, 7) is model
    with mt.no_grad():
        logits, _ = model.eval().forward(IDS[None, :-1], None)  # one pass, no memory needed
    want = nll(logits.numpy(), IDS[None, 1:]) / (len(IDS) - 1) / np.log(2)
    assert cached_bpc(longer, IDS).bpc == pytest.approx(want, rel=1e-12)
    assert cached_bpc(model, IDS).bpc != pytest.approx(want, rel=1e-6)  # 7 positions of memory see less


def test_cached_records_no_graph():
    model = txl()
    seen = []
    original = model.forward

    def spy(ids, mems=None):
        logits, new = original(ids, mems)
        seen.append(logits.requires_grad)
        return logits, new

    model.forward = spy
    cached_bpc(model, IDS)
    assert seen and not any(seen) and mt.is_grad_enabled()


def test_vanilla_equals_a_loop_of_single_window_forwards():
    model = gpt(n_ctx=8)
    model.train()
    got = vanilla_bpc(model, IDS, context=6, windows_per_batch=4)
    assert model.training
    model.eval()
    nats = 0.0
    for t in range(1, 60):  # predict ids[t] from ids[max(0, t-6) : t], only the last position
        window = IDS[max(0, t - 6):t]
        logits = model.forward(window[None]).data[0, -1]
        nats += nll(logits, np.array(IDS[t]))
    assert got.n_predicted == 59
    assert got.bpc == pytest.approx(nats / 59 / np.log(2), rel=1e-10)


def test_vanilla_windows_and_limits():
    first, starts = vanilla_windows(60, 6)
    assert first == 6 and starts[0] == 1 and starts[-1] + 6 == 59  # the last window predicts ids[59]
    model = gpt()
    full = vanilla_bpc(model, IDS, context=8, max_windows=5, include_first=False)
    assert full.n_predicted == 5
    short = vanilla_bpc(model, IDS[:5], context=8)  # shorter than the context: one pass predicts all
    assert short.n_predicted == 4
    with pytest.raises(ValueError, match="n_ctx"):
        vanilla_bpc(model, IDS, context=9)
    with pytest.raises(ValueError, match="nothing to predict"):
        vanilla_bpc(model, IDS[:1])
