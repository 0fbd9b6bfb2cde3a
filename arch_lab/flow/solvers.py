"""ODE solvers for ``dx/dt = f(t, x)``: fixed-step Euler, midpoint and RK4, and adaptive Dormand–Prince 5(4).

The field receives the time as a ``[B]`` tensor (one entry per row of ``x``), the same shape the network sees
during training, so no wrapper has to handle a scalar time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from arch_lab.errors import ConfigError

#: A velocity field: ``f(t [B], x [B, ...]) -> dx/dt [B, ...]``.
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

METHODS: tuple[str, ...] = ("euler", "midpoint", "rk4", "dopri5")


@dataclass
class SolveResult:
    """The state at the end of the integration and the number of field evaluations it took."""

    x: torch.Tensor
    nfe: int
    n_accepted: int = 0
    n_rejected: int = 0


class _Counted:
    """Wraps a field, broadcasts a float time to ``[B]`` and counts evaluations."""

    def __init__(self, f: Field, x: torch.Tensor) -> None:
        self.f = f
        self.nfe = 0
        self.rows = x.shape[0] if x.ndim > 0 else 1
        self.device = x.device
        self.dtype = x.dtype

    def __call__(self, t: float, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.f(torch.full((self.rows,), t, dtype=self.dtype, device=self.device), x)


def _euler(f: _Counted, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    return x + h * f(t, x)


def _midpoint(f: _Counted, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    k1 = f(t, x)
    return x + h * f(t + h / 2, x + (h / 2) * k1)


def _rk4(f: _Counted, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    k1 = f(t, x)
    k2 = f(t + h / 2, x + (h / 2) * k1)
    k3 = f(t + h / 2, x + (h / 2) * k2)
    k4 = f(t + h, x + h * k3)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


_FIXED = {"euler": _euler, "midpoint": _midpoint, "rk4": _rk4}

# Dormand–Prince 5(4) Butcher tableau. The 5th-order weights equal the last row of A (first same as last).
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_DP_E = tuple(b5 - b4 for b5, b4 in zip(_DP_B5, _DP_B4, strict=True))

_SAFETY = 0.9
_MIN_FACTOR = 0.2
_MAX_FACTOR = 10.0


def _combine(x: torch.Tensor, h: float, weights: tuple[float, ...], ks: list[torch.Tensor]) -> torch.Tensor:
    out = x
    for w, k in zip(weights, ks, strict=False):
        if w != 0.0:
            out = out + (h * w) * k
    return out


def _rms(x: torch.Tensor) -> float:
    return float(x.detach().double().square().mean().sqrt())


def _initial_step(
    f: _Counted, x: torch.Tensor, f0: torch.Tensor, t0: float, direction: float, rtol: float, atol: float
) -> float:
    """Starting step size from the magnitudes of ``x``, ``f`` and a finite-difference estimate of ``f'``."""
    scale = atol + rtol * x.abs()
    d0, d1 = _rms(x / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = f(t0 + direction * h0, x + direction * h0 * f0)
    d2 = _rms((f1 - f0) / scale) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / 5)
    return min(100 * h0, h1)


def _dopri5(
    f: _Counted, x: torch.Tensor, t0: float, t1: float, rtol: float, atol: float, max_steps: int
) -> tuple[torch.Tensor, int, int]:
    direction = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)
    k1 = f(t0, x)
    h = min(_initial_step(f, x, k1, t0, direction, rtol, atol), span)
    t = t0
    accepted = rejected = 0
    while direction * (t1 - t) > 1e-12 * span:
        if accepted + rejected >= max_steps:
            raise RuntimeError(
                f"dopri5 did not reach t={t1} within max_steps={max_steps} (at t={t:.6g}); "
                "loosen rtol/atol or raise max_steps"
            )
        h = min(h, abs(t1 - t))
        step = direction * h
        ks = [k1]
        for i in range(1, 7):
            ks.append(f(t + _DP_C[i] * step, _combine(x, step, _DP_A[i], ks)))
        x_new = _combine(x, step, _DP_A[6], ks)
        err = _combine(torch.zeros_like(x), step, _DP_E, ks)
        tol = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        err_norm = _rms(err / tol)
        if math.isfinite(err_norm) and err_norm <= 1.0:
            t = t1 if h == abs(t1 - t) else t + step
            x, k1 = x_new, ks[6]
            accepted += 1
            factor = _MAX_FACTOR if err_norm == 0.0 else min(_MAX_FACTOR, _SAFETY * err_norm ** (-1 / 5))
            h = h * max(_MIN_FACTOR, factor)
        else:
            rejected += 1
            factor = _MIN_FACTOR if not math.isfinite(err_norm) else _SAFETY * err_norm ** (-1 / 5)
            h = h * min(1.0, max(_MIN_FACTOR, factor))
    return x, accepted, rejected


def odeint(
    f: Field,
    x0: torch.Tensor,
    t0: float = 0.0,
    t1: float = 1.0,
    method: str = "euler",
    steps: int = 50,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 10000,
) -> SolveResult:
    """Integrate ``dx/dt = f(t, x)`` from ``t0`` to ``t1``.

    Parameters
    ----------
    f
        Field ``f(t, x)``; ``t`` is a ``[B]`` tensor holding the same time for every row of ``x``.
    x0
        State at ``t0``, ``[B, ...]``.
    t0, t1
        Integration interval (``t1 < t0`` integrates backwards).
    method
        ``"euler"``, ``"midpoint"``, ``"rk4"`` (fixed step) or ``"dopri5"`` (adaptive).
    steps
        Number of steps of a fixed-step method.
    rtol, atol
        Relative and absolute tolerance of ``"dopri5"``: a step is accepted when the root mean square of
        ``error / (atol + rtol * |x|)`` over all entries is at most 1.
    max_steps
        Cap on accepted plus rejected ``"dopri5"`` steps.

    Returns
    -------
    SolveResult
        The state at ``t1`` and the number of field evaluations.

    Raises
    ------
    ConfigError
        For an unknown method or a non-positive step count.
    RuntimeError
        When ``"dopri5"`` exceeds ``max_steps``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown ODE solver {method!r}; choose one of: {', '.join(METHODS)}")
    counted = _Counted(f, x0)
    t0, t1 = float(t0), float(t1)
    if t0 == t1:
        return SolveResult(x0, 0)
    if method == "dopri5":
        x, accepted, rejected = _dopri5(counted, x0, t0, t1, rtol, atol, max_steps)
        return SolveResult(x, counted.nfe, accepted, rejected)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1 for solver {method!r}, got {steps}")
    step_fn = _FIXED[method]
    h = (t1 - t0) / steps
    x = x0
    for i in range(steps):
        x = step_fn(counted, x, t0 + i * h, h)
    return SolveResult(x, counted.nfe, steps, 0)
