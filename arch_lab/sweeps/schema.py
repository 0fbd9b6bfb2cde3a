"""The sweep YAML: typed sections, each rejecting unknown keys, with one-line errors naming the offending path.

Structure and types are checked by pydantic; the meaning of the values (bounds, metric names and directions,
conditions, sampler and pruner options) by :mod:`arch_lab.sweeps.space`, :mod:`arch_lab.sweeps.objective` and
:func:`arch_lab.sweeps.load_sweep`, so that every message names its full key path, e.g.
``space.optim.lr.low: must be below high (got 0.1 >= 0.01)``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arch_lab.config import format_validation_error
from arch_lab.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StudySection(_Section):
    """Where the study lives.

    Parameters
    ----------
    name
        Stable study name (never a timestamp); resuming means running the same name again.
    storage
        An Optuna RDB URL (``sqlite:///...``, ``postgresql+psycopg2://...``) or ``journal:PATH`` (a journal file,
        for many processes on one machine). Default: ``sqlite:///<output_dir>/<name>.db``.
    output_dir
        Run directories go to ``<output_dir>/<name>/trial-<number>/seed-<s>``.
    heartbeat_interval
        Seconds between heartbeats of a running trial (RDB storage only).
    grace_period
        A running trial whose heartbeat is older than this many seconds is marked failed and requeued.
    max_retry
        How many times one configuration is requeued after its worker was lost without progress (a lost trial that
        completed a run or checkpointed further is always requeued: its retry continues where it stopped, see
        :mod:`arch_lab.sweeps.carry`).
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    storage: str | None = None
    output_dir: str = "runs/sweeps"
    heartbeat_interval: int = Field(default=60, gt=0)
    grace_period: int | None = Field(default=None, gt=0)
    max_retry: int = Field(default=3, ge=0)


class ObjectiveSection(_Section):
    """What a trial is scored on: one metric, or a weighted sum of metrics, on the val (or test) split."""

    metric: str | None = None
    metrics: dict[str, float] | None = None
    split: Literal["val", "test"] = "val"
    direction: Literal["minimize", "maximize"] | None = None


class AnalysisSection(_Section):
    """How the study's results are read, declared before it runs.

    Parameters
    ----------
    primary_metric
        The one metric the study's main claim is about (default: the objective's metric; for a weighted sum, its
        first term). Reports put its comparisons first, label them primary and correct them as their own family.
    secondary_metrics
        Metrics reported as secondary (default: every other metric the report shows).
    """

    primary_metric: str | None = None
    secondary_metrics: list[str] = Field(default_factory=list)


class ParamSpec(_Section):
    """One search dimension: ``float``, ``int``, ``categorical`` or ``fixed`` (a constant).

    (``arms`` dimensions, a mapping of arm names to dotted overrides, are parsed by
    :mod:`arch_lab.sweeps.space`.)
    """

    type: Literal["float", "int", "categorical", "fixed"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    value: Any = None


class ConditionalBlock(_Section):
    """A block of parameters sampled only when every ``when`` key has (one of) the given value(s)."""

    when: dict[str, Any] = Field(min_length=1)
    space: dict[str, Any] = Field(min_length=1)


class SamplerSection(_Section):
    """The Optuna sampler.

    ``tpe`` (seed, n_startup_trials, multivariate, constant_liar), ``random`` (seed), ``grid`` and ``brute_force``
    (every combination of a discrete space runs once, conditional branches included; seed shuffles the order).
    """

    type: Literal["tpe", "random", "grid", "brute_force"] = "tpe"
    seed: int | None = 0
    n_startup_trials: int | None = Field(default=None, ge=0)
    multivariate: bool | None = None
    constant_liar: bool | None = None


class PrunerSection(_Section):
    """The Optuna pruner: ``none``, ``median`` (n_startup_trials, n_warmup_steps, interval_steps) or ``hyperband``
    (min_resource, max_resource, reduction_factor); steps are training steps.
    """

    type: Literal["none", "median", "hyperband"] = "none"
    n_startup_trials: int | None = Field(default=None, ge=0)
    n_warmup_steps: int | None = Field(default=None, ge=0)
    interval_steps: int | None = Field(default=None, gt=0)
    min_resource: int | None = Field(default=None, gt=0)
    max_resource: int | Literal["auto"] | None = None
    reduction_factor: int | None = Field(default=None, ge=2)


class BudgetSection(_Section):
    """How much to run.

    Parameters
    ----------
    n_trials
        Exactly this many configurations finish (complete, pruned or failed), across all workers. A grid defaults
        to all its combinations.
    timeout
        Seconds after which a worker claims no new trial (the rest stays queued for a later run).
    replicates
        Seeds per configuration (base seed + 0, 1, ...); the trial value is the mean over seeds (and folds).
    folds
        ``all``: run every cross-validation fold of the base experiment (``task.n_folds``), each with every seed,
        so a trial's value pools every held-out condition; or a list of fold numbers. None: the base's one split.
    max_failures
        Workers stop claiming trials once this many trials have failed.
    """

    n_trials: int | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    replicates: int = Field(default=1, gt=0)
    folds: Literal["all"] | list[int] | None = None
    max_failures: int | None = Field(default=None, gt=0)


class SweepFile(_Section):
    """The whole sweep YAML (structure only; see :func:`arch_lab.sweeps.load_sweep` for the checks)."""

    study: StudySection
    base: str
    fixed: dict[str, Any] = Field(default_factory=dict)
    objective: ObjectiveSection
    space: dict[str, Any] = Field(default_factory=dict)
    sampler: SamplerSection = Field(default_factory=SamplerSection)
    pruner: PrunerSection = Field(default_factory=PrunerSection)
    budget: BudgetSection = Field(default_factory=BudgetSection)
    enqueue: list[dict[str, Any]] = Field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)


#: Sections a profile may change (merged over the sweep's own; see :func:`arch_lab.sweeps.sweep.apply_profile`).
PROFILE_SECTIONS = ("study", "fixed", "objective", "space", "sampler", "pruner", "budget", "enqueue")


SAMPLER_OPTIONS = {
    "tpe": {"seed", "n_startup_trials", "multivariate", "constant_liar"},
    "random": {"seed"},
    "grid": {"seed"},
    "brute_force": {"seed"},
}
PRUNER_OPTIONS = {
    "none": set(),
    "median": {"n_startup_trials", "n_warmup_steps", "interval_steps"},
    "hyperband": {"min_resource", "max_resource", "reduction_factor"},
}


def validate_model(cls: type[BaseModel], raw: Any, prefix: str) -> Any:
    """``cls.model_validate(raw)`` with a one-line :class:`ConfigError` naming ``prefix.<path>``."""
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix)) from None


def check_options(section: str, kind: str, model: BaseModel, allowed: dict[str, set[str]]) -> None:
    """Refuse options set in ``model`` that its ``type`` does not use."""
    for key in model.model_fields_set - {"type"}:
        if key not in allowed[kind]:
            options = ", ".join(sorted(allowed[kind])) or "none"
            raise ConfigError(f"{section}.{key}: not an option of the {kind} {section} (its options: {options})")
