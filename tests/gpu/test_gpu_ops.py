r"""The same ops on CuPy (GPU) and NumPy (CPU) give the same forward values and
gradients, within the float32 row of the one tolerance table.

Skipped as a whole where no GPU is usable (see ``conftest.py`` here). Only the
public API is used: data reaches the GPU through ``mt.tensor(..., device='cuda')``,
``Tensor.to`` and ``Module.to``, and comes back through ``to_numpy``, so this
module imports without CuPy.
"""
import numpy as np
import pytest

import minitensor as mt
import minitensor.functional as F
from minitensor import nn, optim
from minitensor.backend import to_numpy
from minitensor.testing import TOLERANCES

TOL = TOLERANCES["float32"]

# Integer and boolean side inputs are NumPy arrays; the ops move them to the
# device of the tensor they index (embedding ids, targets, masks).
IDS = np.array([[0, 3, 3], [5, 1, 0]])
TARGETS = np.array([2, -100, 0, 4])
MASK = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])


def _split_sum(a):
    first, second = mt.split(a, [1], axis=1)
    return first * 2.0 + second.sum(axis=1, keepdims=True)


# name -> (function of the input tensors, shapes of the float32 inputs)
CASES = {
    "add-broadcast": (lambda a, b: a + b, [(3, 1), (1, 4)]),
    "mul-broadcast": (lambda a, b: a * b, [(2, 3, 4), (4,)]),
    "sub-div": (lambda a, b: (a - b) / (b * b + 1.0), [(3, 4), (3, 4)]),
    "pow": (lambda a: (a * a + 1.0) ** 1.5, [(3, 4)]),
    "matmul": (lambda a, b: a @ b, [(3, 4), (4, 5)]),
    "matmul-folded": (lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),  # (..., K) @ (K, N) path
    "matmul-batched": (lambda a, b: a @ b, [(2, 3, 4), (2, 4, 5)]),
    "exp-log": (lambda a: a.exp() + (a * a + 0.5).log(), [(3, 4)]),
    "tanh-sigmoid-sqrt": (lambda a: a.tanh() * a.sigmoid() + (a * a + 1.0).sqrt(), [(3, 4)]),
    "relu": (lambda a: F.relu(a + 0.1), [(3, 4)]),
    "gelu-tanh": (lambda a: F.gelu(a, approximate="tanh"), [(3, 4)]),
    "gelu-exact": (lambda a: F.gelu(a, approximate="none"), [(3, 4)]),
    "softmax": (lambda a: F.softmax(a, axis=-1), [(3, 5)]),
    "log-softmax": (lambda a: F.log_softmax(a, axis=0), [(3, 5)]),
    "cross-entropy-mean": (lambda a: F.cross_entropy(a, TARGETS, ignore_index=-100), [(4, 5)]),
    "cross-entropy-none": (lambda a: F.cross_entropy(a, TARGETS, ignore_index=-100, reduction="none"), [(4, 5)]),
    "layer-norm": (lambda x, w, b: F.layer_norm(x, w, b), [(2, 3, 5), (5,), (5,)]),
    "embedding": (lambda w: F.embedding(IDS, w), [(6, 4)]),  # repeated ids: scatter-add
    "getitem-slice": (lambda a: a[1:, ::2], [(3, 4)]),
    "getitem-int-array": (lambda a: a[np.array([2, 0, 2])], [(3, 4)]),
    "getitem-mask": (lambda a: a[MASK], [(3, 4)]),
    "concat-stack": (lambda a, b: mt.stack([mt.concat([a, b], axis=0), mt.concat([b, a], axis=0)]), [(2, 3), (2, 3)]),
    "split": (_split_sum, [(3, 4)]),
    "sum-mean": (lambda a: a.sum(axis=0) + a.mean(axis=(0, 2), keepdims=True).reshape(-1)[:1], [(2, 3, 4)]),
    "max": (lambda a: a.max(axis=1), [(3, 4)]),
    "transpose-reshape-expand": (lambda a: a.transpose(1, 0).reshape(2, 6).expand(3, 2, 6), [(3, 4)]),
    "where-maximum": (lambda a, b: mt.where(MASK, a, b) + mt.maximum(a, b), [(3, 4), (3, 4)]),
    "dropout": (lambda a: F.dropout(a, 0.3, rng=np.random.default_rng(0)), [(4, 5)]),
}


