r"""Adam's and AdamW's update of every parameter in one pass over flat arrays, shared by the threads.

The formula, :meth:`minitensor.optim.Adam._update` (lesson 05), updates one parameter at a
time: about fifteen NumPy calls per parameter, 750 for the GPT's 50 parameters, most of them
on small arrays and all of them on the calling thread (about 4.5 ms of a 110 ms step at the
README main command's shape). Here, on the CPU:

- the parameters, their two moments and a copy of their gradients are held in four flat
  arrays, the parameters that decay first; each parameter's ``.data`` and each moment in
  ``optimizer.state`` is a view into them, so everything else sees the same arrays as before;
- one pass over blocks of the flat arrays, shared by the threads (:func:`.threads.for_blocks`),
  copies each block's gradients in and runs the formula's steps on it: the same expressions
  in the same order (NumPy scalars included, so the update is computed in float64 as there),
  element by element, hence bit for bit the formula's numbers (tested).

:func:`step` returns False, and the optimizer then runs the formula, whenever this does not
apply: another optimizer class (a subclass may change ``_update``), arrays off the CPU or of
mixed dtypes, a parameter listed twice, a missing gradient, or parameters whose update counts
differ. Whenever some ``.data`` or moment is no longer the view it was (a checkpoint loaded,
a model moved), the flat arrays are built again from the current ones.
"""
from __future__ import annotations

import numpy as np

from . import threads


class _Flat:
    """The flat arrays of one optimizer, and which views of them it handed out."""

    def __init__(self, opt, decays):
        params = opt.params
        order = sorted(range(len(params)), key=lambda i: not decays[i])  # stable: decayed first
        self.decayed = sum(params[i].data.size for i in order if decays[i])
        total = sum(p.data.size for p in params)
        dtype = params[0].data.dtype
        self.p, self.g = np.empty(total, dtype), np.empty(total, dtype)
        self.moments = {name: np.zeros(total, dtype) for name in opt.state_names}
        self.segments = []  # (parameter index, start, stop) in flat order
        start = 0
        for i in order:
            p = params[i]
            stop = start + p.data.size
            self.p[start:stop] = p.data.reshape(-1)
            p.data = self.p[start:stop].reshape(p.shape)
            for name, flat in self.moments.items():
                old = opt.state[name][i]
                if old is not None:
                    flat[start:stop] = old.reshape(-1)
                opt.state[name][i] = flat[start:stop].reshape(p.shape)
            self.segments.append((i, start, stop))
            start = stop
        self.views = [(params[i].data, *(opt.state[name][i] for name in opt.state_names)) for i in range(len(params))]

    def current(self, opt) -> bool:
        """Whether every parameter and moment is still the view this made."""
        return all(p.data is views[0] and all(opt.state[name][i] is v for name, v in zip(opt.state_names, views[1:]))
                   for i, (p, views) in enumerate(zip(opt.params, self.views)))


def _decays(opt):
    """Per parameter, whether it takes weight decay: AdamW's decoupled form, or Adam's L2 form."""
    if not opt.weight_decay:
        return [False] * len(opt.params)
    skip_1d = getattr(opt, "skip_1d_decay", False)
    return [not (skip_1d and p.ndim < 2) for p in opt.params]


def _applies(opt, adam_classes) -> bool:
    params = opt.params
    if type(opt) not in adam_classes or len({id(p) for p in params}) != len(params):
        return False
    dtype = params[0].data.dtype
    if dtype not in (np.float32, np.float64):
        return False
    for p in params:
        if not isinstance(p.data, np.ndarray) or p.data.dtype != dtype or p.grad is None \
                or not isinstance(p.grad, np.ndarray) or p.grad.shape != p.shape or p.grad.dtype != dtype:
            return False
    steps = opt.param_steps
    return bool((steps == steps[0]).all())


def step(opt, adam_classes, decoupled_class) -> bool:
    """One optimizer step of ``opt`` (an Adam or AdamW, ``adam_classes``) over flat arrays; False: not done,
    run the formula. ``decoupled_class``: the class whose decay is decoupled (AdamW)."""
    if not _applies(opt, adam_classes):
        return False
    flat = getattr(opt, "_flat_arrays", None)
    if flat is None or not flat.current(opt):
        flat = opt._flat_arrays = _Flat(opt, _decays(opt))
    opt.step_count += 1
    opt.param_steps += 1
    t = opt.param_steps[0]  # a NumPy integer, as the formula's self.param_steps[i]
    lr, (b1, b2), eps, wd = opt.lr, opt.betas, opt.eps, opt.weight_decay
    decoupled = type(opt) is decoupled_class
    params, m_all, v_all = opt.params, flat.moments["exp_avg"], flat.moments["exp_avg_sq"]

    def block(ix):
        run = ix[0] if isinstance(ix[0], slice) else slice(0, flat.p.size)  # one block: (...,)
        lo, hi = run.start, run.stop
        for i, start, stop in flat.segments:  # this block's gradients, copied in
            a, b = max(lo, start), min(hi, stop)
            if a < b:
                flat.g[a:b] = params[i].grad.reshape(-1)[a - start:b - start]
        p, g, m, v = flat.p[lo:hi], flat.g[lo:hi], m_all[lo:hi], v_all[lo:hi]
        n_decayed = min(max(flat.decayed - lo, 0), hi - lo)
        if n_decayed and decoupled:  # AdamW._update
            pd = p[:n_decayed]
            pd -= (lr * wd) * pd
        elif n_decayed:  # Adam._update's L2 form, into the block's copy of the gradients
            g[:n_decayed] = g[:n_decayed] + wd * p[:n_decayed]
        # Adam._update's steps, in its order
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        step_size = lr / (1 - b1 ** t)
        denom = (v / (1 - b2 ** t)) ** 0.5 + eps
        p -= step_size * (m / denom)

    threads.for_blocks(block, flat.p.shape)
    return True
