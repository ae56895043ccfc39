r"""The creation API and the attributes of :class:`minitensor.Tensor`.

dtype rules (DESIGN): float32 by default; arrays keep their dtype, so float64
data stays float64 (gradchecks need that); Python ints become int64.
"""
import numpy as np
import pytest

import minitensor as mt

# ------------------------------------------------------------ mt.tensor


@pytest.mark.parametrize("data, dtype", [
    (np.arange(3.0), np.float64),           # a float64 array keeps its dtype
    (np.arange(3, dtype=np.float32), np.float32),
    (np.arange(3, dtype=np.int32), np.int32),
    (1.5, np.float32),                      # a Python float: the framework default
    ([1.0, 2.0], np.float32),
    ([[1.0], [2]], np.float32),             # mixed list: floats win, still float32
    (3, np.int64),                          # Python ints are int64
    ([1, 2, 3], np.int64),
    (True, np.bool_),
])
def test_tensor_dtype_rules(data, dtype):
    assert mt.tensor(data).dtype == dtype


def test_tensor_dtype_argument_overrides_the_rules():
    assert mt.tensor([1, 2], dtype=mt.float64).dtype == np.float64
    assert mt.tensor(np.arange(3.0), dtype=mt.float32).dtype == np.float32
    assert mt.tensor(np.arange(3.0), dtype=mt.float32, requires_grad=True).requires_grad


def test_tensor_copies_its_input():
    src = np.arange(4.0)
    t = mt.tensor(src)
    src[0] = 100.0
    assert t.data[0] == 0.0
    t.data[1] = -1.0
    assert src[1] == 1.0


def test_tensor_of_a_tensor_is_a_fresh_leaf_with_copied_data():
    x = mt.tensor(np.arange(3.0), requires_grad=True)
    h = x * 2.0
    y = mt.tensor(h)
    assert y._ctx is None and not y.requires_grad
    np.testing.assert_array_equal(y.data, h.data)
    assert not np.shares_memory(y.data, h.data)


def test_tensor_values_survive_the_conversion():
    np.testing.assert_array_equal(mt.tensor([[1, 2], [3, 4]]).data, [[1, 2], [3, 4]])
    assert mt.tensor(2.5).shape == ()
    assert mt.tensor(2.5).item() == 2.5


# ------------------------------------------------------------ factories

@pytest.mark.parametrize("factory, value", [(mt.zeros, 0.0), (mt.ones, 1.0)])
def test_zeros_and_ones(factory, value):
    a, b = factory(2, 3), factory((2, 3))  # both call styles
    for t in (a, b):
        assert t.shape == (2, 3) and t.dtype == np.float32 and not t.requires_grad
        np.testing.assert_array_equal(t.data, np.full((2, 3), value))
    c = factory(4, dtype=mt.float64, requires_grad=True)
    assert c.dtype == np.float64 and c.requires_grad and c.grad is None


def test_full():
    t = mt.full((2, 3), 7.5)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.data, np.full((2, 3), 7.5))
    i = mt.full((2,), 7, dtype=mt.int64)
    assert i.dtype == np.int64
    np.testing.assert_array_equal(i.data, [7, 7])


def test_arange():
    np.testing.assert_array_equal(mt.arange(5).data, np.arange(5))
    assert mt.arange(5).dtype == np.int64
    np.testing.assert_array_equal(mt.arange(1, 7, 2).data, [1, 3, 5])
    f = mt.arange(0, 1, 0.25)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f.data, [0, 0.25, 0.5, 0.75])
    assert mt.arange(5, dtype=mt.float64).dtype == np.float64


@pytest.mark.parametrize("factory", [mt.randn, mt.rand])
def test_random_factories_are_reproducible_with_a_seeded_rng(factory):
    a = factory(3, 4, rng=np.random.default_rng(123))
    b = factory((3, 4), rng=np.random.default_rng(123))
    c = factory(3, 4, rng=np.random.default_rng(124))
    assert a.shape == (3, 4) and a.dtype == np.float32
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    # the generator advances: two draws from one rng differ
    rng = np.random.default_rng(5)
    assert not np.array_equal(factory(5, rng=rng).data, factory(5, rng=rng).data)


def test_randn_and_rand_have_the_right_distribution():
    rng = np.random.default_rng(0)
    n = mt.randn(20_000, rng=rng, dtype=mt.float64).data
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1.0) < 0.05
    u = mt.rand(20_000, rng=rng).data
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02


def test_like_factories_keep_shape_dtype_and_device():
    ref = mt.tensor(np.ones((2, 3)), requires_grad=True)  # float64
    for t in (mt.zeros_like(ref), mt.ones_like(ref), mt.full_like(ref, 3.0),
              mt.randn_like(ref, rng=np.random.default_rng(0))):
        assert t.shape == ref.shape and t.dtype == np.float64 and t.device == "cpu"
        assert not t.requires_grad  # a new leaf, not part of ref's graph
    np.testing.assert_array_equal(mt.zeros_like(ref).data, np.zeros((2, 3)))
    np.testing.assert_array_equal(mt.ones_like(ref).data, np.ones((2, 3)))
    np.testing.assert_array_equal(mt.full_like(ref, 3.0).data, np.full((2, 3), 3.0))
    assert mt.zeros_like(ref, dtype=mt.float32).dtype == np.float32
    assert mt.ones_like(ref, requires_grad=True).requires_grad
    a = mt.randn_like(ref, rng=np.random.default_rng(9))
    b = mt.randn_like(ref, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a.data, b.data)


# ------------------------------------------------------------ attributes

