"""Loading Hugging Face's ``openai-gpt`` weights into :class:`models.gpt.GPT`: a rename plus a transpose
(HF's ``Conv1D`` stores its weight as (in, out), our ``Linear`` as (out, in))."""
from __future__ import annotations

import os
import re

import numpy as np

from .. import hf as hf_files
from .model import GPT, GPTConfig

__all__ = ["load_hf_checkpoint"]


# HF config.json field -> GPTConfig field.
_HF_CONFIG = {"vocab_size": "vocab_size", "n_positions": "n_ctx", "n_embd": "d_model", "n_layer": "n_layer",
              "n_head": "n_head", "layer_norm_epsilon": "layer_norm_eps"}
_HF_OPTIONAL = {"embd_pdrop": "embd_pdrop", "attn_pdrop": "attn_pdrop", "resid_pdrop": "resid_pdrop",
                "initializer_range": "init_std"}
# Conv1D layers, whose HF weight is (in, out): transposed into our (out, in).
_CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def _hf_config(directory) -> GPTConfig:
    hf = hf_files.read_config(directory, _HF_CONFIG, "openai-gpt")
    # HF's OpenAIGPT maps afn "gelu" to gelu_new, the tanh approximation: the only one we implement.
    afn = hf.get("afn", "gelu")
    if afn != "gelu":
        raise ValueError(f"load_hf_checkpoint: activation afn={afn!r} is not supported; GPT-1 uses 'gelu' "
                         "(the tanh form)")
    kwargs = {ours: hf[theirs] for theirs, ours in _HF_CONFIG.items()}
    kwargs.update({ours: hf[theirs] for theirs, ours in _HF_OPTIONAL.items() if theirs in hf})
    return GPTConfig(**kwargs)  # d_ff = 4 * d_model, fixed in HF's OpenAIGPT MLP


def _buffer_value(name: str, n_ctx: int):
    """What a buffer of an openai-gpt checkpoint must hold, or None when ``name`` is not one. Old PyTorch
    checkpoints saved the causal mask ``h.N.attn.bias`` (1, 1, n, n) and ``position_ids``; current HF
    versions no longer write them (non-persistent buffers)."""
    if name == "position_ids":
        return np.arange(n_ctx), "the positions 0 .. n_positions-1"
    if re.fullmatch(r"h\.\d+\.attn\.bias", name):
        return np.tril(np.ones((n_ctx, n_ctx)))[None, None], "the causal mask (lower-triangular ones)"
    return None


def load_hf_checkpoint(directory, dtype=np.float32) -> GPT:
    """Build a :class:`GPT` from a Hugging Face ``openai-gpt`` directory (``config.json`` +
    ``model.safetensors``), in eval mode.

    Keys may carry the ``transformer.`` prefix (the LM-head and double-heads models) or not (the bare
    model). ``lm_head.weight`` is the output layer, tied to ``tokens_embed.weight``: when both are stored
    they must be equal, and when only ``lm_head.weight`` is (the double-heads model of transformers 5)
    it is the embedding. Buffers of old checkpoints (``h.N.attn.bias``, ``position_ids``) must hold
    their usual values. ``multiple_choice_head.*``, the double-heads model's classifier, is not part of
    GPT-1's transformer and is skipped. Conv1D weights (in, out) are transposed to our (out, in). A
    missing key, an unexpected one, a buffer with another value or a shape that does not fit raises a
    ValueError naming the key (and both shapes).
    """
    directory = os.fspath(directory)
    config = _hf_config(directory)
    weights, raw = hf_files.read_weights(directory)

    state = {}
    for key, array in raw.items():
        name = key.removeprefix("transformer.")
        if name.startswith("multiple_choice_head."):
            continue
        buffer = _buffer_value(name, config.n_ctx)
        if buffer is not None:
            hf_files.check_buffer(weights, key, array, *buffer)
            continue
        if name in state:
            raise ValueError(f"load_hf_checkpoint: {name!r} appears both with and without the 'transformer.' prefix")
        state[name] = array
    hf_files.tied_output(weights, state, "tokens_embed.weight", "lm_head.weight")

    model = GPT(config, rng=0, dtype=dtype)
    params = dict(model.named_parameters())
    hf_files.check_keys(params, state, weights)
    converted = {}
    for name, p in params.items():
        array = state[name]
        if name.endswith(_CONV1D):
            if array.ndim != 2 or array.shape[::-1] != p.shape:
                raise ValueError(f"load_hf_checkpoint: {name!r} has shape {array.shape} in the checkpoint, expected "
                                 f"{p.shape[::-1]} (Conv1D layout (in, out) of our {p.shape})")
            array = array.T
        elif array.shape != p.shape:
            raise ValueError(f"load_hf_checkpoint: {name!r} has shape {array.shape} in the checkpoint, "
                             f"expected {p.shape}")
        converted[name] = np.ascontiguousarray(array)
    model.load_state_dict(converted)
    return model.eval()
