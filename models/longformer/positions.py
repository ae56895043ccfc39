r"""Reading documents longer than the positions a Longformer learnt: the paper's copy (section 5).

Longformer starts from RoBERTa, which has 512 learnt positions, and needs 4,096: it fills the new
table by copying the 512 rows over and over, so position $512 + t$ starts as position $t$ (the
attention patterns of a window, which depend on relative offsets, then carry over unchanged
inside each copy). :func:`repeat_positions` does that to a table; :func:`with_max_len` gives a model
a longer (or shorter) ``max_len`` that way, the same weights otherwise.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["repeat_positions", "with_max_len"]


def repeat_positions(table, pad_id: int, max_len: int) -> np.ndarray:
    """A position table for ``max_len`` real positions from ``table`` (rows ``0..pad_id`` are RoBERTa's
    offset rows, kept; the real positions after them repeat in order)."""
    table = np.asarray(table)
    offset = pad_id + 1
    learnt = table.shape[0] - offset
    if learnt < 1:
        raise ValueError(f"repeat_positions: a table of {table.shape[0]} rows has no position after the "
                         f"{offset} offset rows")
    rows = offset + np.arange(max_len) % learnt
    return np.concatenate([table[:offset], table[rows]])


def with_max_len(model, max_len: int):
    """A copy of the task or LM ``model`` that reads up to ``max_len`` tokens: the same weights, its position
    table cut or repeated (:func:`repeat_positions`); eval mode."""
    config = dataclasses.replace(model.config, max_len=int(max_len))
    args = (model.num_labels,) if hasattr(model, "num_labels") else ()
    longer = type(model)(config, *args, dtype=model.longformer.embeddings.word_embeddings.weight.data.dtype)
    state = model.state_dict()
    key = "longformer.embeddings.position_embeddings.weight"
    state[key] = repeat_positions(state[key], config.pad_id, config.max_len)
    longer.load_state_dict(state)
    return longer.eval()
