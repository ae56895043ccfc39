"""models/generate.py: Transformer-XL sampling with the memory equals sampling by re-reading the text."""
import numpy as np
import pytest

from models.generate import generate_txl, sample_from_logits
from models.transformer_xl import TransformerXL, TransformerXLConfig


def model(mem_len=64):
    cfg = TransformerXLConfig(vocab_size=9, d_model=16, n_layer=2, n_head=2, d_head=8, d_inner=32, tgt_len=4,
                              mem_len=mem_len)
    return TransformerXL(cfg, rng=0, dtype=np.float64)


def test_cached_generation_equals_rereading_the_whole_text():
    # With a memory longer than prompt + output nothing is forgotten, so predicting each next id
    # from one forward pass over everything so far (no memory) must give the same draws.
    m = model(mem_len=64)
    m.train()
    prompt = np.array([1, 2, 3, 4, 5, 6])  # two segments of tgt_len 4 (the second short)
    got = generate_txl(m, prompt, 10, temperature=0.9, top_k=5, rng=7)
    assert m.training and got.dtype == np.int64 and got.shape == (10,)
    m.eval()
    rng, ids = np.random.default_rng(7), prompt.copy()
    for _ in range(10):
        logits, _ = m.forward(ids[None])
        ids = np.append(ids, sample_from_logits(logits.data[0, -1], 0.9, 5, rng))
    np.testing.assert_array_equal(got, ids[len(prompt):])


def test_sample_from_logits_top_k_and_errors():
    rng = np.random.default_rng(0)
    draws = {sample_from_logits(np.array([0.0, 5.0, 4.0, -1.0]), 1.0, 2, rng) for _ in range(200)}
    assert draws == {1, 2}
    assert sample_from_logits(np.array([0.0, 5.0, 4.0]), 1.0, 1, rng) == 1  # top-1: greedy
    m = model()
    with pytest.raises(ValueError, match="prompt"):
        generate_txl(m, [], 3)
    with pytest.raises(ValueError, match="temperature"):
        generate_txl(m, [1], 3, temperature=0)
    with pytest.raises(ValueError, match=r"\[0, 9\)"):
        generate_txl(m, [9], 3)
