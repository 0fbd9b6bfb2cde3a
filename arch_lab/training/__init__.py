"""The shared flow-matching trainer."""

from __future__ import annotations

from arch_lab.training.trainer import FlowTrainer, TrainState

__all__ = ["FlowTrainer", "TrainState"]
