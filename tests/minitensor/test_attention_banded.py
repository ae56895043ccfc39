"""Banded (Longformer) attention: vectorised == loop reference == dense T×T composition.

Forward output, attention probabilities and every input gradient are compared in
float64; gradcheck on small shapes; the issue's edge cases; errors; and a memory
check that no (T, T) array is ever allocated.
"""
import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minitensor as mt
from minitensor.attention import (
    banded_attention,
    banded_attention_reference,
    banded_weights_to_dense,
    masked_softmax,
)
from minitensor.testing import TOLERANCES, gradcheck

TOL = {"rtol": 1e-10, "atol": 1e-12}  # same float64 arithmetic up to summation order
NAMES = ("q", "k", "v", "q_global", "k_global", "v_global")


def dense_mask(t, window, dilation, causal, glob, key_ok):
    """(B, H, T, T) local-row mask and (B, 1, T, T) global-row mask, built from the rules
    with whole-array comparisons (independent of the band code)."""
    nh = len(dilation)
    d = np.asarray(dilation).reshape(1, nh, 1, 1)
    i = np.arange(t).reshape(1, 1, t, 1)
    j = np.arange(t).reshape(1, 1, 1, t)
    ok = key_ok[:, None, None, :]  # (B, 1, 1, T)
    g = glob[:, None, None, :]
    in_band = ((j - i) % d == 0) & (np.abs(j - i) <= (window // 2) * d) & ok & ~g
    local = in_band | (g & ok)  # band keys that are not global, plus every real global key
    rows = np.broadcast_to(ok, (glob.shape[0], 1, t, t))  # global rows: every real key
    if causal:
        local, rows = local & (j <= i), rows & (j <= i)
    return local, rows


def dense_attention(q, k, v, qg, kg, vg, *, window, dilation, causal, glob, key_ok):
    """The same computation with full (T, T) scores, composed from primitive ops."""
    t, dh = q.shape[2], q.shape[3]
    local_m, rows_m = dense_mask(t, window, dilation, causal, glob, key_ok)
    p_loc = masked_softmax((q @ k.swapaxes(-1, -2)) * (1 / np.sqrt(dh)), local_m)  # (B, H, T, T)
    out = p_loc @ v
    p = p_loc
    if glob.any():
        p_rows = masked_softmax((qg @ kg.swapaxes(-1, -2)) * (1 / np.sqrt(dh)), rows_m)  # (B, H, T, T)
        is_g = glob[:, None, :, None]  # (B, 1, T, 1)
        out = mt.where(is_g, p_rows @ vg, out)
        p = mt.where(is_g, p_rows, p_loc)
    return out, p.data


def make_inputs(seed, b, h, t, dh):
    rng = np.random.default_rng(seed)
    return [mt.tensor(rng.standard_normal((b, h, t, dh)), dtype=np.float64, requires_grad=True) for _ in range(6)]


def grads(fn, tensors, upstream):
    for x in tensors:
        x.grad = None
    out, p = fn()
    out.backward(upstream)
    return out.data, p, [np.zeros_like(x.data) if x.grad is None else x.grad.copy() for x in tensors]


@st.composite
def cases(draw):
    b, h = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    t = draw(st.integers(1, 13))
    window = draw(st.sampled_from((2, 4, 6)))
    if draw(st.booleans()):
        dilation = draw(st.integers(1, 3))
        dil_list = [dilation] * h
    else:
        dilation = dil_list = draw(st.lists(st.sampled_from((1, 2, 4)), min_size=h, max_size=h))
    causal = draw(st.booleans())
    mode = draw(st.sampled_from(("none", "some", "all")))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    glob = {"none": np.zeros((b, t), bool), "some": rng.random((b, t)) < 0.3, "all": np.ones((b, t), bool)}[mode]
    key_ok = rng.random((b, t)) < 0.8 if draw(st.booleans()) else np.ones((b, t), bool)
    return {"b": b, "h": h, "t": t, "window": window, "dilation": dilation, "dil_list": dil_list, "causal": causal,
                "glob": glob, "key_ok": key_ok, "seed": seed}


@settings(max_examples=40)
@given(cases())
def test_banded_equals_reference_and_dense(c):
    b, h, t, dh = c["b"], c["h"], c["t"], 3
    tensors = make_inputs(c["seed"], b, h, t, dh)
    q, k, v, qg, kg, vg = tensors
    kw = {"window": c["window"], "dilation": c["dilation"], "causal": c["causal"], "global_mask": c["glob"],
          "q_global": qg, "k_global": kg, "v_global": vg, "key_padding_mask": c["key_ok"]}
    upstream = np.random.default_rng(c["seed"] + 1).standard_normal((b, h, t, dh))

    def fast():
        out, w = banded_attention(q, k, v, return_weights=True, **kw)
        assert w.band.shape == (b, h, t, c["window"] + 1)
        return out, banded_weights_to_dense(w)

    def ref():
        return banded_attention_reference(q, k, v, return_weights=True, **kw)

    def dense():
        glob = c["glob"] & c["key_ok"]  # padding is never global
        return dense_attention(q, k, v, qg, kg, vg, window=c["window"], dilation=c["dil_list"],
                               causal=c["causal"], glob=glob, key_ok=c["key_ok"])

    o1, p1, g1 = grads(fast, tensors, upstream)
    for other in (ref, dense):
        o2, p2, g2 = grads(other, tensors, upstream)
        np.testing.assert_allclose(o1, o2, **TOL)
        np.testing.assert_allclose(p1, p2, **TOL)
        for name, a, e in zip(NAMES, g1, g2):
            np.testing.assert_allclose(a, e, err_msg=f"gradient of {name}", **TOL)
    # each row's probabilities sum to 1 (or 0 for a row with no allowed key)
    sums = p1.sum(-1)
    assert np.all(np.isclose(sums, 1) | np.isclose(sums, 0))


@settings(max_examples=12)
@given(t=st.integers(1, 6), window=st.sampled_from((2, 4)), dilation=st.sampled_from((1, 2, (1, 3))),
       causal=st.booleans(), with_global=st.booleans(), seed=st.integers(0, 1000))
def test_gradcheck(t, window, dilation, causal, with_global, seed):
    rng = np.random.default_rng(seed)
    tensors = make_inputs(seed, 1, 2, t, 2)
    glob = rng.random((1, t)) < 0.4 if with_global else None
    pad = np.ones((1, t), bool)
    pad[0, -1] = t < 3 or bool(rng.random() < 0.5)

    def fn(q, k, v, qg, kg, vg):
        return banded_attention(q, k, v, window=window, dilation=dilation, causal=causal, global_mask=glob,
                                q_global=qg, k_global=kg, v_global=vg, key_padding_mask=pad)

    assert gradcheck(fn, *tensors)


def test_gradcheck_catches_a_wrong_backward(monkeypatch):
    from minitensor.attention import banded as mod
    tensors = make_inputs(0, 1, 1, 5, 2)[:3]
    real = mod.BandedAttention.backward

    def broken(ctx, grad):
        dq, dk, dv = real(ctx, grad)
        return dq, dk * 1.01, dv  # a 1% error in the key gradient

    monkeypatch.setattr(mod.BandedAttention, "backward", staticmethod(broken))
    with pytest.raises(AssertionError):
        gradcheck(lambda q, k, v: banded_attention(q, k, v, window=2), *tensors)


def check_against_reference(t, window, dilation, glob=None, key_ok=None, causal=False, h=2, seed=3):
    tensors = make_inputs(seed, 1, h, t, 4)
    q, k, v, qg, kg, vg = tensors
    kw = {"window": window, "dilation": dilation, "causal": causal, "global_mask": glob, "q_global": qg,
          "k_global": kg, "v_global": vg, "key_padding_mask": key_ok}
    upstream = np.random.default_rng(seed).standard_normal((1, h, t, 4))
    def fast():
        out, w = banded_attention(q, k, v, return_weights=True, **kw)
        return out, banded_weights_to_dense(w)

    o1, p1, g1 = grads(fast, tensors, upstream)
    o2, p2, g2 = grads(lambda: banded_attention_reference(q, k, v, return_weights=True, **kw), tensors, upstream)
    np.testing.assert_allclose(o1, o2, **TOL)
    np.testing.assert_allclose(p1, p2, **TOL)
    for a, e in zip(g1, g2):
        np.testing.assert_allclose(a, e, **TOL)
    return p1


def test_t_smaller_than_window_is_full_attention():
    # T = 3 < w = 6: every row sees every key, so it is plain softmax attention
    p = check_against_reference(3, 6, 1)
    assert np.all(p > 0)
    tensors = make_inputs(3, 1, 2, 3, 4)
    q, k, v = tensors[:3]
    from minitensor.attention import scaled_dot_product_attention
    np.testing.assert_allclose(banded_attention(q, k, v, window=6).data,
                               scaled_dot_product_attention(q, k, v).data, **TOL)


def test_all_global_rows():
    t = 7
    p = check_against_reference(t, 2, 1, glob=np.ones((1, t), bool))
    assert np.all(p > 0)  # every row is global and sees every key


def test_heads_with_dilation_1_and_4():
    t, w = 13, 4
    p = check_against_reference(t, w, [1, 4])
    i = 6
    assert set(np.nonzero(p[0, 0, i])[0]) == {4, 5, 6, 7, 8}  # head 0: d = 1
    assert set(np.nonzero(p[0, 1, i])[0]) == {6 - 8, 6 - 4, 6, 10, 14} & set(range(t))  # head 1: d = 4


def test_causal_band_is_left_half_and_global_key_counted_once():
    t = 9
    glob = np.zeros((1, t), bool)
    glob[0, 3] = True
    p = check_against_reference(t, 4, 1, glob=glob, causal=True)
    assert set(np.nonzero(p[0, 0, 5])[0]) == {3, 4, 5}
    assert set(np.nonzero(p[0, 0, 2])[0]) == {0, 1, 2}  # the global key 3 is in the future
    tensors = make_inputs(3, 1, 2, t, 4)
    _, w = banded_attention(*tensors[:3], window=4, causal=True, global_mask=glob, q_global=tensors[3],
                            k_global=tensors[4], v_global=tensors[5], return_weights=True)
    # band slot 0 of row 5 is key 5 - 2 = 3, the global key: masked in the band, weighted in to_global
    assert w.band[0, 0, 5, 0] == 0 and w.band[0, 0, 5, 1] > 0
    assert w.to_global[0, 0, 5, 0] > 0


def test_padding_and_empty_rows_give_zeros_not_nan():
    t = 6
    key_ok = np.zeros((1, t), bool)
    key_ok[0, 0] = True  # only key 0 is real
    p = check_against_reference(t, 2, 1, key_ok=key_ok)
    assert np.all(p[..., 1:] == 0)
    assert np.all(p[0, :, 2:].sum(-1) == 0)  # rows 2.. cannot reach key 0 with w = 2
    tensors = make_inputs(0, 1, 1, t, 2)
    out = banded_attention(*tensors[:3], window=2, key_padding_mask=np.zeros((1, t), bool))
    assert np.all(out.data == 0)


def test_float32_matches_float64():
    tensors = make_inputs(5, 2, 2, 11, 4)
    kw = {"window": 4, "dilation": [1, 2]}
    o64 = banded_attention(*tensors[:3], **kw).data
    o32 = banded_attention(*(t.astype(np.float32).detach() for t in tensors[:3]), **kw)
    assert o32.dtype == np.float32
    np.testing.assert_allclose(o32.data, o64, **TOLERANCES["float32"])


@pytest.mark.parametrize("kwargs, err, match", [
    ({"window": 3}, ValueError, "window must be an even positive int"),
    ({"window": 0}, ValueError, "window must be an even positive int"),
    ({"window": 4, "dilation": [1, 2, 3]}, ValueError, "one int per head"),
    ({"window": 4, "dilation": 0}, ValueError, "dilation must be positive"),
    ({"window": 4, "key_padding_mask": np.ones((1, 4), bool)}, ValueError,
     r"key_padding_mask must have shape \(B, T\)"),
    ({"window": 4, "key_padding_mask": np.ones((1, 5), int)}, TypeError, "key_padding_mask must be bool"),
    ({"window": 4, "global_mask": np.ones((1, 5), bool)}, ValueError, "q_global, k_global and v_global"),
])
def test_errors(kwargs, err, match):
    q, k, v = make_inputs(0, 1, 2, 5, 2)[:3]
    with pytest.raises(err, match=match):
        banded_attention(q, k, v, **kwargs)


@pytest.mark.parametrize("attention", [banded_attention, banded_attention_reference])
# a non-integer is refused in both forms, never truncated (1.5 used to run dilation 1, 2.7 dilation 2)
@pytest.mark.parametrize("dilation", [1.5, 2.7, 2.0, np.float64(2), True, np.True_, "2", None, 1 + 0j,
                                      [1, 1.5], (2.0, 1), np.array([1.0, 2.0]), np.array([True, True]),
                                      # a bool inside the list form used to pass as 1 (np.asarray([True, 1]) is int)
                                      [True, 1], (1, np.True_), [[1, 2]], [[1], 2]])
def test_dilation_must_be_integers_in_both_forms_and_both_functions(attention, dilation):
    q, k, v = make_inputs(0, 1, 2, 5, 2)[:3]
    expected = rf"{attention.__name__}: dilation must be an int or one int per head \(2 heads\), got "
    with pytest.raises(ValueError, match=expected + re.escape(repr(dilation))):
        attention(q, k, v, window=2, dilation=dilation)


@pytest.mark.parametrize("attention", [banded_attention, banded_attention_reference])
def test_dilation_takes_python_and_numpy_integers(attention):
    q, k, v = make_inputs(0, 1, 2, 7, 2)[:3]
    want = attention(q, k, v, window=2, dilation=[2, 2]).data
    for dilation in (2, np.int64(2), np.uint8(2), np.array(2), (2, 2), [np.int32(2), 2], np.array([2, 2])):
        np.testing.assert_array_equal(attention(q, k, v, window=2, dilation=dilation).data, want)


def test_errors_on_shapes_and_dtypes():
    q, k, v = make_inputs(0, 1, 2, 5, 2)[:3]
    with pytest.raises(ValueError, match="q, k, v must all be"):
        banded_attention(q, k[:, :, :4], v, window=2)
    with pytest.raises(TypeError, match="floating dtype"):
        banded_attention(q, k.astype(np.float32), v, window=2)
    with pytest.raises(ValueError, match="k_global must be a Tensor shaped like q"):
        banded_attention(q, k, v, window=2, global_mask=np.ones((1, 5), bool), q_global=q, k_global=k[:, :1],
                         v_global=v)


def test_memory_is_linear_no_t_by_t_array():
    t, w = 4096, 8
    rng = np.random.default_rng(0)
    q, k, v, qg, kg, vg = [mt.tensor(rng.standard_normal((1, 1, t, 4)), dtype=np.float64, requires_grad=True)
                           for _ in range(6)]
    glob = np.zeros((1, t), bool)
    glob[0, [0, 100, 4000]] = True
    tracemalloc.start()
    try:
        out = banded_attention(q, k, v, window=w, dilation=2, global_mask=glob, q_global=qg, k_global=kg,
                               v_global=vg)
        out.sum().backward()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    t_by_t = t * t * 8  # 128 MiB: one float64 (T, T) array
    assert peak < t_by_t / 16, f"peak {peak / 2**20:.1f} MiB"
    assert np.isfinite(q.grad).all() and np.abs(kg.grad).sum() > 0


@pytest.mark.parametrize("causal", [False, True])
def test_longer_sequence_many_chunks_equals_dense(causal):
    # w = 16 -> chunks of c = 4 rows with 5 key chunks each; T = 97 is a multiple of nothing
    b, h, t, dh, w = 2, 2, 97, 3, 16
    tensors = make_inputs(11, b, h, t, dh)
    q, k, v, qg, kg, vg = tensors
    rng = np.random.default_rng(11)
    glob = rng.random((b, t)) < 0.05
    key_ok = np.ones((b, t), bool)
    key_ok[1, 80:] = False  # the second sequence is padded at the end
    upstream = rng.standard_normal((b, h, t, dh))

    def fast():
        out, wts = banded_attention(q, k, v, window=w, dilation=[1, 3], causal=causal, global_mask=glob,
                                    q_global=qg, k_global=kg, v_global=vg, key_padding_mask=key_ok,
                                    return_weights=True)
        return out, banded_weights_to_dense(wts)

    def dense():
        return dense_attention(q, k, v, qg, kg, vg, window=w, dilation=[1, 3], causal=causal,
                               glob=glob & key_ok, key_ok=key_ok)

    o1, p1, g1 = grads(fast, tensors, upstream)
    o2, p2, g2 = grads(dense, tensors, upstream)
    np.testing.assert_allclose(o1, o2, **TOL)
    np.testing.assert_allclose(p1, p2, **TOL)
    for name, a, e in zip(NAMES, g1, g2):
        np.testing.assert_allclose(a, e, err_msg=f"gradient of {name}", **TOL)
