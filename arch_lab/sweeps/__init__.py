"""Hyperparameter sweeps driven by a YAML file, compiled to Optuna studies.

A sweep names a base experiment, fixed overrides, a (conditional) search space, an objective, a sampler, a pruner
and a budget. :func:`load_sweep` validates all of it before any storage is touched; :func:`run_sweep` runs the
study locally with N worker processes; :func:`run_worker` joins it from anywhere; :func:`load_study` opens it
read-only, :func:`trials_table` tabulates its trials, and :func:`sweep_status` and :func:`export_trials` report
on it. See ``docs/sweeps.md``.

Names are imported on first use, so ``import arch_lab.sweeps`` (and the CLI) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arch_lab.sweeps.launch import SweepRun, resolve_storage, run_sweep
    from arch_lab.sweeps.objective import Objective
    from arch_lab.sweeps.report import SweepStatus, export_trials, sweep_status
    from arch_lab.sweeps.space import SearchSpace
    from arch_lab.sweeps.storage import StorageSpec, parse_storage
    from arch_lab.sweeps.study import StudyHandle, load_study, open_study, trials_table
    from arch_lab.sweeps.sweep import Sweep, apply_profile, load_sweep
    from arch_lab.sweeps.worker import WorkerReport, run_worker

_EXPORTS = {
    "Objective": "objective",
    "SearchSpace": "space",
    "StorageSpec": "storage",
    "StudyHandle": "study",
    "Sweep": "sweep",
    "SweepRun": "launch",
    "SweepStatus": "report",
    "WorkerReport": "worker",
    "apply_profile": "sweep",
    "export_trials": "report",
    "load_study": "study",
    "load_sweep": "sweep",
    "open_study": "study",
    "parse_storage": "storage",
    "resolve_storage": "launch",
    "run_sweep": "launch",
    "run_worker": "worker",
    "sweep_status": "report",
    "trials_table": "study",
}

__all__ = [
    "Objective",
    "SearchSpace",
    "StorageSpec",
    "StudyHandle",
    "Sweep",
    "SweepRun",
    "SweepStatus",
    "WorkerReport",
    "apply_profile",
    "export_trials",
    "load_study",
    "load_sweep",
    "open_study",
    "parse_storage",
    "resolve_storage",
    "run_sweep",
    "run_worker",
    "sweep_status",
    "trials_table",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'arch_lab.sweeps' has no attribute {name!r}")
    return getattr(importlib.import_module(f"arch_lab.sweeps.{_EXPORTS[name]}"), name)
