"""Random draws that honour an optional :class:`torch.Generator` living on another device."""

from __future__ import annotations

import torch


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
