r"""The standard layers. Each holds its parameters and calls one function of
:mod:`minitensor.functional`; the derivations live with the ops."""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from .module import Module, Parameter


def _rng(rng):
    return np.random.default_rng() if rng is None else rng


class Linear(Module):
    r"""$y = x W^\top + b$ with ``weight`` (out, in) as in PyTorch, ``bias`` (out,).

    Initialised uniformly in $\pm 1/\sqrt{\text{in}}$ so that the output's variance does
    not grow with the fan-in; models that want another init (GPT: N(0, 0.02)) overwrite it.
    """

    def __init__(self, in_features, out_features, bias=True, *, rng=None, dtype=np.float32):
        bound = 1.0 / math.sqrt(in_features)
        r = _rng(rng)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(r.uniform(-bound, bound, (out_features, in_features)).astype(dtype))
        self.bias = Parameter(r.uniform(-bound, bound, (out_features,)).astype(dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): input's last axis must be "
                             f"{self.in_features}, got shape {x.shape}")
        return F.linear(x, self.weight, self.bias)  # (..., out)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table ``weight`` (num_embeddings, dim), initialised N(0, 1)."""

    def __init__(self, num_embeddings, embedding_dim, *, rng=None, dtype=np.float32):
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(_rng(rng).standard_normal((num_embeddings, embedding_dim)).astype(dtype))

    def forward(self, ids) -> Tensor:
        return F.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Layer norm over the last axis with a gain ``weight`` (ones) and ``bias`` (zeros)."""

    def __init__(self, dim, eps=1e-5, *, dtype=np.float32):
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones(dim, dtype=dtype))
        self.bias = Parameter(np.zeros(dim, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.dim}, eps={self.eps}"


class Dropout(Module):
    """Dropout with probability ``p`` while training; identity in eval mode.

    ``rng`` (a ``np.random.Generator``) draws the masks: give a seeded one for
    reproducible training; by default a fresh unseeded generator is used.
    """

    def __init__(self, p=0.1, *, rng=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p, self.rng = p, _rng(rng)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self):
        return f"p={self.p}"


class GELU(Module):
    """GELU activation; ``approximate='tanh'`` (GPT-1) or ``'none'`` (exact)."""

    def __init__(self, approximate="tanh"):
        F.gelu(Tensor(np.zeros(1, np.float32)), approximate)  # validate the option now, not at first use
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)
