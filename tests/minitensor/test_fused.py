r"""The fused ops against their composed twins, and where fusing must win.

Each fused op (linear, softmax, log-softmax, cross-entropy, layer norm, tanh-GELU, dropout) has a
hand-derived backward. Its twin below is built only from primitive tensor ops
(exp, log, sum, max, mean, tanh, pow, indexing...), so autograd derives the
twin's backward independently. In float64 both must agree on the forward value
and on the gradient of EVERY input, for a random upstream gradient.

Then numerical stability: logits around $10^4$ overflow a naive $e^{x}$, and
$\log(\mathrm{softmax})$ underflows to $-\infty$ for very negative logits; the
fused versions must give finite, correct values without any floating-point warning.
"""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import arrays, layouts, relayout, shapes

import minitensor as mt
import minitensor.functional as F

# Both sides compute the same float64 quantities in a different order; the
# differences are rounding (~1e-15 relative). 1e-9 leaves a wide margin while
# any wrong term in a hand-derived backward shows up as an O(1) error.
TWIN = {"rtol": 1e-9, "atol": 1e-11}

IGNORE = -100


# ====================================================================== composed twins

def softmax_composed(x, axis=-1):
    # shift by the max (not detached: its gradient must cancel out on its own)
    e = (x - x.max(axis=axis, keepdims=True)).exp()
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_composed(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()


def cross_entropy_composed(logits, targets, ignore_index=None, reduction="mean"):
    n_classes = logits.shape[-1]
    rows = logits.reshape(-1, n_classes)  # (N, C)
    t = np.asarray(targets).reshape(-1)
    valid = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    safe = np.where(valid, t, 0)
    picked = log_softmax_composed(rows)[np.arange(t.size), safe]  # integer-array indexing: (N,)
    nll = -picked * mt.Tensor(valid.astype(logits.dtype))
    if reduction == "none":
        return nll.reshape(*logits.shape[:-1])
    total = nll.sum()
    return total / float(valid.sum()) if reduction == "mean" else total


def layer_norm_composed(x, weight=None, bias=None, eps=1e-5):
    centred = x - x.mean(axis=-1, keepdims=True)
    var = (centred * centred).mean(axis=-1, keepdims=True)
    y = centred * (var + eps) ** -0.5
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def gelu_tanh_composed(x):
    k = math.sqrt(2 / math.pi)
    return 0.5 * x * (1 + mt.tanh(k * (x + 0.044715 * x**3)))


# ====================================================================== comparison helper

def same_forward_and_grads(fused, composed, *arrays_in, seed=0):
    """Run both on fresh float64 leaves with the same upstream gradient; compare output and every input grad."""
    results = []
    for fn in (fused, composed):
        inputs = [mt.Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays_in]
        out = fn(*inputs)
        upstream = np.random.default_rng(seed).standard_normal(out.shape)
        out.backward(upstream)
        results.append((out.numpy(), [t.grad for t in inputs]))
    (out_f, grads_f), (out_c, grads_c) = results
    assert out_f.shape == out_c.shape
    np.testing.assert_allclose(out_f, out_c, **TWIN, err_msg="forward")
    for i, (gf, gc) in enumerate(zip(grads_f, grads_c)):
        assert gf is not None and gc is not None, f"input {i} got no gradient"
        assert gf.shape == arrays_in[i].shape
        np.testing.assert_allclose(gf, gc, **TWIN, err_msg=f"gradient of input {i}")


def draw_array(data, shape, label="x", scale=1.0):
    a = data.draw(arrays(shape), label=label) * scale
    return relayout(a, data.draw(layouts(), label=f"{label} layout"))


# ====================================================================== fused == composed

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_family_matches_composed(name, data):
    shape = data.draw(shapes(min_dims=1), label="shape")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    # scale up to 10: peaked distributions too, where p is near 0 and 1
    x = draw_array(data, shape, scale=data.draw(st.sampled_from([1.0, 10.0]), label="scale"))
    fused = {"softmax": F.softmax, "log_softmax": F.log_softmax}[name]
    composed = {"softmax": softmax_composed, "log_softmax": log_softmax_composed}[name]
    same_forward_and_grads(lambda t: fused(t, axis=axis), lambda t: composed(t, axis=axis), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(data=st.data(), use_ignore=st.booleans())
def test_cross_entropy_matches_composed(reduction, data, use_ignore):
    lead = data.draw(shapes(min_dims=1, max_dims=2), label="leading dims")
    n_classes = data.draw(st.integers(1, 5), label="classes")
    z = draw_array(data, (*lead, n_classes), label="logits", scale=data.draw(st.sampled_from([1.0, 10.0])))
    targets = data.draw(hnp.arrays(np.int64, lead, elements=st.integers(0, n_classes - 1)), label="targets")
    ignore_index = None
    if use_ignore:
        ignore_index = IGNORE
        drop = data.draw(hnp.arrays(np.bool_, lead), label="ignored rows")
        if reduction == "mean" and drop.all():
            drop.flat[0] = False  # keep one row: the mean over none is an error
        targets = np.where(drop, IGNORE, targets)
    same_forward_and_grads(
        lambda t: F.cross_entropy(t, targets, ignore_index=ignore_index, reduction=reduction),
        lambda t: cross_entropy_composed(t, targets, ignore_index=ignore_index, reduction=reduction),
        z)


@pytest.mark.parametrize("affine", ["weight_and_bias", "weight", "bias", "none"])
@given(data=st.data())
def test_layer_norm_matches_composed(affine, data):
    lead = data.draw(shapes(max_dims=2), label="leading dims")
    d = data.draw(st.integers(1, 5), label="features")
    eps = data.draw(st.sampled_from([1e-5, 1e-2]), label="eps")
    x = draw_array(data, (*lead, d))
    w = draw_array(data, (d,), label="weight") if "weight" in affine else None
    b = draw_array(data, (d,), label="bias") if "bias" in affine else None
    params = [p for p in (w, b) if p is not None]

    def unpack(ts):
        it = iter(ts[1:])
        return ts[0], (next(it) if w is not None else None), (next(it) if b is not None else None)

    def fused(*ts):
        x_, w_, b_ = unpack(ts)
        return F.layer_norm(x_, w_, b_, eps=eps)

    def composed(*ts):
        x_, w_, b_ = unpack(ts)
        return layer_norm_composed(x_, w_, b_, eps=eps)

    same_forward_and_grads(fused, composed, x, *params)


@given(data=st.data())
def test_gelu_tanh_matches_composed(data):
    # wider than the default bound: the tanh saturates on both sides
    x = draw_array(data, data.draw(shapes(), label="shape"), scale=3.0)
    same_forward_and_grads(F.gelu, gelu_tanh_composed, x)


def dropout_composed(x, p, seed):
    # the mask drawn as F.dropout draws it, applied as a product with a constant tensor
    keep = np.random.default_rng(seed).random(x.shape, dtype=x.dtype) >= p
    return x * mt.Tensor(keep * x.dtype.type(1.0 / (1.0 - p)))


@pytest.mark.parametrize("p", [0.1, 0.5])
@given(data=st.data())
def test_dropout_matches_composed(p, data):
    x = draw_array(data, data.draw(shapes(), label="shape"))
    seed = data.draw(st.integers(0, 2**16), label="seed")
    same_forward_and_grads(lambda t: F.dropout(t, p, rng=np.random.default_rng(seed)),
                           lambda t: dropout_composed(t, p, seed), x)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_float32_stays_float32_and_matches_composed_exactly(p):
    x = mt.tensor(np.random.default_rng(1).standard_normal((4, 5, 6)).astype(np.float32), requires_grad=True)
    y = F.dropout(x, p, rng=np.random.default_rng(2))
    y.backward(np.ones(y.shape, np.float32))
    ref = dropout_composed(mt.tensor(x.numpy()), p, 2)
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), ref.numpy())


