r"""Hypothesis strategies shared by the whole test suite.

Everything here produces plain NumPy data (float64 unless asked otherwise);
tests wrap it in tensors themselves. The building blocks:

* :func:`floats`, :func:`arrays`: bounded values. $|x| \le 3$ keeps $e^x$, $x^3$
  and products of a few of them well inside float64, so finite differences stay accurate.
* :func:`shapes`, :func:`broadcastable_shapes`, :func:`matmul_shapes`: small shapes
  (at most 4 dims, sides at most 5), optionally with zero-size sides for forward tests.
* :func:`relayout`, :func:`layouts`, :func:`non_contiguous_arrays`: the same values
  stored as a transposed, strided or reversed view of a bigger buffer, because an op
  that silently assumes C-contiguous memory is a classic bug.
* Kink helpers, as minitorch does: central differences are only valid where the
  function is smooth over $[x - \epsilon, x + \epsilon]$, so inputs are moved away
  from poles (``log``, ``x ** -1``), corners (``relu``) and ties (``max``, ``maximum``).
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

#: Default bound on element magnitudes.
BOUND = 3.0
#: Largest side of a drawn shape (keeps entry-by-entry gradchecks cheap).
MAX_SIDE = 5
#: Most dims of a drawn shape.
MAX_DIMS = 4
#: Distance kept from a kink or between would-be ties. The gradcheck step is 1e-6,
#: so any gap far above it leaves the function smooth on the stencil.
GAP = 0.05


# ---------------------------------------------------------------- values

def floats(min_value: float = -BOUND, max_value: float = BOUND) -> st.SearchStrategy[float]:
    """Finite float64 numbers in ``[min_value, max_value]``."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False, allow_infinity=False, width=64)


def shapes(min_dims: int = 0, max_dims: int = MAX_DIMS, min_side: int = 1,
           max_side: int = MAX_SIDE) -> st.SearchStrategy[tuple[int, ...]]:
    """Small shapes. ``min_side=0`` adds zero-size cases (for forward tests)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def arrays(shape, min_value: float = -BOUND, max_value: float = BOUND,
           dtype=np.float64) -> st.SearchStrategy[np.ndarray]:
    """C-contiguous arrays of ``shape`` (a tuple or a strategy of tuples) with bounded elements.

    Values are drawn in float64 and then cast, so any ``dtype`` works with any bounds.
    """
    drawn = hnp.arrays(np.float64, shape, elements=floats(min_value, max_value))
    return drawn if np.dtype(dtype) == np.float64 else drawn.map(lambda a: a.astype(dtype))


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = MAX_DIMS,
                         min_side: int = 1, max_side: int = MAX_SIDE):
    """``num_shapes`` shapes that broadcast together (missing leading axes and sides of 1).

    Returns the tuple of input shapes; ``np.broadcast_shapes(*shapes)`` gives the result.
    """
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side).map(lambda b: b.input_shapes)


def matmul_shapes(max_batch_dims: int = 2, max_side: int = 4):
    """Shape pairs for ``a @ b`` with NumPy's rules: 1-D operands (promoted), 2-D, and
    batched N-D with broadcasting batch dims, e.g. ``((3, 1, 2, 4), (5, 4, 2))``."""
    return hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=max_batch_dims,
                                             max_side=max_side).map(lambda b: b.input_shapes)


# ---------------------------------------------------------------- memory layouts

LAYOUTS = ("C", "transposed", "strided", "reversed")


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in a different memory layout (a writeable view of a new buffer).

    * ``"C"``: a C-contiguous copy.
    * ``"transposed"``: Fortran order, the transpose of a contiguous array.
    * ``"strided"``: every other entry along each axis of a buffer twice as big.
    * ``"reversed"``: negative strides on every axis.
    """
    a = np.asarray(a)
    if layout == "C" or a.ndim == 0:  # a 0-d array has no strides to vary
        return a.copy()
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "strided":
        big = np.full(tuple(2 * n for n in a.shape), np.nan, dtype=a.dtype)  # NaN: a stray read shows up
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":
        flipped = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
        return flipped[tuple(slice(None, None, -1) for _ in a.shape)]
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def layouts() -> st.SearchStrategy[str]:
    """Any layout, contiguous included."""
    return st.sampled_from(LAYOUTS)


@st.composite
def non_contiguous_arrays(draw, shape, min_value: float = -BOUND, max_value: float = BOUND):
    """Bounded arrays stored as a strided, transposed or reversed view of a bigger buffer.

    NumPy calls every array with at most one entry contiguous, so those stay contiguous;
    all others come back with ``flags.c_contiguous`` False.
    """
    shape = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    values = draw(arrays(shape, min_value, max_value))
    choices = ["strided", "reversed"]
    if sum(n > 1 for n in shape) >= 2:  # a transpose only reorders memory across two real axes
        choices.append("transposed")
    return relayout(values, draw(st.sampled_from(choices)))


@st.composite
def any_layout_arrays(draw, shape, min_value: float = -BOUND, max_value: float = BOUND):
    """Bounded arrays in any of :data:`LAYOUTS` (what most gradchecks draw)."""
    shape = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    return relayout(draw(arrays(shape, min_value, max_value)), draw(layouts()))


# ---------------------------------------------------------------- away from kinks

def shift_positive(a: np.ndarray, c: float = 0.5) -> np.ndarray:
    r"""$|a| + c$: strictly positive, for ``log``, ``sqrt`` and negative powers (minitorch's ``log(a + c)``)."""
    return np.abs(a) + c


def away_from(a: np.ndarray, point: float = 0.0, gap: float = GAP) -> np.ndarray:
    """Push every entry at least ``gap`` away from ``point`` (a corner such as relu's at 0),
    keeping its side: entries equal to ``point`` go up."""
    a = np.asarray(a, dtype=np.float64)
    side = np.where(a >= point, 1.0, -1.0)
    return a + side * gap


def distinct(a: np.ndarray, gap: float = GAP) -> np.ndarray:
    r"""Spread the entries so any two differ by at least ``gap``, keeping their order.

    The k-th smallest entry moves up by ``k * gap``: a max reduction then has a unique
    arg-max that no step of size $\ll$ ``gap`` can change.
    """
    a = np.asarray(a, dtype=np.float64)
    flat = a.ravel()
    ranks = np.empty(flat.size)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    return (flat + ranks * gap).reshape(a.shape)


def interleave(a: np.ndarray, b: np.ndarray, gap: float = GAP) -> tuple[np.ndarray, np.ndarray]:
    r"""Snap ``a`` to even and ``b`` to odd multiples of ``gap``: then $|a - b| \ge$ ``gap``
    wherever they meet, whatever the broadcasting (no ties for ``maximum``)."""
    step = 2 * gap
    return np.round(a / step) * step, np.round(b / step) * step + gap
