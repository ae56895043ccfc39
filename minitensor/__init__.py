"""minitensor: a small reverse-mode autograd over NumPy (CuPy on a GPU), for learning.

    import minitensor as mt
    import minitensor.functional as F
"""
from . import attention, functional, nn, optim, testing
from .autograd import Function, is_grad_enabled, no_grad
from .backend import gpu_available
from .io import load, save
from .tensor import (
    Tensor,
    arange,
    concat,
    exp,
    float32,
    float64,
    full,
    full_like,
    int64,
    log,
    matmul,
    maximum,
    ones,
    ones_like,
    rand,
    randn,
    randn_like,
    sigmoid,
    split,
    sqrt,
    stack,
    tanh,
    tensor,
    where,
    zeros,
    zeros_like,
)

__all__ = [
    "attention", "functional", "nn", "optim", "testing", "Function", "is_grad_enabled", "no_grad",
    "gpu_available", "load", "save", "Tensor", "arange", "concat", "exp", "float32", "float64",
    "full", "full_like", "int64", "log", "matmul", "maximum", "ones", "ones_like", "rand", "randn",
    "randn_like", "sigmoid", "split", "sqrt", "stack", "tanh", "tensor", "where", "zeros",
    "zeros_like",
]
__version__ = "0.1.0"