@pytest.mark.parametrize("with_bias", [True, False])
@given(data=st.data())
def test_linear_matches_composed(with_bias, data):
    lead = data.draw(shapes(max_dims=3), label="leading dims")
    n_in, n_out = data.draw(st.integers(1, 5), label="in"), data.draw(st.integers(1, 5), label="out")
    x = draw_array(data, (*lead, n_in))
    w = draw_array(data, (n_out, n_in), label="weight")
    params = [w] + ([draw_array(data, (n_out,), label="bias")] if with_bias else [])
    same_forward_and_grads(lambda *ts: F.linear(*ts),
                           lambda x_, w_, *b_: x_ @ w_.T + b_[0] if b_ else x_ @ w_.T, x, *params)


@given(data=st.data())
def test_linear_gradcheck(data):
    lead = data.draw(shapes(max_dims=2), label="leading dims")
    x, w, b = (mt.Tensor(draw_array(data, s, label=n).astype(np.float64), requires_grad=True)
               for n, s in (("x", (*lead, 3)), ("weight", (2, 3)), ("bias", (2,))))
    assert mt.testing.gradcheck(F.linear, x, w, b)


def test_linear_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 4\) does not fit a weight of shape \(3, 5\)"):
        F.linear(mt.zeros(2, 4), mt.zeros(3, 5))
    with pytest.raises(ValueError, match=r"linear: bias has shape \(2,\), expected \(3,\)"):
        F.linear(mt.zeros(2, 5), mt.zeros(3, 5), mt.zeros(2))


