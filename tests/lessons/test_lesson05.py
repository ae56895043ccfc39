r"""Checks for lesson 05 (optimizers). Run with `pytest -m lesson05`.

The exercises: ``Adam._update`` in minitensor/optim.py, tested against a plain
NumPy transcription of the update written here, and the lesson's own
``warmup_cosine_lr``, tested against ``mt.optim.warmup_cosine``. The lesson is
executed once per module with runpy for its function and its demos.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitensor as mt

pytestmark = pytest.mark.lesson05





# ------------------------------------------------------------------ a NumPy Adam, written from the paper

def adam_reference(theta, grads, *, lr, betas, eps, weight_decay=0.0, decoupled=False):
    """Adam (Kingma & Ba, Algorithm 1) on one array; returns (theta, m, v) after every step.

    ``decoupled=False`` adds ``weight_decay * theta`` to the gradient (L2);
    ``decoupled=True`` shrinks theta by ``lr * weight_decay`` first (AdamW).
    """
    b1, b2 = betas
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    history = []
    for t, g in enumerate(grads, start=1):
        if decoupled:
            theta = theta - lr * weight_decay * theta
        elif weight_decay:
            g = g + weight_decay * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        history.append((theta, m, v))
    return history


adam_settings = st.fixed_dictionaries({
    "lr": st.sampled_from([1e-4, 1e-3, 0.01, 0.3]),
    "betas": st.tuples(st.sampled_from([0.0, 0.5, 0.9]), st.sampled_from([0.9, 0.99, 0.999])),
    "eps": st.sampled_from([1e-8, 1e-3]),
    "weight_decay": st.sampled_from([0.0, 0.01, 0.5]),
})


def run_library(cls, shapes, grads_per_step, start, **settings):
    params = [mt.nn.Parameter(s.copy()) for s in start]
    opt = cls(params, **settings)
    history = []
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.copy()
        opt.step()
        history.append([(p.numpy().copy(), opt.state["exp_avg"][i].copy(), opt.state["exp_avg_sq"][i].copy())
                        for i, p in enumerate(params)])
    return history


def check_against_reference(cls, shapes, n_steps, seed, settings, decoupled):
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) * 10.0 ** rng.integers(-3, 3) for s in shapes] for _ in range(n_steps)]
    got = run_library(cls, shapes, grads, start, **settings)
    for i, shape in enumerate(shapes):
        expected = adam_reference(start[i], [g[i] for g in grads], decoupled=decoupled, **settings)
        for t, (theta, m, v) in enumerate(expected):
            for name, a, b in zip(("theta", "m", "v"), got[t][i], (theta, m, v)):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"param {i} {name} at step {t + 1}")


shape_lists = st.lists(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), min_size=1, max_size=3)


@given(shape_lists, st.integers(1, 6), st.integers(0, 2**32 - 1), adam_settings)
def test_adam_matches_numpy_reference(shapes, n_steps, seed, settings):
    check_against_reference(mt.optim.Adam, shapes, n_steps, seed, settings, decoupled=False)


@given(shape_lists, st.integers(1, 6), st.integers(0, 2**32 - 1), adam_settings)
def test_adamw_matches_numpy_reference(shapes, n_steps, seed, settings):
    check_against_reference(mt.optim.AdamW, shapes, n_steps, seed, settings, decoupled=True)


@given(hnp.arrays(np.float64, (5,), elements=st.floats(-1e3, 1e3).filter(lambda x: abs(x) > 1e-3)))
def test_adam_first_step_moves_every_coordinate_by_lr(g):
    """Bias-corrected: m_hat_1 / sqrt(v_hat_1) = g / |g|. Without the correction it is ~3.16 sign(g)."""
    p = mt.nn.Parameter(np.zeros(5))
    opt = mt.optim.Adam([p], lr=0.1, eps=0.0)
    p.grad = g.copy()
    opt.step()
    np.testing.assert_allclose(p.numpy(), -0.1 * np.sign(g), rtol=1e-12)


@given(st.integers(0, 2**32 - 1), st.sampled_from([1e-3, 1e3]))
def test_adam_updates_do_not_depend_on_the_gradient_scale(seed, scale):
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(4) for _ in range(5)]
    results = []
    for c in (1.0, scale):
        p = mt.nn.Parameter(np.ones(4))
        opt = mt.optim.Adam([p], lr=0.01, eps=0.0)
        for g in grads:
            p.grad = c * g
            opt.step()
        results.append(p.numpy().copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)


def test_adam_state_is_updated_in_place_and_persists():
    """m and v are the optimizer's memory: a second step must build on the first."""
    p = mt.nn.Parameter(np.zeros(2))
    opt = mt.optim.Adam([p], lr=0.1, betas=(0.5, 0.5))
    for _ in range(2):
        p.grad = np.array([1.0, -2.0])
        opt.step()
    # m_2 = 0.5 * 0.5 g + 0.5 g = 0.75 g,  v_2 = 0.75 g^2
    np.testing.assert_allclose(opt.state["exp_avg"][0], [0.75, -1.5])
    np.testing.assert_allclose(opt.state["exp_avg_sq"][0], [0.75, 3.0])


