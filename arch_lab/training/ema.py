"""Exponential moving average of weights, with the usual warm-up of the decay."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """A shadow copy of a network whose weights track an exponential moving average.

    The effective decay at step ``n`` is ``min(decay, (1 + n) / (10 + n))``, so early updates follow the
    network closely instead of staying near the initial weights for thousands of steps.

    Updates can be applied every ``every`` steps: the per-step decays of the steps in between are multiplied
    and applied in one pass, ``shadow <- D * shadow + (1 - D) * weights`` with ``D`` their product. That is
    exact for ``every = 1`` and, for larger values, treats the weights of the skipped steps as equal to the
    current ones (a lag of at most ``every - 1`` steps against an averaging horizon of ``1 / (1 - decay)``
    steps), while the pass over every weight, as costly as an optimizer update for wide networks, runs
    ``every`` times less often. Reading :attr:`module` applies what is pending first, so evaluation always
    sees every step.

    Parameters
    ----------
    network
        The trained network (its current weights initialise the shadow copy).
    decay
        The asymptotic decay; ``None`` or 0 disables averaging (the shadow copy equals the network when read).
    every
        Apply the pending decay every this many steps (1: every step).
    """

    def __init__(self, network: nn.Module, decay: float | None, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"EMA every must be >= 1, got {every}")
        self.decay = float(decay or 0.0)
        self.every = int(every)
        self._module = copy.deepcopy(network).eval()
        for p in self._module.parameters():
            p.requires_grad_(False)
        self.updates = 0
        self._pending_decay = 1.0  # product of the decays of the steps not applied yet
        self._pending_steps = 0
        self._shadow: list[torch.Tensor] = list(self._module.parameters())
        self._shadow_buffers = list(self._module.buffers())
        self._network = network
        self._bind(network)

    def _bind(self, network: nn.Module) -> None:
        # parameter lists are cached: walking the module tree every step is not free
        self._network = network
        self._live = [p.detach() for p in network.parameters()]
        self._live_buffers = list(network.buffers())
        if len(self._live) != len(self._shadow) or len(self._live_buffers) != len(self._shadow_buffers):
            raise ValueError("EMA shadow and network have different parameters")

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Record one training step of ``network``; the shadow moves every :attr:`every` steps (or when read)."""
        if network is not self._network:
            self._bind(network)
        self.updates += 1
        self._pending_decay *= min(self.decay, (1 + self.updates) / (10 + self.updates))
        self._pending_steps += 1
        if self.decay and self._pending_steps >= self.every:  # without averaging the copy waits for a read
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        """Apply the pending steps to the shadow weights now."""
        if self._pending_steps == 0:
            return
        if self._pending_decay == 0.0:
            torch._foreach_copy_(self._shadow, self._live)
        else:
            torch._foreach_lerp_(self._shadow, self._live, 1.0 - self._pending_decay)
        for s, b in zip(self._shadow_buffers, self._live_buffers, strict=True):
            s.copy_(b)
        self._pending_decay, self._pending_steps = 1.0, 0

    @property
    def module(self) -> nn.Module:
        """The averaged network, with every recorded step applied."""
        self.flush()
        return self._module

    def state_dict(self) -> dict[str, Any]:
        """Shadow weights, update count and the steps not applied yet (resuming continues the same cadence)."""
        return {
            "module": self._module.state_dict(),
            "updates": self.updates,
            "pending_decay": self._pending_decay,
            "pending_steps": self._pending_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self._module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self._pending_decay = float(state.get("pending_decay", 1.0))
        self._pending_steps = int(state.get("pending_steps", 0))
