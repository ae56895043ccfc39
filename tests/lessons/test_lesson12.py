r"""Checks for lesson 12 (Longformer's sliding window and dilation). Run with `pytest -m lesson12`.

The exercises are the lesson's own functions: ``band_mask`` (the dense (T, T) window rule),
tested against the library's two statements of the rule (``band_key_index``, ``allowed_keys``)
over many shapes and against entries by hand; and ``receptive_field`` (what the top of a stack
hears), tested against the $m w$ and $m d w$ spans, a brute-force path search, and a perturbed
Longformer.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitensor as mt
from minitensor.attention.banded import allowed_keys
from models.longformer import Longformer, LongformerConfig

pytestmark = pytest.mark.lesson12


def rule(t, window, d, causal):
    out = np.zeros((t, t), bool)
    for i in range(t):
        keys, _ = allowed_keys(i, t, window=window, d=d, causal=causal, is_global=np.zeros(t, bool),
                               key_ok=np.ones(t, bool))
        out[i, keys] = True
    return out


# ------------------------------------------------------------------ exercise 1: band_mask

def test_band_mask_by_hand(lesson):
    m = lesson["band_mask"](7, 2)
    assert m.shape == (7, 7) and m.dtype == bool
    np.testing.assert_array_equal(np.nonzero(m[3])[0], [2, 3, 4])
    np.testing.assert_array_equal(np.nonzero(m[0])[0], [0, 1])  # clipped at the start
    np.testing.assert_array_equal(np.nonzero(lesson["band_mask"](9, 4, dilation=2)[4])[0], [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(np.nonzero(lesson["band_mask"](9, 4, dilation=2, causal=True)[4])[0], [0, 2, 4])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 5), st.integers(1, 4), st.booleans())
def test_band_mask_equals_the_library_rule(lesson, t, half, d, causal):
    np.testing.assert_array_equal(lesson["band_mask"](t, 2 * half, d, causal), rule(t, 2 * half, d, causal))


# ------------------------------------------------------------------ exercise 2: receptive_field

def paths(masks):
    """Brute force: the set of inputs each output reaches, one layer at a time with Python sets."""
    t = masks[0].shape[0]
    reach = [{i} for i in range(t)]
    for m in masks:
        reach = [set().union(*(reach[k] for k in np.nonzero(m[i])[0])) for i in range(t)]
    out = np.zeros((t, t), bool)
    for i, js in enumerate(reach):
        out[i, sorted(js)] = True
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.booleans()),
                                    min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_receptive_field_equals_path_search(lesson, t, layers, seed):
    masks = [rule(t, 2 * h, d, causal) for h, d, causal in layers]
    got = lesson["receptive_field"](masks)
    assert got.dtype == bool and got.shape == (t, t)
    np.testing.assert_array_equal(got, paths(masks))


def test_receptive_field_order_matters(lesson):
    # masks[0] is the BOTTOM layer: output i of the stack reaches through masks[-1] first
    t = 8
    a = np.eye(t, k=1, dtype=bool)  # row i sees i + 1
    b = np.eye(t, dtype=bool)
    b[0] = False
    b[0, 5] = True  # row 0 sees 5, every other row itself
    np.testing.assert_array_equal(lesson["receptive_field"]([a, b]), paths([a, b]))
    np.testing.assert_array_equal(lesson["receptive_field"]([b, a]), paths([b, a]))
    assert np.nonzero(paths([a, b])[0])[0].tolist() == [6] and np.nonzero(paths([b, a])[0])[0].tolist() == [1]


@pytest.mark.parametrize("m, w, d", [(1, 8, 1), (3, 8, 1), (3, 4, 2), (2, 6, 3)])
def test_receptive_field_spans_m_d_w(lesson, m, w, d):
    t = 2 * m * d * w + 9
    field = lesson["receptive_field"]([lesson["band_mask"](t, w, d)] * m)
    seen = np.nonzero(field[t // 2])[0]
    assert seen.max() - seen.min() == m * d * w  # the paper's m·d·w
    assert set((seen - t // 2) % d) == {0}  # only the residue class of the row


def test_receptive_field_matches_a_longformer(lesson):
    t, w = 64, 6
    cfg = LongformerConfig(vocab_size=12, d_model=8, n_layer=2, n_head=2, d_ff=16, max_len=t,
                           attention_window=w, dilation=[1, 2], hidden_dropout=0.0)
    model = Longformer(cfg, rng=3, dtype=np.float64).eval()
    ids = np.random.default_rng(0).integers(2, 12, size=(1, t))
    poked = ids.copy()
    poked[0, 30] = 2 if ids[0, 30] != 2 else 3
    with mt.no_grad():
        moved = np.abs(model(poked).numpy()[0] - model(ids).numpy()[0]).max(axis=-1) > 1e-12
    field = lesson["receptive_field"]([lesson["band_mask"](t, w, 1), lesson["band_mask"](t, w, 2)])
    np.testing.assert_array_equal(moved, field[:, 30])
