"""Tests for minitensor.nn: the module tree, state dicts, and the standard layers."""
import math

import numpy as np
import pytest

import minitensor as mt
from minitensor import nn
from minitensor.testing import gradcheck

F64 = np.float64


class Block(nn.Module):
    """A small nested module: attributes assigned in a deliberate, non-alphabetical order."""

    def __init__(self, rng, d_in, dtype=np.float32):
        self.proj = nn.Linear(d_in, 4, rng=rng, dtype=dtype)
        self.ln = nn.LayerNorm(4, dtype=dtype)
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.5, rng=np.random.default_rng(1))

    def forward(self, x):
        return self.drop(self.act(self.ln(self.proj(x))))


class Net(nn.Module):
    def __init__(self, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.wte = nn.Embedding(7, 3, rng=rng, dtype=dtype)
        self.blocks = nn.ModuleList([Block(rng, 3, dtype), Block(rng, 4, dtype)])
        self.head = nn.Sequential(nn.Linear(4, 5, rng=rng, dtype=dtype), nn.ReLU(),
                                  nn.Linear(5, 2, rng=rng, dtype=dtype))

    def forward(self, ids):
        x = self.wte(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


NET_NAMES = [
    "wte.weight",
    "blocks.0.proj.weight", "blocks.0.proj.bias", "blocks.0.ln.weight", "blocks.0.ln.bias",
    "blocks.1.proj.weight", "blocks.1.proj.bias", "blocks.1.ln.weight", "blocks.1.ln.bias",
    "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias",
]


# ------------------------------------------------------------------ the tree

def test_named_parameters_follow_assignment_order_with_dotted_names():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NET_NAMES
    assert list(net.state_dict()) == NET_NAMES
    # the names lead to the very objects they name
    assert dict(net.named_parameters())["blocks.1.ln.bias"] is net.blocks[1].ln.bias
    assert dict(net.named_parameters())["head.2.weight"] is net.head[2].weight


def test_named_parameters_prefix():
    lin = nn.Linear(2, 3, rng=np.random.default_rng(0))
    assert [n for n, _ in lin.named_parameters(prefix="enc.")] == ["enc.weight", "enc.bias"]


def test_linear_without_bias_has_only_weight():
    lin = nn.Linear(2, 3, bias=False, rng=np.random.default_rng(0))
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    x = mt.tensor(np.ones((1, 2), np.float32))
    np.testing.assert_allclose(lin(x).numpy(), x.numpy() @ lin.weight.numpy().T, rtol=1e-6)


def test_modules_depth_first_and_children():
    net = Net()
    kinds = [type(m).__name__ for m in net.modules()]
    assert kinds == ["Net", "Embedding", "ModuleList",
                     "Block", "Linear", "LayerNorm", "GELU", "Dropout",
                     "Block", "Linear", "LayerNorm", "GELU", "Dropout",
                     "Sequential", "Linear", "ReLU", "Linear"]
    assert [n for n, _ in net.named_children()] == ["wte", "blocks", "head"]


def test_sequential_and_modulelist_containers():
    rng = np.random.default_rng(0)
    layers = [nn.Linear(2, 3, rng=rng), nn.ReLU(), nn.Linear(3, 1, rng=rng)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and list(seq) == layers and seq[2] is layers[2] and seq[-1] is layers[2]
    x = mt.tensor(rng.standard_normal((4, 2)).astype(np.float32))
    np.testing.assert_array_equal(seq(x).numpy(), layers[2](layers[1](layers[0](x))).numpy())

    ml = nn.ModuleList()
    assert len(ml) == 0 and list(ml.parameters()) == []
    ml.append(layers[0]).append(layers[2])
    assert len(ml) == 2 and ml[0] is layers[0] and ml[-1] is layers[2]
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    with pytest.raises(IndexError, match="out of range"):
        ml[2]
    with pytest.raises(TypeError, match="Module"):
        ml.append(np.zeros(3))


def test_shared_parameter_is_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.wte = nn.Embedding(5, 3, rng=rng)
            self.lm_head = nn.Linear(3, 5, bias=False, rng=rng)
            self.lm_head.weight = self.wte.weight  # weight tying, as GPT does

    m = Tied()
    assert [n for n, _ in m.named_parameters()] == ["wte.weight"]
    assert len(m.parameters()) == 1
    assert m.num_parameters() == 15
    assert list(m.state_dict()) == ["wte.weight"]


def test_parameters_and_num_parameters():
    net = Net()
    params = net.parameters()
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params)
    assert len(params) == len(NET_NAMES)
    expected = 7 * 3 + (4 * 3 + 4 + 4 + 4) + (4 * 4 + 4 + 4 + 4) + (5 * 4 + 5) + (2 * 5 + 2)
    assert net.num_parameters() == expected == sum(p.size for p in params)


def test_parameter_wraps_a_tensor_as_a_leaf():
    t = mt.tensor(np.arange(3.0), dtype=np.float64)
    p = nn.Parameter(t)
    assert p.requires_grad and p.dtype == np.float64
    np.testing.assert_array_equal(p.numpy(), t.numpy())


def test_forward_not_defined_raises():
    with pytest.raises(NotImplementedError, match="Bare"):
        type("Bare", (nn.Module,), {})()(1)


# ------------------------------------------------------------------ modes and grads

def test_train_and_eval_are_recursive():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert net.train() is net
    assert all(m.training for m in net.modules())
    net.blocks.train(False)
    assert net.training and net.head.training
    assert not any(m.training for m in net.blocks.modules())


def test_zero_grad_clears_every_parameter():
    net = Net()
    net.eval()  # no dropout: every parameter is reached
    net(np.array([[0, 3, 6]])).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# ------------------------------------------------------------------ state dict

def test_state_dict_is_a_cpu_numpy_copy():
    net = Net()
    sd = net.state_dict()
    assert all(type(v) is np.ndarray for v in sd.values())
    before = net.head[0].weight.numpy().copy()
    sd["head.0.weight"][...] = 123.0
    np.testing.assert_array_equal(net.head[0].weight.numpy(), before)
    # and the other way: changing the model later does not change a saved state dict
    saved = sd["wte.weight"].copy()
    net.wte.weight.data += 1.0
    np.testing.assert_array_equal(sd["wte.weight"], saved)


def test_load_state_dict_roundtrip_keeps_parameter_dtype():
    src, dst = Net(seed=1), Net(seed=2)
    assert not np.array_equal(src.head[2].weight.numpy(), dst.head[2].weight.numpy())
    # the checkpoint is in float64; the model stays float32
    state = {k: v.astype(np.float64) for k, v in src.state_dict().items()}
    missing, unexpected = dst.load_state_dict(state)
    assert missing == [] and unexpected == []
    for (name, p), (_, q) in zip(dst.named_parameters(), src.named_parameters()):
        assert p.dtype == np.float32, name
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    # loading copies: changing the dict afterwards does not reach the model
    state["wte.weight"][...] = 0.0
    assert np.any(dst.wte.weight.numpy() != 0.0)
    ids = np.array([[1, 2, 3]])
    src.eval(), dst.eval()
    np.testing.assert_array_equal(src(ids).numpy(), dst(ids).numpy())


def test_load_state_dict_accepts_tensors():
    src, dst = nn.Linear(2, 3, rng=np.random.default_rng(0)), nn.Linear(2, 3, rng=np.random.default_rng(1))
    dst.load_state_dict({"weight": src.weight, "bias": src.bias})
    np.testing.assert_array_equal(dst.weight.numpy(), src.weight.numpy())
    assert dst.weight is not src.weight and dst.weight.data is not src.weight.data


def test_load_state_dict_strict_lists_missing_and_unexpected():
    net = Net()
    state = net.state_dict()
    del state["blocks.0.ln.bias"]
    state["blocks.0.extra"] = np.zeros(3, np.float32)
    with pytest.raises(KeyError) as err:
        net.load_state_dict(state)
    msg = str(err.value)
    assert "blocks.0.ln.bias" in msg and "blocks.0.extra" in msg


def test_load_state_dict_strict_error_changes_nothing():
    net = Net(seed=0)
    before = net.state_dict()
    state = Net(seed=5).state_dict()
    state["surprise"] = np.zeros(1, np.float32)
    with pytest.raises(KeyError):
        net.load_state_dict(state)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_non_strict_returns_missing_and_unexpected():
    src, dst = Net(seed=1), Net(seed=2)
    state = src.state_dict()
    del state["head.2.bias"]
    state["not.a.param"] = np.ones(2, np.float32)
    kept = dst.head[2].bias.numpy().copy()
    missing, unexpected = dst.load_state_dict(state, strict=False)
    assert missing == ["head.2.bias"] and unexpected == ["not.a.param"]
    np.testing.assert_array_equal(dst.head[2].bias.numpy(), kept)  # missing: left as it was
    np.testing.assert_array_equal(dst.head[2].weight.numpy(), src.head[2].weight.numpy())


@pytest.mark.parametrize("value,message", [
    (lambda w: w.astype(np.complex64) + 1j, r"'head.0.weight' has dtype complex64; a parameter takes real numbers"),
    (lambda w: w > 0, "'head.0.weight' has dtype bool"),
    (lambda w: "weights.npy", "the value for 'head.0.weight' is a str, not an array"),
    (lambda w: np.array([object()] * w.size).reshape(w.shape), "dtype object"),
    (lambda w: [[1.0, 2.0], [3.0]], r"'head.0.weight' \(list\) is not an array"),
    # these used to read "has dtype object", which does not say what was given
    (lambda w: None, "the value for 'head.0.weight' is a NoneType, not an array"),
    (lambda w: {"weight": w}, "the value for 'head.0.weight' is a dict, not an array"),
])
def test_load_state_dict_refuses_values_that_are_not_real_arrays(value, message):
    # A complex value used to lose its imaginary part with only a warning, a str to read as a shape mismatch.
    net = Net(seed=0)
    before = net.state_dict()
    state = net.state_dict()
    state["head.0.weight"] = value(state["head.0.weight"])
    with pytest.raises(TypeError, match=message):
        net.load_state_dict(state)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])  # nothing was loaded