def test_attributes_of_a_fresh_tensor():
    t = mt.tensor(np.arange(6.0).reshape(2, 3))
    assert isinstance(t.data, np.ndarray)
    assert t.grad is None
    assert t.shape == (2, 3) and isinstance(t.shape, tuple)
    assert t.dtype == np.float64
    assert t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t.requires_grad is False
    assert t.device == "cpu"
    assert t.T.shape == (3, 2)


def test_requires_grad_can_be_switched():
    t = mt.zeros(3)
    t.requires_grad = True
    assert t.requires_grad
    t.requires_grad = False
    assert not t.requires_grad


def test_numpy_gives_the_data_as_an_ndarray():
    t = mt.tensor(np.arange(3.0))
    arr = t.numpy()
    assert isinstance(arr, np.ndarray)
    np.testing.assert_array_equal(arr, [0.0, 1.0, 2.0])
    assert np.shares_memory(arr, t.data)  # on the CPU, no copy (documented)


def test_item():
    assert mt.tensor(2.5).item() == 2.5 and isinstance(mt.tensor(2.5).item(), float)
    assert mt.tensor(7).item() == 7 and isinstance(mt.tensor(7).item(), int)
    assert mt.tensor([[4.0]]).item() == 4.0  # any one-element shape


def test_detach():
    x = mt.tensor(np.arange(3.0), requires_grad=True)
    d = (x * 2.0).detach()
    assert isinstance(d, mt.Tensor) and not d.requires_grad and d._ctx is None
    np.testing.assert_array_equal(d.data, [0.0, 2.0, 4.0])


def test_to_cpu_is_a_no_op_on_the_cpu():
    t = mt.zeros(3, requires_grad=True)
    assert t.to("cpu") is t
    assert mt.tensor([1.0], device="cpu").device == "cpu"


def test_astype_makes_a_new_leaf():
    x = mt.tensor(np.arange(3.0), requires_grad=True)
    y = x.astype(mt.float32)
    assert y.dtype == np.float32 and y.requires_grad and y._ctx is None
    assert not x.astype(mt.int64).requires_grad  # integers never require grad


def test_comparisons_give_bool_tensors_without_gradient():
    x = mt.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    for mask, expected in ((x > 1.5, [False, True, True]), (x <= 2.0, [True, True, False]),
                           (x < x * 0.0 + 2.0, [True, False, False]), (x >= 3.0, [False, False, True])):
        assert mask.dtype == np.bool_ and not mask.requires_grad
        np.testing.assert_array_equal(mask.data, expected)


# ------------------------------------------------------------ operators with NumPy and Python on the left

def test_numpy_array_on_the_left_gives_a_tensor():
    r"""``ndarray * Tensor`` would otherwise be computed by NumPy element by element;
    ``__array_ufunc__ = None`` makes NumPy defer to ``Tensor.__rmul__``."""
    t = mt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    arr = np.array([2.0, 3.0])
    cases = {
        "mul": (arr * t, [2.0, 6.0]),
        "add": (arr + t, [3.0, 5.0]),
        "sub": (arr - t, [1.0, 1.0]),
        "div": (arr / t, [2.0, 1.5]),
    }
    for name, (result, expected) in cases.items():
        assert isinstance(result, mt.Tensor), name
        assert result.requires_grad, name
        np.testing.assert_allclose(result.data, expected, err_msg=name)


def test_numpy_matrix_on_the_left_of_matmul():
    t = mt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    m = np.array([[1.0, 0.0], [1.0, 1.0]])
    y = m @ t
    assert isinstance(y, mt.Tensor)
    np.testing.assert_array_equal(y.data, [1.0, 3.0])
    y.sum().backward()
    np.testing.assert_array_equal(t.grad, m.sum(axis=0))


def test_gradient_flows_through_a_numpy_left_operand():
    t = mt.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (np.array([2.0, 3.0]) * t).sum().backward()
    np.testing.assert_array_equal(t.grad, [2.0, 3.0])


def test_python_numbers_keep_the_tensor_dtype():
    r"""$2 \cdot x$ of a float32 tensor stays float32 (NumPy 2 would keep it too, but
    NumPy scalars like ``np.float64(2)`` would not: the lift casts them)."""
    t = mt.tensor([1.0, 2.0])
    for result, expected in ((2 * t, [2.0, 4.0]), (t * 2.0, [2.0, 4.0]), (1 - t, [0.0, -1.0]),
                             (2 / t, [2.0, 1.0]), (t / 2, [0.5, 1.0]), (2 ** t, [2.0, 4.0]),
                             (np.float64(2.0) * t, [2.0, 4.0]), (t ** 2, [1.0, 4.0]), (-t, [-1.0, -2.0])):
        assert isinstance(result, mt.Tensor)
        assert result.dtype == np.float32
        np.testing.assert_allclose(result.data, expected, rtol=1e-6)


# ------------------------------------------------------------ repr

def test_repr():
    assert repr(mt.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(mt.tensor(np.array([1.0, 2.0]))) == "tensor([1., 2.], dtype=float64)"
    assert repr(mt.tensor([1, 2])) == "tensor([1, 2], dtype=int64)"
    assert repr(mt.zeros(2, requires_grad=True)) == "tensor([0., 0.], requires_grad=True)"
    assert repr(mt.tensor(2.5)) == "tensor(2.5)"


def test_repr_of_a_matrix_aligns_rows():
    text = repr(mt.ones(2, 2))
    assert text.startswith("tensor([[1., 1.],")
    assert text.splitlines()[1] == "        [1., 1.]])"