def test_composed_twins_are_not_vacuous():
    """The twins themselves are right: they match plain NumPy on a fixed input."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    t = mt.Tensor(x)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(softmax_composed(t).numpy(), p, rtol=1e-12)
    np.testing.assert_allclose(log_softmax_composed(t).numpy(), np.log(p), rtol=1e-12)
    targets = np.array([0, 3, 1])
    np.testing.assert_allclose(cross_entropy_composed(t, targets).item(),
                               -np.log(p[np.arange(3), targets]).mean(), rtol=1e-12)
    xc = x - x.mean(-1, keepdims=True)
    np.testing.assert_allclose(layer_norm_composed(t).numpy(),
                               xc / np.sqrt((xc**2).mean(-1, keepdims=True) + 1e-5), rtol=1e-12)


# ====================================================================== numerical stability

# Overflow, 0/0 and log(0) raise; underflow of exp(-huge) to 0 is the correct answer.
NO_FP_ERRORS = {"over": "raise", "invalid": "raise", "divide": "raise", "under": "ignore"}


def _stable_log_softmax_np(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


# Logits around 1e4: exp overflows float64 (limit ~709) and float32 (~88).
BIG = np.array([[1.0e4, 1.0e4 + 1.0, 1.0e4 - 2.0, 9.0e3],
                [-1.0e4, 0.0, 1.0e4, 1.0e4],
                [5.0e3, -5.0e3, 5.0e3 + 0.5, 0.0]])
BIG_TARGETS = np.array([1, 0, 3])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_huge_logits_softmax_and_log_softmax_stay_finite(dtype):
    # the naive formula really does break here, so the check below means something
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(BIG.astype(dtype)) / np.exp(BIG.astype(dtype)).sum(-1, keepdims=True)
    assert not np.all(np.isfinite(naive))

    expected_log = _stable_log_softmax_np(BIG)
    with warnings.catch_warnings(), np.errstate(**NO_FP_ERRORS):
        warnings.simplefilter("error")
        x = mt.tensor(BIG, dtype=dtype, requires_grad=True)
        p = F.softmax(x)
        log_p = F.log_softmax(x)
        (p * mt.tensor(np.arange(4.0), dtype=dtype)).sum().backward()
        grad_softmax = x.grad.copy()
        x.grad = None
        log_p.sum().backward()
    # float32 keeps ~7 digits; log p reaches -2e4 there, so its tolerance is relative
    tol = {"rtol": 1e-12, "atol": 1e-15} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    assert np.all(np.isfinite(p.numpy())) and np.all(np.isfinite(log_p.numpy()))
    np.testing.assert_allclose(p.numpy(), np.exp(expected_log), **tol)
    np.testing.assert_allclose(log_p.numpy(), expected_log, **tol)
    # d/dx of sum_i i * p_i is p * (i - E_p[i]); d/dx of sum log p is 1 - C * p
    pe = np.exp(expected_log)
    np.testing.assert_allclose(grad_softmax, pe * (np.arange(4.0) - (pe * np.arange(4.0)).sum(-1, keepdims=True)),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(x.grad, 1 - 4 * pe, rtol=1e-4, atol=1e-6)


def test_log_softmax_beats_log_of_softmax():
    """Where softmax underflows to exactly 0, log(softmax) is -inf; the fused log_softmax is exact."""
    x = mt.tensor(np.array([[0.0, -1.0e4, -800.0]]), requires_grad=True)
    with np.errstate(divide="ignore"):
        naive = np.log(F.softmax(x).numpy())
    assert np.isneginf(naive).any()
    with warnings.catch_warnings(), np.errstate(**NO_FP_ERRORS):
        warnings.simplefilter("error")
        y = F.log_softmax(x)
        y.sum().backward()
    np.testing.assert_allclose(y.numpy(), [[0.0, -1.0e4, -800.0]], rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(x.grad, [[1 - 3.0, 1.0, 1.0]], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_huge_logits_cross_entropy(dtype, reduction):
    expected_log = _stable_log_softmax_np(BIG)
    nll = -expected_log[np.arange(3), BIG_TARGETS]  # row 1 picks a logit 2e4 below the max
    expected = {"mean": nll.mean(), "sum": nll.sum(), "none": nll}[reduction]
    with warnings.catch_warnings(), np.errstate(**NO_FP_ERRORS):
        warnings.simplefilter("error")
        z = mt.tensor(BIG, dtype=dtype, requires_grad=True)
        loss = F.cross_entropy(z, BIG_TARGETS, reduction=reduction)
        loss.backward(np.ones(loss.shape, dtype=dtype))
    assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(z.grad))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(loss.numpy(), expected, rtol=rtol)
    scale = 1 / 3 if reduction == "mean" else 1.0
    expected_grad = (np.exp(expected_log) - np.eye(4)[BIG_TARGETS]) * scale
    np.testing.assert_allclose(z.grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_huge_logits_cross_entropy_with_ignore_index():
    targets = np.array([1, IGNORE, 3])
    with warnings.catch_warnings(), np.errstate(**NO_FP_ERRORS):
        warnings.simplefilter("error")
        z = mt.tensor(BIG, requires_grad=True)
        loss = F.cross_entropy(z, targets, ignore_index=IGNORE)
        loss.backward()
    log_p = _stable_log_softmax_np(BIG)
    np.testing.assert_allclose(loss.item(), -(log_p[0, 1] + log_p[2, 3]) / 2, rtol=1e-12)
    np.testing.assert_array_equal(z.grad[1], 0.0)
    assert np.all(np.isfinite(z.grad))


def test_layer_norm_large_offset_and_constant_rows():
    """A huge common offset cancels before squaring, and a constant row gives 0, not NaN."""
    x = np.array([[1.0e6 + 1.0, 1.0e6 + 2.0, 1.0e6 + 3.0], [7.0, 7.0, 7.0]])
    with warnings.catch_warnings(), np.errstate(**NO_FP_ERRORS):
        warnings.simplefilter("error")
        t = mt.tensor(x, requires_grad=True)
        y = F.layer_norm(t, eps=1e-5)
        y.backward(np.array([[1.0, -1.0, 0.5], [1.0, 2.0, 3.0]]))
    row = np.array([-1.0, 0.0, 1.0]) / math.sqrt(2.0 / 3.0 + 1e-5)
    np.testing.assert_allclose(y.numpy()[0], row, rtol=1e-9)
    np.testing.assert_array_equal(y.numpy()[1], 0.0)
    assert np.all(np.isfinite(t.grad))
