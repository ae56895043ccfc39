"""``Module``: a tree of layers owning ``Parameter`` tensors, with a state dict.

Parameters and sub-modules are found by looking at the attributes, in the
order they were assigned, so ``named_parameters`` names match the code:
``blocks.0.attn.c_attn.weight``.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from ..backend import check_device, to_device, to_numpy
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that a Module trains: always a leaf with ``requires_grad=True``."""

    __slots__ = ()

    def __init__(self, data):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=True)


class Module:
    """Base class of every layer and model: subclasses set attributes and define ``forward``."""

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # ------------------------------------------------------------ the tree
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def modules(self):
        """This module and every module below it, depth first (a shared one once)."""
        stack, seen = [self], set()
        while stack:
            m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield m
            stack.extend(reversed([c for _, c in m.named_children()]))

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) pairs; a parameter shared by two modules is listed once."""
        seen = set()
        for name, p in self._walk_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _walk_parameters(self, prefix):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
            elif isinstance(value, Module):
                yield from value._walk_parameters(f"{prefix}{name}.")

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------ modes and devices
    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter to ``device`` in place (optimizer state follows on its next step)."""
        device = check_device(device)
        for p in self.parameters():
            p.data = to_device(p.data, device)
            p.grad = None if p.grad is None else to_device(p.grad, device)
        return self

    # ------------------------------------------------------------ state dict
    def state_dict(self) -> OrderedDict:
        """name -> NumPy copy of each parameter (on the CPU, safe to save while training goes on)."""
        return OrderedDict((name, to_numpy(p.data).copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters, keeping each parameter's dtype and device.

        Shapes must match. With ``strict`` every parameter must be given and no
        other key may appear; the error lists the offending names.
        Returns ``(missing, unexpected)`` name lists.
        """
        where = f"load_state_dict into {type(self).__name__}"
        if not isinstance(state, Mapping):
            raise TypeError(f"{where}: expects a mapping name -> array (e.g. mt.load(path)), got {type(state).__name__}")
        params = dict(self.named_parameters())
        for k in params:
            if k in state:
                _check_value(where, k, state[k])
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict into {type(self).__name__}: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        mismatched = [f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {params[k].shape}"
                      for k in params if k in state and tuple(np.shape(state[k])) != params[k].shape]
        if mismatched:
            raise ValueError(f"load_state_dict into {type(self).__name__}: shape mismatch for " + "; ".join(mismatched))
        for name, p in params.items():
            if name in state:
                value = state[name]
                value = value.data if isinstance(value, Tensor) else value
                arr = to_numpy(value).astype(p.dtype, copy=True)
                p.data = to_device(arr, p.device)
        return missing, unexpected

    def __repr__(self):
        children = [f"  ({n}): " + repr(c).replace("\n", "\n  ") for n, c in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()})"
        return head if not children else head[:-1] + "\n" + "\n".join(children) + "\n)"

    def extra_repr(self) -> str:
        return ""


def _check_value(where, key, value) -> None:
    # A parameter holds real numbers: a complex value would lose its imaginary part in the cast (NumPy
    # only warns); a bool, a str or an object is not a weight at all.
    value = value.data if isinstance(value, Tensor) else value
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{where}: the value for {key!r} is a {type(value).__name__}, not an array")
    try:
        dtype = np.asarray(to_numpy(value)).dtype
    except ValueError:  # e.g. a ragged list
        raise TypeError(f"{where}: the value for {key!r} ({type(value).__name__}) is not an array") from None
    if dtype == object and not hasattr(value, "dtype"):  # None, a dict...: say what it is, not "dtype object"
        raise TypeError(f"{where}: the value for {key!r} is a {type(value).__name__}, not an array")
    if dtype.kind not in "iuf":
        raise TypeError(f"{where}: the value for {key!r} has dtype {dtype}; a parameter takes real numbers "
                        "(int or float)")


class Sequential(Module):
    """Modules applied one after another: ``Sequential(Linear(2, 8), GELU(), Linear(8, 1))``."""

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __iter__(self):
        return (m for _, m in self.named_children())

    def __len__(self):
        return sum(1 for _ in self.named_children())

    def __getitem__(self, i):
        return list(self)[i]

    def forward(self, x):
        for layer in self:
            x = layer(x)
        return x


class ModuleList(Module):
    """A list of modules whose parameters are registered as ``0.weight``, ``1.weight``..."""

    def __init__(self, modules=()):
        self._n = 0
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(self._n), module)
        self._n += 1
        return self

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._n))

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        if not -self._n <= i < self._n:
            raise IndexError(f"ModuleList index {i} out of range for {self._n} modules")
        return getattr(self, str(i % self._n))
