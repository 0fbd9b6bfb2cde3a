"""A loaded sweep: the YAML validated as a whole, and the experiment config of any trial configuration.

Everything is checked here, before any storage is touched: structure, bounds, conditions, metric names and
directions, sampler and pruner options, the budget, the ``enqueue`` entries, and the base experiment built with
every bound and every choice of every dimension (so a misspelled knob fails now, not in trial 17).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arch_lab.config import ExperimentConfig, experiment_from_dict, load_yaml
from arch_lab.errors import ConfigError
from arch_lab.sweeps.objective import Objective
from arch_lab.sweeps.schema import (
    PROFILE_SECTIONS,
    PRUNER_OPTIONS,
    SAMPLER_OPTIONS,
    SweepFile,
    check_options,
    validate_model,
)
from arch_lab.sweeps.space import SearchSpace

MAX_GRID = 100_000
GRID_SAMPLERS = ("grid", "brute_force")


@dataclass
class Sweep:
    """A validated sweep.

    Parameters
    ----------
    path
        The sweep YAML.
    spec
        Its parsed sections.
    space
        The search space.
    objective
        The trial objective.
    base_path
        The base experiment YAML (resolved against the sweep file's folder).
    base_raw
        The base experiment as a mapping (``base_dir`` set to its folder).
    """

    path: Path
    spec: SweepFile
    space: SearchSpace
    objective: Objective
    base_path: Path
    base_raw: dict[str, Any]
    profile: str | None = None
    _grid: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The study name."""
        return self.spec.study.name

    @property
    def replicates(self) -> int:
        """Seeds per configuration."""
        return self.spec.budget.replicates

    @property
    def is_grid(self) -> bool:
        """True for ``grid`` and ``brute_force`` samplers (every combination runs once)."""
        return self.spec.sampler.type in GRID_SAMPLERS

    @property
    def folds(self) -> list[int | None]:
        """The cross-validation folds each configuration runs (``[None]``: the base experiment's one split)."""
        folds = self.spec.budget.folds
        if folds is None:
            return [None]
        if folds == "all":
            n_folds = self.spec.fixed.get("task.n_folds", (self.base_raw.get("task") or {}).get("n_folds"))
            return list(range(int(n_folds))) if n_folds else [None]
        return [int(f) for f in folds]

    @property
    def base_seed(self) -> int:
        """The base experiment's seed; replicate ``s`` uses ``base_seed + s``."""
        return int(self.base_raw.get("seed", 0))

    @property
    def run_root(self) -> Path:
        """``<study.output_dir>/<study.name>``: the trials' run directories go below."""
        return Path(self.spec.study.output_dir) / self.name

    @property
    def primary_metric(self) -> str:
        """The pre-declared primary metric: ``analysis.primary_metric``, else the objective's (first) metric."""
        return self.spec.analysis.primary_metric or self.objective.weights[0][0]

    @property
    def secondary_metrics(self) -> list[str]:
        """``analysis.secondary_metrics`` (empty: every metric but the primary one is secondary)."""
        return list(self.spec.analysis.secondary_metrics)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the space (grid samplers), in run order."""
        if self._grid is None:
            combos = list(itertools.islice(self.space.iter_grid(), MAX_GRID + 1))
            if len(combos) > MAX_GRID:
                raise ConfigError(f"space: the grid has more than {MAX_GRID} combinations; use sampler.type: tpe")
            if "seed" in self.spec.sampler.model_fields_set and self.spec.sampler.seed is not None:
                random.Random(self.spec.sampler.seed).shuffle(combos)
            self._grid = combos
        return self._grid

    @property
    def n_trials(self) -> int:
        """The budget: configurations that finish (a grid defaults to all its combinations)."""
        if self.spec.budget.n_trials is not None:
            return self.spec.budget.n_trials
        return len(self.grid())

    def space_hash(self) -> str:
        """A short hash of what makes trial values comparable: space, fixed overrides, objective, replicates."""
        payload = {
            "space": self.space.describe(),
            "fixed": self.spec.fixed,
            "objective": self.objective.describe(),
            "replicates": self.replicates,
            **({"folds": self.folds} if self.spec.budget.folds is not None else {}),
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def overrides(self, values: Mapping[str, Any], replicate: int = 0, fold: int | None = None) -> dict[str, Any]:
        """The dotted overrides of one run: quiet progress, ``fixed``, the configuration (an arm's overrides
        first, then the other values), the seed and, with ``budget.folds``, the fold.
        """
        expanded = self.space.expand(values)
        out = {"train.progress": False, **self.spec.fixed, **expanded, "seed": self.base_seed + replicate}
        if fold is not None:
            out["task.fold"] = fold
        return out

    def experiment(self, values: Mapping[str, Any], replicate: int = 0, fold: int | None = None) -> ExperimentConfig:
        """The experiment config of one run of a configuration.

        Network knobs of the base experiment apply only to the base's network: when the configuration selects
        another network, they are dropped (knobs from ``fixed`` or the space are kept and checked).

        Raises
        ------
        ConfigError
            The resulting experiment is invalid (names the key path), including a network knob its network does
            not have (checked by the experiment's validation).
        """
        raw = copy.deepcopy(self.base_raw)
        overrides = self.overrides(values, replicate, fold)
        network = raw.get("network")
        base_network = network if isinstance(network, dict) else {}
        base_name = base_network.get("name", "mlp")
        if overrides.get("network.name", base_name) != base_name:
            raw["network"] = {"name": base_name}
        return experiment_from_dict(raw, overrides)


def apply_profile(raw: dict[str, Any], profile: str, where: str = "--profile") -> dict[str, Any]:
    """Merge ``raw["profiles"][profile]`` over the sweep and suffix the study name with ``_<profile>``.

    Mappings merge key by key, recursively (``fixed``, ``budget``, one dimension's keys); anything else (a list,
    a number) replaces the sweep's value. ``profiles`` itself is dropped from the result.

    Raises
    ------
    ConfigError
        No such profile, or a profile changing a section that profiles may not change.
    """
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict) or profile not in profiles:
        names = ", ".join(sorted(profiles)) if isinstance(profiles, dict) and profiles else "none"
        raise ConfigError(f"{where} {profile}: not a profile of this sweep (its profiles: {names})")
    body = profiles[profile]
    if not isinstance(body, dict):
        raise ConfigError(f"profiles.{profile}: expected a mapping of sections such as fixed and budget")
    for key in body:
        if key not in PROFILE_SECTIONS:
            raise ConfigError(f"profiles.{profile}.{key}: a profile may change only {', '.join(PROFILE_SECTIONS)}")
    merged = _merge(copy.deepcopy({k: v for k, v in raw.items() if k != "profiles"}), body)
    study = merged.get("study")
    if isinstance(study, dict) and isinstance(study.get("name"), str):
        study["name"] = f"{study['name']}_{profile}"
    return merged


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def load_sweep(path: str | Path, profile: str | None = None) -> Sweep:
    """Read and fully validate a sweep YAML.

    Parameters
    ----------
    path
        The sweep file; ``base`` is resolved against its folder.
    profile
        A name under the YAML's ``profiles``: merged over the sweep (see :func:`apply_profile`), and the study
        is named ``<study.name>_<profile>`` so its trials never mix with the full sweep's.

    Returns
    -------
    Sweep

    Raises
    ------
    ConfigError
        One line naming the offending key path (``space.optim.lr.low: ...``).
    """
    path = Path(path)
    raw = load_yaml(path)
    validate_model(SweepFile, raw, "")
    if profile is not None:
        raw = apply_profile(raw, profile)
    spec: SweepFile = validate_model(SweepFile, raw, "")
    check_options("sampler", spec.sampler.type, spec.sampler, SAMPLER_OPTIONS)
    check_options("pruner", spec.pruner.type, spec.pruner, PRUNER_OPTIONS)
    space = SearchSpace(spec.space)
    objective = Objective.from_section(spec.objective)
    base_path = Path(spec.base) if Path(spec.base).is_absolute() else path.resolve().parent / spec.base
    try:
        base_raw = load_yaml(base_path)
    except ConfigError as err:
        raise ConfigError(f"base: {err}") from None
    base_raw.setdefault("base_dir", str(base_path.resolve().parent))
    sweep = Sweep(path, spec, space, objective, base_path, base_raw, profile)
    _check_base(sweep)
    _check_fixed(sweep)
    _check_folds(sweep)
    _check_arms(sweep)
    _check_budget(sweep)
    _check_probes(sweep)
    _check_analysis(sweep)
    return sweep


def _check_base(sweep: Sweep) -> None:
    try:
        experiment_from_dict(sweep.base_raw)
    except ConfigError as err:
        raise ConfigError(f"base: {sweep.base_path}: {err}") from None


def _check_folds(sweep: Sweep) -> None:
    folds = sweep.spec.budget.folds
    if folds is None:
        return
    if "task.fold" in sweep.spec.fixed or "task.fold" in set(sweep.space.keys()):
        raise ConfigError("task.fold: set by budget.folds; drop it from fixed and space (or drop budget.folds)")
    n_folds = experiment_from_dict(copy.deepcopy(sweep.base_raw), sweep.spec.fixed).task.n_folds
    if n_folds is None:
        raise ConfigError(
            "budget.folds: the base experiment has no folds; set task.n_folds in it (or in fixed), or drop budget.folds"
        )
    bad = [f for f in sweep.folds if f is None or not 0 <= f < n_folds]
    if bad or not sweep.folds:
        raise ConfigError(f"budget.folds: folds must be 'all' or numbers from 0 to {n_folds - 1}; got {folds}")


def _check_fixed(sweep: Sweep) -> None:
    keys = set(sweep.space.keys())
    for key in sweep.spec.fixed:
        if key == "seed":
            raise ConfigError("fixed.seed: seeds come from the base experiment and budget.replicates")
        if key in keys:
            raise ConfigError(f"fixed.{key}: also a dimension of the space; keep it in one place")
    try:
        experiment_from_dict(copy.deepcopy(sweep.base_raw), sweep.spec.fixed)
    except ConfigError as err:
        raise ConfigError(_attribute(sweep, "fixed", {}, str(err))) from None


def _check_arms(sweep: Sweep) -> None:
    """Each arm's overrides, alone over the base and ``fixed``, must make a valid experiment."""
    keys = set(sweep.space.keys())
    for p, conds in sweep.space.params():
        for name, overrides in p.arms:
            for key in overrides:
                if key in keys:
                    raise ConfigError(f"{p.path}.{name}.{key}: also a dimension of the space; keep it in one place")
            forced = {k: allowed[0] for k, allowed in conds.items() if allowed}
            try:
                sweep.experiment(sweep.space.resolve({**forced, p.key: name}))
            except ConfigError as err:
                raise ConfigError(f"{p.path}.{name}: {err}") from None


def _check_budget(sweep: Sweep) -> None:
    budget = sweep.spec.budget
    if sweep.is_grid:
        if sweep.spec.enqueue:
            raise ConfigError("enqueue: a grid runs every combination already; remove enqueue")
        size = len(sweep.grid())
        if budget.n_trials is not None and budget.n_trials > size:
            raise ConfigError(
                f"budget.n_trials: the grid has {size} combinations, fewer than {budget.n_trials}; "
                f"drop n_trials (runs all {size}) or lower it"
            )
    elif budget.n_trials is None:
        raise ConfigError(f"budget.n_trials: required for sampler {sweep.spec.sampler.type} (e.g. n_trials: 50)")
    if len(sweep.spec.enqueue) > sweep.n_trials:
        raise ConfigError(f"enqueue: {len(sweep.spec.enqueue)} configurations exceed budget.n_trials")
    for i, entry in enumerate(sweep.spec.enqueue):
        sweep.space.check_assignment(entry, f"enqueue.{i}")


def _check_probes(sweep: Sweep) -> None:
    probes: list[tuple[str, dict[str, Any]]] = [
        (p.path if p else "space", values) for p, values in sweep.space.probes()
    ]
    probes += [(f"enqueue.{i}", sweep.space.resolve(entry)) for i, entry in enumerate(sweep.spec.enqueue)]
    for where, values in probes:
        try:
            cfg = sweep.experiment(values)
        except ConfigError as err:
            raise ConfigError(_attribute(sweep, where, values, str(err))) from None
        if sweep.objective.split == "test" and cfg.eval.split != "test":
            raise ConfigError("objective.split: test needs eval.split: test in the experiment (set it in fixed)")


def _check_analysis(sweep: Sweep) -> None:
    from arch_lab.metrics import METRICS

    section = sweep.spec.analysis
    names = [("analysis.primary_metric", section.primary_metric)] if section.primary_metric else []
    names += [(f"analysis.secondary_metrics.{i}", m) for i, m in enumerate(section.secondary_metrics)]
    for where, name in names:
        if name not in METRICS:
            raise ConfigError(f"{where}: unknown metric {name!r}; metrics are {', '.join(sorted(METRICS))}")
    if sweep.primary_metric in section.secondary_metrics:
        raise ConfigError(f"analysis.secondary_metrics: {sweep.primary_metric} is the primary metric")


def _attribute(sweep: Sweep, where: str, values: Mapping[str, Any], message: str) -> str:
    """Name the space dimension (or fixed key) an experiment error is about, e.g. ``space.network.width: ...``."""
    context = ", ".join(f"{k}={v}" for k, v in values.items() if isinstance(v, str))
    suffix = f" (with {context})" if context else ""
    mentioned = [k for k in (*values, *sweep.spec.fixed) if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w.])", message)]
    if mentioned:
        key = max(mentioned, key=len)
        detail = message.removeprefix(f"{key}: ")
        p = sweep.space.find(key, values) if key in values else None
        return f"{p.path if p else 'fixed.' + key}: {detail}{suffix}"
    return f"{where}: {message}{suffix}"
