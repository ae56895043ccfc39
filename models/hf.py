"""Reading Hugging Face checkpoint directories (``config.json`` + ``model.safetensors``): the
file handling and key checks the three ``load_hf_checkpoint`` functions share. Each model's
loader keeps what is its own: the config fields it maps and how names and layouts convert."""
from __future__ import annotations

import json
import os

import numpy as np

import minitensor as mt


def read_config(directory, required, kind: str) -> dict:
    """``config.json`` of ``directory`` as a dict; a clear error when it is absent, not JSON, or lacks
    one of the ``required`` fields (``kind`` names the model type in that message)."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_hf_checkpoint: no config.json in {os.fspath(directory)!r}")
    with open(path, encoding="utf-8") as f:
        try:
            hf = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"load_hf_checkpoint: {path!r} is not valid JSON: {e}") from e
    missing = [k for k in required if k not in hf]
    if missing:
        raise ValueError(f"load_hf_checkpoint: {path!r} lacks the fields {missing} (is it a{'n' if kind[0] in 'aeiou' else ''} "
                         f"{kind} config?)")
    return hf


def read_weights(directory) -> tuple:
    """``(path, {name: array})`` of ``model.safetensors``, read with :func:`minitensor.load`. Pickled
    weights (``pytorch_model.bin``) are never loaded: their presence is named in the error."""
    weights = os.path.join(directory, "model.safetensors")
    if not os.path.isfile(weights):
        other = [n for n in ("pytorch_model.bin", "model.bin") if os.path.isfile(os.path.join(directory, n))]
        hint = f" ({other[0]} is a pickle, which we never load: convert it to safetensors)" if other else ""
        raise FileNotFoundError(f"load_hf_checkpoint: no model.safetensors in {os.fspath(directory)!r}{hint}")
    return weights, dict(mt.load(weights))


def check_keys(wanted, found, weights) -> None:
    """A ValueError naming the keys ``wanted`` that are not ``found``, or the other way round."""
    missing = [k for k in wanted if k not in found]
    if missing:
        raise ValueError(f"load_hf_checkpoint: {weights!r} is missing keys {missing}")
    unexpected = [k for k in found if k not in wanted]
    if unexpected:
        raise ValueError(f"load_hf_checkpoint: {weights!r} has unexpected keys {unexpected}")


def check_buffer(weights, key, array, expected, what: str) -> None:
    """A buffer a checkpoint carries beside its parameters (HF's ``pos_emb.inv_freq``, an old causal mask
    ``attn.bias``, ``position_ids``) must hold what our model computes in its place; ``what`` says what that
    is. A ValueError naming the file, the key and the largest difference otherwise: a model that loaded
    would compute another function than the checkpoint's. ``array`` may carry leading axes of size 1
    (``position_ids`` is (n,) or (1, n))."""
    expected = np.asarray(expected)
    if array.size != expected.size or array.shape[array.ndim - expected.ndim:] != expected.shape:
        raise ValueError(f"load_hf_checkpoint: {weights!r}: buffer {key!r} has shape {array.shape}, expected "
                         f"{expected.shape} ({what})")
    diff = np.abs(array.reshape(expected.shape).astype(np.float64) - expected)
    # Elementwise relative: float32 rounding of HF's computation is < 4e-7 (measured up to d = 4096); a
    # small frequency off by 1e-4 still fails, and integers and zeros (masks, positions) must be exact.
    if not np.all(diff <= 1e-6 * np.abs(expected)):  # NaN fails
        raise ValueError(f"load_hf_checkpoint: {weights!r}: buffer {key!r} differs from {what} by up to "
                         f"{float(np.max(diff, initial=0.0)):.3g}; "
                         "this model cannot compute what the checkpoint was trained with")


def tied_output(weights, state, emb_key, out_key) -> None:
    """An output layer tied to the embedding ``emb_key``: when the checkpoint stores only its copy ``out_key``
    (HF 5's double-heads GPT does), that copy is the embedding; when it stores both, they must be equal."""
    out = state.pop(out_key, None)
    if out is None:
        return
    if emb_key not in state:
        state[emb_key] = out
    elif out.shape != state[emb_key].shape or not np.array_equal(out, state[emb_key]):
        raise ValueError(f"load_hf_checkpoint: {weights!r}: {out_key} differs from the embedding {emb_key}; "
                         "an untied output layer is not supported (ours is the embedding, transposed)")
