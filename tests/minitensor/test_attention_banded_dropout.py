"""Attention-probability dropout in banded attention: the fused op against the loop reference and
against a dense (T, T) composition that applies the SAME keep mask, gradchecks with a fixed mask."""
import numpy as np
import pytest
from test_attention_banded import dense_mask, make_inputs

import minitensor as mt
from minitensor.attention import masked_softmax
from minitensor.attention.banded import (
    BandedKeep,
    band_key_index,
    banded_attention,
    banded_attention_reference,
    banded_dropout_mask,
)
from minitensor.testing import gradcheck

TOL = {"rtol": 1e-10, "atol": 1e-12}
B, H, T, DH, W = 2, 2, 11, 3, 4
DIL = (1, 2)


def globals_mask():
    g = np.zeros((B, T), bool)
    g[0, [2, 7]] = True
    g[1, 5] = True  # fewer globals in row 1: its second global slot is padding
    return g


def dense_keep(keep, glob, dilation, window):
    """(B, H, T, T) keep matrices of local rows and of global rows, written from the BandedKeep layout."""
    loc = np.zeros((B, H, T, T))
    rows = np.zeros((B, H, T, T))
    idx = band_key_index(T, window, dilation)  # (H, T, w+1)
    for b in range(B):
        gpos = np.nonzero(glob[b])[0]
        for h in range(H):
            for i in range(T):
                for j in range(window + 1):
                    m = idx[h, i, j]
                    if 0 <= m < T and not glob[b, m]:
                        loc[b, h, i, m] = keep.band[b, h, i, j]
                for s, m in enumerate(gpos):
                    loc[b, h, i, m] = keep.to_global[b, h, i, s]
                    rows[b, h, m, :] = keep.from_global[b, h, s, :]
    return loc, rows


def dense_dropout_attention(q, k, v, qg, kg, vg, keep, p, *, causal, glob):
    """Composed twin: full (T, T) masked softmaxes, then P ⊙ M / (1 - p), then the values."""
    key_ok = np.ones((B, T), bool)
    local_m, rows_m = dense_mask(T, W, DIL, causal, glob, key_ok)
    k_loc, k_rows = dense_keep(keep, glob, DIL, W)
    s = 1.0 / np.sqrt(DH)
    p_loc = masked_softmax((q @ k.swapaxes(-1, -2)) * s, local_m) * (k_loc / (1 - p))
    p_rows = masked_softmax((qg @ kg.swapaxes(-1, -2)) * s, rows_m) * (k_rows / (1 - p))
    return mt.where(glob[:, None, :, None], p_rows @ vg, p_loc @ v)


def _grads(out, xs, up):
    for x in xs:
        x.grad = None
    out.backward(up)
    return [x.grad.copy() for x in xs]


@pytest.mark.parametrize("causal", [False, True])
def test_fused_equals_dense_composition_and_reference_with_the_same_mask(causal):
    xs = make_inputs(0, B, H, T, DH)
    glob, p = globals_mask(), 0.3
    keep = banded_dropout_mask(np.random.default_rng(7), p, shape=(B, H, T, DH), window=W, n_global=2)
    kw = {"window": W, "dilation": DIL, "causal": causal, "global_mask": glob, "q_global": xs[3],
          "k_global": xs[4], "v_global": xs[5], "dropout": p}
    up = np.random.default_rng(1).standard_normal((B, H, T, DH))
    fused = banded_attention(*xs[:3], dropout_mask=keep, **kw)
    g_fused = _grads(fused, xs, up)
    dense = dense_dropout_attention(*xs, keep, p, causal=causal, glob=glob)
    g_dense = _grads(dense, xs, up)
    ref = banded_attention_reference(*xs[:3], dropout_mask=keep, **kw)
    g_ref = _grads(ref, xs, up)
    np.testing.assert_allclose(fused.data, dense.data, **TOL)
    np.testing.assert_allclose(fused.data, ref.data, **TOL)
    for a, b_, c in zip(g_fused, g_dense, g_ref):
        np.testing.assert_allclose(a, b_, **TOL)
        np.testing.assert_allclose(a, c, **TOL)
    # a generator seeded alike draws the same mask inside the op (the documented draw order)
    drawn = banded_attention(*xs[:3], rng=np.random.default_rng(7), **kw)
    np.testing.assert_array_equal(drawn.data, fused.data)
    assert not np.allclose(fused.data, banded_attention(*xs[:3], **{**kw, "dropout": 0.0}).data)


@pytest.mark.parametrize("with_global", [False, True])
def test_gradcheck_with_a_fixed_mask(with_global):
    xs = make_inputs(2, B, H, 9, DH)
    glob = np.zeros((B, 9), bool)
    if with_global:
        glob[0, 1] = glob[1, [4, 6]] = True
    p = 0.4
    keep = banded_dropout_mask(np.random.default_rng(3), p, shape=(B, H, 9, DH), window=W,
                               n_global=int(glob.sum(1).max()))
    extra = {"global_mask": glob, "q_global": xs[3], "k_global": xs[4], "v_global": xs[5]} if with_global else {}

    def fn(q, k, v, *g):
        e = {**extra, **dict(zip(("q_global", "k_global", "v_global"), g))}
        return banded_attention(q, k, v, window=W, dilation=DIL, dropout=p, dropout_mask=keep, **e)

    assert gradcheck(fn, *(xs if with_global else xs[:3]))


def test_p0_is_identical_to_no_dropout_and_draws_nothing():
    xs = make_inputs(4, B, H, T, DH)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    a = banded_attention(*xs[:3], window=W, dilation=DIL, dropout=0.0, rng=rng)
    b = banded_attention(*xs[:3], window=W, dilation=DIL)
    np.testing.assert_array_equal(a.data, b.data)
    assert rng.bit_generator.state == state  # no mask drawn


def test_rate_and_inverted_scale():
    p = 0.25
    keep = banded_dropout_mask(np.random.default_rng(0), p, shape=(4, 4, 256, 8), window=16, n_global=3)
    for m in keep:
        assert m.dtype == np.bool_
        assert abs((~m).mean() - p) < 0.02
    # expectation is unchanged: averaging outputs over many masks approaches the no-dropout output
    xs = make_inputs(5, 1, 1, 8, 2)
    rng = np.random.default_rng(1)
    mean = np.mean([banded_attention(*xs[:3], window=4, dropout=p, rng=rng).data for _ in range(3000)], axis=0)
    np.testing.assert_allclose(mean, banded_attention(*xs[:3], window=4).data, atol=0.05)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, True, "0.1"])
def test_bad_rate_is_a_value_error(p):
    xs = make_inputs(0, 1, 1, 5, 2)
    with pytest.raises(ValueError, match="dropout must be a probability"):
        banded_attention(*xs[:3], window=2, dropout=p)
    with pytest.raises(ValueError, match="dropout must be a probability"):
        banded_attention_reference(*xs[:3], window=2, dropout=p)


def test_bad_mask_errors():
    xs = make_inputs(0, 1, 1, 5, 2)
    keep = banded_dropout_mask(np.random.default_rng(0), 0.5, shape=(1, 1, 5, 2), window=2, n_global=0)
    with pytest.raises(ValueError, match="dropout is 0"):
        banded_attention(*xs[:3], window=2, dropout_mask=keep)
    bad = BandedKeep(keep.band[..., :2], keep.to_global, keep.from_global)
    with pytest.raises(ValueError, match=r"dropout_mask\.band must be a bool array of shape \(1, 1, 5, 3\)"):
        banded_attention(*xs[:3], window=2, dropout=0.5, dropout_mask=bad)
