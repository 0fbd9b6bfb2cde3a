"""arch_lab: which velocity network should a flow-matching model of cell perturbation use, and why."""

from __future__ import annotations

__version__ = "0.1.0"
