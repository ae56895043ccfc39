r"""minitensor/kernels: the one switch, the registry, and every kernel equal to its formula.

A kernel registered ``exact=True`` must give its formula's numbers bit for bit
(``np.array_equal``); the others agree within :data:`minitensor.testing.TOLERANCES`
(``"kernel"``). Shapes are drawn by hypothesis, and while a kernel runs the block size
is cut to a few entries and two threads share the blocks, so small drawn arrays are
really split the way large ones are. The ops are also checked end to end, forward and
gradients, in both modes.
"""
import contextlib
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import arrays, matmul_shapes, shapes

import minitensor as mt
import minitensor.functional as F
from minitensor import kernels
from minitensor.attention import banded_attention, causal_mask, masked_softmax
from minitensor.attention.masked import masked_softmax_rows, softmax_vjp
from minitensor.kernels import threads as kernel_threads
from minitensor.ops.linalg import matrix_product
from minitensor.ops.nn import layer_norm, layer_norm_dx, scale_keep
from minitensor.ops.shape import scatter_add
from minitensor.ops.unary import erf, gelu_tanh, gelu_tanh_backward
from minitensor.testing import TOLERANCES

DTYPES = (np.float32, np.float64)
HYP = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@contextlib.contextmanager
def small_blocks(monkeypatch):
    """Blocks of 7 entries on 2 threads, matrix products split from the first multiply-add."""
    before = kernel_threads.num_threads()
    with monkeypatch.context() as m:
        m.setattr(kernel_threads, "BLOCK_ELEMENTS", 7)
        m.setattr(kernel_threads, "MATMUL_MIN_MACS", 0)
        m.setattr(kernel_threads, "MIN_ROWS", 1)
        kernel_threads.set_num_threads(2)
        try:
            yield
        finally:
            kernel_threads.set_num_threads(before)


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def assert_same(kernel_out, formula_out, exact, what):
    for k, f in zip(as_tuple(kernel_out), as_tuple(formula_out), strict=True):
        assert k.shape == f.shape and k.dtype == f.dtype, f"{what}: {k.shape} {k.dtype} vs {f.shape} {f.dtype}"
        if exact:
            assert np.array_equal(k, f), f"{what}: not bit-identical (max diff {np.max(np.abs(k - f))})"
        else:
            np.testing.assert_allclose(k, f, **TOLERANCES["kernel"][f.dtype.name], err_msg=what)


# ------------------------------------------------------------------ the arguments of each formula

def draw_dtype(data):
    return data.draw(st.sampled_from(DTYPES), label="dtype")


def draw_array(data, shape, dtype, lo=-4.0, hi=4.0, label="x"):
    return data.draw(arrays(shape, lo, hi, dtype), label=label)


def args_masked_softmax(data):
    shape = data.draw(shapes(1, 4, 1, 9), label="shape")
    axis = data.draw(st.integers(-len(shape), -1), label="axis")
    dtype = draw_dtype(data)
    mask_shape = tuple(1 if data.draw(st.booleans(), label="broadcast side") else s for s in shape)
    mask = data.draw(arrays(mask_shape, 0, 1), label="mask") < 0.7  # some rows fully masked
    return draw_array(data, shape, dtype), mask, axis


def args_softmax_vjp(data):
    scores, mask, axis = args_masked_softmax(data)
    p = masked_softmax_rows.formula(scores, mask, axis)
    return p, draw_array(data, p.shape, p.dtype, label="grad"), axis


def args_gelu_tanh(data):
    return (draw_array(data, data.draw(shapes(0, 4, 0, 9), label="shape"), draw_dtype(data)),)


def args_gelu_tanh_backward(data):
    (x,) = args_gelu_tanh(data)
    return x, np.tanh(x), draw_array(data, x.shape, x.dtype, label="grad")


def args_layer_norm(data):
    shape = data.draw(shapes(1, 4, 1, 9), label="shape")
    dtype = draw_dtype(data)
    d = shape[-1:]
    eps = data.draw(st.sampled_from([1e-5, 1e-12]), label="eps")
    return draw_array(data, shape, dtype), draw_array(data, d, dtype, label="w"), draw_array(data, d, dtype, label="b"), eps


def args_layer_norm_dx(data):
    x, weight, bias, eps = args_layer_norm(data)
    _, xhat, rstd = layer_norm.formula(x, weight, bias, eps)
    return draw_array(data, x.shape, x.dtype, label="grad"), xhat, rstd, weight


def args_scale_keep(data):
    (x,) = args_gelu_tanh(data)
    keep = data.draw(arrays(x.shape, 0, 1), label="keep") >= 0.3
    return x, x.dtype.type(1 / 0.7), keep


