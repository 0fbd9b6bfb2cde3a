"""Probability paths between a source sample ``x_0`` and a target sample ``x_1``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from arch_lab.flow._random import Shard, randn


@dataclass
class PathSample:
    """One draw from a probability path, with the velocity the network is trained to predict."""

    x_0: torch.Tensor = field(metadata={"help": "source points, [B, G]"})
    x_1: torch.Tensor = field(metadata={"help": "target points, [B, G]"})
    t: torch.Tensor = field(metadata={"help": "times in [0, 1], [B]"})
    x_t: torch.Tensor = field(metadata={"help": "points on the path at time t, [B, G]"})
    dx_t: torch.Tensor = field(metadata={"help": "target velocity at (x_t, t), [B, G]"})


class ProbabilityPath(Protocol):
    """Anything that maps paired rows and times to a :class:`PathSample`."""

    def sample(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        shard: Shard | None = None,
    ) -> PathSample:
        """The point ``x_t`` between paired rows at times ``t`` and the velocity target there."""
        ...


class StraightPath:
    """Straight-line interpolation ``x_t = (1 - t) x_0 + t x_1 + sigma * eps`` with target velocity ``x_1 - x_0``.

    Parameters
    ----------
    sigma
        Standard deviation of the constant Gaussian noise ``eps ~ N(0, I)`` added along the path. With
        ``sigma = 0`` the path passes exactly through ``x_0`` at ``t = 0`` and ``x_1`` at ``t = 1``.
    """

    def __init__(self, sigma: float = 0.0) -> None:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def __repr__(self) -> str:
        return f"StraightPath(sigma={self.sigma})"

    def sample(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        shard: Shard | None = None,
    ) -> PathSample:
        """Points on the path at times ``t`` and the target velocity there.

        Parameters
        ----------
        x0
            Source points, ``[B, ...]``.
        x1
            Target points, same shape as ``x0``; row ``i`` is paired with row ``i`` of ``x0``.
        t
            Times, ``[B]``.
        generator
            Source of the path noise (used only when ``sigma > 0``).
        shard
            When the rows are one process's shard of a larger batch: the noise is drawn for the whole batch
            and the shard's rows are kept (see :class:`~arch_lab.flow._random.Shard`).

        Returns
        -------
        PathSample
            ``x_t`` and ``dx_t = x1 - x0`` together with the inputs.
        """
        if x0.shape != x1.shape:
            raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        if t.ndim != 1 or t.shape[0] != x0.shape[0]:
            raise ValueError(f"t must have shape [{x0.shape[0]}], got {tuple(t.shape)}")
        tt = t.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
        dx_t = x1 - x0
        x_t = torch.lerp(x0, x1, tt)  # one pass instead of three, and exact at both ends
        if self.sigma > 0:
            if shard is None:
                noise = randn(tuple(x0.shape), generator, x0.device, x0.dtype)
            else:
                noise = shard.take(randn((shard.total, *x0.shape[1:]), generator, x0.device, x0.dtype))
            x_t = x_t + self.sigma * noise
        return PathSample(x_0=x0, x_1=x1, t=t, x_t=x_t, dx_t=dx_t)
