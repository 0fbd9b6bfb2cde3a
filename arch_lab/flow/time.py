"""Samplers of the training time ``t`` in the open interval (0, 1)."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from arch_lab.errors import ConfigError
from arch_lab.flow._random import rand, randn

#: Times are kept this far from 0 and 1 so that they lie strictly inside the interval in float32.
_EDGE = 1e-5


class TimeSampler(Protocol):
    """Anything that draws ``n`` times in (0, 1)."""

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """``n`` times in (0, 1)."""
        ...


class UniformTime:
    """``t ~ U(0, 1)``, clipped to ``[1e-5, 1 - 1e-5]``."""

    def __repr__(self) -> str:
        return "UniformTime()"

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Draw ``n`` times.

        Parameters
        ----------
        n
            Number of times.
        generator
            Source of randomness.
        device
            Device of the result (the generator's device when ``None``).

        Returns
        -------
        torch.Tensor
            ``[n]`` float32 times in (0, 1).
        """
        return rand((n,), generator, device).clamp(_EDGE, 1.0 - _EDGE)


class LogitNormalTime:
    """``t = sigmoid(u)`` with ``u ~ N(mean, std^2)``: more weight on mid-path times when ``mean = 0``.

    Parameters
    ----------
    mean
        Mean of the normal variable before the sigmoid; ``sigmoid(mean)`` is the median time.
    std
        Standard deviation of the normal variable before the sigmoid.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.mean = float(mean)
        self.std = float(std)

    def __repr__(self) -> str:
        return f"LogitNormalTime(mean={self.mean}, std={self.std})"

    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Draw ``n`` times; see :meth:`UniformTime.sample`."""
        u = self.mean + self.std * randn((n,), generator, device)
        return torch.sigmoid(u).clamp(_EDGE, 1.0 - _EDGE)


_TIME_SAMPLERS: dict[str, type] = {"uniform": UniformTime, "logit_normal": LogitNormalTime}


def make_time_sampler(name: str, **kw: Any) -> TimeSampler:
    """Build a time sampler by name.

    Parameters
    ----------
    name
        One of ``"uniform"``, ``"logit_normal"``.
    **kw
        Constructor arguments (``mean``, ``std`` for ``"logit_normal"``).

    Raises
    ------
    ConfigError
        For an unknown name.
    """
    if name not in _TIME_SAMPLERS:
        raise ConfigError(f"unknown time sampler {name!r}; choose one of: {', '.join(_TIME_SAMPLERS)}")
    return _TIME_SAMPLERS[name](**kw)
