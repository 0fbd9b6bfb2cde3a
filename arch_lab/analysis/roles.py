"""Which metric a study's claim is about: its pre-declared primary metric, and the secondary ones.

A sweep YAML declares it before the study runs (``analysis: {primary_metric: ..., secondary_metrics: [...]}``,
defaulting to the objective's metric); the study records it in its user attributes (``primary_metric``,
``secondary_metrics``) when it is created. Reports label the primary metric's comparisons as the primary claim,
correct them as a family of their own, and mark every other metric secondary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import optuna

#: Family (and ``role`` column) values.
PRIMARY, SECONDARY = "primary", "secondary"


@dataclass(frozen=True)
class MetricRoles:
    """The primary metric, the declared secondary metrics, and where the declaration came from.

    Attributes
    ----------
    primary
        The metric of the primary claim.
    secondary
        Declared secondary metrics (empty: every other metric is secondary).
    source
        Where ``primary`` came from, for the report (``study <name>``, ``sweep YAML <path>``, ``--metric``).
    declared
        Whether it was declared before the study ran (a study attribute or its YAML), as opposed to chosen when
        the report was made.
    """

    primary: str
    secondary: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""
    declared: bool = False

    def role(self, metric: str) -> str:
        """``primary`` for the primary metric, ``secondary`` for any other."""
        return PRIMARY if metric == self.primary else SECONDARY

    def ordered(self, metrics: Iterable[str]) -> list[str]:
        """``metrics`` without repeats, the primary one first, then the declared secondary ones, then the rest."""
        seen = list(dict.fromkeys(metrics))
        rank = {m: i for i, m in enumerate((self.primary, *self.secondary))}
        return sorted(seen, key=lambda m: (rank.get(m, len(rank)), seen.index(m)))


def _objective_metric(objective: Any) -> str | None:
    if not isinstance(objective, Mapping):
        return None
    if isinstance(objective.get("metric"), str):
        return objective["metric"]
    weights = objective.get("metrics")
    return next(iter(weights)) if isinstance(weights, Mapping) and weights else None


def roles_from_sweep_file(path: str | Path) -> MetricRoles | None:
    """The roles a sweep YAML declares: ``analysis.primary_metric`` (else the objective's first metric) and
    ``analysis.secondary_metrics``. None when the file is missing or declares neither.
    """
    p = Path(path)
    if not p.is_file():
        return None
    raw = yaml.safe_load(p.read_text()) or {}
    section = raw.get("analysis")
    analysis = section if isinstance(section, Mapping) else {}
    primary = analysis.get("primary_metric") or _objective_metric(raw.get("objective"))
    if not isinstance(primary, str):
        return None
    secondary = tuple(str(m) for m in analysis.get("secondary_metrics") or ())
    return MetricRoles(primary, secondary, f"sweep YAML {p}", declared=True)


def roles_from_study(study: optuna.Study) -> MetricRoles | None:
    """The roles recorded by a study: its ``primary_metric`` user attribute, else its sweep YAML
    (``sweep_file`` attribute, when the file is still there). None when neither says.
    """
    attrs = study.user_attrs
    if isinstance(attrs.get("primary_metric"), str):
        secondary = tuple(str(m) for m in attrs.get("secondary_metrics") or ())
        return MetricRoles(attrs["primary_metric"], secondary, f"study {study.study_name}", declared=True)
    if isinstance(attrs.get("sweep_file"), str):
        return roles_from_sweep_file(attrs["sweep_file"])
    return None


def resolve_roles(studies: Sequence[optuna.Study], metric: str | None, default: str) -> MetricRoles:
    """The roles of a report: ``metric`` when given, else the first study's declaration, else ``default``.

    A ``metric`` that differs from a study's declaration is used, but as a choice made at report time
    (``declared`` False), so the report does not present it as pre-declared.
    """
    declared = next((r for r in map(roles_from_study, studies) if r is not None), None)
    if metric is None:
        return declared or MetricRoles(default, (), "default", declared=False)
    if declared is not None and declared.primary == metric:
        return declared
    return MetricRoles(metric, (), "--metric", declared=False)
