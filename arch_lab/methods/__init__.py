"""Prediction methods: baselines and flow matching, behind one interface."""

from __future__ import annotations

from arch_lab.methods import baselines, flow  # noqa: F401 - registers the methods
from arch_lab.methods.base import (
    Method,
    PredictionRequest,
    build_method,
    list_methods,
    register_method,
    task_config,
)

__all__ = ["Method", "PredictionRequest", "build_method", "list_methods", "register_method", "task_config"]
