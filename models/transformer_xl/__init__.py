"""Transformer-XL (Dai et al., 2019): the model (:mod:`models.transformer_xl.model`), Hugging Face's
weights (:mod:`models.transformer_xl.hf_checkpoint`) and the training recipe
(:mod:`models.transformer_xl.recipe`: segment recurrence, cached evaluation)."""
from .hf_checkpoint import hf_to_interleaved, load_hf_checkpoint
from .model import PRESETS, TransformerXL, TransformerXLConfig, attention_mask

__all__ = ["PRESETS", "TransformerXL", "TransformerXLConfig", "attention_mask", "hf_to_interleaved",
           "load_hf_checkpoint"]
