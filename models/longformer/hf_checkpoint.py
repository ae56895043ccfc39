"""Loading Hugging Face's ``longformer`` weights into :class:`models.longformer.Longformer`: a key match."""
from __future__ import annotations

import os

import numpy as np

from .. import hf as hf_files
from .model import Longformer, LongformerConfig

__all__ = ["encode_documents", "load_hf_checkpoint", "load_hf_tokenizer"]


_HF_CONFIG = {"vocab_size": "vocab_size", "hidden_size": "d_model", "num_hidden_layers": "n_layer",
              "num_attention_heads": "n_head", "intermediate_size": "d_ff", "attention_window": "attention_window"}
_HF_OPTIONAL = {"layer_norm_eps": "layer_norm_eps", "hidden_dropout_prob": "hidden_dropout",
                "attention_probs_dropout_prob": "attention_dropout",
                "initializer_range": "init_std", "pad_token_id": "pad_id"}


def _hf_config(directory) -> LongformerConfig:
    hf = hf_files.read_config(directory, (*_HF_CONFIG, "max_position_embeddings"), "longformer")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"load_hf_checkpoint: hidden_act={hf['hidden_act']!r} is not supported (only 'gelu')")
    if hf.get("type_vocab_size", 1) != 1:
        raise ValueError(f"load_hf_checkpoint: type_vocab_size={hf['type_vocab_size']} is not supported (only 1)")
    kw = {ours: hf[theirs] for theirs, ours in _HF_CONFIG.items()}
    kw.update({ours: hf[theirs] for theirs, ours in _HF_OPTIONAL.items() if theirs in hf})
    if "attention_dilation" in hf:
        kw["dilation"] = hf["attention_dilation"]
    pad = kw.get("pad_id", 1)
    # RoBERTa's offset: max_position_embeddings = max_len + pad_id + 1 (4098 = 4096 + 2)
    kw["max_len"] = hf["max_position_embeddings"] - pad - 1
    return LongformerConfig(**kw)


def load_hf_checkpoint(directory, dtype=np.float32) -> Longformer:
    """A :class:`Longformer` (eval mode) from a Hugging Face ``longformer`` directory (``config.json`` +
    ``model.safetensors``, read with :func:`minitensor.load`; pickles are never loaded).

    Keys may carry the ``longformer.`` prefix (task models) or not; the task heads (``lm_head.``,
    ``classifier.``, ``qa_outputs.``) and the pooler are not part of the encoder and are skipped. The
    buffers old checkpoints carry (``embeddings.position_ids``, ``embeddings.token_type_ids``) must hold
    their usual values. A missing key, an unexpected one, a buffer with another value or a wrong shape
    raises a ValueError naming it.
    """
    directory = os.fspath(directory)
    config = _hf_config(directory)
    weights, raw = hf_files.read_weights(directory)
    n_positions = config.max_len + config.pad_id + 1  # max_position_embeddings
    buffers = {"embeddings.position_ids": (np.arange(n_positions), "the positions 0 .. max_position_embeddings-1"),
               "embeddings.token_type_ids": (np.zeros(n_positions), "zeros (one token type)")}
    state = {}
    for key, array in raw.items():
        name = key.removeprefix("longformer.")
        if name.startswith(("lm_head.", "classifier.", "qa_outputs.", "pooler.")):
            continue
        if name in buffers:  # old checkpoints saved these; current HF versions do not
            hf_files.check_buffer(weights, key, array, *buffers[name])
            continue
        if name in state:
            raise ValueError(f"load_hf_checkpoint: {name!r} appears both with and without the 'longformer.' prefix")
        state[name] = array
    model = Longformer(config, rng=0, dtype=dtype)
    params = dict(model.named_parameters())
    hf_files.check_keys(params, state, weights)
    for name, p in params.items():
        if state[name].shape != p.shape:
            raise ValueError(f"load_hf_checkpoint: {name!r} has shape {state[name].shape} in the checkpoint, "
                             f"expected {p.shape}")
    model.load_state_dict({k: np.ascontiguousarray(v, dtype=dtype) for k, v in state.items()})
    return model.eval()


def load_hf_tokenizer(directory):
    """RoBERTa's byte-level BPE of a Hugging Face ``longformer`` directory (``vocab.json`` + ``merges.txt``),
    as :class:`models.tokenizers.ByteLevelBPE`: ``<s>``, ``</s>``, ``<pad>`` ids from its vocabulary."""
    from ..tokenizers import load_bpe  # noqa: PLC0415  (the tokenizers are only needed here)

    tokenizer = load_bpe(os.fspath(directory), kind="byte-level")
    for name in ("bos_id", "eos_id", "pad_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"load_hf_tokenizer: {directory!r}: vocab.json has no "
                             f"{tokenizer.SPECIAL[name.removesuffix('_id')]} token")
    return tokenizer


def encode_documents(tokenizer, texts, max_len: int):
    """``(ids, padding_mask)`` for a batch of documents as RoBERTa frames them: ``<s> text </s>``, then
    ``<pad>`` up to the longest document; ``padding_mask`` (B, T) is True on real tokens (the model's
    ``padding_mask``). A document longer than ``max_len`` tokens (the model's ``config.max_len``) is an
    error naming it and its length: nothing is cut silently."""
    if isinstance(texts, str):
        raise TypeError("encode_documents: texts must be a list of str (one document each), got one str")
    rows = []
    for i, text in enumerate(texts):
        ids = [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id]
        if len(ids) > max_len:
            raise ValueError(f"encode_documents: document {i} is {len(ids)} tokens with <s> and </s>, longer "
                             f"than max_len={max_len}; shorten it or split it")
        rows.append(ids)
    if not rows:
        raise ValueError("encode_documents: no documents")
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), tokenizer.pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = True
    return ids, mask
