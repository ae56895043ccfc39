r"""Gradient checking: compare the analytic backward with central differences.

For a function $f$ with output $y$ we fix a random weighting $w$ of the output
and check the scalar $s = \sum w \odot f(x)$, whose gradient the backward pass
computes as the vector-Jacobian product $w^\top J$. Numerically, each entry is

$$\frac{\partial s}{\partial x_i} \approx \frac{s(x + \epsilon e_i) - s(x - \epsilon e_i)}{2\epsilon},$$

exact up to $O(\epsilon^2)$. In float64 with $\epsilon = 10^{-6}$ the truncation
error ($\sim\epsilon^2$) and the rounding error ($\sim 10^{-16}/\epsilon$) are both
far below the tolerances; in float32 the rounding error alone is $\sim 10^{-7}/\epsilon$,
which is why gradchecks run in float64.

Both checks run their analytic backward in the engine's debug mode
(:class:`~minitensor.autograd.debug_mode`): a backward that returns one of its
saved or forward arrays, or another gradient, raises
:class:`~minitensor.autograd.AutogradContractError` naming the op.
"""
from __future__ import annotations

import numpy as np

from .autograd import debug_mode
from .backend import to_numpy
from .tensor import Tensor

#: The one table of tolerances. ``gradcheck`` uses the float64 row; the float32
#: row is for comparing a float32 computation with a float64 (or another device's) one.
TOLERANCES = {
    "float64": {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3},
    "float32": {"atol": 1e-5, "rtol": 1e-4},
    # a kernel against its formula (minitensor.kernels): the same math summed or rounded in another order
    "kernel": {"float32": {"atol": 1e-5, "rtol": 1e-4}, "float64": {"atol": 1e-12, "rtol": 1e-10}},
}


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree."""


def _inputs_to_check(inputs):
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; use float64 "
                            "(in float32 rounding error swamps the finite differences)")
    return checked


def _output_weights(out, seed):
    return np.random.default_rng(seed).standard_normal(out.shape)


def _scalar(fn, inputs, weights) -> float:
    out = fn(*inputs)
    return float(np.sum(to_numpy(out.data) * weights))


def _analytic(fn, inputs, checked, weights):
    for i in checked:
        inputs[i].grad = None
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    with debug_mode(True):  # the backward contract is checked in every gradcheck
        out.backward(weights)
    return [np.zeros(inputs[i].shape) if inputs[i].grad is None else to_numpy(inputs[i].grad).copy()
            for i in checked]


def numerical_gradient(fn, inputs, index, weights, eps):
    r"""Central differences of $\sum w \odot f$ with respect to ``inputs[index]``, entry by entry."""
    data = inputs[index].data
    grad = np.zeros(data.shape)
    for pos in np.ndindex(data.shape):
        orig = data[pos].item()
        # BEGIN SOLUTION lesson 03: numerical_gradient: the central difference of the module docstring, one entry at a time, each entry restored
        data[pos] = orig + eps
        plus = _scalar(fn, inputs, weights)
        data[pos] = orig - eps
        minus = _scalar(fn, inputs, weights)
        data[pos] = orig
        grad[pos] = (plus - minus) / (2 * eps)
        # END SOLUTION
    return grad


def _compare(analytic, numeric, atol, rtol, where):
    err = np.abs(analytic - numeric)
    bound = atol + rtol * np.abs(numeric)
    if np.all(err <= bound):
        return
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
    a, n = analytic[worst], numeric[worst]
    rel = abs(a - n) / max(abs(n), 1e-300)
    raise GradcheckError(f"gradcheck failed for {where} at index {tuple(int(i) for i in worst)}: "
                         f"analytic {a:.8g} vs numeric {n:.8g} (relative error {rel:.3g}; "
                         f"atol={atol}, rtol={rtol}); {int(np.sum(err > bound))} of {err.size} entries differ")


def gradcheck(fn, *inputs, eps=None, atol=None, rtol=None, seed=0) -> bool:
    """Check ``fn``'s backward against central differences for EVERY entry of every
    input with ``requires_grad`` (all must be float64). Returns True or raises
    :class:`GradcheckError` naming the worst entry, both values and the relative error.
    The backward runs in debug mode, so a backward that breaks the engine's contract
    raises :class:`~minitensor.autograd.AutogradContractError` first.

    ``fn`` may return any shape; it must be deterministic (reseed any dropout inside).
    """
    tol = TOLERANCES["float64"]
    eps, atol, rtol = eps or tol["eps"], atol or tol["atol"], rtol or tol["rtol"]
    inputs = list(inputs)
    checked = _inputs_to_check(inputs)
    weights = _output_weights(fn(*inputs), seed)
    analytic = _analytic(fn, inputs, checked, weights)
    for i, a in zip(checked, analytic):
        _compare(a, numerical_gradient(fn, inputs, i, weights, eps), atol, rtol, f"input {i}")
    return True


def directional_check(fn, *inputs, n_directions=3, eps=None, atol=None, rtol=None, seed=0) -> bool:
    r"""A cheaper check for big inputs: along random directions $d$ (one per input),
    compare $\sum_i \langle \nabla_{x_i} s, d_i \rangle$ with $(s(x + \epsilon d) - s(x - \epsilon d)) / 2\epsilon$.

    Each direction costs two forward passes instead of two per entry.
    """
    tol = TOLERANCES["float64"]
    eps, atol, rtol = eps or tol["eps"], atol or tol["atol"], rtol or tol["rtol"]
    inputs = list(inputs)
    checked = _inputs_to_check(inputs)
    weights = _output_weights(fn(*inputs), seed)
    analytic = _analytic(fn, inputs, checked, weights)
    rng = np.random.default_rng(seed + 1)
    for k in range(n_directions):
        dirs = [rng.standard_normal(inputs[i].shape) for i in checked]
        originals = [inputs[i].data.copy() for i in checked]
        values = []
        for sign in (1.0, -1.0):
            for i, d, o in zip(checked, dirs, originals):
                inputs[i].data[...] = o + sign * eps * d
            values.append(_scalar(fn, inputs, weights))
        for i, o in zip(checked, originals):
            inputs[i].data[...] = o
        numeric = np.array((values[0] - values[1]) / (2 * eps))
        predicted = np.array(sum(float(np.sum(a * d)) for a, d in zip(analytic, dirs)))
        _compare(predicted, numeric, atol, rtol, f"random direction {k}")
    return True
