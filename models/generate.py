r"""Sampling text from a Transformer-XL with its memory (``python -m models sample`` on a txl checkpoint).

GPT samples by re-running its whole window for every new character (:meth:`models.gpt.GPT.generate`).
Transformer-XL does what its cached evaluation does: the prompt goes through in segments of
``tgt_len``, building the memory; then each new character is ONE forward pass over a single
token that attends to the memory (up to ``mem_len`` earlier positions), and its hidden states
join the memory. The draw is GPT's: logits / temperature, optional top-k, and inverse-CDF
sampling with one uniform number per character, so a seed gives the same text.
"""
from __future__ import annotations

import numpy as np

import minitensor as mt
from minitensor.backend import to_device, to_numpy

from .evaluate import eval_mode, model_device
from .tokenizers.lm import BPETextTokenizer

__all__ = ["check_sampling", "command", "generate_txl", "sample_from_logits"]


def sample_from_logits(logits, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """One id drawn from softmax(logits / temperature), restricted to the ``top_k`` largest (None: all)."""
    v = logits.shape[0]
    logits = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < v:
        kth = np.partition(logits, v - top_k)[v - top_k]  # the k-th largest logit
        logits = np.where(logits >= kth, logits, -np.inf)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    nxt = min(int(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right")), v - 1)
    while p[nxt] == 0.0:  # never land on a removed token through rounding at the edges
        nxt -= 1
    return nxt


def check_sampling(where: str, prompt_ids, vocab_size: int, length, temperature, top_k, rng) -> tuple:
    """``(prompt, rng)``: the prompt as a 1-D int64 array and ``rng`` as a Generator (an int seeds one),
    after refusing, with ``where`` in the message, an empty or out-of-range prompt, a negative ``length``,
    a ``temperature`` that is not > 0 and a ``top_k`` outside ``[1, vocab_size]``."""
    prompt = np.asarray(to_numpy(prompt_ids.data) if isinstance(prompt_ids, mt.Tensor) else prompt_ids)
    if prompt.ndim != 1 or prompt.size == 0:
        raise ValueError(f"{where}: the prompt must be a non-empty 1-D array of token ids, got shape {prompt.shape}")
    if prompt.dtype.kind not in "iu":
        raise TypeError(f"{where}: prompt ids must be integers, got dtype {prompt.dtype}")
    if prompt.min() < 0 or prompt.max() >= vocab_size:
        bad = prompt[(prompt < 0) | (prompt >= vocab_size)][0]
        raise ValueError(f"{where}: prompt id {int(bad)} is out of range [0, {vocab_size})")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ValueError(f"{where}: length must be an int >= 0, got {length!r}")
    if not temperature > 0:
        raise ValueError(f"{where}: temperature must be > 0, got {temperature!r} (use top_k=1 for greedy)")
    if top_k is not None and not (isinstance(top_k, (int, np.integer)) and 1 <= top_k <= vocab_size):
        raise ValueError(f"{where}: top_k must be None or an int in [1, {vocab_size}], got {top_k!r}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return prompt.astype(np.int64), rng


def generate_txl(model, prompt_ids, length: int, temperature: float = 1.0, top_k: int | None = None,
                 rng=None) -> np.ndarray:
    """``length`` new ids (int64) continuing ``prompt_ids`` (1-D, at least one id), eval mode, no graph."""
    prompt, rng = check_sampling("generate_txl", prompt_ids, model.config.vocab_size, length, temperature, top_k, rng)
    device = model_device(model)
    out = np.empty(length, dtype=np.int64)
    with eval_mode(model):
        mems, seg = None, model.config.tgt_len
        for a in range(0, len(prompt), seg):  # the prompt, segment by segment: builds the memory
            logits, mems = model.forward(to_device(prompt[None, a:a + seg], device), mems)
        for i in range(length):
            out[i] = sample_from_logits(to_numpy(logits.data)[0, -1], temperature, top_k, rng)
            logits, mems = model.forward(to_device(out[None, i:i + 1], device), mems)  # one token, (1, 1)
    return out


def command(opts) -> int:
    """``python -m models sample``: print ``opts.prompt`` and ``opts.length`` characters sampled from the
    checkpoint ``opts.ckpt`` by its recipe (GPT re-reads its window, Transformer-XL carries its memory)."""
    from . import checkpoint, data  # the checkpoint's module reads the recipes, which import this module

    if opts.length < 0:
        raise ValueError(f"--length must be >= 0, got {opts.length}")
    if getattr(opts, "hf", None):
        return _sample_hf(opts)
    device = mt.backend.check_device(opts.device)
    model, tokenizer_dict, _, recipe = checkpoint.load_language_model(opts.ckpt, "sample")
    model.to(device)
    if not opts.prompt:
        raise ValueError("--prompt must not be empty")
    bpe = tokenizer_dict.get("type") == "bpe"  # byte-level BPE: lossless, --length counts tokens
    # Sampling must not silently change the prompt: a character outside the vocabulary is an error.
    tokenizer = BPETextTokenizer.from_dict(tokenizer_dict) if bpe else \
        data.CharTokenizer.from_dict({**tokenizer_dict, "unknown": "error"})
    prompt_ids = tokenizer.encode(opts.prompt)
    new_ids = recipe.generate(model, prompt_ids, opts.length, temperature=opts.temperature, top_k=opts.top_k or None,
                              rng=np.random.default_rng(opts.seed))
    # a BPE token may end inside a character: decode the prompt and the new tokens together
    print(tokenizer.decode(np.concatenate([prompt_ids, new_ids])) if bpe else opts.prompt + tokenizer.decode(new_ids))
    return 0


def _sample_hf(opts) -> int:
    """``sample --hf DIR``: a Hugging Face ``openai-gpt`` directory end to end. Its ``vocab.json`` and
    ``merges.txt`` are GPT-1's byte-pair encoding (:class:`models.tokenizers.GPT1BPE`), which lower-cases
    and re-spaces text, so the prompt is printed as the tokenizer reads it back."""
    from .gpt import load_hf_checkpoint
    from .tokenizers import load_bpe

    device = mt.backend.check_device(opts.device)
    tokenizer = load_bpe(opts.hf, kind="gpt1")
    model = load_hf_checkpoint(opts.hf)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"--hf {opts.hf}: vocab.json has {tokenizer.vocab_size} tokens but the model "
                         f"{model.config.vocab_size} (config.json's vocab_size)")
    model.to(device)
    prompt_ids = np.asarray(tokenizer.encode(opts.prompt), dtype=np.int64)
    if prompt_ids.size == 0:
        raise ValueError(f"--prompt {opts.prompt!r} has no tokens for GPT-1's tokenizer (it drops whitespace): "
                         "give --hf a --prompt with words")
    new_ids = model.generate(prompt_ids, opts.length, temperature=opts.temperature, top_k=opts.top_k or None,
                             rng=np.random.default_rng(opts.seed))
    print(tokenizer.decode([*prompt_ids.tolist(), *new_ids.tolist()]))
    return 0
