"""Exponential moving average of weights, with the usual warm-up of the decay."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """A shadow copy of a network whose weights track an exponential moving average.

    The effective decay at update ``n`` is ``min(decay, (1 + n) / (10 + n))``, so early updates follow the
    network closely instead of staying near the initial weights for thousands of steps.

    Parameters
    ----------
    network
        The trained network (its current weights initialise the shadow copy).
    decay
        The asymptotic decay; ``None`` or 0 disables averaging (the shadow copy equals the network).
    """

    def __init__(self, network: nn.Module, decay: float | None) -> None:
        self.decay = float(decay or 0.0)
        self.module = copy.deepcopy(network).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0
        self._shadow = list(self.module.parameters())
        self._shadow_buffers = list(self.module.buffers())
        self._live: list[torch.Tensor] | None = None
        self._live_buffers: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """Move the shadow weights towards the network's."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._live is None:  # parameter lists are cached: walking the module tree every step is not free
            self._live = [p.detach() for p in network.parameters()]
            self._live_buffers = list(network.buffers())
            if len(self._live) != len(self._shadow):
                raise ValueError("EMA shadow and network have different parameters")
        torch._foreach_lerp_(self._shadow, self._live, 1.0 - d)
        for s, b in zip(self._shadow_buffers, self._live_buffers or [], strict=True):
            s.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        """Shadow weights and update count."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
