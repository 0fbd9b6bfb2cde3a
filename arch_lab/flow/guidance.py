"""Classifier-free guidance: mix the conditional and the unconditional (null-condition) velocity."""

from __future__ import annotations

import torch
from torch import nn

from arch_lab.spec import CondBatch


def guided_velocity(
    network: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: CondBatch, scale: float = 1.0
) -> torch.Tensor:
    """Velocity ``v_uncond + scale * (v_cond - v_uncond)``.

    ``v_cond`` is the network's velocity under ``cond`` as given; ``v_uncond`` under ``cond.with_null(True)``.
    Scale 1 returns ``v_cond`` and scale 0 returns ``v_uncond``, each from a single forward pass; any other scale
    evaluates both branches in one forward pass over the doubled batch.

    Parameters
    ----------
    network
        Velocity network ``network(x_t [B, G], t [B], cond) -> [B, G]``.
    x
        Current state, ``[B, G]``.
    t
        Times, ``[B]``.
    cond
        Condition of each row.
    scale
        Guidance weight ``w``.

    Returns
    -------
    torch.Tensor
        ``[B, G]`` guided velocity.
    """
    if scale == 1.0:
        return network(x, t, cond)
    uncond = cond.with_null(True)
    if scale == 0.0:
        return network(x, t, uncond)
    both = network(torch.cat([x, x]), torch.cat([t, t]), CondBatch.cat([cond, uncond]))
    v_cond, v_uncond = both.chunk(2)
    return v_uncond + scale * (v_cond - v_uncond)
