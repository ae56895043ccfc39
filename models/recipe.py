r"""What a recipe is: everything ``python -m models train NAME`` knows about one model.

A recipe is the project script of minGPT's ``projects/chargpt`` and nanoGPT's
``config/train_shakespeare_char.py`` (without the ``exec``), written as a class: it owns

* the run's defaults, every :class:`models.train.TrainConfig` field in one dict (``defaults``), the only
  copy: ``TrainConfig`` itself has none;
* its batches-and-loss adapter, the one object the loop asks for each step's loss (``Kind.batches``,
  e.g. :class:`models.gpt.recipe.RandomWindows`);
* its data preparation (the corpus -> token ids or encoded examples) and evaluation (the figures
  printed at the end of a run).

The loop (:func:`models.train.train`) and the checkpoints (:mod:`models.checkpoint`) find a model's
recipe in one table, :mod:`models.recipes`, by the checkpoint's ``model`` string ("gpt", "txl",
"longformer-genre" ...): a :class:`Kind`. The loop, the checkpoints and the command line never ask
what kind of model they hold. :func:`models.train.run` is the order in which a run calls the hooks below.
"""
from __future__ import annotations

import os
import time
from typing import NamedTuple

from . import data
from .evaluate import TokenText
from .tokenizers.lm import BPETextTokenizer

__all__ = ["CharRecipe", "Kind", "Recipe", "final_scope"]


class Kind(NamedTuple):
    """One kind of checkpoint (the ``model`` field of its metadata) and what rebuilds and trains it."""

    model: type  # the model class: model(config, *build_args, rng=..., dtype=...)
    config: type  # its config class (a models.config.PresetConfig)
    tokenizer: type  # the tokenizer of its vocabulary (from_dict / to_dict)
    batches: type  # the batches-and-loss adapter: batches(train_data, cfg, device)
    step_shape: object  # (model, seq_len) -> (L, d, d_ff, H, K, V) for models.step_memory's lower bound
    build_args: tuple = ()  # what the model takes after its config (the genre head: the number of labels)


def final_scope(cfg, unit: str) -> str:
    """How much of a split the final figure covers: "all" or "the first N <unit> of the"."""
    n = cfg.final_eval_batches
    return "all" if n is None else f"the first {n} {unit} of the"


class Recipe:
    """The hooks :func:`models.train.run` calls, in its order. ``opts`` is the ``train`` command's
    options (an ``argparse.Namespace``)."""

    name = ""  # python -m models train NAME
    kinds: dict = {}  # checkpoint kind -> Kind
    char_lm = False  # a character language model: `sample` and `evaluate` handle its checkpoints
    bpe = False  # trains on byte-pair tokens with --tokenizer bpe (train gpt, train txl)

    def for_options(self, opts) -> Recipe:
        """The recipe that trains what ``opts`` asks for (the Longformer's: its task's); refuses the
        options of other models before anything slow."""
        return self

    def kind(self, opts) -> str:
        """The checkpoint kind this run writes."""
        (kind,) = self.kinds
        return kind

    def check_preset(self, preset: str) -> None:
        """An unknown preset raises ValueError naming the choices (before the corpus is loaded)."""
        self.kinds[self.kind(None)].config.preset(preset, vocab_size=1)

    def default_out(self, opts, preset: str) -> str:
        """``--out`` when not given."""
        return os.path.join("runs", f"{self.name}-{preset}")

    def defaults(self, opts) -> dict:
        """The run's :class:`models.train.TrainConfig` fields when no option is given."""
        raise NotImplementedError

    def tokenizer(self, corpus: data.Corpus, opts):
        """The vocabulary of a fresh run (``opts.tokenizer``, ``opts.vocab_size``: ``train --tokenizer``)."""
        raise NotImplementedError

    def configure(self, opts, preset: str, tokenizer, settings: dict, given: dict):
        """The model config of a fresh run; may fix ``settings`` that follow from it (``seq_len``)."""
        raise NotImplementedError

    def run_info(self, opts, preset: str) -> dict:
        """What the checkpoint records about the run besides its settings (the preset's name ...)."""
        return {"preset": preset}

    def check_resume(self, opts, config, run: dict) -> None:
        """Refuse options that would change a resumed run's model."""

    def check_seq_len(self, seq_len: int, config) -> None:
        """Refuse a ``--seq-len`` the model cannot read."""

    def prepare(self, corpus: data.Corpus, tokenizer, config) -> tuple:
        """``(splits, sizes)``: ``splits`` maps "train", "validation" (and more) to what the adapter
        and the evaluation read; ``sizes`` describes them for the model line."""
        raise NotImplementedError

    def describe(self, opts, preset: str, config, kind: str) -> str:
        """The model's name in the "model: ..." line."""
        raise NotImplementedError

    def initialise(self, model, opts, tokenizer) -> dict:
        """``--init CKPT``: start ``model`` from a pretrained checkpoint; returns what the run records about it."""
        raise ValueError(f"--init is for longformer --task genre and speaker-qa, not {self.name}")

    def report(self, model, splits: dict, cfg, result: dict, opts, preset: str, config, checkpoint_path: str):
        """The figures printed after the loop (``result``: the loop's, and ``run``: the run's record); returns a
        results dict to write as ``results.json``, or None."""
        raise NotImplementedError


