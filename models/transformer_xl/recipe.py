r"""Transformer-XL's training recipe: ``python -m models train txl``.

Segment recurrence with truncated backpropagation through time (:class:`Recurrence`). The text is
read as ``B`` contiguous streams (:class:`models.data.SegmentStream`), segment after segment
(``T`` = ``tgt_len``), and ``loss, mems = model.loss(x, y, mems)`` carries the memory from one step
to the next. The memory the model returns is already detached (the paper's $\mathrm{SG}$):
gradients stop at the segment boundary, so each step's graph covers one segment only. The memory
is RESET (emptied) at the first segment of every pass over the text: at step 0 and whenever the
stream wraps around from the end of its slice to its start, since that segment does not follow the
memory's text. Validation is the cached evaluation (:func:`models.evaluate.cached_bpc`).

The memory carried into the next step is part of the checkpoint (arrays ``mems.<n>``): without it a
resumed run would start its next segment from an empty memory, a different computation from the
uninterrupted run's.
"""
from __future__ import annotations

import dataclasses

from minitensor.backend import to_device

from .. import data
from ..evaluate import cached_bpc, ids_and_chars
from ..generate import generate_txl
from ..recipe import CharRecipe, Kind
from ..tokenizers.lm import LMTokenizer
from .model import TransformerXL, TransformerXLConfig

__all__ = ["DEFAULTS", "MODEL", "RECIPE", "Recurrence", "TransformerXLRecipe", "saved_mems"]


def saved_mems(state):
    """The memory a checkpoint saved as ``mems.0 .. mems.{N-1}``, or None (empty memory)."""
    n = sum(1 for k in state if k.startswith("mems."))
    return [state[f"mems.{i}"] for i in range(n)] if n else None


class Recurrence:
    """``B`` contiguous streams read segment after segment, the memory carried from step to step
    (truncated BPTT) and reset at the start of every pass over the text. ``shard``: this rank's streams
    (:func:`models.train.train` sets it); each rank carries the memory of its own streams."""

    shard = slice(None)

    def __init__(self, train_ids, cfg, device):
        self.stream = data.SegmentStream(train_ids, cfg.batch_size, cfg.seq_len)
        self.device = device
        self.cfg = cfg
        self.mems = None  # empty memory

    def step_loss(self, model):
        x, y, starts = self.stream.next_segment()  # (B, L) each, continuing the previous segment
        x, y = x[self.shard], y[self.shard]
        if starts:
            self.mems = None  # a new pass: nothing precedes this segment
        loss, self.mems = model.loss(to_device(x, self.device), to_device(y, self.device), self.mems)
        return loss, y.size  # self.mems: plain arrays (B, min(M, M+L), d), no graph behind them

    def checkpoint_fields(self) -> dict:
        return {"stream": self.stream, "mems": self.mems}

    def restore(self, state, meta) -> None:
        self.stream.load_state_dict(meta["stream_state"])
        mems = saved_mems(state)
        self.mems = None if mems is None else [to_device(m[self.shard], self.device) for m in mems]  # every stream's

    def validate(self, model, val_text, max_batches) -> dict:
        """Cached evaluation: ``batch_size`` contiguous slices read in segments of ``seq_len`` with the
        memory carried; ``max_batches`` counts segments. BPE: bits over the characters the tokens spell."""
        ids, chars = ids_and_chars(val_text)
        return {"val_bpc": cached_bpc(model, ids, batch_size=self.cfg.batch_size, seg_len=self.cfg.seq_len,
                                      max_segments=max_batches, chars_per_id=chars).bpc}


#: ``train txl``'s settings when no option is given (GPT's, at the tiny preset's segment length 64:
#: ``seq_len`` is the preset's ``tgt_len`` unless --seq-len sets both; ``warmup`` at most steps/5).
DEFAULTS = {"steps": 600, "batch_size": 32, "seq_len": None, "lr": 3e-3, "warmup": 100, "eval_every": 100,
            "eval_batches": 40, "ckpt_every": 200}


