r"""GPT-1's pretraining recipe: ``python -m models train gpt``.

Each step reads ``B`` windows of ``T`` characters at random offsets of the training text
(:class:`RandomWindows`) and minimises $L_1 = -$mean $\log P(u_i \mid u_{<i})$ (``model.lm_loss``);
validation is the bits per character of contiguous windows (:func:`models.evaluate.evaluate_bpc`).
"""
from __future__ import annotations

import numpy as np

from minitensor.backend import to_device

from .. import data
from ..evaluate import evaluate_bpc, ids_and_chars, vanilla_bpc
from ..recipe import CharRecipe, Kind
from ..tokenizers.lm import LMTokenizer
from .model import GPT, GPTConfig

__all__ = ["DEFAULTS", "MODEL", "RECIPE", "GPTRecipe", "RandomWindows"]


class RandomWindows:
    """Each step ``B`` windows of ``T`` characters at random offsets (seeded by ``cfg.seed``): GPT, and the
    Longformer language model, which reads its text as GPT does. ``shard``: this rank's rows of each batch
    (:func:`models.train.train` sets it; all of them in one process)."""

    shard = slice(None)

    def __init__(self, train_ids, cfg, device):
        self.ids, self.cfg, self.device = np.asarray(train_ids), cfg, device
        self.rng = np.random.default_rng(cfg.seed)

    def step_loss(self, model):
        r"""``(loss, n_targets)`` of the next batch: $L_1 = -$mean $\log P(u_i \mid u_{<i})$."""
        x, y = data.random_batches(self.ids, self.cfg.batch_size, self.cfg.seq_len, self.rng)  # (B, T) each
        x, y = x[self.shard], y[self.shard]
        return model.lm_loss(to_device(x, self.device), to_device(y, self.device)), y.size

    def checkpoint_fields(self) -> dict:
        return {"batch_rng": self.rng}

    def restore(self, state, meta) -> None:
        self.rng.bit_generator.state = meta["batch_rng_state"]

    def validate(self, model, val_text, max_batches) -> dict:
        ids, chars = ids_and_chars(val_text)  # BPE: bits over the characters the tokens spell
        return {"val_bpc": evaluate_bpc(model, ids, self.cfg.batch_size, self.cfg.seq_len, max_batches, chars)}


#: ``train gpt``'s settings (:class:`models.train.TrainConfig`'s fields) when no option is given, found by
#: ``benchmarks/gpt_recipe_sweep.py`` (README): at the tiny preset many small steps (B=16, T=128) at a high peak
#: rate learn most in a few minutes; about 0.1 s per step on 2 CPU cores, so 1,800 steps plus evaluations take
#: about 3.5 minutes. ``seq_len`` is capped at the preset's n_ctx, ``warmup`` at steps/5. AdamW's betas (0.9,
#: 0.999) and weight decay 0.01, the seed and the final figure's scope are TrainConfig's defaults, the same for
#: every model.
DEFAULTS = {"steps": 1800, "batch_size": 16, "seq_len": 128, "lr": 3e-3, "warmup": 100, "eval_every": 300,
            "eval_batches": 20, "ckpt_every": 600}

#: What ``train gpt`` changes in a preset's model (``--dropout`` overrides the dropouts): at the tiny
#: preset no dropout (a five-minute run underfits; dropout only slows it) and N(0, 0.05) initial weights
#: instead of GPT-1's N(0, 0.02), which at width 128 can leave the loss stuck at the unigram entropy
#: (``benchmarks/gpt_recipe_sweep.py``, README). Other presets are the paper's.
MODEL = {"tiny": {"embd_pdrop": 0.0, "attn_pdrop": 0.0, "resid_pdrop": 0.0, "init_std": 0.05}}


def step_shape(model, seq_len):
    """(layers, width, inner width, heads, keys per query, vocabulary) of a step (models.step_memory)."""
    c = model.config
    return c.n_layer, c.d_model, c.d_ff, c.n_head, seq_len, c.vocab_size


class GPTRecipe(CharRecipe):
    name = "gpt"
    kinds = {"gpt": Kind(GPT, GPTConfig, LMTokenizer, RandomWindows, step_shape)}
    bpe = True  # --tokenizer bpe

    def for_options(self, opts):
        super().for_options(opts)
        if opts.mem_len is not None:
            raise ValueError("--mem-len is for txl only (GPT has no memory)")
        if opts.positions is not None:
            raise ValueError("--positions is for txl only (GPT always has learned absolute positions)")
        return self

    def defaults(self, opts):
        return DEFAULTS

    def configure(self, opts, preset, tokenizer, settings, given):
        config = GPTConfig.preset(preset, tokenizer.vocab_size, **MODEL.get(preset, {}))
        settings["seq_len"] = given.get("seq_len", min(settings["seq_len"], config.n_ctx))
        return config

    def check_seq_len(self, seq_len, config):
        if seq_len > config.n_ctx:
            raise ValueError(f"--seq-len {seq_len} is longer than the model's context n_ctx={config.n_ctx}")

    def describe(self, opts, preset, config, kind):
        return f"GPT {preset}"

    def final_bpc(self, model, val_text, cfg):
        ids, chars = ids_and_chars(val_text)
        return evaluate_bpc(model, ids, cfg.batch_size, cfg.seq_len, cfg.final_eval_batches, chars)


    def generate(self, model, prompt_ids, length, *, temperature, top_k, rng):
        # GPT re-reads its window of n_ctx characters for every new one
        return model.generate(prompt_ids, length, temperature=temperature, top_k=top_k, rng=rng)

    def check_context(self, context, config):
        if context is not None and context > config.n_ctx:
            raise ValueError(f"--context {context} is longer than the model's context n_ctx={config.n_ctx}")

    def held_out_bpc(self, model, ids, context):
        context = model.config.n_ctx if context is None else context
        return vanilla_bpc(model, ids, context=context), \
            f"GPT, vanilla sliding window (context {context}, last position only)"


RECIPE = GPTRecipe()
