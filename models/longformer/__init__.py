"""Longformer (Beltagy et al., 2020): the encoder (:mod:`models.longformer.model`), its task heads
(:mod:`models.longformer.heads`), Hugging Face's weights (:mod:`models.longformer.hf_checkpoint`), the
long-document tasks built from whole scenes (:mod:`models.longformer.longdoc`, the speaker tasks in
:mod:`models.longformer.cast_tasks`), the masked-LM pretraining
(:mod:`models.longformer.mlm`), longer documents by repeated positions (:mod:`models.longformer.positions`)
and the training recipe (:mod:`models.longformer.recipe`)."""
from .heads import LongformerForCausalLM, LongformerForQuestionAnswering, LongformerForSequenceClassification
from .hf_checkpoint import encode_documents, load_hf_checkpoint, load_hf_tokenizer
from .model import PRESETS, Longformer, LongformerConfig, LongformerSelfAttention

__all__ = ["PRESETS", "Longformer", "LongformerConfig", "LongformerForCausalLM", "LongformerForQuestionAnswering",
           "LongformerForSequenceClassification", "LongformerSelfAttention", "encode_documents", "load_hf_checkpoint",
           "load_hf_tokenizer"]