def test_load_state_dict_accepts_int_arrays_and_needs_a_mapping():
    net = Net(seed=0)
    state = {k: np.zeros(v.shape, np.int64) for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert all(v.dtype == np.float32 and not v.any() for v in net.state_dict().values())
    for wrong in (list(state.values()), list(state.items()), None):
        # a list used to report every parameter as a missing key
        with pytest.raises(TypeError, match="expects a mapping name -> array"):
            net.load_state_dict(wrong)


def test_load_state_dict_shape_mismatch_names_key_and_both_shapes():
    net = Net()
    state = net.state_dict()
    state["head.0.weight"] = np.zeros((4, 5), np.float32)  # transposed by mistake
    with pytest.raises(ValueError) as err:
        net.load_state_dict(state)
    msg = str(err.value)
    assert "head.0.weight" in msg and "(4, 5)" in msg and "(5, 4)" in msg
    # strict=False does not excuse a wrong shape
    with pytest.raises(ValueError, match="head.0.weight"):
        net.load_state_dict(state, strict=False)


def test_save_and_load_into_a_fresh_model(tmp_path):
    src = Net(seed=3)
    src.eval()
    for suffix in (".npz", ".safetensors"):
        path = tmp_path / f"net{suffix}"
        mt.save(src.state_dict(), path)
        fresh = Net(seed=4)
        fresh.eval()
        ids = np.array([[0, 6, 2], [5, 5, 1]])
        assert not np.array_equal(fresh(ids).numpy(), src(ids).numpy())
        fresh.load_state_dict(mt.load(path))
        np.testing.assert_array_equal(fresh(ids).numpy(), src(ids).numpy())


# ------------------------------------------------------------------ layers

def test_linear_forward_is_x_wT_plus_b():
    rng = np.random.default_rng(0)
    lin = nn.Linear(4, 3, rng=rng, dtype=F64)
    assert lin.weight.shape == (3, 4) and lin.bias.shape == (3,)
    assert lin.weight.dtype == F64
    bound = 1 / math.sqrt(4)
    assert np.all(np.abs(lin.weight.numpy()) <= bound) and np.all(np.abs(lin.bias.numpy()) <= bound)
    x = rng.standard_normal((2, 5, 4))  # extra leading axes broadcast
    y = lin(mt.tensor(x))
    np.testing.assert_allclose(y.numpy(), x @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-12, atol=1e-12)
    assert y.shape == (2, 5, 3)


def test_linear_is_seeded_and_rejects_wrong_width():
    a = nn.Linear(3, 2, rng=np.random.default_rng(9))
    b = nn.Linear(3, 2, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    assert a.weight.dtype == np.float32
    with pytest.raises(ValueError, match=r"Linear\(3, 2\).*\(4, 5\)"):
        a(mt.tensor(np.zeros((4, 5), np.float32)))


def test_linear_gradcheck():
    rng = np.random.default_rng(1)
    lin = nn.Linear(4, 3, rng=rng, dtype=F64)
    x = mt.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    assert gradcheck(lambda x, w, b: lin(x), x, lin.weight, lin.bias)


def test_embedding_picks_rows_and_accumulates_repeats():
    rng = np.random.default_rng(0)
    emb = nn.Embedding(5, 3, rng=rng, dtype=F64)
    ids = np.array([[1, 4, 1], [0, 1, 2]])
    out = emb(ids)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[ids])
    out.sum().backward()
    counts = np.bincount(ids.ravel(), minlength=5)
    np.testing.assert_array_equal(emb.weight.grad, np.repeat(counts[:, None], 3, axis=1).astype(F64))
    assert gradcheck(lambda w: emb(ids), emb.weight)
    with pytest.raises(IndexError, match="5"):
        emb(np.array([5]))


def test_layernorm_defaults_and_output():
    ln = nn.LayerNorm(4)
    np.testing.assert_array_equal(ln.weight.numpy(), np.ones(4, np.float32))
    np.testing.assert_array_equal(ln.bias.numpy(), np.zeros(4, np.float32))
    assert ln.weight.dtype == np.float32 and ln.eps == 1e-5
    x = np.random.default_rng(0).standard_normal((3, 4))
    y = nn.LayerNorm(4, dtype=F64)(mt.tensor(x)).numpy()
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_layernorm_gradcheck():
    rng = np.random.default_rng(2)
    ln = nn.LayerNorm(5, dtype=F64)
    # away from the defaults so that the gain and shift both matter
    ln.weight.data[...] = rng.standard_normal(5)
    ln.bias.data[...] = rng.standard_normal(5)
    x = mt.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    assert gradcheck(lambda x, w, b: ln(x), x, ln.weight, ln.bias)


def test_dropout_train_is_seeded_and_eval_is_identity():
    x = mt.tensor(np.random.default_rng(0).standard_normal((50, 40)) + 3.0, dtype=F64, requires_grad=True)
    p = 0.3
    d1, d2 = nn.Dropout(p, rng=np.random.default_rng(7)), nn.Dropout(p, rng=np.random.default_rng(7))
    y1, y2 = d1(x), d2(x)
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())  # same seed, same mask
    kept = y1.numpy() != 0
    np.testing.assert_allclose(y1.numpy()[kept], x.numpy()[kept] / (1 - p), rtol=1e-12)
    assert abs((~kept).mean() - p) < 0.05  # 2000 draws: the std of the fraction is about 0.01
    assert not np.array_equal(d1(x).numpy(), y1.numpy())  # the generator moves on: a new mask
    # the gradient goes through the kept entries only, scaled the same way
    y1.sum().backward()
    np.testing.assert_allclose(x.grad, kept / (1 - p), rtol=1e-12)

    d1.eval()
    np.testing.assert_array_equal(d1(x).numpy(), x.numpy())
    np.testing.assert_array_equal(nn.Dropout(0.0, rng=np.random.default_rng(0))(x).numpy(), x.numpy())
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="p must be"):
            nn.Dropout(bad)