def run(fn, arrays, weights, device):
    """Forward on ``device``, backward with the given output weights; results as NumPy."""
    xs = [mt.tensor(a, requires_grad=True, device=device) for a in arrays]
    out = fn(*xs)
    assert out.device == device
    out.backward(mt.tensor(weights, device=device))
    for x in xs:
        assert x.grad is not None and x.grad.shape == x.shape
    return to_numpy(out.data), [to_numpy(x.grad) for x in xs]


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_numpy_on_cuda(name):
    fn, shapes = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    # the output weights depend on the output's shape: find it with a forward on the CPU
    with mt.no_grad():
        out_shape = fn(*[mt.tensor(a) for a in arrays]).shape
    weights = rng.standard_normal(out_shape).astype(np.float32)
    out_cpu, grads_cpu = run(fn, arrays, weights, "cpu")
    out_gpu, grads_gpu = run(fn, arrays, weights, "cuda")
    assert out_gpu.dtype == out_cpu.dtype == np.float32
    np.testing.assert_allclose(out_gpu, out_cpu, **TOL, err_msg=f"{name}: forward")
    for i, (g_gpu, g_cpu) in enumerate(zip(grads_gpu, grads_cpu)):
        assert g_gpu.dtype == np.float32
        np.testing.assert_allclose(g_gpu, g_cpu, **TOL, err_msg=f"{name}: gradient of input {i}")


def test_tensor_to_cuda_and_back():
    t = mt.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    g = t.to("cuda")
    assert g.device == "cuda" and g.shape == (2, 3) and g.dtype == np.float32 and g.requires_grad
    assert g.to("cuda") is g
    assert "device='cuda'" in repr(g)
    assert isinstance(g.numpy(), np.ndarray)
    back = g.to("cpu")
    assert back.device == "cpu" and isinstance(back.data, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back.data, t.data)
    ids = mt.tensor([1, 2, 3]).to("cuda").to("cpu")
    assert ids.dtype == np.int64 and not ids.requires_grad
    np.testing.assert_array_equal(ids.data, [1, 2, 3])


def test_factories_on_cuda():
    rng_cpu, rng_gpu = np.random.default_rng(3), np.random.default_rng(3)
    z = mt.zeros(2, 3, device="cuda")
    assert z.device == "cuda"
    np.testing.assert_array_equal(z.numpy(), np.zeros((2, 3)))
    assert mt.zeros_like(z).device == "cuda"
    # the same seed gives the same numbers on both devices (drawn on the CPU, then copied)
    np.testing.assert_array_equal(mt.randn(4, rng=rng_gpu, device="cuda").numpy(), mt.randn(4, rng=rng_cpu).numpy())


def make_model(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(5, 8, rng=rng), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 3, rng=rng))


def test_module_to_cuda_matches_the_cpu_model():
    cpu, gpu = make_model(0), make_model(0).to("cuda")
    assert all(p.device == "cuda" for p in gpu.parameters())
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    targets = np.array([0, 2, 1, 2])
    losses = {}
    for name, model, device in (("cpu", cpu, "cpu"), ("gpu", gpu, "cuda")):
        loss = F.cross_entropy(model(mt.tensor(x, device=device)), targets)
        loss.backward()
        losses[name] = loss.item()
    np.testing.assert_allclose(losses["gpu"], losses["cpu"], **TOL)
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert pg.grad is not None and pg.device == "cuda"
        np.testing.assert_allclose(to_numpy(pg.grad), pc.grad, **TOL, err_msg=name)


def test_module_state_dict_from_cuda_is_numpy_and_loads_back():
    gpu = make_model(0).to("cuda")
    state = gpu.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    other = make_model(1).to("cuda")
    other.load_state_dict(state)
    assert all(p.device == "cuda" for p in other.parameters())
    for name, p in other.named_parameters():
        np.testing.assert_array_equal(p.numpy(), state[name])
    back = other.to("cpu")
    assert all(p.device == "cpu" for p in back.parameters())


def test_optimizer_step_on_cuda_matches_cpu():
    models = {"cpu": make_model(0), "cuda": make_model(0).to("cuda")}
    x = np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)
    for device, model in models.items():
        opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        for _ in range(3):
            opt.zero_grad()
            (model(mt.tensor(x, device=device)) ** 2).mean().backward()
            opt.step()
    for (name, pc), (_, pg) in zip(models["cpu"].named_parameters(), models["cuda"].named_parameters()):
        np.testing.assert_allclose(pg.numpy(), pc.numpy(), **TOL, err_msg=name)
