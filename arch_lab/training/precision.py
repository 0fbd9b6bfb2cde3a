"""Which precision a run trains in: fp32, or bf16 autocast where the device computes it faster.

``train.precision: auto`` asks for bf16 only where it pays. On CUDA that is any device with bf16 support. On a CPU
the instruction flags are not enough: two CPUs that both report AVX512-BF16 were seen here to run torch's bf16
matrix products at half the fp32 rate (an Intel Xeon) and at about twice it (an AMD EPYC). So ``auto`` on a CPU
times both (:func:`cpu_bf16_speedup`, a fraction of a second, once per process and thread count) and takes bf16 only
when it is clearly faster.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch

__all__ = ["BF16_MIN_SPEEDUP", "cpu_bf16_speedup", "cpu_supports_bf16", "resolve_precision"]

#: ``auto`` takes bf16 on a CPU only when its matrix products run at least this much faster than fp32.
BF16_MIN_SPEEDUP = 1.2


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 dot-product instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _matmul_seconds(dtype: torch.dtype, n: int, repeats: int) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return best


@functools.lru_cache(maxsize=8)
def _speedup(threads: int, n: int, repeats: int) -> float:
    fp32 = bf16 = float("inf")
    for _ in range(2):  # alternate, so load drift hits both alike
        fp32 = min(fp32, _matmul_seconds(torch.float32, n, repeats))
        bf16 = min(bf16, _matmul_seconds(torch.bfloat16, n, repeats))
    return fp32 / bf16


def cpu_bf16_speedup(n: int = 384, repeats: int = 5) -> float:
    """How many times faster an ``n x n`` bf16 matrix product runs than fp32 on this CPU, at the current thread
    count (best of ``repeats`` calls, both measured twice, alternating; cached per process and thread count).

    Returns 0.0 without native bf16 instructions (bf16 is then emulated and far slower; nothing is timed).
    """
    if not cpu_supports_bf16():
        return 0.0
    return _speedup(torch.get_num_threads(), n, repeats)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a ``train.precision`` setting (None = full fp32).

    ``fp32`` and ``bf16`` are taken as asked; ``auto`` is bf16 on a CUDA device that supports it and on a CPU
    whose bf16 matrix products run at least :data:`BF16_MIN_SPEEDUP` times faster than fp32, fp32 elsewhere.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_bf16_speedup() >= BF16_MIN_SPEEDUP else None