def args_dropout_mask(data):
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    shape = data.draw(shapes(0, 4, 0, 9), label="shape")
    like = np.zeros(1, data.draw(st.sampled_from([np.float32, np.float64, np.int64]), label="like dtype"))
    return np.random.default_rng(seed), shape, data.draw(st.floats(0.0, 0.99), label="p"), like


def args_matmul(data):
    a_shape, b_shape = data.draw(matmul_shapes(max_side=9), label="shapes")
    dtype = draw_dtype(data)
    a, b = draw_array(data, a_shape, dtype, label="a"), draw_array(data, b_shape, dtype, label="b")
    a, b = a.reshape(1, -1) if a.ndim == 1 else a, b.reshape(-1, 1) if b.ndim == 1 else b  # as MatMul gets them
    if data.draw(st.booleans(), label="bias"):
        return a, b, draw_array(data, b.shape[-1:], dtype, label="bias")
    return a, b


def args_matmul_pair(data):
    """Two products of unrelated shapes (one may be a stack, one a single matrix) at once."""
    first, second = args_matmul(data)[:2], args_matmul(data)[:2]
    return (*first, *second)


def args_scatter_add(data):
    """A target of rows, and row ids with repeats (negative ones too), or sometimes another kind of index."""
    n_rows = data.draw(st.integers(1, 6), label="rows")
    row_shape = data.draw(st.sampled_from([(), (3,), (16,), (2, 9), (20,)]), label="row shape")
    dtype = draw_dtype(data)
    target = draw_array(data, (n_rows, *row_shape), dtype, label="target")
    if data.draw(st.booleans(), label="a slice instead of ids"):
        index = (slice(0, n_rows, 2),)
    else:
        index_shape = data.draw(shapes(1, 2, 1, 40), label="ids shape")
        index = data.draw(arrays(index_shape, -n_rows, n_rows - 1, np.int64), label="ids").astype(np.int64)
    values = draw_array(data, np.empty(target.shape)[index].shape, dtype, label="values")
    return target, index, values


def args_erf(data):
    return args_gelu_tanh(data)


ARGUMENTS = {  # formula name -> a hypothesis draw of its arguments
    "masked_softmax": args_masked_softmax, "softmax_vjp": args_softmax_vjp, "gelu_tanh": args_gelu_tanh,
    "gelu_tanh_backward": args_gelu_tanh_backward, "layer_norm": args_layer_norm,
    "layer_norm_dx": args_layer_norm_dx, "scale_keep": args_scale_keep, "dropout_mask": args_dropout_mask,
    "matmul": args_matmul, "matmul_pair": args_matmul_pair, "scatter_add": args_scatter_add, "erf": args_erf,
}
CPU_KERNELS = sorted(k.name for k in kernels.registered() if k.device == "cpu")


def test_every_kernel_has_a_formula_and_every_cpu_kernel_a_test():
    for k in kernels.registered():
        assert callable(kernels.formula(k.name)), k.name
    assert set(CPU_KERNELS) <= set(ARGUMENTS), f"CPU kernels without an equality test: {set(CPU_KERNELS) - set(ARGUMENTS)}"
    assert {"masked_softmax", "softmax_vjp", "gelu_tanh", "layer_norm", "layer_norm_dx", "matmul"} <= set(CPU_KERNELS)


@pytest.mark.parametrize("name", CPU_KERNELS)
@settings(max_examples=40, **HYP)
@given(data=st.data())
def test_each_cpu_kernel_equals_its_formula(monkeypatch, name, data):
    kernel = next(k for k in kernels.registered() if k.name == name and k.device == "cpu")
    formula = kernels.formula(name)
    args = ARGUMENTS[name](data)
    if name == "dropout_mask":  # two generators in the same state: the kernel must draw the same stream
        seed_state = args[0].bit_generator.state
        twin = np.random.default_rng()
        twin.bit_generator.state = seed_state
        with small_blocks(monkeypatch):
            got = kernel.fn(*args)
        expected = formula(twin, *args[1:])
        assert args[0].random() == twin.random(), "the kernel left the generator in another state"
    elif name == "scatter_add":  # in place: compare the two targets
        got, expected = args[0].copy(), args[0].copy()
        kernel.fn(got, *args[1:])
        formula(expected, *args[1:])
    else:
        with small_blocks(monkeypatch):
            got = kernel.fn(*args)
        expected = formula(*args)
    assert_same(got, expected, kernel.exact, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("batch", [2, 16])  # 16: the mask is small enough for the kernel to add it
def test_masked_softmax_kernel_equals_its_formula_on_non_finite_scores(monkeypatch, dtype, axis, batch):
    """The kernel masks by adding -inf: a masked +inf or NaN (which that would turn into NaN) must
    still give the formula's numbers, and so must unmasked infinities and fully masked rows."""
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((batch, 6, 8)).astype(dtype)
    mask = rng.random((1, 6, 8)) < 0.6
    mask[0, 2] = False  # a fully masked row
    masked, allowed = np.argwhere(~np.broadcast_to(mask, scores.shape)), np.argwhere(np.broadcast_to(mask, scores.shape))
    for (b, i, j), value in zip(masked[:3], [np.inf, np.nan, -np.inf]):
        scores[b, i, j] = value
    for (b, i, j), value in zip(allowed[-2:], [np.inf, -np.inf]):
        scores[b, i, j] = value
    kernel = next(k for k in kernels.registered() if k.name == "masked_softmax" and k.device == "cpu")
    with small_blocks(monkeypatch), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf, as the formula warns (errstate is per thread)
        got = kernel.fn(scores, mask, axis)
        expected = masked_softmax_rows.formula(scores, mask, axis)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.isnan(expected).any() and (expected == 0).any()  # the case is not vacuous


# ------------------------------------------------------------------ the ops, both modes, with gradients

def run_both_modes(fn, *arrays_):
    """Forward values and every input's gradient, once with kernels and once on the formulas alone."""
    results = []
    for mode in ("fast", "reference"):
        with kernels.use(mode):
            leaves = [mt.Tensor(a.copy(), requires_grad=True) for a in arrays_]
            out = fn(*leaves)
            out.backward(np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype))
            results.append([out.numpy()] + [t.grad for t in leaves])
    return results


