"""Smoke test of benchmarks/longformer_complexity.py (--quick, tiny lengths) and of the dense
composition it times as "full": it must be the same attention as banded_attention."""
import importlib.util
import json
import os

import numpy as np
import pytest

from minitensor.attention import banded_attention

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("longformer_complexity",
                                                  os.path.join(ROOT, "benchmarks", "longformer_complexity.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_attention_equals_banded(bench):
    leaves, _, glob = bench._attention_inputs(48, "cpu")
    q, k, v, qg, kg, vg = leaves
    dense = bench.full_attention(q, k, v, qg, kg, vg, window=8)
    band = banded_attention(q, k, v, window=8, global_mask=glob, q_global=qg, k_global=kg, v_global=vg)
    np.testing.assert_allclose(dense.data, band.data, rtol=1e-5, atol=1e-5)


def test_quick_run_writes_table_json_and_png(bench, tmp_path, capsys):
    result = bench.main(["--quick", "--skip-hf", "--lengths", "32", "64", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    rows = {(r["method"], r["T"]): r for r in result["rows"]}
    for method in ("full", "reference", "banded"):
        for t in (32, 64):
            r = rows[(method, t)]
            assert r["seconds"] > 0 and r["peak_mib"] >= 0, r
            assert f"{t:>7} {method:<12}" in out
    saved = json.loads((tmp_path / "longformer_complexity.json").read_text())
    assert len(saved["rows"]) == len(result["rows"]) and saved["peer"] is None
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "longformer_complexity.png").stat().st_size > 0


def test_caps_skip_with_a_reason(bench, tmp_path):
    result = bench.main(["--quick", "--skip-hf", "--lengths", "32", "64", "--max-dense-gib", "1e-9",
                         "--reference-limit-s", "1e-9", "--out", str(tmp_path)])
    rows = {(r["method"], r["T"]): r for r in result["rows"]}
    assert "max-dense-gib" in rows[("full", 32)]["skipped"]
    assert "seconds" in rows[("reference", 32)]  # the first length is measured: it gives the estimate
    assert rows[("reference", 64)]["skipped"].startswith("skipped (est.")


def test_hf_layer_agrees_with_ours(bench):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    check = bench.agreement(64, 16)
    assert check["out_max_abs_diff"] < 1e-5 and check["grad_x_max_abs_diff"] < 1e-5, check
