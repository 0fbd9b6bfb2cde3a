"""The sweep objective: one metric or a weighted sum, checked against each metric's natural direction."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arch_lab.errors import ConfigError
from arch_lab.sweeps.schema import ObjectiveSection

if TYPE_CHECKING:
    from arch_lab.metrics.info import Direction

_FLIP: dict[Direction, Direction] = {"minimize": "maximize", "maximize": "minimize"}


@dataclass(frozen=True)
class Objective:
    """A scalar score of a run's metrics summary.

    Parameters
    ----------
    weights
        Metric name → weight; the value is ``sum(weight * metric)``.
    split
        ``val`` (model selection) or ``test``.
    direction
        ``minimize`` or ``maximize``: the natural direction of the weighted sum.
    """

    weights: tuple[tuple[str, float], ...]
    split: str
    direction: Direction

    @classmethod
    def from_section(cls, section: ObjectiveSection) -> Objective:
        """Validate the ``objective`` section.

        Raises
        ------
        ConfigError
            Neither or both of ``metric``/``metrics``, an unknown metric, a zero weight, terms pulling in
            different directions, or a ``direction`` contradicting the metrics.
        """
        from arch_lab.metrics import METRICS

        if (section.metric is None) == (section.metrics is None):
            raise ConfigError("objective: give exactly one of 'metric' (a name) or 'metrics' (name: weight)")
        if section.metric is not None:
            weights = {section.metric: 1.0}
            key = "objective.metric"
        else:
            weights = dict(section.metrics or {})
            key = "objective.metrics"
            if not weights:
                raise ConfigError(f"{key}: give at least one metric with its weight")
        natural: dict[str, Direction] = {}
        for name, w in weights.items():
            where = key if section.metric is not None else f"{key}.{name}"
            if name not in METRICS:
                raise ConfigError(f"{where}: unknown metric {name!r}; metrics are {', '.join(sorted(METRICS))}")
            if w == 0 or not math.isfinite(w):
                raise ConfigError(f"{where}: weight must be a non-zero finite number (got {w})")
            sense = METRICS[name].direction
            natural[name] = sense if w > 0 else _FLIP[sense]
        senses = set(natural.values())
        if len(senses) > 1:
            terms = ", ".join(f"{n} ({d} after sign)" for n, d in natural.items())
            raise ConfigError(
                f"{key}: terms pull in different directions: {terms}; flip the sign of a weight so all agree"
            )
        direction = senses.pop()
        if section.direction is not None and section.direction != direction:
            name = next(iter(weights))
            better = "lower" if METRICS[name].direction == "minimize" else "higher"
            what = name if len(weights) == 1 else "this weighted sum"
            raise ConfigError(
                f"objective.direction: {section.direction} contradicts {what} ({better} is better for {name}); "
                f"use direction: {direction} or drop the key"
            )
        return cls(tuple(weights.items()), section.split, direction)

    @property
    def metrics(self) -> list[str]:
        """The metric names used."""
        return [name for name, _ in self.weights]

    @property
    def label(self) -> str:
        """A readable formula, e.g. ``rmse_mean + 0.1 * rmse_mean_rank``."""
        if len(self.weights) == 1 and self.weights[0][1] == 1.0:
            return self.weights[0][0]
        parts = [name if w == 1.0 else f"{w:g} * {name}" for name, w in self.weights]
        return " + ".join(parts).replace("+ -", "- ")

    def missing(self, metrics: Mapping[str, Any] | None) -> list[str]:
        """Metrics of the objective absent from ``metrics`` or not finite."""
        metrics = metrics or {}
        bad = []
        for name in self.metrics:
            v = metrics.get(name)
            if v is None or not isinstance(v, int | float) or not math.isfinite(float(v)):
                bad.append(name)
        return bad

    def value(self, metrics: Mapping[str, Any] | None) -> float:
        """The weighted sum (NaN when a metric is missing or not finite)."""
        if self.missing(metrics):
            return float("nan")
        assert metrics is not None
        return float(sum(w * float(metrics[name]) for name, w in self.weights))

    def describe(self) -> dict[str, Any]:
        """A canonical, JSON-friendly description (for the space hash)."""
        return {"weights": dict(self.weights), "split": self.split, "direction": self.direction}