# ------------------------------------------------------------------ the lesson's warmup_cosine_lr

@st.composite
def schedules(draw):
    total = draw(st.integers(1, 300))
    warmup = draw(st.integers(0, total))
    peak = draw(st.sampled_from([2.5e-4, 1e-3, 0.1, 1.0]))
    low = draw(st.sampled_from([0.0, 0.1])) * peak
    return {"warmup": warmup, "total": total, "peak_lr": peak, "min_lr": low}


@given(schedules())
def test_lesson_schedule_matches_library_at_every_step(lesson, kw):
    mine = lesson["warmup_cosine_lr"]
    for step in range(kw["total"] + 20):  # past the end too: held at min_lr
        assert mine(step, **kw) == pytest.approx(mt.optim.warmup_cosine(step, **kw), rel=1e-12, abs=1e-15), step


def test_lesson_schedule_gpt1_values(lesson):
    lr = lesson["warmup_cosine_lr"]
    kw = {"warmup": 2000, "total": 100_000, "peak_lr": 2.5e-4}
    assert lr(0, **kw) == pytest.approx(2.5e-4 / 2000)  # the first update already moves
    assert lr(999, **kw) == pytest.approx(1.25e-4)
    assert lr(1999, **kw) == pytest.approx(2.5e-4)  # peak at the last warmup step
    assert lr(2000, **kw) == pytest.approx(2.5e-4)  # the cosine starts flat
    assert lr(51_000, **kw) == pytest.approx(1.25e-4)  # half-way through the decay: half the peak
    assert lr(100_000, **kw) == 0.0
    assert lr(150_000, **kw) == 0.0
    for step, yours, library in lesson["schedule_table"]:
        assert yours == pytest.approx(library, rel=1e-12, abs=1e-18), step


# ------------------------------------------------------------------ the library's schedules: key values

@pytest.mark.parametrize("schedule", [mt.optim.warmup_cosine, mt.optim.warmup_linear])
def test_schedule_key_values(schedule):
    kw = {"warmup": 10, "total": 110, "peak_lr": 1.0, "min_lr": 0.1}
    assert schedule(0, **kw) == pytest.approx(0.1)  # 1/10 of the peak
    assert schedule(4, **kw) == pytest.approx(0.5)
    assert schedule(9, **kw) == pytest.approx(1.0)
    assert schedule(10, **kw) == pytest.approx(1.0)
    assert schedule(60, **kw) == pytest.approx(0.55)  # half-way: the mean of peak and min, for both shapes
    assert schedule(110, **kw) == pytest.approx(0.1)
    assert schedule(500, **kw) == pytest.approx(0.1)
    values = [schedule(s, **kw) for s in range(200)]
    assert max(values) == pytest.approx(1.0)
    assert all(b <= a + 1e-15 for a, b in zip(values[9:], values[10:])), "must not rise after the warmup"


def test_cosine_and_linear_differ_in_shape():
    kw = {"warmup": 0, "total": 100, "peak_lr": 1.0}
    # a quarter of the way: the cosine is still high ((1 + cos(pi/4)) / 2 = 0.854), the line at 0.75
    assert mt.optim.warmup_cosine(25, **kw) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert mt.optim.warmup_linear(25, **kw) == pytest.approx(0.75)


def test_schedules_reject_bad_arguments():
    with pytest.raises(ValueError):
        mt.optim.warmup_cosine(0, warmup=20, total=10, peak_lr=1.0)
    with pytest.raises(ValueError):
        mt.optim.warmup_linear(-1, warmup=0, total=10, peak_lr=1.0)


