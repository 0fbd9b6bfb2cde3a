"""Data loading, splits, gene orders and tasks."""

from __future__ import annotations

from arch_lab.data.loading import PerturbationData, load_perturbation_data, read_anndata
from arch_lab.data.splits import load_split, make_split, save_split
from arch_lab.data.task import Condition, Task, build_task, load_data

__all__ = [
    "Condition",
    "PerturbationData",
    "Task",
    "build_task",
    "load_data",
    "load_perturbation_data",
    "load_split",
    "make_split",
    "read_anndata",
    "save_split",
]
