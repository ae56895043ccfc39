"""minitensor.kernels.flat_adam: every parameter's Adam/AdamW update in one pass over flat arrays gives
the formula's numbers bit for bit (``Adam._update``, run under ``kernels.use("reference")``), and
falls back to the formula, or rebuilds its arrays, whenever it must."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitensor import kernels, nn, optim
from minitensor.kernels import flat_adam, threads

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,), (6, 6), (6,)]  # weights and vectors mixed, as in a model


def make_params(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]


def set_grads(params, seed, missing=()):
    rng = np.random.default_rng(seed)
    for i, p in enumerate(params):
        p.grad = None if i in missing else rng.standard_normal(p.shape).astype(p.dtype)


def train(make_opt, dtype, mode, steps=4, missing_at=None, between=None):
    """Parameters and optimizer state after ``steps`` steps of hand-set gradients, in kernel ``mode``."""
    with kernels.use(mode):
        params = make_params(dtype)
        opt = make_opt(params)
        for k in range(steps):
            opt.lr = opt.lr * 0.9  # a schedule changes lr between steps
            set_grads(params, seed=100 + k, missing=missing_at.get(k, ()) if missing_at else ())
            opt.step()
            if between is not None:
                between(k, params, opt)
        return [p.data.copy() for p in params], opt.state_dict(), opt


OPTIMIZERS = {
    "adamw_skip_1d": lambda ps: optim.AdamW(ps, lr=3e-3, weight_decay=0.1, skip_1d_decay=True),
    "adamw": lambda ps: optim.AdamW(ps, lr=3e-3, betas=(0.8, 0.99), weight_decay=0.1),
    "adamw_no_decay": lambda ps: optim.AdamW(ps, lr=1e-2, weight_decay=0.0),
    "adam": lambda ps: optim.Adam(ps, lr=1e-2),
    "adam_l2": lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.05, eps=1e-6),
}


def assert_same(a, b):
    (pa, sa, _), (pb, sb, _) = a, b
    for x, y in zip(pa, pb):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert np.array_equal(sa[key], sb[key]), key


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_update_is_the_formulas_bit_for_bit(name, dtype):
    fast = train(OPTIMIZERS[name], dtype, "fast")
    assert fast[2]._flat_arrays is not None  # the flat path ran
    assert_same(fast, train(OPTIMIZERS[name], dtype, "reference"))


@settings(max_examples=20, deadline=None)
@given(shapes=st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple), min_size=1, max_size=6),
       block=st.sampled_from([8, 64, 1 << 17]))
def test_any_shapes_and_block_size_give_the_formulas_numbers(shapes, block):
    before = threads.BLOCK_ELEMENTS
    threads.BLOCK_ELEMENTS = block  # small blocks: parameters cut across blocks, several per block
    try:
        runs = []
        for mode in ("fast", "reference"):
            with kernels.use(mode):
                params = make_params(np.float32, shapes=shapes)
                opt = optim.AdamW(params, lr=1e-2, weight_decay=0.1, skip_1d_decay=True)
                for k in range(3):
                    set_grads(params, seed=k)
                    opt.step()
                runs.append([p.data.copy() for p in params])
        assert all(np.array_equal(x, y) for x, y in zip(*runs))
    finally:
        threads.BLOCK_ELEMENTS = before


def test_parameters_and_moments_become_views_of_the_flat_arrays():
    params = make_params(np.float32)
    opt = optim.AdamW(params, lr=1e-3)
    set_grads(params, 0)
    with kernels.use("fast"):  # also when the suite runs with MINITENSOR_KERNELS=reference
        opt.step()
    flat = opt._flat_arrays
    for i, p in enumerate(params):
        assert np.shares_memory(p.data, flat.p) and p.data.shape == SHAPES[i]
        assert np.shares_memory(opt.state["exp_avg"][i], flat.moments["exp_avg"])


def test_a_missing_gradient_falls_back_to_the_formula_and_stays_exact():
    # step 1 has no gradient for parameter 2: its update count falls behind the others',
    # so every later step also takes the formula (the counts differ); the numbers match throughout
    missing = {1: (2,)}
    fast = train(OPTIMIZERS["adamw_skip_1d"], np.float32, "fast", steps=4, missing_at=missing)
    assert_same(fast, train(OPTIMIZERS["adamw_skip_1d"], np.float32, "reference", steps=4, missing_at=missing))
    assert list(fast[2].param_steps) == [4, 4, 3, 4, 4, 4]


def test_replaced_data_and_loaded_state_rebuild_the_flat_arrays():
    # a model whose arrays are replaced (a checkpoint loaded) and an optimizer state loaded between steps
    def between(k, params, opt):
        if k == 1:
            for p in params:
                p.data = p.data * 1.5  # new arrays: no longer views of the flat buffer
        if k == 2:
            opt.load_state_dict(opt.state_dict())  # new moment arrays
    fast = train(OPTIMIZERS["adamw"], np.float32, "fast", steps=5, between=between)
    assert_same(fast, train(OPTIMIZERS["adamw"], np.float32, "reference", steps=5, between=between))


def test_the_flat_path_is_skipped_where_it_does_not_apply():
    called = []

    class MyAdam(optim.Adam):  # a subclass may change _update: the formula must run
        def _update(self, i, p, g):
            called.append(i)
            super()._update(i, p, g)

    params = make_params(np.float32)
    opt = MyAdam(params, lr=1e-3)
    set_grads(params, 0)
    with kernels.use("fast"):
        opt.step()
    assert called == list(range(len(params)))
    assert getattr(opt, "_flat_arrays", None) is None

    mixed = make_params(np.float32)[:2] + make_params(np.float64)[:1]
    assert not flat_adam._applies(optim.Adam(mixed, lr=1e-3), (optim.Adam, optim.AdamW))
    twice = make_params(np.float32)[:2]
    assert not flat_adam._applies(optim.Adam(twice + twice[:1], lr=1e-3), (optim.Adam, optim.AdamW))
    sgd = optim.SGD(make_params(np.float32), lr=0.1)
    assert not flat_adam._applies(sgd, (optim.Adam, optim.AdamW))


def test_a_wrong_gradient_shape_still_raises():
    params = make_params(np.float32)
    opt = optim.AdamW(params, lr=1e-3)
    set_grads(params, 0)
    params[0].grad = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="parameter 0 has shape"):
        opt.step()