# ------------------------------------------------------------------ gradient clipping

@given(st.integers(0, 2**32 - 1), st.sampled_from([0.1, 1.0, 10.0]))
def test_clip_grad_norm_scales_to_max_norm_keeping_direction(seed, max_norm):
    rng = np.random.default_rng(seed)
    params = [mt.nn.Parameter(np.zeros(s)) for s in ((3,), (2, 4))]
    for p in params:
        p.grad = rng.standard_normal(p.shape) * 10
    before = np.concatenate([p.grad.ravel() for p in params])
    norm = mt.optim.clip_grad_norm(params, max_norm)
    after = np.concatenate([p.grad.ravel() for p in params])
    assert norm == pytest.approx(np.linalg.norm(before))
    expected = before * min(1.0, max_norm / np.linalg.norm(before))
    np.testing.assert_allclose(after, expected, rtol=1e-5)


# ------------------------------------------------------------------ the lesson's demos

def test_bias_correction_demo(lesson):
    rows = lesson["bias_demo"]
    assert len(rows) == 1000
    for t, m, m_hat, v, v_hat, step_over_lr in rows:
        assert m_hat == pytest.approx(2.0, rel=1e-9), t
        assert v_hat == pytest.approx(4.0, rel=1e-9), t
        assert step_over_lr == pytest.approx(1.0, rel=1e-6), t
    assert rows[0][1] == pytest.approx(0.2) and rows[0][3] == pytest.approx(0.004)  # raw moments start small


def test_decoupled_weight_decay_demo(lesson):
    adam_l2, adamw = lesson["decay_demo"]["Adam"], lesson["decay_demo"]["AdamW"]
    shrink = (1 - 0.01 * 0.1) ** 500
    assert adamw[1] == pytest.approx(shrink, rel=1e-9)  # no loss gradient: pure decay
    assert abs(adamw[0] - shrink) < 0.05  # the sign-flipping gradient averages out
    assert adam_l2[1] < 1e-3  # L2 under Adam: driven to zero
    assert adam_l2[0] > 0.9  # ...while the weight with big gradients is hardly decayed


def test_warmup_demo_first_steps_are_largest(lesson):
    steps = lesson["noise_steps"]
    assert steps[1] == pytest.approx(1.0, abs=1e-4)  # sign(g): every coordinate moves by lr
    predicted = math.sqrt(2 / math.pi) * math.sqrt((1 - 0.9) / (1 + 0.9))
    assert steps[1000] == pytest.approx(predicted, rel=0.05)
    assert steps[1] > steps[10] > steps[100]


def test_clipping_demo(lesson):
    assert lesson["norm_before"] == pytest.approx(math.sqrt(30**2 + 40**2 + 1 + 0.25 + 0.04))
    assert np.linalg.norm(lesson["flat_after"]) == pytest.approx(1.0, rel=1e-5)
    assert lesson["cosine"](lesson["flat_before"], lesson["flat_after"]) == pytest.approx(1.0)


# Measured final losses of the lesson's comparison (seed 0, 300 steps):
# SGD 0.637, SGD+momentum 0.434, Adam 0.008, AdamW recipe 0.006. Over seeds 0-5 the
# order Adam < momentum < SGD held every time, Adam always below 0.01.
def test_optimizer_comparison_ordering(lesson):
    final = {name: losses[-1] for name, (losses, _) in lesson["comparison"].items()}
    assert final["Adam"] < final["SGD+momentum"] < final["SGD"]
    assert final["Adam"] < 0.05
    assert final["AdamW+warmup+cosine+clip"] < 0.05
    assert lesson["comparison"]["Adam"][1] >= 0.95
    for losses, _ in lesson["comparison"].values():
        assert len(losses) == lesson["STEPS"]
        assert losses[0] == pytest.approx(lesson["comparison"]["SGD"][0][0])  # the same start for all


def test_quadratic_demo_step_size_limit(lesson):
    run = lesson["quadratic_run"]
    assert run(0.079)[-1] < 1e-2  # below 2 / h_max = 0.08: converges
    assert run(0.081)[-1] > 1e3  # above it: diverges
    # momentum 0.5 reaches 1e-6 in fewer than half the steps of plain SGD at the same lr
    steps_to = lesson["steps_to"]
    assert steps_to(run(0.04, momentum=0.5)) < steps_to(run(0.04)) / 2
