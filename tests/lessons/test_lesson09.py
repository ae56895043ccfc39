r"""Checks for lesson 09 (Transformer-XL segment recurrence). Run with `pytest -m lesson09`.

The exercises: ``concat_memory`` in minitensor/attention/masked.py ($\tilde h = [\mathrm{SG}(m)
\circ h]$: values, no gradient to the memory, no graph kept), tested directly and through
``TransformerXL``; and the lesson's ``longest_dependency`` (the lesson is executed once per
module with runpy), tested against an independent dependency-set computation over a stream.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitensor as mt
from minitensor.attention import causal_mask, concat_memory
from models.transformer_xl import TransformerXL, TransformerXLConfig

pytestmark = pytest.mark.lesson09


def graph_contexts(t):
    seen, stack = {}, [t]
    while stack:
        node = stack.pop()
        ctx = node._ctx
        if ctx is None or id(ctx) in seen:
            continue
        seen[id(ctx)] = ctx
        stack.extend(p for p in ctx.parents if isinstance(p, mt.Tensor))
    return seen


# ------------------------------------------------------------------ exercise 1: concat_memory

@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4))
def test_concat_memory_values_and_stop_gradient(seed, b, m, t, d):
    rng = np.random.default_rng(seed)
    mem = mt.tensor(rng.standard_normal((b, m, d)), requires_grad=True)
    h = mt.tensor(rng.standard_normal((b, t, d)), requires_grad=True)
    out = concat_memory(mem, h)
    assert out.shape == (b, m + t, d)
    np.testing.assert_array_equal(out.numpy(), np.concatenate([mem.numpy(), h.numpy()], axis=1))
    w = rng.standard_normal(out.shape)
    (out * mt.tensor(w)).sum().backward()
    assert mem.grad is None, "SG(m): no gradient may reach the memory"
    np.testing.assert_array_equal(h.grad, w[:, m:])  # the segment's gradient is untouched


def test_concat_memory_accepts_arrays_and_none():
    h = mt.tensor(np.ones((1, 2, 3)), requires_grad=True)
    assert concat_memory(None, h) is h
    out = concat_memory(np.zeros((1, 4, 3)), h)
    assert out.shape == (1, 6, 3) and out.requires_grad
    np.testing.assert_array_equal(out.numpy()[:, :4], 0.0)


def test_concat_memory_keeps_no_graph_of_the_memory():
    x = mt.tensor(np.arange(6.0).reshape(1, 2, 3), requires_grad=True)
    mem = x * 2.0  # a memory computed by a graph, as a previous segment's hidden states are
    h = mt.tensor(np.ones((1, 2, 3)), requires_grad=True)
    out = concat_memory(mem, h)
    assert id(mem._ctx) not in graph_contexts(out), "the memory's graph must not be reachable from h~"
    out.sum().backward()
    assert x.grad is None and mem.grad is None
    np.testing.assert_array_equal(out.numpy()[:, :2], 2 * x.numpy())


def test_concat_memory_shape_errors_still_clear():
    with pytest.raises(ValueError, match="concat_memory"):
        concat_memory(np.zeros((1, 2, 4)), mt.tensor(np.zeros((1, 2, 3))))


def test_transformer_xl_memory_gets_no_gradient_and_is_carried():
    cfg = TransformerXLConfig(vocab_size=7, d_model=8, n_layer=2, n_head=2, d_head=4, d_inner=16, tgt_len=3,
                              mem_len=3, dropout=0.0)
    model = TransformerXL(cfg, rng=0, dtype=np.float64)
    ids = np.random.default_rng(0).integers(0, 7, size=(2, 6))
    _, mems = model(ids[:, :3])
    mems_t = [mt.tensor(m, requires_grad=True) for m in mems]
    loss, new = model.loss(ids[:, 3:], ids[:, 3:], mems_t)
    loss.backward()
    assert all(m.grad is None for m in mems_t)
    assert all(isinstance(m, np.ndarray) for m in new)
    # the memory is used: a different memory gives different logits
    other = [m + 1.0 for m in mems]
    assert np.abs(model(ids[:, 3:], mems)[0].numpy() - model(ids[:, 3:], other)[0].numpy()).max() > 1e-6


# ------------------------------------------------------------------ exercise 2: longest_dependency

def reach_by_dependency_sets(n_layer, seg_len, mem_len, n_seg):
    """Independent: which tokens each position depends on, as boolean sets, over a stream."""
    length = n_seg * seg_len
    dep = np.eye(length, dtype=bool)  # layer 0: each position depends on its own token
    p = np.arange(length)
    start = p - p % seg_len
    for _ in range(n_layer):
        keys = (p[None, :] >= (start - mem_len)[:, None]) & (p[None, :] <= p[:, None])  # (query, key) allowed
        dep = (keys.astype(np.int64) @ dep.astype(np.int64)) > 0
    oldest = np.argmax(dep, axis=1)
    return p - oldest


@pytest.mark.parametrize("n_layer,seg_len,mem_len", [(1, 4, 0), (2, 4, 0), (3, 4, 2), (3, 4, 4), (3, 4, 6),
                                                     (2, 3, 7), (4, 5, 3), (2, 1, 1), (3, 2, 5)])
def test_longest_dependency_matches_dependency_sets(lesson, n_layer, seg_len, mem_len):
    reach = np.asarray(lesson["longest_dependency"](n_layer, seg_len, mem_len))
    assert reach.shape == (n_layer + 1, seg_len)
    assert np.issubdtype(reach.dtype, np.integer)
    np.testing.assert_array_equal(reach[0], 0)
    n_seg = 2 + (n_layer * (mem_len + seg_len)) // seg_len + 2  # long enough to reach the steady state
    for n in range(1, n_layer + 1):
        stream_reach = reach_by_dependency_sets(n, seg_len, mem_len, n_seg)
        np.testing.assert_array_equal(stream_reach[-seg_len:], reach[n], err_msg=f"layer {n}")


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.data())
def test_longest_dependency_closed_form(lesson, n_layer, seg_len, data):
    mem_len = data.draw(st.integers(0, seg_len))
    reach = np.asarray(lesson["longest_dependency"](n_layer, seg_len, mem_len))
    i = np.arange(seg_len)
    expected = i if mem_len == 0 else i + (n_layer - 1) * seg_len + mem_len
    np.testing.assert_array_equal(reach[n_layer], expected)


# ------------------------------------------------------------------ the lesson's facts

def test_lesson_context_fragmentation(lesson):
    ln_v = np.log(lesson["V_FRAG"])
    cross = slice(0, lesson["PERIOD"] - 1)
    vanilla, xl = lesson["frag_vanilla"], lesson["frag_xl"]
    assert vanilla[1:, cross].mean() > ln_v - 0.1, "the vanilla model cannot beat chance across a boundary"
    assert xl[1:, cross].mean() < 0.3, "with the memory the cross-boundary positions are predictable"
    assert xl[0, cross].mean() > ln_v - 0.1  # the first segment has an empty memory
    assert vanilla[:, lesson["PERIOD"]:].mean() < 1.0  # inside a segment the vanilla model copies too
    assert lesson["vanilla_cross_boundary_change"] == 0.0
    assert lesson["xl_cross_boundary_change"] > 1e-3
    assert lesson["vanilla_mem_len"] == 0


def test_lesson_cache_and_mask(lesson):
    assert lesson["mask_matches_model"]
    m, t = lesson["M_DEMO"], lesson["L_DEMO"]
    np.testing.assert_array_equal(lesson["xl_mask"], causal_mask(t, m + t, offset=m))
    assert lesson["xl_mask"][:, :m].all()  # every query sees the whole memory
    assert lesson["out_demo"].shape == (1, t, lesson["D_DEMO"])
    assert lesson["two_segment_diff"] < 1e-12


def test_lesson_receptive_field_measured_equals_predicted(lesson):
    fields = lesson["receptive_field"]
    assert set(fields) == {0, 2, 4, 6}
    for m, (moved, predicted) in fields.items():
        np.testing.assert_array_equal(moved, predicted, err_msg=f"M = {m}")
    far = {m: int(np.nonzero(moved)[0].max()) - lesson["P0"] for m, (moved, _) in fields.items()}
    assert far[0] < far[2] < far[4] < far[6]
    assert lesson["closed_form_ok"]
    assert lesson["reach_table"][4] == [15, 71, 79, 143]


def test_lesson_stop_gradient_and_graph(lesson):
    assert lesson["sg_memory_grad"] is None
    assert np.all(lesson["sg_segment_grad"] == 1) and np.all(lesson["plain_memory_grad"] == 1)
    assert lesson["model_memory_grads"] == [None] * 3
    assert lesson["weight_grad_norm"] > 0
    sg, no_sg = lesson["graph_sizes_sg"], lesson["graph_sizes_no_sg"]
    assert len(set(sg[1:])) == 1, "with SG every segment's graph has the same size"
    assert no_sg[0] == sg[0]
    n = lesson["N_GRAPH"]
    assert all(a < b for a, b in zip(no_sg[:n], no_sg[1:n])), "without SG the graph grows for N segments"
    assert no_sg[-1] > 2 * sg[-1]
    assert lesson["graph_freed"]