def dropout_fixed(x):
    return F.dropout(x, 0.25, rng=np.random.default_rng(7))


def attention_block(x, w):
    """A GPT block's worth of ops: layer norm, linear, causal attention, GELU, dropout, matmul."""
    b, t, d = x.shape
    h = F.layer_norm(x)
    q = F.linear(h, w)  # (B, T, D)
    p = masked_softmax(q @ h.swapaxes(-1, -2), causal_mask(t, t))  # (B, T, T)
    return dropout_fixed(F.gelu(p @ h))


OPS = {
    "gelu": (lambda x: F.gelu(x), [(3, 5, 7)], False),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b), [(4, 6, 9), (9,), (9,)], True),
    "masked_softmax": (lambda s: masked_softmax(s, causal_mask(6, 8, offset=2), axis=-1), [(2, 3, 6, 8)], True),
    "dropout": (dropout_fixed, [(5, 40)], True),
    "matmul": (lambda a, b: a @ b, [(2, 3, 9, 5), (3, 5, 7)], False),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(4, 9, 6), (5, 6), (5,)], False),
    "attention block": (attention_block, [(2, 7, 6), (6, 6)], False),
}


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_give_the_same_values_and_gradients_in_both_modes(monkeypatch, name, dtype):
    fn, arg_shapes, exact = OPS[name]
    rng = np.random.default_rng(len(name))
    xs = [rng.standard_normal(s).astype(dtype) for s in arg_shapes]
    with small_blocks(monkeypatch):
        fast, reference = run_both_modes(fn, *xs)
    for what, f, r in zip(["output"] + [f"grad {i}" for i in range(len(xs))], fast, reference):
        assert_same(f, r, exact, f"{name} {what}")


def test_banded_attention_is_the_same_in_both_modes(monkeypatch):
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((1, 2, 24, 4)) for _ in range(3))
    fn = lambda q, k, v: banded_attention(q, k, v, window=4, dilation=[1, 2])  # noqa: E731
    with small_blocks(monkeypatch):
        fast, reference = run_both_modes(fn, q, k, v)
    for f, r in zip(fast, reference):
        np.testing.assert_allclose(f, r, **TOLERANCES["kernel"]["float64"])


# ------------------------------------------------------------------ the switch

def test_reference_mode_calls_no_kernel_and_fast_mode_does(monkeypatch):
    calls = []
    for key, k in list(kernels._kernels.items()):
        def spy(*args, _k=k, **kwargs):
            calls.append(_k.name)
            return _k.fn(*args, **kwargs)
        monkeypatch.setitem(kernels._kernels, key, kernels.Kernel(k.name, k.device, spy, k.exact))
    x = np.random.default_rng(0).standard_normal((2, 5, 6))
    with kernels.use("reference"):
        out = attention_block(mt.Tensor(x, requires_grad=True), mt.Tensor(np.eye(6), requires_grad=True))
        out.sum().backward()
    assert calls == []
    with kernels.use("fast"):
        out = attention_block(mt.Tensor(x, requires_grad=True), mt.Tensor(np.eye(6), requires_grad=True))
        out.sum().backward()
    assert {"layer_norm", "layer_norm_dx", "masked_softmax", "softmax_vjp", "gelu_tanh", "gelu_tanh_backward",
            "scale_keep", "dropout_mask", "matmul"} <= set(calls)


