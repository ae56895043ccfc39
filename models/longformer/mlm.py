r"""Pretraining the Longformer encoder as a masked language model, then starting the tasks from it.

The paper (section 5) does not train its tasks from nothing: it continues RoBERTa's masked-LM
pretraining on long documents, copying RoBERTa's 512 position embeddings over and over to fill
4,096, and only then fine-tunes. Here the same two steps at our scale:

``python -m models train longformer --task mlm``
    windows of the training plays, ``<s>`` + ``seq_len - 1`` characters, corrupted as BERT does
    (:func:`mask_tokens`): each character is chosen with probability 15%; a chosen one becomes
    ``<mask>`` 80% of the time, a random character 10%, stays itself 10%; the loss is the
    cross-entropy of the original characters at the chosen positions only. Scored in bits per
    masked character (:func:`masked_bpc`, the corruption drawn from a fixed seed, so the figure is
    the same every time).
``python -m models train longformer --task genre --init runs/longformer-mlm-tiny`` (or another task)
    the task model's encoder starts from the pretrained one (:func:`init_encoder`): the same
    vocabulary and shape are required; positions beyond the pretrained ``max_len`` repeat the
    pretrained rows (the paper's copy); the global projections $Q_g, K_g, V_g$, which pretraining
    never uses, start as copies of $Q_s, K_s, V_s$ (as the paper's conversion of RoBERTa does).
    ``--init`` also takes another task's run (:data:`INIT_KINDS`): its whole encoder, global
    projections included, is copied (one task's fine-tuned encoder starting another's).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from minitensor.backend import to_device, to_numpy

from .. import checkpoint, data
from ..evaluate import eval_mode, model_device
from .heads import LongformerForMaskedLM
from .model import LongformerConfig
from .positions import repeat_positions

__all__ = ["INIT_KINDS", "MASK_RATE", "MaskedText", "MaskedWindows", "init_encoder", "mask_tokens", "masked_bpc",
           "read_init"]

MASK_RATE = 0.15  # BERT's and RoBERTa's: the share of characters the model must restore
_MASK, _RANDOM = 0.8, 0.1  # of the chosen: 80% <mask>, 10% a random character, 10% unchanged
IGNORE = LongformerForMaskedLM.IGNORE
# Fields of the encoder's shape that must be the same in the pretrained checkpoint and the task model.
SHAPE_FIELDS = ("vocab_size", "d_model", "n_layer", "n_head", "d_ff", "attention_window", "dilation", "pad_id",
                "layer_norm_eps")


@dataclass
class MaskedText:
    """A split's characters as ids, with what corrupting it needs: ``start_id`` (``<s>``, put in front
    of every window), ``mask_id`` and ``n_chars`` (ids below it are characters: the random replacements)."""

    ids: np.ndarray
    start_id: int
    mask_id: int
    n_chars: int

    def __len__(self):
        return len(self.ids)


def mask_tokens(ids, rng: np.random.Generator, text: MaskedText, rate: float = MASK_RATE) -> tuple:
    """``(inputs, labels)`` for a batch ``ids`` (B, T): BERT's corruption of every character position
    (``<s>`` and other special ids are never chosen). ``labels`` holds the original id where a position
    was chosen and ``IGNORE`` elsewhere; at least one position of the batch is chosen."""
    ids = np.asarray(ids)
    maskable = ids < text.n_chars
    if not maskable.any():
        raise ValueError("mask_tokens: the batch holds no character to mask")
    chosen = maskable & (rng.random(ids.shape) < rate)
    if not chosen.any():  # a tiny batch can draw nothing: the loss needs one target
        chosen.flat[rng.choice(np.flatnonzero(maskable))] = True
    how = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (how < _MASK)] = text.mask_id
    swap = chosen & (how >= _MASK) & (how < _MASK + _RANDOM)
    inputs[swap] = rng.integers(0, text.n_chars, size=int(swap.sum()))
    return inputs, np.where(chosen, ids, IGNORE)


def _with_start(windows, start_id):
    return np.concatenate([np.full((len(windows), 1), start_id, np.int64), windows], axis=1)


def masked_bpc(model, text: MaskedText, batch_size: int, seq_len: int, max_batches: int | None = None,
               seed: int = 0) -> float:
    """Bits per masked character on ``text``: contiguous windows of ``seq_len - 1`` characters after
    ``<s>``, corrupted by :func:`mask_tokens` with a generator seeded by ``seed`` (the same positions every
    time), the summed cross-entropy of the chosen positions over their number, in bits. Dropout off, no graph."""
    rng = np.random.default_rng(seed)
    device = model_device(model)
    total, count = 0.0, 0
    with eval_mode(model):
        for i, (x, _) in enumerate(data.iterate_eval_batches(text.ids, batch_size, seq_len - 1)):
            if max_batches is not None and i >= max_batches:
                break
            inputs, labels = mask_tokens(_with_start(x, text.start_id), rng, text)
            loss = model.loss(to_device(inputs, device), to_device(labels, device))  # mean over the chosen
            n = int((labels != IGNORE).sum())
            total += float(to_numpy(loss.data)) * n
            count += n
    return total / count / math.log(2)


class MaskedWindows:
    """The batches-and-loss adapter of ``--task mlm``: each step ``B`` windows of ``seq_len - 1`` characters at
    random offsets of the training text, ``<s>`` in front, corrupted by :func:`mask_tokens`."""

    shard = slice(None)  # this rank's rows of each batch (models.train.train sets it)

    def __init__(self, train_text: MaskedText, cfg, device):
        self.text, self.cfg, self.device = train_text, cfg, device
        self.rng = np.random.default_rng(cfg.seed)

    def step_loss(self, model):
        x, _ = data.random_batches(self.text.ids, self.cfg.batch_size, self.cfg.seq_len - 1, self.rng)
        inputs, labels = mask_tokens(_with_start(x, self.text.start_id), self.rng, self.text)
        inputs, labels = inputs[self.shard], labels[self.shard]
        loss = model.loss(to_device(inputs, self.device), to_device(labels, self.device))
        return loss, int((labels != IGNORE).sum())  # the characters restored this step

    def checkpoint_fields(self) -> dict:
        return {"batch_rng": self.rng}

    def restore(self, state, meta) -> None:
        self.rng.bit_generator.state = meta["batch_rng_state"]

    def validate(self, model, val_text: MaskedText, max_batches) -> dict:
        return {"val_mlm_bpc": masked_bpc(model, val_text, self.cfg.batch_size, self.cfg.seq_len, max_batches)}


#: The checkpoints ``--init`` starts a task's encoder from: the pretraining, or another task's run.
INIT_KINDS = ("longformer-mlm", "longformer-genre", "longformer-qa", "longformer-speaks", "longformer-first-line")


def read_init(path) -> tuple:
    """``(state, meta)`` of the checkpoint at ``path`` if ``--init`` can start from its kind (:data:`INIT_KINDS`)."""
    state, meta = checkpoint.read_checkpoint(path)
    if meta["model"] not in INIT_KINDS:
        raise ValueError(f"--init {path!r} holds a {meta['model']!r} checkpoint, not 'longformer-mlm' or a "
                         f"Longformer task's ({', '.join(INIT_KINDS[1:])})")
    return state, meta


def check_pretrained(path, tokenizer_dict: dict, config: LongformerConfig) -> tuple:
    """``(state, meta)`` of the ``--init`` checkpoint at ``path`` (the pretraining or a task's run) after
    checking that a task model of ``config`` with ``tokenizer_dict`` can start from it; a ValueError names
    what differs."""
    state, meta = read_init(path)
    if meta["tokenizer"] != tokenizer_dict:
        raise ValueError(f"--init {path!r}: its vocabulary differs from this run's (pretrain on the same corpus)")
    pre = meta["model_config"]
    for name in SHAPE_FIELDS:
        if pre.get(name) != getattr(config, name):
            raise ValueError(f"--init {path!r}: the pretrained encoder has {name}={pre.get(name)!r}, this model "
                             f"{getattr(config, name)!r}; the task model must have the pretrained shape")
    return state, meta


def init_encoder(model, path, tokenizer_dict: dict) -> dict:
    """Load the encoder of the ``--init`` checkpoint at ``path`` (``--task mlm`` or a task's run) into
    ``model.longformer`` (a task model: its head keeps its fresh weights). Returns ``{"init": path, "pretrained_steps": N}`` for the run's record."""
    config = model.config
    state, meta = check_pretrained(path, tokenizer_dict, config)
    weights, _ = checkpoint.split_state(state)
    loaded = {}
    for name, p in model.longformer.named_parameters():
        key = "longformer." + name
        if name == "embeddings.position_embeddings.weight":  # the pretrained positions, repeated
            value = repeat_positions(weights[key], config.pad_id, config.max_len)
        elif "_global." in name and meta["model"] == "longformer-mlm":  # pretraining made no token global:
            value = weights[key.replace("_global.", ".")]  # query_global.weight <- query.weight
        else:
            value = weights[key]
        loaded[name] = value.astype(p.data.dtype)
    model.longformer.load_state_dict(loaded)
    return {"init": str(path), "pretrained_steps": int(meta["step"])}
