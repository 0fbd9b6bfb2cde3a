"""Counting FLOPs of velocity networks, for comparisons at equal compute.

Counts come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the matrix products of a call
(linear layers, convolutions, batched matmuls, attention) and ignores element-wise work (activations, norms,
additions). A linear layer ``in -> out`` on ``B`` rows costs ``2 * B * in * out`` FLOPs forward and twice that
backward (gradients of its input and of its weight), so a training step costs three forwards (the usual
``6 * parameters * rows`` rule for dense nets). The input gradient of the first layer is counted too, so that
rule holds exactly. Networks whose rows never mix (every shipped one) are counted on one and two rows and
scaled, which is cheap on the CPU even for attention over thousands of genes; others are counted on the full
batch on the meta device (no memory) when they allow it.

Typical use::

    from arch_lab.flops import network_flops, steps_for_budget

    counts = network_flops(net, batch_size=64)          # net built with build_network(name, knobs, spec)
    counts.train_step, counts.forward, counts.sample_step
    steps = steps_for_budget(1e12, counts.train_step)   # steps a 1 TFLOP budget buys

``train.max_flops`` in an experiment uses the same count: the run trains ``ceil(max_flops / train_step)`` steps.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from arch_lab.errors import ConfigError
from arch_lab.spec import PAD_TOKEN, CondBatch, DataSpec

__all__ = [
    "FlopCount",
    "count_flops",
    "dummy_inputs",
    "forward_backward_flops",
    "network_flops",
    "steps_for_budget",
]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one network at one batch size.

    Parameters
    ----------
    forward
        One forward pass on ``batch_size`` rows.
    train_step
        One training step: forward and backward on ``batch_size`` rows (optimiser update not counted).
    sample_step
        One ODE step of sampling ``sample_cells`` cells: one velocity evaluation, two with classifier-free
        guidance (``guidance != 1``). Multiply by ``flow.steps`` (Euler) or by the solver's evaluations per step.
    batch_size, sample_cells
        The row counts used.
    """

    forward: int
    train_step: int
    sample_step: int
    batch_size: int
    sample_cells: int

    def as_dict(self) -> dict[str, int]:
        """JSON-friendly form."""
        return dict(self.__dict__)


def count_flops(fn: Callable[[], Any]) -> int:
    """Total FLOPs of the matrix products run by ``fn()`` (forward and any backward it triggers)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def forward_backward_flops(module: nn.Module, *inputs: Any) -> int:
    """FLOPs of ``module(*inputs)`` and the backward of a scalar loss of its output.

    Floating-point tensor inputs are made to require gradients, so the first layer's input gradient is counted
    (a training step then costs exactly three forwards for dense layers).
    """
    args = [x.detach().requires_grad_(True) if torch.is_tensor(x) and x.is_floating_point() else x for x in inputs]

    def step() -> None:
        out = module(*args)
        out.float().square().mean().backward()

    return count_flops(step)


def dummy_inputs(spec: DataSpec, batch_size: int, device: torch.device | str = "meta") -> tuple[Any, ...]:
    """``(x_t [B, G], t [B], cond)`` of the network contract, for counting (values are irrelevant)."""
    width = max(spec.max_perturbations, 1)
    tokens = torch.full((batch_size, width), PAD_TOKEN, dtype=torch.long, device=device)
    covs = torch.zeros((batch_size, len(spec.covariate_vocabs)), dtype=torch.long, device=device)
    null = torch.zeros(batch_size, dtype=torch.bool, device=device)
    cond = CondBatch(tokens, tokens != PAD_TOKEN, covs, null)
    x = torch.zeros((batch_size, spec.n_genes), device=device)
    t = torch.zeros(batch_size, device=device)
    return x, t, cond


def _count(net: nn.Module, spec: DataSpec, rows: int) -> tuple[int, int]:
    """``(forward, training step)`` FLOPs on ``rows`` rows."""
    device = next(net.parameters()).device
    net.train()
    train = forward_backward_flops(net, *dummy_inputs(spec, rows, device))
    net.eval()  # forward counts keep autograd on: FlopCounterMode's module tracker trips over no_grad
    forward = count_flops(lambda: net(*dummy_inputs(spec, rows, device)))
    return forward, train


def _count_big(network: nn.Module, spec: DataSpec, rows: int) -> tuple[int, int]:
    """Counts on many rows: on the meta device (no memory), on the CPU if the network needs real values."""
    try:
        return _count(copy.deepcopy(network).to("meta"), spec, rows)
    except (RuntimeError, NotImplementedError):  # e.g. .item() on a meta tensor
        return _count(copy.deepcopy(network).cpu(), spec, rows)


def _per_rows(network: nn.Module, spec: DataSpec, rows: int) -> tuple[int, int]:
    """Counts on ``rows`` rows: from 1 and 2 rows (on the CPU, cheap) when the network is linear in the batch
    (rows never mix), else on all rows.
    """
    net = copy.deepcopy(network).cpu()
    one, two = _count(net, spec, 1), _count(net, spec, 2)
    if all(b == 2 * a for a, b in zip(one, two, strict=True)):
        return one[0] * rows, one[1] * rows
    return _count_big(network, spec, rows)


def network_flops(
    network: nn.Module, batch_size: int, sample_cells: int | None = None, guidance: float = 1.0
) -> FlopCount:
    """FLOPs of a registered velocity network (one forward, one training step, one sampling ODE step).

    Counted on one and two rows and scaled when rows never mix (as in every shipped network), else on the
    full batch (on the meta device when the network allows it).

    Parameters
    ----------
    network
        A network built by :func:`arch_lab.networks.build_network` (it carries its ``spec``); it is copied, not
        changed.
    batch_size
        Rows per training step (the trainer's actual rows: ``conditions_per_batch * (batch_size //
        conditions_per_batch)``).
    sample_cells
        Cells generated per ODE step (default ``batch_size``).
    guidance
        Classifier-free guidance scale; ``!= 1`` doubles the sampling cost.

    Returns
    -------
    FlopCount
    """
    spec = getattr(network, "spec", None)
    if not isinstance(spec, DataSpec):
        raise ConfigError(f"{type(network).__qualname__} carries no DataSpec 'spec'; build it with build_network")
    cells = sample_cells or batch_size
    forward, train = _per_rows(network, spec, batch_size)
    one = forward if cells == batch_size else _per_rows(network, spec, cells)[0]
    return FlopCount(forward, train, one * (1 if guidance == 1.0 else 2), batch_size, cells)


def steps_for_budget(max_flops: float, flops_per_step: int, max_steps: int | None = None) -> int:
    """Training steps a FLOP budget buys: ``ceil(max_flops / flops_per_step)``, at most ``max_steps``.

    Raises
    ------
    ConfigError
        A non-positive budget or per-step count.
    """
    if not max_flops > 0:
        raise ConfigError(f"train.max_flops: must be positive (got {max_flops})")
    if flops_per_step <= 0:
        raise ConfigError("train.max_flops: the network's training step counts no FLOPs; set train.max_steps")
    steps = max(1, math.ceil(max_flops / flops_per_step))
    return min(steps, max_steps) if max_steps is not None else steps
