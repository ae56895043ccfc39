"""Tests for minitensor.optim: the optimizers against hand and NumPy references, the
learning-rate schedules, gradient clipping, and exact resume from a state dict."""
import math

import numpy as np
import pytest

import minitensor as mt
import minitensor.functional as F
from minitensor import nn, optim

F64 = np.float64


def param(values, dtype=F64):
    return nn.Parameter(np.array(values, dtype=dtype))


def run_with_grads(opt, params, grads_per_step):
    """Set each parameter's grad by hand, then step: the optimizer sees exactly these numbers."""
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = None if g is None else np.array(g, dtype=p.dtype)
        opt.step()


# ------------------------------------------------------------------ SGD

GRADS = [[0.5, 1.0], [-1.0, 0.0], [2.0, -0.5]]


def test_sgd_matches_hand_computation():
    p = param([1.0, -2.0])
    run_with_grads(optim.SGD([p], lr=0.1), [p], [[g] for g in GRADS][:1])
    np.testing.assert_allclose(p.numpy(), [0.95, -2.1], rtol=0, atol=1e-15)
    p = param([1.0, -2.0])
    run_with_grads(optim.SGD([p], lr=0.1), [p], [[g] for g in GRADS])
    # p3 = p0 - 0.1 (g1 + g2 + g3) = [1, -2] - 0.1 [1.5, 0.5]
    np.testing.assert_allclose(p.numpy(), [0.85, -2.05], rtol=0, atol=1e-15)


