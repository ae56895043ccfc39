r"""The CUDA kernels: where CuPy has a faster (or the only) way to compute a formula.

CuPy is imported inside each kernel, so importing this module never needs it;
a kernel is only ever called with CuPy arrays.
"""
from __future__ import annotations

from . import register


@register("erf", "cuda", exact=False)
def erf(x):
    """:func:`minitensor.ops.unary.erf` on the GPU (the formula would copy the array to the host)."""
    from cupyx.scipy.special import erf as cupy_erf  # noqa: PLC0415

    return cupy_erf(x)


@register("scatter_add", "cuda", exact=True)
def scatter_add(target, index, values) -> None:
    """:func:`minitensor.ops.shape.scatter_add` with CuPy's atomic adds."""
    import cupyx  # noqa: PLC0415

    cupyx.scatter_add(target, index, values)
