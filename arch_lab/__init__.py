"""arch_lab: which velocity network should a flow-matching model of cell perturbation use, and why.

From Python (names load on first use, so ``import arch_lab`` stays light):

- :func:`train` trains and evaluates an experiment, on an AnnData held in memory or a file, and returns a
  :class:`Run`; :func:`load_run` opens a run directory as the same object.
- :func:`list_networks` and :func:`register_network`: the registry of velocity networks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from arch_lab.networks import list_networks, register_network
    from arch_lab.runs import Run, load_run, train

_EXPORTS = {
    "Run": "arch_lab.runs",
    "load_run": "arch_lab.runs",
    "train": "arch_lab.runs",
    "list_networks": "arch_lab.networks",
    "register_network": "arch_lab.networks",
}

__all__ = ["Run", "__version__", "list_networks", "load_run", "register_network", "train"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'arch_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