#: What ``train txl`` changes in a preset's model: GPT's tiny recipe (``models.gpt.recipe.MODEL``), no dropout
#: and N(0, 0.05) initial weights; other presets are the paper's.
MODEL = {"tiny": {"dropout": 0.0, "init_std": 0.05}}


def step_shape(model, seq_len):
    """(layers, width, inner width, heads, keys per query, vocabulary) of a step (models.step_memory):
    a query sees the memory's ``mem_len`` keys and the segment's."""
    c = model.config
    return c.n_layer, c.d_model, c.d_inner, c.n_head, seq_len + c.mem_len, c.vocab_size


class TransformerXLRecipe(CharRecipe):
    name = "txl"
    kinds = {"txl": Kind(TransformerXL, TransformerXLConfig, LMTokenizer, Recurrence, step_shape)}
    bpe = True  # --tokenizer bpe
    bpc_unit = "segments"
    bpc_how = " (cached evaluation)"

    def defaults(self, opts):
        return DEFAULTS

    def configure(self, opts, preset, tokenizer, settings, given):
        # the segment length L is the model's tgt_len, so --seq-len sets both
        overrides = {"tgt_len": opts.seq_len} if opts.seq_len is not None else {}
        if opts.mem_len is not None:
            overrides["mem_len"] = opts.mem_len
        if opts.positions is not None:
            overrides["positions"] = opts.positions
        config = TransformerXLConfig.preset(preset, tokenizer.vocab_size, **{**MODEL.get(preset, {}), **overrides})
        settings["seq_len"] = config.tgt_len
        return config

    def check_resume(self, opts, config, run):
        if opts.mem_len is not None and opts.mem_len != config.mem_len:
            raise ValueError(f"--mem-len {opts.mem_len} differs from the checkpoint's mem_len={config.mem_len}; "
                             "a resumed run keeps its model")
        if opts.positions is not None and opts.positions != config.positions:
            raise ValueError(f"--positions {opts.positions} differs from the checkpoint's positions="
                             f"{config.positions}; a resumed run keeps its model")

    def describe(self, opts, preset, config, kind):
        ablation = ", absolute positions" if config.positions == "absolute" else ""
        return f"Transformer-XL (segment {config.tgt_len}, memory {config.mem_len}{ablation}) {preset}"

    def final_bpc(self, model, val_text, cfg):
        # cached evaluation: cfg.batch_size contiguous slices carrying memory
        ids, chars = ids_and_chars(val_text)
        return cached_bpc(model, ids, batch_size=cfg.batch_size, seg_len=cfg.seq_len,
                          max_segments=cfg.final_eval_batches, chars_per_id=chars).bpc


    def generate(self, model, prompt_ids, length, *, temperature, top_k, rng):
        # one token per forward pass, attending to the memory
        return generate_txl(model, prompt_ids, length, temperature=temperature, top_k=top_k, rng=rng)

    def check_context(self, context, config):
        if context is not None:
            raise ValueError("--context is for gpt only (Transformer-XL's context is its segment plus mem_len "
                             f"{config.mem_len}, fixed by the checkpoint)")

    def with_memory(self, model, mem_len):
        # the same weights with another memory length: the relative sinusoid R_{i-j} has a row for any
        # distance, so a model can be evaluated with a longer (or shorter) memory than it was trained with
        if mem_len is None or mem_len == model.config.mem_len:
            return model
        resized = TransformerXL(dataclasses.replace(model.config, mem_len=mem_len), dtype=model.dtype)
        resized.load_state_dict(model.state_dict())
        return resized

    def held_out_bpc(self, model, ids, context):
        return cached_bpc(model, ids, batch_size=1), \
            f"Transformer-XL, cached evaluation (segment {model.config.tgt_len}, memory {model.config.mem_len})"


RECIPE = TransformerXLRecipe()
