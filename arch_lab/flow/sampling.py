"""Generation: integrate the (guided) velocity field from source points at t=0 to t=1."""

from __future__ import annotations

import torch
from torch import nn

from arch_lab.flow.guidance import guided_velocity
from arch_lab.flow.solvers import odeint
from arch_lab.spec import CondBatch


def generate(
    network: nn.Module,
    cond: CondBatch,
    x0: torch.Tensor,
    solver: str = "euler",
    steps: int = 50,
    guidance: float = 1.0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Push source points ``x0`` through the learned flow under their conditions.

    Runs without gradients, with the network in eval mode (its previous mode is restored afterwards), in
    chunks of at most ``chunk_size`` rows; each chunk is integrated on its own (with its own adaptive steps
    for ``"dopri5"``).

    Parameters
    ----------
    network
        Velocity network ``network(x_t [B, G], t [B], cond) -> [B, G]``.
    cond
        Condition of each row, ``N`` rows.
    x0
        Source points, ``[N, G]`` (Gaussian noise or control cells).
    solver
        ODE method: ``"euler"``, ``"midpoint"``, ``"rk4"`` or ``"dopri5"``.
    steps
        Number of steps of a fixed-step method.
    guidance
        Classifier-free guidance scale (1: conditional velocity only).
    rtol, atol
        Tolerances of ``"dopri5"``.
    chunk_size
        Maximum number of rows integrated at once.

    Returns
    -------
    torch.Tensor
        ``[N, G]`` generated points at t=1.
    """
    if cond.batch_size != x0.shape[0]:
        raise ValueError(f"cond has {cond.batch_size} rows but x0 has {x0.shape[0]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    cond = cond.to(x0.device)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            out = []
            for start in range(0, x0.shape[0], chunk_size):
                rows = slice(start, start + chunk_size)
                chunk_cond = cond.index(rows)

                def field(t: torch.Tensor, x: torch.Tensor, c: CondBatch = chunk_cond) -> torch.Tensor:
                    return guided_velocity(network, x, t, c, guidance)

                out.append(odeint(field, x0[rows], 0.0, 1.0, solver, steps, rtol, atol).x)
            return torch.cat(out) if out else x0.clone()
    finally:
        network.train(was_training)
