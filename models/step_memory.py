r"""How much memory one training step needs, counted before the first step, so that a run that
cannot fit (``--seq-len 100000``, ``--batch-size 100000``) is refused with the figure instead of
dying in a ``MemoryError`` after minutes of allocating.

The count is a LOWER bound: only the arrays a step surely holds at once. With $N = BT$ positions,
$L$ layers of width $d$ and inner width $d_{ff}$, $S = B\,H\,T\,K$ attention scores per layer ($K$
keys per query: $T$ for GPT, $T + M$ for Transformer-XL with memory $M$, the band $w + 1$ for
Longformer), vocabulary $V$ and $P$ parameters, in bytes of the parameters' dtype:

$$\text{bytes} \ge \text{itemsize}\cdot\big(L\,(12\,N d + 2\,N d_{ff} + 2\,S) + 2\,N V + 4P\big)$$

(per layer a dozen $N \times d$ activations kept for the backward, the two $N \times d_{ff}$ of the
feed-forward, the scores and their softmax; the logits and their softmax; the weights, their
gradients and Adam's two moments). Measured peaks of real steps are 1.4 to 2.3 times this
(``tests/models/test_step_memory.py`` checks that it stays below them), so a step refused here
could never have run.
"""
from __future__ import annotations

from . import recipes

GIB = 2 ** 30


def step_bytes(model, batch_size: int, seq_len: int) -> dict:
    """The lower bound of the module docstring, in bytes, by part:
    ``{"attention scores", "activations", "logits", "weights and optimizer", "total"}``."""
    n_layer, d, d_ff, heads, keys, vocab = recipes.kind(recipes.kind_of(model)).step_shape(model, seq_len)
    params = model.parameters()
    item = params[0].data.dtype.itemsize if params else 4
    n = batch_size * seq_len
    parts = {"attention scores": item * n_layer * 2 * batch_size * heads * seq_len * keys,
             "activations": item * n_layer * (12 * n * d + 2 * n * d_ff),
             "logits": item * 2 * n * vocab,
             "weights and optimizer": item * 4 * sum(p.size for p in params)}
    parts["total"] = sum(parts.values())
    return parts


def available_bytes() -> int | None:
    """Memory this process can still take: Linux's MemAvailable, capped by a cgroup (v2) limit; None
    where neither can be read (the check is then skipped)."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_step_fits(model, batch_size: int, seq_len: int, available: int | None = None) -> None:
    """Refuse (ValueError, with the figures) a step that needs more than the ``available`` bytes (default:
    :func:`available_bytes`). Only CPU memory is counted: a model on a GPU is not checked here."""
    params = model.parameters()
    if params and params[0].device != "cpu":
        return
    available = available_bytes() if available is None else available
    if available is None:
        return
    parts = step_bytes(model, batch_size, seq_len)
    if parts["total"] > available:
        detail = ", ".join(f"{k} {v / GIB:,.1f}" for k, v in parts.items() if k != "total")
        raise ValueError(f"one training step needs at least {parts['total'] / GIB:,.1f} GiB (batch {batch_size:,} x "
                         f"{seq_len:,} positions; in GiB: {detail}) but {available / GIB:,.1f} GiB of memory is "
                         "available; lower --batch-size or --seq-len")
