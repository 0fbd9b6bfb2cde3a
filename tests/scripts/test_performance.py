"""The performance benchmark's quick path, its exponent fit, and the full-attention memory refusal."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arch_lab.errors import ConfigError
from arch_lab.networks import build_network
from arch_lab.networks.layers.attention import check_full_attention_memory, full_attention_bytes
from arch_lab.spec import CondBatch, DataSpec

REPO = Path(__file__).resolve().parents[2]
# the module, not the function of the same name that arch_lab.networks re-exports
attention_module = importlib.import_module("arch_lab.networks.layers.attention")


def _performance_module():
    path = REPO / "benchmarks" / "performance.py"
    spec = importlib.util.spec_from_file_location("benchmarks_performance", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("benchmarks_performance", module)
    spec.loader.exec_module(module)
    return module


def test_fit_exponent_recovers_known_exponent() -> None:
    perf = _performance_module()
    rng = np.random.default_rng(0)
    genes = np.array([500, 2000, 8000, 18000])
    for k in (1.0, 1.7, 2.0):
        timings = 3e-6 * genes**k * np.exp(rng.normal(0, 0.02, len(genes)))  # 2% multiplicative noise
        assert perf.fit_exponent(genes, timings) == pytest.approx(k, abs=0.05)
    assert np.isnan(perf.fit_exponent([100, 100], [1.0, 2.0]))  # one distinct x: no slope
    assert perf.fit_exponent([1, 2, 4, float("nan")], [1, 4, 16, 5]) == pytest.approx(2.0)


def test_full_attention_estimate_is_quadratic() -> None:
    small = full_attention_bytes(batch=4, heads=2, length=100, layers=2)
    assert full_attention_bytes(batch=4, heads=2, length=200, layers=2) == 4 * small
    assert full_attention_bytes(batch=8, heads=2, length=100, layers=2) == 2 * small
    assert small == 4 * 2 * 100 * 100 * 4 * 3  # layers + 1 copies of [B, H, G, G] fp32 when training
    assert full_attention_bytes(4, 2, 100, 2, training=False) == 2 * 4 * 2 * 100 * 100 * 4
    assert full_attention_bytes(4, 2, 100, 0) == 0


def test_check_refuses_above_limit_and_accepts_below() -> None:
    limit = 64 * 2**20  # 64 MiB
    need = full_attention_bytes(batch=8, heads=4, length=256, layers=2)
    assert need < limit
    check_full_attention_memory(8, 4, 256, 2, "cpu", limit_bytes=limit)  # fits: no error
    with pytest.raises(ConfigError) as info:
        check_full_attention_memory(8, 4, 1024, 2, "cpu", limit_bytes=limit)  # 16x the memory
    message = str(info.value)
    assert "\n" not in message
    assert "self_attention: latent" in message
    assert "1024 genes" in message


def test_available_memory_is_read() -> None:
    avail = attention_module.available_memory_bytes("cpu")
    assert avail is None or avail > 0


def _forward(net: torch.nn.Module, genes: int, rows: int = 4) -> torch.Tensor:
    cond = CondBatch.repeat([1], [0], rows, width=net.spec.max_perturbations)
    return net(torch.randn(rows, genes), torch.rand(rows), cond)


def test_transformer_full_attention_refuses_but_latent_and_cross_do_not(monkeypatch) -> None:
    genes = 300
    spec = DataSpec.synthetic(n_genes=genes, n_perturbations=3, covariate_sizes=(2,))
    knobs = {"dim": 8, "depth": 1, "heads": 2, "n_latents": 3, "ff_mult": 1}
    # a machine with 1 MiB free: [4, 2, 300, 300] fp32 attention weights need several MiB
    monkeypatch.setattr(attention_module, "available_memory_bytes", lambda device: 2**20)
    full = build_network("gene_transformer", {**knobs, "self_attention": "full"}, spec)
    with pytest.raises(ConfigError, match="self_attention: latent"):
        _forward(full, genes)
    for mix in ("latent", "none"):  # linear in G: no quadratic term to refuse
        net = build_network("gene_transformer", {**knobs, "self_attention": mix}, spec)
        assert _forward(net, genes).shape == (4, genes)
    # small enough: full attention runs
    small = DataSpec.synthetic(n_genes=20, n_perturbations=3, covariate_sizes=(2,))
    net = build_network("gene_transformer", {**knobs, "self_attention": "full"}, small)
    assert _forward(net, 20).shape == (4, 20)


def test_quick_benchmark_writes_markdown_and_csv(tmp_path: Path) -> None:
    perf = _performance_module()
    out, results = tmp_path / "performance.md", tmp_path / "results"
    argv = ["--quick", "--tiny", "--networks", "mlp", "--genes", "32", "64", "--batch", "8", "--batches", "8",
            "--ref-genes", "64", "--threads", "1", "--out", str(out), "--results", str(results)]  # fmt: skip
    assert perf.main(argv) == 0
    text = out.read_text()
    for heading in ("# Performance", "## Machine limit: dense matmul", "## Targets", "## How cost grows",
                    "## Atlas-scale projection"):  # fmt: skip
        assert heading in text
    for line in text.splitlines():  # every table row has as many cells as its header
        if line.startswith("|"):
            assert line.endswith("|")
    with open(results / "performance.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["status"] for r in rows} == {"ok"}
    assert {(r["n_genes"], r["batch_size"]) for r in rows} == {("32", "8"), ("64", "8")}
    for r in rows:
        assert float(r["train_cells_per_s"]) > 0
        assert float(r["flops_per_step"]) > 0
    with open(results / "performance_exponents.csv") as f:
        exps = list(csv.DictReader(f))
    assert [e["against"] for e in exps] == ["genes"]
    assert (results / "performance_matmul.csv").is_file()


def test_labels_name_overrides_and_micro_batches() -> None:
    perf = _performance_module()
    assert perf.label("mlp", {}) == "mlp"
    assert perf.label("gene_transformer", {"self_attention": "latent"}) == "gene_transformer[latent]"
    assert (
        perf.label("gene_transformer", {"dim": 256, "ff_mult": 4}, {"micro_batch_size": 8})
        == "gene_transformer[dim=256,ff_mult=4,micro=8]"
    )


def test_jobs_include_transformer_micro_batches_and_widths() -> None:
    perf = _performance_module()
    parser_args = ["--networks", "mlp", "gene_transformer", "--genes", "500", "2000", "--batches", "32", "256"]
    args = perf.parse_args(parser_args)
    jobs = perf.build_jobs(args, ["mlp", "gene_transformer"])
    micro = [j for j in jobs if j["sweep"] == "micro"]
    assert len(micro) == 1
    assert micro[0]["batch"] == 256
    assert micro[0]["optim"] == {"micro_batch_size": perf.MICRO_BATCH}
    widths = [j for j in jobs if j["sweep"] == "width"]
    assert sorted(j["config"]["dim"] for j in widths) == sorted(perf.WIDTHS)
    assert all(j["config"]["dim"] % j["config"]["heads"] == 0 and not j["bare"] for j in widths)
    # the transformer's target configuration comes before the long tail that a cut budget drops
    assert jobs.index(micro[0]) < min(jobs.index(j) for j in jobs if j["sweep"] == "variants")


def test_overhead_benchmark_times_every_variant_against_the_bare_loop() -> None:
    path = REPO / "benchmarks" / "overhead.py"
    spec = importlib.util.spec_from_file_location("benchmarks_overhead", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.measure("mlp", n_genes=32, batch_size=8, threads=1, min_seconds=0.05)
    assert [r["variant"] for r in rows] == list(module.VARIANTS)
    for r in rows:
        assert r["step_ms"] > 0
        assert r["bare_step_ms"] > 0
        assert r["over_bare"] == pytest.approx(r["step_ms"] / r["bare_step_ms"])
