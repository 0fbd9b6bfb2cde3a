"""Random draws that honour an optional :class:`torch.Generator` living on another device."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of a global batch of ``total`` rows, trained on by one of several processes.

    Random per-row quantities are drawn for the whole global batch from a generator every process holds in
    the same state, and each process keeps its own rows; so the union of the shards sees exactly the draws
    a single process would, and the generators stay in step.
    """

    start: int
    stop: int
    total: int

    @property
    def rows(self) -> slice:
        """The shard's rows as a slice of the global batch."""
        return slice(self.start, self.stop)

    @property
    def size(self) -> int:
        """Number of rows in the shard."""
        return self.stop - self.start

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """The shard's rows of a global-batch tensor (``x`` itself when it already has the shard's rows)."""
        return x if x.shape[0] == self.size else x[self.start : self.stop]


def _draw_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def rand(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform draws on ``[0, 1)`` of ``shape``, made with ``generator`` and returned on ``device``.

    Parameters
    ----------
    shape
        Output shape.
    generator
        Source of randomness; the draw happens on the generator's device and is then moved.
    device
        Device of the returned tensor (the generator's device when ``None``).
    dtype
        Floating dtype of the returned tensor.
    """
    out = torch.rand(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype)
    return out.to(device) if device is not None else out


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal draws of ``shape``; see :func:`rand` for the meaning of the arguments."""
    out = torch.randn(shape, generator=generator, device=_draw_device(generator, device), dtype=dtype)
    return out.to(device) if device is not None else out


def randint(
    high: int,
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Integers in ``[0, high)`` of ``shape``; see :func:`rand` for the meaning of the arguments."""
    out = torch.randint(high, shape, generator=generator, device=_draw_device(generator, device))
    return out.to(device) if device is not None else out
