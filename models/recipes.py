"""The table of recipes: which recipe trains a model, found by name, never by asking a model its type.

* :data:`RECIPES`: the ``train`` command's model name -> its recipe (:class:`models.recipe.Recipe`);
* :data:`KINDS`: a checkpoint's ``model`` string ("gpt", "txl", "longformer-lm", "longformer-genre",
  "longformer-qa", "longformer-speaks", "longformer-first-line", "longformer-mlm") -> its
  :class:`models.recipe.Kind` (model, config and tokenizer classes, and the batches-and-loss adapter the loop draws each step from);
* :func:`kind_of`: a model -> its checkpoint string, looked up by its class.
"""
from __future__ import annotations

from .gpt.recipe import RECIPE as GPT
from .longformer.recipe import RECIPE as LONGFORMER
from .recipe import Kind
from .transformer_xl.recipe import RECIPE as TRANSFORMER_XL

__all__ = ["KINDS", "RECIPES", "kind", "kind_of", "recipe_of"]

RECIPES = {recipe.name: recipe for recipe in (GPT, TRANSFORMER_XL, LONGFORMER)}
KINDS = {name: k for recipe in RECIPES.values() for name, k in recipe.kinds.items()}
_BY_CLASS = {k.model: name for name, k in KINDS.items()}
_RECIPE_OF = {name: recipe for recipe in RECIPES.values() for name in recipe.kinds}


def kind(name: str) -> Kind:
    """The :class:`~models.recipe.Kind` of checkpoint kind ``name`` (a key of :data:`KINDS`)."""
    if name not in KINDS:
        raise ValueError(f"unknown model kind {name!r}; known: {sorted(KINDS)}")
    return KINDS[name]


def kind_of(model) -> str:
    """The checkpoint string of ``model``'s kind: its class (or the nearest base class) in :data:`KINDS`."""
    for cls in type(model).__mro__:
        if cls in _BY_CLASS:
            return _BY_CLASS[cls]
    raise TypeError(f"train: no training recipe for {type(model).__name__}; known: "
                    f"{', '.join(k.model.__name__ for k in KINDS.values())}")


def recipe_of(name: str):
    """The recipe that trains checkpoint kind ``name``."""
    kind(name)  # an unknown kind: the same error
    return _RECIPE_OF[name]