def test_sgd_momentum_matches_hand_computation():
    p = param([1.0, -2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    expected = [
        # v1 = g1 = [0.5, 1];                      p1 = [1, -2] - 0.1 v1
        [0.95, -2.1],
        # v2 = 0.9 v1 + g2 = [-0.55, 0.9];          p2 = p1 - 0.1 v2
        [1.005, -2.19],
        # v3 = 0.9 v2 + g3 = [1.505, 0.31];         p3 = p2 - 0.1 v3
        [0.8545, -2.221],
    ]
    for g, want in zip(GRADS, expected):
        run_with_grads(opt, [p], [[g]])
        np.testing.assert_allclose(p.numpy(), want, rtol=0, atol=1e-14)
    np.testing.assert_allclose(opt.state["velocity"][0], [1.505, 0.31], rtol=0, atol=1e-14)


def test_sgd_with_backward_on_a_quadratic():
    # loss = sum(p^2) has gradient 2p, so each step with lr 0.1 multiplies p by 0.8
    p = param([3.0, -1.0, 0.5])
    opt = optim.SGD([p], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (p * p).sum().backward()
        opt.step()
    np.testing.assert_allclose(p.numpy(), 0.8**3 * np.array([3.0, -1.0, 0.5]), rtol=1e-14)
    assert opt.step_count == 3


def test_zero_grad_and_skipping_params_without_grad():
    a, b = param([1.0, 2.0]), param([3.0])
    opt = optim.SGD([a, b], lr=0.5)
    run_with_grads(opt, [a, b], [[[1.0, 1.0], None]])
    np.testing.assert_array_equal(a.numpy(), [0.5, 1.5])
    np.testing.assert_array_equal(b.numpy(), [3.0])  # no grad: not touched
    opt.zero_grad()
    assert a.grad is None and b.grad is None


# ------------------------------------------------------------------ Adam / AdamW references

def adam_reference(p0, grads, lr, b1, b2, eps, l2=0.0, decoupled=0.0):
    """Plain NumPy Adam, written from the paper: bias-corrected moments; ``l2`` adds
    ``l2 * p`` to the gradient (Adam's weight_decay), ``decoupled`` shrinks p by
    ``lr * decoupled`` before the step (AdamW)."""
    p = np.array(p0, dtype=F64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    history = []
    for t, g in enumerate(grads, start=1):
        p = p - lr * decoupled * p
        g = g + l2 * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        history.append(p.copy())
    return history


def random_problem(seed, shape=(3, 4), steps=6):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), [rng.standard_normal(shape) for _ in range(steps)]


@pytest.mark.parametrize("dtype,atol", [(F64, 1e-12), (np.float32, 1e-6)])
def test_adam_matches_numpy_reference(dtype, atol):
    p0, grads = random_problem(0)
    lr, betas, eps = 0.01, (0.8, 0.95), 1e-8
    p = param(p0, dtype)
    opt = optim.Adam([p], lr=lr, betas=betas, eps=eps)
    ref = adam_reference(p0, grads, lr, *betas, eps)
    for g, want in zip(grads, ref):
        run_with_grads(opt, [p], [[g]])
        assert p.dtype == dtype
        np.testing.assert_allclose(p.numpy(), want, rtol=0, atol=atol)


def test_adam_first_step_moves_each_entry_by_about_lr():
    # with bias correction m_hat = g and v_hat = g^2 at t = 1: the step is lr * sign(g)
    p = param([0.0, 0.0, 0.0])
    run_with_grads(optim.Adam([p], lr=0.01), [p], [[[1e-3, -50.0, 2.0]]])
    np.testing.assert_allclose(p.numpy(), [-0.01, 0.01, -0.01], rtol=1e-4)


def test_adamw_matches_numpy_reference():
    p0, grads = random_problem(1)
    lr, wd = 0.05, 0.1
    p = param(p0)
    opt = optim.AdamW([p], lr=lr, weight_decay=wd)
    ref = adam_reference(p0, grads, lr, 0.9, 0.999, 1e-8, decoupled=wd)
    for g, want in zip(grads, ref):
        run_with_grads(opt, [p], [[g]])
        np.testing.assert_allclose(p.numpy(), want, rtol=0, atol=1e-12)


def test_adam_l2_weight_decay_matches_numpy_reference():
    p0, grads = random_problem(2)
    lr, wd = 0.05, 0.1
    p = param(p0)
    run_with_grads(optim.Adam([p], lr=lr, weight_decay=wd), [p], [[g] for g in grads])
    np.testing.assert_allclose(p.numpy(), adam_reference(p0, grads, lr, 0.9, 0.999, 1e-8, l2=wd)[-1],
                               rtol=0, atol=1e-12)


def test_decoupled_decay_differs_from_l2_with_zero_gradient():
    # A zero gradient (an array, not None) isolates the decay term.
    p0 = np.array([2.0, -0.5, 1e-3])
    lr, wd, steps = 0.01, 0.1, 4
    zeros = [[np.zeros(3)]] * steps

    # AdamW: the Adam part sees g = 0, so m = v = 0 and its step is 0/(0 + eps) = 0;
    # only the decay acts: p_t = (1 - lr wd)^t p0, proportional to p.
    w = param(p0)
    run_with_grads(optim.AdamW([w], lr=lr, weight_decay=wd), [w], zeros)
    np.testing.assert_allclose(w.numpy(), (1 - lr * wd) ** steps * p0, rtol=1e-14)

    # Adam with L2: g = wd p is normalised by sqrt(v), so every entry moves by about lr
    # per step whatever its size: the decay is not proportional to p (the small entry
    # even overshoots through zero).
    a = param(p0)
    run_with_grads(optim.Adam([a], lr=lr, weight_decay=wd), [a], zeros[:1])
    np.testing.assert_allclose(a.numpy(), p0 - lr * np.sign(p0), rtol=0, atol=1e-5)
    assert not np.allclose(a.numpy(), (1 - lr * wd) * p0)


def test_adamw_skip_1d_decay_leaves_vectors_undecayed():
    rng = np.random.default_rng(3)
    w0, b0 = rng.standard_normal((3, 2)), rng.standard_normal(3)
    grads = [[rng.standard_normal((3, 2)), rng.standard_normal(3)] for _ in range(5)]

    def run(**kwargs):
        w, b = param(w0), param(b0)
        run_with_grads(optim.AdamW([w, b], lr=0.05, **kwargs), [w, b], grads)
        return w.numpy(), b.numpy()

    w_skip, b_skip = run(weight_decay=0.1, skip_1d_decay=True)
    w_none, b_none = run(weight_decay=0.0)
    w_all, b_all = run(weight_decay=0.1)
    np.testing.assert_array_equal(b_skip, b_none)  # the bias is exempt: exactly no decay
    np.testing.assert_array_equal(w_skip, w_all)  # the matrix decays as usual
    assert not np.allclose(w_skip, w_none)
    assert not np.allclose(b_all, b_none)  # without the flag the bias does decay
    np.testing.assert_allclose(
        w_skip, adam_reference(w0, [g[0] for g in grads], 0.05, 0.9, 0.999, 1e-8, decoupled=0.1)[-1],
        rtol=0, atol=1e-12)


def test_adam_param_without_grad_is_untouched():
    a, b = param([1.0, 2.0]), param([3.0])
    opt = optim.Adam([a, b], lr=0.1)
    run_with_grads(opt, [a, b], [[[1.0, -1.0], None]] * 2)
    np.testing.assert_array_equal(b.numpy(), [3.0])
    assert opt.state["exp_avg"][1] is None and opt.state["exp_avg"][0] is not None


# ------------------------------------------------------------------ schedules

SCHEDULES = [optim.warmup_linear, optim.warmup_cosine]
KW = dict(warmup=10, total=110, peak_lr=1.0, min_lr=0.1)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_key_values(schedule):
    # step 0 already trains (peak / warmup, not 0); the peak is reached on the last warmup step
    assert schedule(0, **KW) == pytest.approx(0.1)
    assert schedule(4, **KW) == pytest.approx(0.5)
    assert schedule(9, **KW) == pytest.approx(1.0)
    assert schedule(10, **KW) == pytest.approx(1.0)
    assert schedule(60, **KW) == pytest.approx(0.55)  # half-way through the decay: (peak + min) / 2
    assert schedule(110, **KW) == pytest.approx(0.1)
    assert schedule(500, **KW) == pytest.approx(0.1)  # past the end: stays at min_lr


def test_linear_and_cosine_decay_shapes():
    # a quarter into the decay: linear has dropped by a quarter, cosine by (1 - cos(pi/4)) / 2
    assert optim.warmup_linear(35, **KW) == pytest.approx(1.0 - 0.25 * 0.9)
    assert optim.warmup_cosine(35, **KW) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    # cosine is flatter than linear near the peak and below it in the second half
    assert optim.warmup_cosine(20, **KW) > optim.warmup_linear(20, **KW)
    assert optim.warmup_cosine(100, **KW) < optim.warmup_linear(100, **KW)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_monotonic_pieces(schedule):
    lrs = np.array([schedule(s, **KW) for s in range(121)])
    assert np.all(np.diff(lrs[:10]) > 0)  # warmup strictly rises
    assert np.all(np.diff(lrs[10:]) <= 1e-15)  # then never rises
    assert np.all(np.diff(lrs[10:111]) < 0)  # and strictly falls until total
    assert lrs.min() >= 0.1 - 1e-12 and lrs.max() <= 1.0 + 1e-12


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_without_warmup_starts_at_peak(schedule):
    assert schedule(0, warmup=0, total=50, peak_lr=3e-4) == pytest.approx(3e-4)
    assert schedule(50, warmup=0, total=50, peak_lr=3e-4) == pytest.approx(0.0, abs=1e-18)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("step,warmup,total", [(0, 5, 0), (0, -1, 10), (0, 11, 10), (-1, 2, 10)])
def test_schedule_bad_arguments_raise(schedule, step, warmup, total):
    with pytest.raises(ValueError, match="schedule"):
        schedule(step, warmup=warmup, total=total, peak_lr=1.0)


# ------------------------------------------------------------------ clipping

def with_grads(*grads, dtype=F64):
    ps = []
    for g in grads:
        p = nn.Parameter(np.zeros(np.shape(g), dtype=dtype))
        p.grad = None if g is None else np.array(g, dtype=dtype)
        ps.append(p)
    return ps


def test_clip_grad_norm_over_all_grads_together():
    ps = with_grads([3.0, 4.0], [[12.0]], None)  # global norm sqrt(9 + 16 + 144) = 13
    norm = optim.clip_grad_norm(ps, max_norm=6.5)
    assert norm == pytest.approx(13.0, rel=1e-15)
    np.testing.assert_allclose(ps[0].grad, [1.5, 2.0], rtol=1e-6)  # all scaled by the same 1/2
    np.testing.assert_allclose(ps[1].grad, [[6.0]], rtol=1e-6)
    assert ps[2].grad is None
    total = math.sqrt(sum(float((p.grad**2).sum()) for p in ps[:2]))
    assert total == pytest.approx(6.5, rel=1e-6) and total <= 6.5


def test_clip_grad_norm_leaves_small_grads_alone():
    ps = with_grads([3.0, 4.0], [0.1])
    before = [p.grad.copy() for p in ps]
    norm = optim.clip_grad_norm(ps, max_norm=10.0)
    assert norm == pytest.approx(math.sqrt(25.01))
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p.grad, b)


def test_clip_grad_norm_float32_does_not_overflow():
    # squares of 1e20 overflow float32 (max ~3.4e38); the norm is accumulated in float64
    ps = with_grads([1e20, 1e20], dtype=np.float32)
    norm = optim.clip_grad_norm(ps, max_norm=1.0)
    assert norm == pytest.approx(math.sqrt(2) * 1e20, rel=1e-6)
    assert ps[0].grad.dtype == np.float32
    np.testing.assert_allclose(ps[0].grad, [2**-0.5, 2**-0.5], rtol=1e-5)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_clip_grad_norm_returns_nonfinite_norm_unhidden(bad):
    ps = with_grads([bad, 1.0], [2.0])
    norm = optim.clip_grad_norm(ps, max_norm=1.0)
    assert (math.isinf(norm) if math.isinf(bad) else math.isnan(norm))
    # grads left as they were, so the caller can see and skip the step
    np.testing.assert_array_equal(ps[1].grad, [2.0])
    np.testing.assert_array_equal(ps[0].grad, [bad, 1.0])


def test_clip_grad_norm_without_grads():
    assert optim.clip_grad_norm(with_grads(None, None), max_norm=1.0) == 0.0


# ------------------------------------------------------------------ exact resume

def make_model(seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(3, 8, rng=rng), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 4, rng=rng))


def train_steps(model, opt, start, stop, data):
    xs, ys = data
    for step in range(start, stop):
        opt.lr = optim.warmup_cosine(step, warmup=2, total=8, peak_lr=0.05)
        opt.zero_grad()
        F.cross_entropy(model(mt.tensor(xs[step])), ys[step]).backward()
        optim.clip_grad_norm(opt.params, max_norm=1.0)
        opt.step()


def make_optimizer(kind, params):
    if kind == "sgd":
        return optim.SGD(params, lr=0.05, momentum=0.9)
    if kind == "adam":
        return optim.Adam(params, lr=0.05, weight_decay=0.01)
    return optim.AdamW(params, lr=0.05, weight_decay=0.1, skip_1d_decay=True)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("through_file", [False, True])
def test_state_dict_gives_an_exact_resume(kind, through_file, tmp_path):
    n = 4
    rng = np.random.default_rng(11)
    data = (rng.standard_normal((2 * n, 6, 3)).astype(np.float32), rng.integers(0, 4, (2 * n, 6)))

    straight = make_model(0)
    opt = make_optimizer(kind, straight.parameters())
    train_steps(straight, opt, 0, 2 * n, data)

    first = make_model(0)
    opt1 = make_optimizer(kind, first.parameters())
    train_steps(first, opt1, 0, n, data)
    model_state, opt_state = first.state_dict(), opt1.state_dict()
    assert opt_state["step_count"] == n
    if through_file:  # the way a checkpoint really travels: via minitensor.io
        mt.save(model_state, tmp_path / "model.npz")
        mt.save(opt_state, tmp_path / "opt.npz")
        model_state, opt_state = mt.load(tmp_path / "model.npz"), mt.load(tmp_path / "opt.npz")

    resumed = make_model(99)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(model_state)
    opt2 = make_optimizer(kind, resumed.parameters())
    opt2.load_state_dict(opt_state)
    assert opt2.step_count == n
    train_steps(resumed, opt2, n, 2 * n, data)

    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert a.dtype == b.dtype, name
        assert a.numpy().tobytes() == b.numpy().tobytes(), f"{kind}: {name} differs after resume"


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_resume_without_optimizer_state_differs(kind):
    # the control for the test above: dropping the optimizer state changes the result
    n = 3
    rng = np.random.default_rng(12)
    data = (rng.standard_normal((2 * n, 6, 3)).astype(np.float32), rng.integers(0, 4, (2 * n, 6)))
    straight = make_model(0)
    train_steps(straight, make_optimizer(kind, straight.parameters()), 0, 2 * n, data)
    first = make_model(0)
    train_steps(first, make_optimizer(kind, first.parameters()), 0, n, data)
    resumed = make_model(0)
    resumed.load_state_dict(first.state_dict())
    opt = make_optimizer(kind, resumed.parameters())
    opt.step_count = n
    train_steps(resumed, opt, n, 2 * n, data)
    assert not np.array_equal(straight[0].weight.numpy(), resumed[0].weight.numpy())


def test_optimizer_state_dict_is_a_copy_and_checks_shapes():
    p = param([1.0, 2.0])
    opt = optim.Adam([p], lr=0.1)
    run_with_grads(opt, [p], [[[1.0, 1.0]]])
    sd = opt.state_dict()
    assert set(sd) == {"step_count", "lr", "param_steps", "exp_avg.0", "exp_avg_sq.0"}
    sd["exp_avg.0"][...] = 42.0
    assert not np.any(opt.state["exp_avg"][0] == 42.0)
    sd["exp_avg.0"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"exp_avg\.0.*\(3,\).*\(2,\)"):
        optim.Adam([param([0.0, 0.0])]).load_state_dict(sd)


# ------------------------------------------------------------------ errors

def test_constructor_errors():
    p = param([1.0])
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam(iter([]))
    for make in (lambda: optim.SGD([p], lr=-0.1), lambda: optim.Adam([p], lr=-1e-3),
                 lambda: optim.AdamW([p], lr=-1e-3)):
        with pytest.raises(ValueError, match="lr"):
            make()
    for betas in [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9, -0.5)]:
        with pytest.raises(ValueError, match="betas"):
            optim.Adam([p], betas=betas)
        with pytest.raises(ValueError, match="betas"):
            optim.AdamW([p], betas=betas)
    for momentum in (1.0, -0.5):
        with pytest.raises(ValueError, match="momentum"):
            optim.SGD([p], lr=0.1, momentum=momentum)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), "0.1", None, True])
