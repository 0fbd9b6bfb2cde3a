"""``train.precision: auto`` takes bf16 only where this machine computes it faster."""

from __future__ import annotations

import pytest
import torch

from arch_lab.training import precision
from arch_lab.training.precision import BF16_MIN_SPEEDUP, cpu_bf16_speedup, cpu_supports_bf16, resolve_precision

CPU = torch.device("cpu")


def test_explicit_settings_are_taken_as_asked() -> None:
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16


def test_auto_follows_the_measured_speedup() -> None:
    speedup = cpu_bf16_speedup()
    assert speedup >= 0.0
    if not cpu_supports_bf16():
        assert speedup == 0.0
    expected = torch.bfloat16 if speedup >= BF16_MIN_SPEEDUP else None
    assert resolve_precision("auto", CPU) is expected


def test_auto_keeps_fp32_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert cpu_bf16_speedup() == 0.0
    assert resolve_precision("auto", CPU) is None


@pytest.mark.parametrize(
    ("speedup", "expected"), [(0.5, None), (1.1, None), (1.3, torch.bfloat16), (2.0, torch.bfloat16)]
)
def test_auto_threshold(monkeypatch: pytest.MonkeyPatch, speedup: float, expected: torch.dtype | None) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: speedup)
    assert resolve_precision("auto", CPU) is expected


def test_the_probe_times_real_products() -> None:
    """The speedup is a ratio of two real timings: both positive and finite on any CPU with native bf16."""
    if not cpu_supports_bf16():
        assert cpu_bf16_speedup() == 0.0
        return
    fp32 = precision._matmul_seconds(torch.float32, 128, 3)
    bf16 = precision._matmul_seconds(torch.bfloat16, 128, 3)
    assert 0 < fp32 < 1
    assert 0 < bf16 < 1
    assert 0 < cpu_bf16_speedup() < 100


def test_block_candidates_halve_down_to_the_minimum() -> None:
    from arch_lab.training.micro_batch import block_candidates

    assert block_candidates(128) == [128, 64, 32, 16, 8]
    assert block_candidates(100) == [100, 50, 25, 12]
    assert block_candidates(8) == [8]


def test_fastest_block_keeps_the_largest_within_tolerance() -> None:
    import time

    from arch_lab.training.micro_batch import fastest_block

    costs = {64: 0.012, 32: 0.006, 16: 0.0059, 8: 0.009}  # 16 is fastest, 32 within 5%: keep 32

    def run(block: int) -> None:
        time.sleep(costs[block])

    chosen, seconds = fastest_block(run, 64)
    assert set(seconds) == set(costs)
    assert chosen == 32
    assert seconds[64] > seconds[32]
