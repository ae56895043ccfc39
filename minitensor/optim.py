r"""Optimizers, learning-rate schedules and gradient clipping.

Optimizers update ``p.data`` in place from ``p.grad``. Schedules are pure
functions of the step, so a training loop (and its resume) just sets
``opt.lr = schedule(step)`` before each ``opt.step()``.
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels
from .backend import get_array_module, to_device, to_numpy
from .kernels import flat_adam


def _check_number(optimizer, name, value, *, minimum):
    # NaN compares False with everything, so "value < minimum" alone would let it through
    # (and an lr of NaN or inf only shows up steps later as a diverged loss).
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
        and math.isfinite(value) and value >= minimum
    if not ok:
        raise ValueError(f"{type(optimizer).__name__}: {name} must be a finite number >= {minimum}, got {value!r}")


class Optimizer:
    """Holds the parameters, the learning rate and per-parameter state arrays."""

    state_names: tuple = ()

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        _check_number(self, "lr", lr, minimum=0.0)
        self.lr = lr
        self.step_count = 0  # calls to step()
        self.param_steps = np.zeros(len(self.params), dtype=np.int64)  # updates each parameter received
        self.state = {name: [None] * len(self.params) for name in self.state_names}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.step_count += 1
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if p.grad.shape != p.shape:
                raise ValueError(f"{type(self).__name__}: parameter {i} has shape {p.shape} but its grad {p.grad.shape}")
            self.param_steps[i] += 1
            for name in self.state_names:
                buf = self.state[name][i]
                if buf is None or get_array_module(buf) is not get_array_module(p.data):
                    self.state[name][i] = (get_array_module(p.data).zeros_like(p.data) if buf is None
                                           else to_device(buf, p.device))
            self._update(i, p, p.grad)

    def _update(self, i, p, g):
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Arrays (NumPy) and scalars needed to resume exactly: ``name.i`` per parameter."""
        out = {"step_count": self.step_count, "lr": self.lr, "param_steps": self.param_steps.copy()}
        for name, bufs in self.state.items():
            for i, b in enumerate(bufs):
                if b is not None:
                    out[f"{name}.{i}"] = to_numpy(b).copy()
        return out

    def load_state_dict(self, state):
        self.step_count = int(state["step_count"])
        self.lr = float(state["lr"])
        steps = np.asarray(state["param_steps"], dtype=np.int64)
        if steps.shape != self.param_steps.shape:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state is for {steps.size} parameters, "
                             f"this optimizer has {len(self.params)}")
        self.param_steps = steps.copy()
        for name, bufs in self.state.items():
            for i, p in enumerate(self.params):
                key = f"{name}.{i}"
                if key in state:
                    if tuple(state[key].shape) != p.shape:
                        raise ValueError(f"{type(self).__name__}.load_state_dict: {key} has shape "
                                         f"{tuple(state[key].shape)} but parameter {i} has {p.shape}")
                    bufs[i] = to_device(state[key].astype(p.dtype), p.device)
                else:
                    bufs[i] = None


class SGD(Optimizer):
    r"""Gradient descent with optional momentum: $v \leftarrow \mu v + g$, $\theta \leftarrow \theta - \eta v$."""

    state_names = ("velocity",)

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum

    def _update(self, i, p, g):
        if self.momentum:
            v = self.state["velocity"][i]
            v *= self.momentum
            v += g
            g = v
        p.data -= self.lr * g


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with bias correction:

    $$m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,$$
    $$\theta \leftarrow \theta - \eta\,\frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon}.$$

    ``weight_decay`` here is the classic L2 form (added to $g$); for the decoupled
    form use :class:`AdamW`.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        _check_number(self, "eps", eps, minimum=0.0)
        _check_number(self, "weight_decay", weight_decay, minimum=0.0)
        self.betas, self.eps, self.weight_decay = (b1, b2), eps, weight_decay

    def step(self):
        # With the fast kernels on the CPU every parameter is updated at once, by the steps of
        # _update below run over flat arrays (minitensor/kernels/flat_adam.py); else one at a time.
        if kernels.mode() == "fast" and flat_adam.step(self, (Adam, AdamW), AdamW):
            return
        super().step()

    def _update(self, i, p, g):
        if self.weight_decay and type(self) is Adam:
            g = g + self.weight_decay * p.data
        b1, b2 = self.betas
        m, v = self.state["exp_avg"][i], self.state["exp_avg_sq"][i]
        t = self.param_steps[i]  # this parameter's own update count: its moments' age
        # BEGIN SOLUTION lesson 05: Adam._update: the moment updates and bias-corrected step of Adam's docstring (m and v updated in place)
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        step_size = self.lr / (1 - b1 ** t)
        denom = (v / (1 - b2 ** t)) ** 0.5 + self.eps
        p.data -= step_size * (m / denom)
        # END SOLUTION


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019):
    $\theta \leftarrow \theta - \eta\lambda\theta$ before the Adam step, so the decay is not
    rescaled by $\sqrt v$.

    ``skip_1d_decay=True`` exempts parameters with fewer than 2 dimensions
    (biases and LayerNorm gains), as GPT-style recipes do.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, skip_1d_decay=False):
        super().__init__(params, lr, betas, eps, weight_decay)
        self.skip_1d_decay = skip_1d_decay

    def _update(self, i, p, g):
        if self.weight_decay and not (self.skip_1d_decay and p.ndim < 2):
            p.data -= (self.lr * self.weight_decay) * p.data
        super()._update(i, p, g)


# ------------------------------------------------------------------ schedules

def _check_schedule(step, warmup, total):
    if total <= 0 or warmup < 0 or warmup > total:
        raise ValueError(f"schedule: need 0 <= warmup <= total and total > 0, got warmup={warmup}, total={total}")
    if step < 0:
        raise ValueError(f"schedule: step must be >= 0, got {step}")


def warmup_linear(step, *, warmup, total, peak_lr, min_lr=0.0):
    r"""Linear warmup to ``peak_lr`` (step $s < $ ``warmup`` gets ``peak_lr`` $\cdot (s+1)/$``warmup``, never 0),
    then linear decay to ``min_lr`` at step ``total``."""
    _check_schedule(step, warmup, total)
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak_lr + (min_lr - peak_lr) * frac


def warmup_cosine(step, *, warmup, total, peak_lr, min_lr=0.0):
    r"""Linear warmup, then cosine annealing: $\eta = \eta_{\min} + \tfrac12(\eta_{\max}-\eta_{\min})(1+\cos\pi f)$,
    with $f$ the fraction of the post-warmup steps done (GPT-1's schedule)."""
    _check_schedule(step, warmup, total)
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * frac))


# ------------------------------------------------------------------ clipping

def clip_grad_norm(params, max_norm):
    r"""Scale all gradients by $\min(1, c / \lVert g \rVert_2)$, the norm taken over every
    gradient together. Returns the norm before clipping (inf/nan are returned as-is, not hidden).

    ``max_norm`` must be > 0 (``inf``: measure the norm, clip nothing). A negative $c$ would
    flip every gradient (training uphill) and 0 would erase them, so both are refused."""
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.floating, np.integer)) \
            or not max_norm > 0:  # also False for NaN
        raise ValueError(f"clip_grad_norm: max_norm must be a number > 0 (inf: no clipping), got {max_norm!r}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in grads))
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total
