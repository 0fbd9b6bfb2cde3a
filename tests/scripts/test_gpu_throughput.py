"""The GPU throughput report renders the committed measurements (the measuring itself needs CUDA: see the
``gpu``-marked test below)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_throughput  # noqa: E402


def test_report_states_each_rate_and_ratio(tmp_path: Path):
    pd.DataFrame(
        [
            {"arm": "unet1d", "n_genes": 2048, "batch_size": 256, "fp32_steps_per_s": 30.0, "bf16_steps_per_s": 24.0,
             "bf16_over_fp32": 0.8, "device": "Some GPU"},
            {"arm": "mlp_repaired", "n_genes": 2048, "batch_size": 256, "fp32_steps_per_s": 120.0,
             "bf16_steps_per_s": 150.0, "bf16_over_fp32": 1.25, "device": "Some GPU"},
        ]
    ).to_csv(tmp_path / "gpu_throughput.csv", index=False)  # fmt: skip
    pd.DataFrame(
        [
            {"arm": "unet1d", "precision": "bf16", "processes": 1, "total_steps_per_s": 20.0,
             "per_process_steps_per_s": 20.0, "total_over_one_process": 1.0, "device": "Some GPU"},
            {"arm": "unet1d", "precision": "bf16", "processes": 4, "total_steps_per_s": 50.0,
             "per_process_steps_per_s": 12.5, "total_over_one_process": 2.5, "device": "Some GPU"},
        ]
    ).to_csv(tmp_path / "gpu_concurrency.csv", index=False)  # fmt: skip
    text = gpu_throughput.report(tmp_path)
    assert "one Some GPU" in text
    assert "| unet1d | 30.0 | 24.0 | 0.80 |" in text
    assert "| mlp_repaired | 120.0 | 150.0 | 1.25 |" in text
    assert "| 4 | 50.0 | 12.5 | 2.50 |" in text
    assert "bf16 autocast is slower than fp32 for unet1d." in text  # from the rates, not a fixed sentence
    assert "here 4 gave 2.50 times" in text


def test_the_committed_report_is_the_one_the_committed_results_give():
    assert (REPO / "docs" / "gpu_performance.md").read_text() == gpu_throughput.report(REPO / "benchmarks" / "results")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_measured_rate_on_the_gpu_is_positive():
    rate = gpu_throughput.steps_per_second("mlp_repaired", "fp32", 64, 32, seconds=0.5)
    assert rate > 0
