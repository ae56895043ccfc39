"""minitensor: a small reverse-mode autograd over NumPy (CuPy on a GPU), for learning.

    import minitensor as mt
    import minitensor.functional as F
"""
from . import attention, functional, kernels, nn, optim, testing
from .autograd import (
    AutogradContractError,
    Function,
    debug_mode,
    is_debug_enabled,
    is_grad_enabled,
    no_grad,
    set_debug,
)
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
    "attention", "functional", "kernels", "nn", "optim", "testing", "AutogradContractError", "Function", "debug_mode",
    "is_debug_enabled", "is_grad_enabled", "no_grad", "set_debug",
    "gpu_available", "load", "save", "Tensor", "arange", "concat", "exp", "float32", "float64",
    "full", "full_like", "int64", "log", "matmul", "maximum", "ones", "ones_like", "rand", "randn",
    "randn_like", "sigmoid", "split", "sqrt", "stack", "tanh", "tensor", "where", "zeros",
    "zeros_like",
]
__version__ = "0.1.0"
