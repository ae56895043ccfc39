r"""Fast kernels, kept apart from the formulas they replace.

Every op in :mod:`minitensor.ops` and :mod:`minitensor.attention` states its math
once, as plain array code: the **formula**, what a student reads and writes.
Some formulas have a faster implementation for one device, a **kernel**, that
computes the same numbers in another way (cache-sized blocks spread over the
cores, in-place steps, reused buffers, BLAS on one thread; :mod:`.cpu` holds
them). Nothing in an op knows how a kernel works. A formula that may be
replaced is marked with one decorator::

    @kernels.replaceable("gelu_tanh")
    def gelu_tanh(x):
        ...the formula...

and a call ``gelu_tanh(x)`` then runs the kernel registered for ``x``'s device
under that name, or the formula itself when there is none.

One switch chooses: ``MINITENSOR_KERNELS=reference`` in the environment (or
``with kernels.use("reference"):`` in Python) runs every op on its formula alone;
``fast`` (the default) uses the kernels. Every kernel is tested equal to its
formula (``tests/minitensor/test_kernels.py``): bit-identical where it is
registered ``exact=True``, otherwise within the float tolerances of
:data:`minitensor.testing.TOLERANCES`.

The switch is process-wide, not per thread: the kernels' own worker threads
never consult it.
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from typing import Callable

from ..backend import device_of

MODES = ("fast", "reference")


def int_from_env(name: str, minimum: int):
    """The integer in environment variable ``name`` (None when unset); a clear error below ``minimum``."""
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {text!r}")
    return value


def _mode_from_env() -> str:
    text = os.environ.get("MINITENSOR_KERNELS", "fast")
    if text not in MODES:
        raise ValueError(f"MINITENSOR_KERNELS must be one of {MODES}, got {text!r}")
    return text


@dataclass(frozen=True)
class Kernel:
    """A fast implementation of the formula ``name`` on ``device``.

    ``exact``: it gives bit-identical results to the formula (else equal to rounding).
    """

    name: str
    device: str
    fn: Callable
    exact: bool


_mode = _mode_from_env()
_kernels: dict[tuple[str, str], Kernel] = {}
_formulas: dict[str, Callable] = {}


def mode() -> str:
    """'fast' (kernels where registered) or 'reference' (formulas only)."""
    return _mode


def set_mode(new: str) -> None:
    """Switch every op to its kernels (``'fast'``) or to its formula alone (``'reference'``)."""
    global _mode
    if new not in MODES:
        raise ValueError(f"kernels.set_mode: mode must be one of {MODES}, got {new!r}")
    _mode = new


@contextlib.contextmanager
def use(new: str):
    """``with kernels.use("reference"):`` runs the block on the formulas alone, then restores the mode."""
    before = _mode
    set_mode(new)
    try:
        yield
    finally:
        set_mode(before)


def register(name: str, device: str = "cpu", *, exact: bool):
    """Decorator: ``fn`` replaces the formula ``name`` for arrays on ``device`` (same arguments, same results)."""
    def add(fn):
        if (name, device) in _kernels:
            raise ValueError(f"kernels.register: a {device} kernel for {name!r} is already registered")
        _kernels[(name, device)] = Kernel(name, device, fn, exact)
        return fn
    return add


def _first_array(args):
    for a in args:
        if hasattr(a, "dtype") and hasattr(a, "shape"):
            return a
    raise TypeError("a replaceable formula needs at least one array argument (it picks the device)")


def replaceable(name: str):
    """Decorator for a formula that a kernel may replace: the call goes to the kernel ``name``
    registered for the device of the first array argument when the mode is ``'fast'``, else to the
    formula. The formula stays reachable as ``.formula``."""
    def wrap(formula):
        if name in _formulas:
            raise ValueError(f"kernels.replaceable: the formula {name!r} is already defined")
        _formulas[name] = formula

        @functools.wraps(formula)
        def dispatch(*args, **kwargs):
            device = device_of(_first_array(args))
            kernel = _kernels.get((name, device)) if _mode == "fast" else None
            return (formula if kernel is None else kernel.fn)(*args, **kwargs)

        dispatch.formula = formula
        dispatch.kernel_name = name
        return dispatch
    return wrap


def registered() -> list[Kernel]:
    """Every registered kernel (the equality tests walk this list)."""
    return list(_kernels.values())


def formula(name: str) -> Callable:
    """The formula registered under ``name`` (a KeyError lists the names)."""
    try:
        return _formulas[name]
    except KeyError:
        raise KeyError(f"no formula named {name!r}; known: {sorted(_formulas)}") from None


from . import cpu, cuda  # noqa: E402,F401  (register the kernels; cuda imports CuPy only when called)