def test_use_restores_the_mode_even_after_an_error():
    before = kernels.mode()
    with pytest.raises(RuntimeError, match="inside"):
        with kernels.use("reference" if before == "fast" else "fast"):
            assert kernels.mode() != before
            raise RuntimeError("inside")
    assert kernels.mode() == before


@pytest.mark.parametrize("bad", ["Reference", "", "slow", None])
def test_a_bad_mode_is_named(bad):
    with pytest.raises(ValueError, match="mode must be one of"):
        kernels.set_mode(bad)


def run_python(code, **env):
    full_env = {k: v for k, v in os.environ.items() if k != "MINITENSOR_KERNELS"}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=60)


def test_the_environment_variable_sets_the_mode():
    code = "from minitensor import kernels; print(kernels.mode())"
    assert run_python(code).stdout.strip() == "fast"
    assert run_python(code, MINITENSOR_KERNELS="reference").stdout.strip() == "reference"
    bad = run_python(code, MINITENSOR_KERNELS="turbo")
    assert bad.returncode != 0 and "MINITENSOR_KERNELS must be one of" in bad.stderr and "'turbo'" in bad.stderr


def test_registering_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        kernels.register("matmul", "cpu", exact=False)(lambda a, b, bias=None: a @ b)
    with pytest.raises(ValueError, match="already defined"):
        kernels.replaceable("matmul")(lambda a, b, bias=None: a @ b)


def test_a_formula_needs_an_array_to_pick_its_device():
    with pytest.raises(TypeError, match="array argument"):
        masked_softmax_rows(1.0, True, -1)


def test_an_unknown_formula_lists_the_known_ones():
    with pytest.raises(KeyError, match="masked_softmax"):
        kernels.formula("no such formula")


# ------------------------------------------------------------------ erf and scatter_add

@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_erf_formula_is_exact(shape, dtype):
    x = np.linspace(-3, 3, int(np.prod(shape))).reshape(shape).astype(dtype)
    with kernels.use("reference"):
        out = erf(x)
    assert isinstance(out, np.ndarray) and out.shape == shape and out.dtype == dtype
    expected = np.array([math.erf(v) for v in x.reshape(-1).tolist()]).reshape(shape)
    np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_erf_kernel_is_within_one_float32_ulp_everywhere():
    x = np.concatenate([np.linspace(-12, 12, 400_001), [0.0, -0.0, 1e-30, -1e-30, 0.4999999, 0.5000001, np.inf, -np.inf]])
    x = x.astype(np.float32)
    kernel = next(k for k in kernels.registered() if k.name == "erf" and k.device == "cpu")
    got = kernel.fn(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    exact = np.array([math.erf(v) for v in x.astype(np.float64).tolist()])
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(got - exact) <= ulp).all(), float((np.abs(got - exact) / ulp).max())
    assert np.array_equal(np.signbit(got), np.signbit(x))  # odd, -0.0 included
    x64 = np.linspace(-3, 3, 7)  # float64 needs more digits than the fit: the formula's own values
    np.testing.assert_array_equal(kernel.fn(x64), kernels.formula("erf")(x64))


def test_scatter_add_accumulates_repeated_indices():
    target = np.zeros(3)
    scatter_add(target, np.array([0, 2, 0]), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(target, [4.0, 0.0, 2.0])


def test_uniform_is_seeded_and_keeps_dtype():
    like = np.zeros(4, np.float32)
    a = F.uniform(np.random.default_rng(1), (4,), like)
    b = F.uniform(np.random.default_rng(1), (4,), like)
    assert a.dtype == np.float32 and np.array_equal(a, b) and ((a >= 0) & (a < 1)).all()


def test_the_formulas_used_by_the_tests_above_are_the_registered_ones():
    for fn in (masked_softmax_rows, softmax_vjp, gelu_tanh, gelu_tanh_backward, layer_norm, layer_norm_dx,
               scale_keep, matrix_product, erf, scatter_add, F.dropout_mask):
        assert kernels.formula(fn.kernel_name) is fn.formula


@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_add_kernel_gives_add_at_numbers_for_an_embedding_gradient(dtype):
    """The size a GPT step hands it: 16 x 128 character ids (76 of them, repeated, a few negative)
    into a 76 x 128 table that already holds values: bit for bit what np.add.at gives."""
    rng = np.random.default_rng(11)
    ids = rng.integers(-76, 76, size=(16, 128))
    values = rng.standard_normal((16, 128, 128)).astype(dtype)
    table = rng.standard_normal((76, 128)).astype(dtype)
    kernel = next(k for k in kernels.registered() if k.name == "scatter_add" and k.device == "cpu")
    got, expected = table.copy(), table.copy()
    kernel.fn(got, ids, values)
    np.add.at(expected, ids, values)
    assert np.array_equal(got, expected)
    with pytest.raises(IndexError):  # an id out of range: add.at's own error
        kernel.fn(table.copy(), np.array([0, 76]), values[0, :2])
