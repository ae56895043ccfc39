"""models/step_memory.py: the memory of a training step, counted before the first one, is a lower
bound of what a real step holds (so a refused step could never have run) and not a loose one."""
import tracemalloc

import numpy as np
import pytest

import minitensor as mt
from models import step_memory
from models.gpt import GPT, GPTConfig
from models.longformer import LongformerConfig
from models.longformer import LongformerForCausalLM, LongformerForSequenceClassification
from models.transformer_xl import TransformerXL, TransformerXLConfig

V = 40


def measured_peak(model, step):
    """Bytes a training step holds at its peak, counting the weights and Adam's moments (already
    allocated before the measured step: tracemalloc sees only what the step adds)."""
    step()  # warm-up: Adam's moments exist from here on
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak + 3 * sum(p.data.nbytes for p in model.parameters())


def lm_step(model, batch, seq_len, mems=False):
    rng = np.random.default_rng(0)
    x, y = rng.integers(1, V, (batch, seq_len)), rng.integers(1, V, (batch, seq_len))
    opt = mt.optim.AdamW(model.parameters(), lr=1e-3)
    memory = model.loss(x, y, None)[1] if mems else None

    def step():
        opt.zero_grad()
        loss = model.loss(x, y, memory)[0] if mems else model.lm_loss(x, y)
        loss.backward()
        opt.step()
    return step


CASES = {
    "gpt": lambda: (GPT(GPTConfig(vocab_size=V, n_ctx=64, d_model=64, n_layer=2, n_head=4), rng=0), 4, 64, False),
    "gpt-long": lambda: (GPT(GPTConfig(vocab_size=V, n_ctx=256, d_model=32, n_layer=1, n_head=4), rng=0), 2, 256,
                         False),
    "txl": lambda: (TransformerXL(TransformerXLConfig(vocab_size=V, d_model=64, n_layer=2, n_head=4, d_head=16,
                                                      d_inner=256, tgt_len=32, mem_len=32), rng=0), 4, 32, True),
    "longformer-lm": lambda: (LongformerForCausalLM(LongformerConfig(
        vocab_size=V, d_model=32, n_layer=2, n_head=4, d_ff=128, max_len=256, attention_window=16, causal=True,
        pad_id=0), rng=0), 2, 256, False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_estimate_is_a_lower_bound_within_a_small_factor(name):
    # Every array here is far below minitensor/buffers.py's 16 MiB, so each is a fresh allocation that
    # tracemalloc sees (NumPy reports its buffers to it).
    model, batch, seq_len, mems = CASES[name]()
    estimate = step_memory.step_bytes(model, batch, seq_len)["total"]
    peak = measured_peak(model, lm_step(model, batch, seq_len, mems))
    assert estimate <= peak <= 3 * estimate, (estimate, peak)


def test_a_task_head_counts_no_vocabulary_logits():
    config = LongformerConfig(vocab_size=V, d_model=32, n_layer=1, n_head=4, d_ff=64, max_len=64,
                              attention_window=8, pad_id=0)
    parts = step_memory.step_bytes(LongformerForSequenceClassification(config, 3, 0), 2, 64)
    assert parts["logits"] == 0 and parts["total"] == sum(v for k, v in parts.items() if k != "total")


def test_check_step_fits_refuses_with_the_figures():
    model = GPT(GPTConfig(vocab_size=V, n_ctx=8, d_model=8, n_layer=1, n_head=2), rng=0)
    step_memory.check_step_fits(model, 2, 8, available=2**30)
    need = step_memory.step_bytes(model, 2, 8)["total"]
    with pytest.raises(ValueError, match=r"needs at least .* GiB \(batch 2 x 8 positions; in GiB: attention "
                                         r"scores .*\) but .* GiB of memory is available"):
        step_memory.check_step_fits(model, 2, 8, available=need - 1)


def test_available_bytes_is_a_positive_figure_here():
    available = step_memory.available_bytes()
    assert available is None or available > 0
