"""``benchmarks/recipe_step.py``: every timed part is a real piece of the trainer's step, and the table's shares
and ratios are computed from the timings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import REPO

if str(REPO) not in sys.path:  # the benchmark imports its helpers from the ``benchmarks`` package
    sys.path.insert(0, str(REPO))


def _module():
    spec = importlib.util.spec_from_file_location("benchmarks_recipe_step", REPO / "benchmarks" / "recipe_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parts_are_the_trainer_step_pieces():
    bench = _module()
    fns, trainer = bench.parts("mlp", "fp32", 0.0)
    assert "whole train_step" in fns
    x1, _, cid, x0 = fns["draw batch (sampler + control source)"]()
    assert x1.shape == x0.shape == (trainer.cfg.optim.batch_size, trainer.task.spec.n_genes)
    assert 1 < cid.unique().numel() <= trainer.cfg.optim.conditions_per_batch
    before = [p.detach().clone() for p in trainer.network.parameters()]
    fns["forward + backward, with MMD"]()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.network.parameters())
    fns["update (clip, AdamW, scheduler, EMA)"]()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.network.parameters(), strict=True))
    logs = fns["whole train_step"]()
    assert logs["loss"] == pytest.approx(logs["loss"])  # finite


def test_markdown_shares_and_ratios():
    bench = _module()
    df = pd.DataFrame([
        {"network": "mlp", "part": "draw batch (sampler + control source)", "fp32_ms": 1.0, "bf16_ms": 1.0},
        {"network": "mlp", "part": "forward + backward, with MMD", "fp32_ms": 30.0, "bf16_ms": 12.0},
        {"network": "mlp", "part": "whole train_step", "fp32_ms": 40.0, "bf16_ms": 20.0},
    ])  # fmt: skip
    text = bench.to_markdown(df, "meta")
    assert "| forward + backward, with MMD | 30.0 | 75% | 12.0 | 0.40 |" in text
    assert "| whole train_step | 40.0 |  | 20.0 | 0.50 |" in text


def test_main_writes_between_its_markers(tmp_path: Path):
    bench = _module()
    out = tmp_path / "perf.md"
    out.write_text("# Performance\n\nkept\n")
    assert (
        bench.main(["--networks", "mlp", "--min-seconds", "0", "--csv", str(tmp_path / "r.csv"), "--out", str(out)])
        == 0
    )
    text = out.read_text()
    assert text.startswith("# Performance\n\nkept\n")
    assert text.count(bench.BEGIN) == 1
    rows = pd.read_csv(tmp_path / "r.csv")
    assert set(rows["part"]) >= {"whole train_step", "test evaluation (generate + metrics)"}
    assert (rows[["fp32_ms", "bf16_ms"]] > 0).all().all()
