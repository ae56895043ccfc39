"""Layers and models: ``Module``, ``Parameter`` and the standard layers."""
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear, ReLU
from .module import Module, ModuleList, Parameter, Sequential

__all__ = ["GELU", "Dropout", "Embedding", "LayerNorm", "Linear", "Module", "ModuleList", "Parameter", "ReLU",
           "Sequential"]
