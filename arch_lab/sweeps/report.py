"""Reading a study back: progress, best trials, failures with reasons, and a tidy per-trial table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arch_lab.errors import ArchLabError
from arch_lab.sweeps.storage import StorageSpec, default_storage_url, parse_storage
from arch_lab.sweeps.study import SLOT_ATTR, is_retry

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from optuna.trial import FrozenTrial


def locate_study(
    name_or_yaml: str | Path, storage: str | None = None, profile: str | None = None
) -> tuple[str, StorageSpec]:
    """The study name and storage of a sweep YAML or a study name.

    Parameters
    ----------
    name_or_yaml
        A sweep YAML (its ``study`` section is used) or a study name.
    storage
        Overrides the storage (default: the YAML's, or ``sqlite:///runs/sweeps/<name>.db`` for a name).
    profile
        A profile of the YAML (its study is ``<name>_<profile>``); with a study name, appended to it.
    """
    p = Path(name_or_yaml)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        from arch_lab.sweeps.sweep import load_sweep

        sweep = load_sweep(p, profile)
        st = sweep.spec.study
        return sweep.name, parse_storage(storage or st.storage or default_storage_url(st.name, st.output_dir))
    name = f"{name_or_yaml}_{profile}" if profile else str(name_or_yaml)
    return name, parse_storage(storage or default_storage_url(name))


def load_existing(name_or_yaml: str | Path, storage: str | None = None, profile: str | None = None) -> optuna.Study:
    """Open an existing study read-only (nothing is created when it is missing).

    Raises
    ------
    ArchLabError
        No storage file, or no study of that name in it.
    """
    import optuna

    name, spec = locate_study(name_or_yaml, storage, profile)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = spec.open(create=False)
    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
        raise ArchLabError(
            f"no study named {name!r} in {spec.describe()} (studies there: {names or 'none'}); check the name or --storage"
        ) from None


def _retried_by(trials: list[FrozenTrial]) -> dict[int, int]:
    out: dict[int, int] = {}
    for t in trials:
        if is_retry(t):
            history = t.system_attrs.get("retry_history", [])
            if history:
                out[history[-1]] = t.number
    return out


def trial_reason(trial: FrozenTrial, retried_by: dict[int, int]) -> str | None:
    """Why a trial failed or was pruned (None for others)."""
    from optuna.trial import TrialState

    if trial.state not in (TrialState.FAIL, TrialState.PRUNED):
        return None
    reason = trial.user_attrs.get("reason")
    if trial.number in retried_by:
        base = reason or "worker lost (no heartbeat within the grace period)"
        return f"{base}; retried as trial {retried_by[trial.number]}"
    if reason:
        return reason
    if trial.state == TrialState.FAIL:
        return "worker lost (no heartbeat within the grace period); retries exhausted"
    return "pruned"


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, ``params_*``, per-seed values, run directories, wall time,
    parameter count, fail/prune reason, retry link and worker.

    Returns
    -------
    pandas.DataFrame
        Sorted by trial number; ``value_seed_<s>`` holds replicate ``s``'s objective.
    """
    import pandas as pd

    trials = study.get_trials(deepcopy=False)
    retried_by = _retried_by(trials)
    rows: list[dict[str, Any]] = []
    for t in trials:
        ua = t.user_attrs
        params = ua.get("params") or t.params
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "value": t.value}
        row.update({f"params_{k}": _cell(v) for k, v in params.items()})
        for s, v in enumerate(ua.get("values_per_seed") or []):
            row[f"value_seed_{s}"] = v
        row.update(
            {
                "seeds": ";".join(str(s) for s in ua.get("seeds") or []),
                "run_dirs": ";".join(ua.get("run_dirs") or []),
                "wall_seconds": ua.get("wall_seconds"),
                "parameter_count": ua.get("parameter_count"),
                "reason": trial_reason(t, retried_by),
                "retry_of": (t.system_attrs.get("retry_history") or [None])[-1],
                "slot": ua.get(SLOT_ATTR),
                "worker": ua.get("worker"),
                "git_sha": ua.get("git_sha"),
                "datetime_start": t.datetime_start,
                "datetime_complete": t.datetime_complete,
            }
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for c in df.columns:  # keep ints as ints where some trials lack the value (pandas would make them floats)
        if c.startswith("params_") or c in ("parameter_count", "slot", "retry_of"):
            df[c] = _column([row.get(c) for row in rows])
    first = ["number", "state", "value"]
    params = sorted(c for c in df.columns if c.startswith("params_"))
    seeds = sorted((c for c in df.columns if c.startswith("value_seed_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    rest = [c for c in df.columns if c not in first + params + seeds]
    return df[first + params + seeds + rest].sort_values("number").reset_index(drop=True)


def _column(values: list[Any]) -> pd.Series:
    import pandas as pd

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="Int64")
    return pd.Series(values, dtype=object).infer_objects()


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        import json

        return json.dumps(value)
    return value


def export_trials(
    name_or_yaml: str | Path, out: str | Path, storage: str | None = None, profile: str | None = None
) -> pd.DataFrame:
    """Write the trials table of a study as CSV and return it."""
    df = trials_table(load_existing(name_or_yaml, storage, profile))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df


@dataclass
class SweepStatus:
    """Where a study stands.

    Parameters
    ----------
    name, storage, direction, objective
        What the study is.
    counts
        Trials per state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING).
    slots, finished
        Budget slots issued, and how many of them finished (complete, pruned or failed for good).
    best
        The best complete trials (number, value, per-seed values, params), best first.
    failures
        Failed trials with their reasons.
    running
        Running trials with their worker.
    """

    name: str
    storage: str
    direction: str
    objective: str
    counts: dict[str, int]
    slots: int
    finished: int
    best: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    running: list[dict[str, Any]] = field(default_factory=list)


def sweep_status(
    name_or_yaml: str | Path, storage: str | None = None, top: int = 5, profile: str | None = None
) -> SweepStatus:
    """Progress, the best trials and the failures of a study."""
    from optuna.trial import TrialState

    name, spec = locate_study(name_or_yaml, storage, profile)
    study = load_existing(name_or_yaml, storage, profile)
    trials = study.get_trials(deepcopy=False)
    retried_by = _retried_by(trials)
    counts = {s.name: sum(1 for t in trials if t.state == s) for s in TrialState}
    finished = sum(1 for t in trials if t.state.is_finished() and t.number not in retried_by)
    slots = sum(1 for t in trials if SLOT_ATTR in t.user_attrs and not is_retry(t))
    direction = study.direction.name.lower()
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    complete.sort(key=lambda t: t.value, reverse=direction == "maximize")
    best = [
        {
            "number": t.number,
            "value": t.value,
            "values_per_seed": t.user_attrs.get("values_per_seed"),
            "params": t.user_attrs.get("params") or t.params,
        }
        for t in complete[:top]
    ]
    failures = [
        {"number": t.number, "state": t.state.name, "reason": trial_reason(t, retried_by)}
        for t in trials
        if t.state in (TrialState.FAIL, TrialState.PRUNED)
    ]
    running = [
        {"number": t.number, "worker": t.user_attrs.get("worker")} for t in trials if t.state == TrialState.RUNNING
    ]
    return SweepStatus(
        name=name,
        storage=spec.describe(),
        direction=direction,
        objective=f"{study.user_attrs.get('objective_split', '?')} {study.user_attrs.get('objective', '?')}",
        counts={k: v for k, v in counts.items() if v},
        slots=slots,
        finished=finished,
        best=best,
        failures=failures,
        running=running,
    )


#: Leading columns of :func:`runs_table` (the rest follow: every metric, ``val_``, ``floor_``, ``ceiling_``...).
RUN_COLUMNS = (
    "study",
    "trial",
    "arm",
    "task",
    "dataset",
    "locality",
    "seed",
    "parameter_count",
    "flops_per_step",
    "train_flops",
    "steps",
    "wall_seconds",
)


def runs_table(study: optuna.Study, arm_keys: tuple[str, ...] = ("arm",)) -> pd.DataFrame:
    """One row per completed run of a study (trial x replicate seed), for analysis.

    Built on :func:`arch_lab.analysis.tidy.study_runs` (every column of :func:`arch_lab.analysis.tidy.load_runs`:
    test metrics, ``val_<metric>``, ``floor_<metric>``, ``ceiling_<metric>``, ``config.<key>``, plus the trial's
    ``params_<key>``), with :data:`RUN_COLUMNS` first: ``arm`` (the value of the first of ``arm_keys`` the
    study sampled), ``task`` (the experiment name), ``dataset`` (the data file's stem, or ``synthetic``) and
    ``locality`` (``data.synthetic.locality``; NaN for real data).

    Raises
    ------
    ArchLabError
        The study has no completed run.
    """
    import pandas as pd

    from arch_lab.analysis.tidy import study_runs

    df = study_runs(study)
    arm = next((f"params_{k}" for k in arm_keys if f"params_{k}" in df.columns), None)
    df["arm"] = df[arm] if arm else None
    df["task"] = df["experiment"]
    path = df.get("config.data.path", pd.Series([None] * len(df)))
    df["dataset"] = [Path(str(p)).stem if isinstance(p, str) and p else "synthetic" for p in path]
    df["locality"] = pd.to_numeric(df.get("config.data.synthetic.locality", pd.Series([math.nan] * len(df))))
    for c in RUN_COLUMNS:
        if c not in df.columns:
            df[c] = math.nan
    return df[list(RUN_COLUMNS) + [c for c in df.columns if c not in RUN_COLUMNS]]


def export_runs(
    name_or_yaml: str | Path, out: str | Path, storage: str | None = None, profile: str | None = None
) -> pd.DataFrame:
    """Write :func:`runs_table` of a study (one row per completed run) as CSV and return it."""
    arm_keys: tuple[str, ...] = ("arm",)
    p = Path(name_or_yaml)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        from arch_lab.sweeps.sweep import load_sweep

        arm_keys = tuple(a.key for a in load_sweep(p, profile).space.arms()) or arm_keys
    df = runs_table(load_existing(name_or_yaml, storage, profile), arm_keys)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df
