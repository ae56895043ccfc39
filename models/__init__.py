"""The models built on minitensor, one package each: :mod:`models.gpt` (GPT-1), :mod:`models.transformer_xl`
and :mod:`models.longformer` (model, Hugging Face weights, tasks, and a recipe: the run's defaults, its
batches-and-loss adapter, data and evaluation). Beside them the shared parts: the corpus and tokenizer
(:mod:`models.data`), the one training loop (:mod:`models.train`), the recipes' table (:mod:`models.recipes`),
checkpoints (:mod:`models.checkpoint`), evaluation (:mod:`models.evaluate`) and sampling (:mod:`models.generate`).
``python -m models`` is the command line."""
