"""Loading Hugging Face's ``transfo-xl`` weights into :class:`models.transformer_xl.TransformerXL`."""
from __future__ import annotations

import os

import numpy as np

from minitensor.attention.relative import sinusoid_frequencies

from .. import hf as hf_files
from .model import TransformerXL, TransformerXLConfig

__all__ = ["hf_to_interleaved", "load_hf_checkpoint"]


# HF config.json field -> TransformerXLConfig field.
_HF_CONFIG = {"vocab_size": "vocab_size", "d_model": "d_model", "n_layer": "n_layer", "n_head": "n_head",
              "d_head": "d_head", "d_inner": "d_inner", "mem_len": "mem_len"}
_HF_OPTIONAL = {"tgt_len": "tgt_len", "clamp_len": "clamp_len", "same_length": "same_length", "untie_r": "untie_r",
                "pre_lnorm": "pre_lnorm", "dropout": "dropout", "dropatt": "dropatt",
                "layer_norm_epsilon": "layer_norm_eps", "init_std": "init_std"}


def hf_to_interleaved(d: int) -> np.ndarray:
    r"""Column permutation taking ``r_net.weight`` from HF's $R$ feature order to ours.

    HF / the original build $R$ as all sines, then all cosines: feature $j$ is
    $\sin(b\,\omega_j)$, feature $d/2 + j$ is $\cos(b\,\omega_j)$. Our
    :func:`~minitensor.attention.sinusoid_positions` interleaves them (feature $2j$ sine,
    $2j+1$ cosine). $W_{k,R}$ is trained against one order, so loading permutes its input
    columns: ``ours[:, 2j] = hf[:, j]``, ``ours[:, 2j + 1] = hf[:, d/2 + j]``, i.e.
    ``ours = hf[:, perm]`` with the returned ``perm``.
    """
    half = np.arange(d // 2)
    perm = np.empty(d, dtype=np.int64)
    perm[0::2] = half
    perm[1::2] = half + d // 2
    return perm


def _hf_config(directory) -> TransformerXLConfig:
    hf = hf_files.read_config(directory, _HF_CONFIG, "transfo-xl")
    cutoffs = hf.get("cutoffs", [])
    if cutoffs or hf.get("div_val", 1) != 1:
        raise ValueError(f"load_hf_checkpoint: adaptive input/softmax (cutoffs={cutoffs}, div_val="
                         f"{hf.get('div_val', 1)}, adaptive={hf.get('adaptive')}) is not supported; only checkpoints "
                         "with cutoffs [] and div_val 1 (one plain embedding and one output layer) load")
    if hf.get("d_embed", hf["d_model"]) != hf["d_model"]:
        raise ValueError(f"load_hf_checkpoint: d_embed={hf['d_embed']} differs from d_model={hf['d_model']} "
                         "(projected embeddings, emb_projs/out_projs, are not supported)")
    if hf.get("attn_type", 0) != 0:
        raise ValueError(f"load_hf_checkpoint: attn_type={hf['attn_type']} is not supported; only 0, the "
                         "relative attention of the paper")
    if hf.get("tie_word_embeddings", True) is not True:
        raise ValueError("load_hf_checkpoint: tie_word_embeddings=false is not supported (the output layer is "
                         "always the tied embedding)")
    kwargs = {ours: hf[theirs] for theirs, ours in _HF_CONFIG.items()}
    kwargs.update({ours: hf[theirs] for theirs, ours in _HF_OPTIONAL.items() if theirs in hf})
    kwargs["clamp_len"] = max(int(kwargs.get("clamp_len", 0)), 0)  # the original's -1 = no clamping = our 0
    return TransformerXLConfig(**kwargs)


def _hf_name(ours: str) -> str:
    if ours == "word_emb.weight":
        return "transformer.word_emb.emb_layers.0.weight"
    if ours.startswith("crit."):
        return ours
    return "transformer." + ours


def load_hf_checkpoint(directory, dtype=np.float32) -> TransformerXL:
    """Build a :class:`TransformerXL` from a Hugging Face ``transfo-xl`` directory (``config.json`` +
    ``model.safetensors``, read with :func:`minitensor.load`, never pickle), in eval mode.

    Names: ``transformer.word_emb.emb_layers.0.weight`` -> ``word_emb.weight``,
    ``transformer.<rest>`` -> ``<rest>``, ``crit.out_layers.0.bias`` as is. ``crit.out_layers.0.weight``
    is the tied copy of the embedding: it may be absent (HF lists it among the keys to ignore when
    missing); when present it must equal the embedding. ``r_net.weight``'s columns are permuted from
    HF's sines-then-cosines $R$ to our interleaved one (:func:`hf_to_interleaved`), so the model
    computes exactly HF's function. Missing/unexpected keys or shapes that do not fit raise a
    ValueError naming the key (HF's name) and both shapes. Adaptive softmax (non-empty ``cutoffs``)
    raises a ValueError saying it is not supported.

    ``transformer.pos_emb.inv_freq``, the sinusoid's frequencies (a buffer HF saves), must be the ones our
    $R$ uses (to float32 rounding, elementwise relative 1e-6), or a ValueError names it and the largest
    difference. A bare ``TransfoXLModel`` checkpoint (keys without the ``transformer.`` prefix, no
    ``crit.``) has no output bias and is refused with one message saying so.

    Memory: HF starts from ``mem_len`` zero vectors and keeps (M, B, d); to reproduce HF's logits
    pass ``model.init_mems(B, zero_filled=True)`` to the first segment; see the module docstring.
    """
    directory = os.fspath(directory)
    config = _hf_config(directory)
    weights, raw = hf_files.read_weights(directory)
    if "crit.out_layers.0.bias" not in raw and "word_emb.emb_layers.0.weight" in raw:  # TransfoXLModel's names
        raise ValueError(f"load_hf_checkpoint: {weights!r} is a bare TransfoXLModel checkpoint, without the LM head "
                         "(crit.out_layers.0.bias) our TransformerXL predicts with; a TransfoXLLMHeadModel checkpoint "
                         "is needed")
    inv_freq = raw.pop("transformer.pos_emb.inv_freq", None)  # a persistent buffer: HF writes it
    if inv_freq is not None:
        hf_files.check_buffer(weights, "transformer.pos_emb.inv_freq", inv_freq, sinusoid_frequencies(config.d_model),
                              "the frequencies 1/10000^(2j/d) of our sinusoid R")

    model = TransformerXL(config, rng=0, dtype=dtype)
    params = dict(model.named_parameters())
    wanted = {_hf_name(name): name for name in params}
    hf_files.tied_output(weights, raw, "transformer.word_emb.emb_layers.0.weight", "crit.out_layers.0.weight")
    hf_files.check_keys(wanted, raw, weights)
    state = {}
    for key, name in wanted.items():
        array = raw[key]
        if array.shape != params[name].shape:
            raise ValueError(f"load_hf_checkpoint: {key!r} has shape {array.shape} in the checkpoint, expected "
                             f"{params[name].shape}")
        if name.endswith("dec_attn.r_net.weight"):
            array = array[:, hf_to_interleaved(config.d_model)]  # sines-then-cosines -> interleaved R features
        state[name] = np.ascontiguousarray(array)
    model.load_state_dict(state)
    return model.eval()