class CharRecipe(Recipe):
    """A character language model of the corpus (GPT, Transformer-XL): the training plays' characters
    as vocabulary, train/validation text as token ids, validation bpc as the final figure."""

    char_lm = True
    bpc_unit = "batches"  # what --final-eval-batches counts
    bpc_how = ""  # how the final bpc is measured, when it is not the plain windows

    def for_options(self, opts) -> Recipe:
        if opts.task is not None or opts.full_attention or opts.init is not None or opts.no_global:
            raise ValueError("--task, --full-attention, --init and --no-global are for longformer only "
                             "(GPT's fine-tuning starts from a checkpoint with `finetune --init`)")
        return self

    def tokenizer(self, corpus: data.Corpus, opts):
        if getattr(opts, "tokenizer", None) == "bpe":
            start = time.perf_counter()
            tokenizer = BPETextTokenizer.train(corpus.train, opts.vocab_size)
            print(f"byte-level BPE: {len(tokenizer.bpe.merges):,} merges learnt on the train split in "
                  f"{time.perf_counter() - start:.1f} s, vocabulary {tokenizer.vocab_size:,}")
            return tokenizer
        # The vocabulary is the training text's characters; "replace" maps any character only
        # the held-out plays use to the unknown symbol instead of failing.
        return data.CharTokenizer.from_text(corpus.train, unknown="replace")

    def prepare(self, corpus: data.Corpus, tokenizer, config) -> tuple:
        train, val = tokenizer.encode(corpus.train), tokenizer.encode(corpus.validation)
        if not isinstance(tokenizer, data.CharTokenizer):  # BPE: bits per character divide by characters
            val = TokenText(val, tokenizer.chars_per_id)
            return {"train": train, "validation": val}, \
                f"train {len(train):,} tokens ({len(corpus.train):,} chars), validation {len(val.ids):,} tokens " \
                f"({val.n_chars:,} chars)"
        return {"train": train, "validation": val}, f"train {len(train):,} chars, validation {len(val):,} chars"

    def final_bpc(self, model, ids, cfg) -> float:
        """Validation bpc after the run, over ``cfg.final_eval_batches`` batches (None: all)."""
        raise NotImplementedError

    def report(self, model, splits, cfg, result, opts, preset, config, checkpoint_path):
        # The periodic measurements use the first --eval-batches batches (cheap, comparable across
        # steps); by default the final figure covers the WHOLE validation split (the held-out plays).
        val = splits["validation"]
        bpc = self.final_bpc(model, val, cfg)
        n_chars = val.n_chars if isinstance(val, TokenText) else len(val)
        print(f"step {result['step']}: final validation bpc {bpc:.4f}{self.bpc_how} on "
              f"{final_scope(cfg, self.bpc_unit)} {n_chars:,} validation characters "
              f"(checkpoint in {checkpoint_path})")
        return None

    def generate(self, model, prompt_ids, length: int, *, temperature: float, top_k, rng):
        """``length`` sampled ids continuing ``prompt_ids`` (``python -m models sample``)."""
        raise NotImplementedError

    def check_context(self, context, config) -> None:
        """Refuse an ``evaluate --context`` the model cannot use (None: not given)."""

    def with_memory(self, model, mem_len):
        """``model`` to evaluate with a memory of ``mem_len`` positions (``evaluate --mem-len``; None: as trained)."""
        if mem_len is not None:
            raise ValueError(f"--mem-len is for txl only (a {self.name} checkpoint has no memory)")
        return model

    def held_out_bpc(self, model, ids, context) -> tuple:
        """``(EvalResult, how)``: ``python -m models evaluate``'s figure on ``ids`` and a line saying how."""
        raise NotImplementedError