def test_gelu_module_options():
    x = np.linspace(-4, 4, 17)
    tanh_form = nn.GELU()(mt.tensor(x)).numpy()
    k = math.sqrt(2 / math.pi)
    np.testing.assert_allclose(tanh_form, 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x**3))), rtol=1e-12, atol=1e-15)
    exact = nn.GELU(approximate="none")(mt.tensor(x)).numpy()
    np.testing.assert_allclose(exact, [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x], rtol=1e-12, atol=1e-15)
    # close, but two different functions
    assert 0 < np.max(np.abs(exact - tanh_form)) < 1e-3
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU(approximate="erf")


def test_gelu_and_relu_modules_gradcheck():
    x = mt.tensor(np.random.default_rng(3).standard_normal((2, 3)) + 0.05, requires_grad=True)
    for layer in (nn.GELU(), nn.GELU("none")):
        assert gradcheck(lambda x: layer(x), x)
    np.testing.assert_array_equal(nn.ReLU()(x).numpy(), np.maximum(x.numpy(), 0))


def test_repr_shows_the_tree():
    text = repr(Net())
    assert "(blocks): ModuleList(" in text and "(0): Linear(4, 5, bias=True)" in text
    assert "LayerNorm(4, eps=1e-05)" in text and "Dropout(p=0.5)" in text
