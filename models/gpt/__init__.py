"""GPT-1 (Radford et al., 2018): the model (:mod:`models.gpt.model`), Hugging Face's weights
(:mod:`models.gpt.hf_checkpoint`), fine-tuning on the corpus tasks (:mod:`models.gpt.finetune`,
:mod:`models.gpt.tasks`) and the pretraining recipe (:mod:`models.gpt.recipe`)."""
from .hf_checkpoint import load_hf_checkpoint
from .model import GPT, PRESETS, GPTConfig

__all__ = ["GPT", "PRESETS", "GPTConfig", "load_hf_checkpoint"]