def test_non_finite_or_non_numeric_hyperparameters_are_refused(value):
    # NaN slips past "lr < 0" (every comparison with NaN is False) and used to surface only as a
    # diverged loss steps later; inf makes the first step infinite.
    p = param([1.0])
    for make in (lambda: optim.SGD([p], lr=value), lambda: optim.Adam([p], lr=value),
                 lambda: optim.AdamW([p], lr=value)):
        with pytest.raises(ValueError, match=r"lr must be a finite number >= 0"):
            make()
    with pytest.raises(ValueError, match="weight_decay must be a finite number"):
        optim.AdamW([p], lr=0.1, weight_decay=value)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        optim.Adam([p], lr=0.1, eps=value)


def test_negative_weight_decay_and_eps_are_refused():
    p = param([1.0])
    with pytest.raises(ValueError, match="weight_decay"):
        optim.AdamW([p], lr=0.1, weight_decay=-0.01)
    with pytest.raises(ValueError, match="eps"):
        optim.Adam([p], lr=0.1, eps=-1e-8)


@pytest.mark.parametrize("max_norm", [0, 0.0, -1.0, float("nan"), -float("inf"), "1", None, True])
def test_clip_grad_norm_refuses_a_non_positive_or_nan_max_norm(max_norm):
    # -1 used to flip every gradient (training uphill) and 0 to erase them, silently.
    p = param([3.0, 4.0])
    p.grad = np.array([3.0, 4.0])
    with pytest.raises(ValueError, match="max_norm must be a number > 0"):
        optim.clip_grad_norm([p], max_norm)
    np.testing.assert_array_equal(p.grad, [3.0, 4.0])  # nothing was touched


def test_clip_grad_norm_with_inf_only_measures():
    p = param([3.0, 4.0])
    p.grad = np.array([3.0, 4.0])
    assert optim.clip_grad_norm([p], float("inf")) == pytest.approx(5.0)
    np.testing.assert_array_equal(p.grad, [3.0, 4.0])


def test_step_with_wrong_grad_shape_raises():
    p = param([[1.0, 2.0]])
    p.grad = np.ones(2)
    with pytest.raises(ValueError, match=r"\(1, 2\).*\(2,\)"):
        optim.SGD([p], lr=0.1).step()


def test_adam_bias_correction_counts_each_parameters_own_updates():
    # A parameter that had no gradient for the first steps starts its moments late: its first
    # update must be bias-corrected as update 1 (a full lr-sized step), not as update 3.
    a, b = param([1.0]), param([1.0])
    opt = optim.Adam([a, b], lr=0.1)
    for _ in range(2):
        a.grad, b.grad = np.array([1.0]), None
        opt.step()
    a.grad, b.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    assert list(opt.param_steps) == [3, 1]
    np.testing.assert_allclose(b.data, [1.0 - 0.1], rtol=1e-6)
