"""The backend on a CPU-only machine: NumPy everywhere, clear errors for CUDA."""
import math

import numpy as np
import pytest

from minitensor import backend


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_scipy", [True, False])
def test_erf_is_exact_with_and_without_scipy(monkeypatch, shape, dtype, use_scipy):
    if use_scipy:
        pytest.importorskip("scipy")
    else:  # the pure-NumPy install has no SciPy: the fallback must give the same numbers
        monkeypatch.setattr(backend, "_scipy_erf", lambda: None)
    x = np.linspace(-3, 3, int(np.prod(shape))).reshape(shape).astype(dtype)
    out = backend.erf(x)
    assert isinstance(out, np.ndarray) and out.shape == shape and out.dtype == dtype
    expected = np.array([math.erf(v) for v in x.reshape(-1).tolist()]).reshape(shape)
    np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_numpy_is_the_module_for_numpy_arrays():
    assert backend.get_array_module(np.zeros(2), np.ones(1)) is np
    assert backend.device_of(np.zeros(2)) == "cpu"


def test_unknown_device_is_named():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        backend.check_device("tpu")


def test_scatter_add_accumulates_repeated_indices():
    target = np.zeros(3)
    backend.scatter_add(target, np.array([0, 2, 0]), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(target, [4.0, 0.0, 2.0])


def test_uniform_is_seeded_and_keeps_dtype():
    like = np.zeros(4, np.float32)
    a = backend.uniform(np.random.default_rng(1), (4,), like)
    b = backend.uniform(np.random.default_rng(1), (4,), like)
    assert a.dtype == np.float32 and np.array_equal(a, b) and ((a >= 0) & (a < 1)).all()
