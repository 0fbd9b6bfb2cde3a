"""Studies: creating, joining and budgeting one (workers), and opening one read-only and tabulating its trials.

The budget is a queue. Whoever creates the study enqueues exactly ``n_trials`` trials ("slots": the ``enqueue``
configurations first, then empty slots the sampler fills, or every grid combination), and workers only ever run
queued trials. So the budget holds exactly however many workers join, and a trial requeued after its worker was
lost (heartbeat) or interrupted takes over its slot instead of adding one.

The study records a hash of its search space, fixed overrides, objective and replicates; joining it with a
different one is refused.

Readers (``arch-lab sweep status``/``export``, ``arch-lab report``, :mod:`arch_lab.analysis`) find a study from a
sweep YAML, a study name or a storage URL with :func:`load_study`, which never creates anything, and tabulate it
with :func:`trials_table`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from arch_lab.errors import ArchLabError, ConfigError
from arch_lab.sweeps.storage import JOURNAL_PREFIX, StorageSpec, default_storage_url, parse_storage
from arch_lab.sweeps.sweep import Sweep

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

HASH_ATTR = "space_hash"
READY_ATTR = "ready"
SLOT_ATTR = "slot"
READY_WAIT_S = 120.0


@dataclass
class StudyHandle:
    """An open study with the storage objects workers need.

    Parameters
    ----------
    study
        The Optuna study.
    storage
        Where it lives.
    backend
        The storage object (claims and heartbeats go through it).
    study_id
        The study's id in the storage.
    created
        True when this call created the study.
    """

    study: optuna.Study
    storage: StorageSpec
    backend: BaseStorage
    study_id: int
    created: bool


def make_sampler(sweep: Sweep, seed_offset: int = 0, n_existing: int = 0) -> optuna.samplers.BaseSampler:
    """The configured sampler; ``seed_offset`` (the worker) and ``n_existing`` (the finished trials it joins) give
    each worker, and each resume, its own random stream.
    """
    import optuna

    s = sweep.spec.sampler
    seed = None if s.seed is None else _mix(s.seed, seed_offset, n_existing)
    if s.type == "tpe":
        multivariate = True if s.multivariate is None else s.multivariate
        kwargs: dict[str, Any] = {"seed": seed, "multivariate": multivariate, "group": multivariate}
        if s.n_startup_trials is not None:
            kwargs["n_startup_trials"] = s.n_startup_trials
        if s.constant_liar is not None:
            kwargs["constant_liar"] = s.constant_liar
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(**kwargs)
    # Grid trials are all enqueued with their parameters: the sampler is never asked for a value.
    return optuna.samplers.RandomSampler(seed=seed)


def _mix(seed: int, offset: int, n_existing: int = 0) -> int:
    """A seed for ``(seed, offset, n_existing)``: ``seed`` itself for (0, 0), else a hash of all three, so two workers
    never share a stream (an arithmetic mix such as ``offset * K + n_existing`` gave worker 0 joining after one
    trial the stream of worker 1 starting a fresh study: the same first draw twice).
    """
    if offset == 0 and n_existing == 0:
        return seed
    key = f"{seed}:{offset}" if n_existing == 0 else f"{seed}:{offset}:{n_existing}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    """The configured pruner (``NopPruner`` for ``none``)."""
    import optuna

    p = sweep.spec.pruner
    if p.type == "median":
        kwargs = {k: getattr(p, k) for k in ("n_startup_trials", "n_warmup_steps", "interval_steps")}
        return optuna.pruners.MedianPruner(**{k: v for k, v in kwargs.items() if v is not None})
    if p.type == "hyperband":
        kwargs = {k: getattr(p, k) for k in ("min_resource", "max_resource", "reduction_factor")}
        return optuna.pruners.HyperbandPruner(**{k: v for k, v in kwargs.items() if v is not None})
    return optuna.pruners.NopPruner()


def open_study(sweep: Sweep, storage: StorageSpec, *, create: bool = True, seed_offset: int = 0) -> StudyHandle:
    """Create the study or join it, after checking it was made with the same space.

    Parameters
    ----------
    sweep
        The validated sweep.
    storage
        Where the study lives.
    create
        Create the study when it does not exist (otherwise refuse).
    seed_offset
        Distinguishes this worker's sampler stream from the others'.

    Returns
    -------
    StudyHandle

    Raises
    ------
    ArchLabError
        No such study (``create=False``), or the study was made with another space (names the fix).
    """
    import optuna
    from optuna.trial import TrialState

    st = sweep.spec.study
    heartbeat = st.heartbeat_interval if storage.heartbeats else None
    backend = storage.open(heartbeat, st.grace_period, st.max_retry, create=create)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    created = False
    if create:
        try:
            study = optuna.create_study(
                study_name=sweep.name, storage=backend, direction=sweep.objective.direction, load_if_exists=False
            )
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = _load(sweep.name, backend, storage)
    else:
        study = _load(sweep.name, backend, storage)
    study_id = backend.get_study_id_from_name(sweep.name)
    handle = StudyHandle(study, storage, backend, study_id, created)
    if created:
        _initialise(handle, sweep)
    else:
        _wait_ready(handle)
        check_space(handle, sweep)
    n_existing = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
    study.sampler = make_sampler(sweep, seed_offset, n_existing)
    study.pruner = make_pruner(sweep)
    return handle


def _load(name: str, backend: BaseStorage, storage: StorageSpec) -> optuna.Study:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=backend)
    except KeyError:
        raise ArchLabError(
            f"no study named {name!r} in {storage.describe()}; start it with arch-lab sweep run SWEEP.yaml"
        ) from None


def _initialise(handle: StudyHandle, sweep: Sweep) -> None:
    import optuna

    from arch_lab.provenance import git_sha

    study = handle.study
    study.set_user_attr(HASH_ATTR, sweep.space_hash())
    study.set_user_attr("objective", sweep.objective.label)
    study.set_user_attr("objective_split", sweep.objective.split)
    study.set_user_attr("primary_metric", sweep.primary_metric)
    study.set_user_attr("secondary_metrics", sweep.secondary_metrics)
    study.set_user_attr("replicates", sweep.replicates)
    study.set_user_attr("base", str(sweep.base_path))
    study.set_user_attr("sweep_file", str(sweep.path.resolve()))
    study.set_user_attr("git_sha", git_sha())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"{sweep.objective.split} {sweep.objective.label}"])
    issue_slots(handle, sweep)
    study.set_user_attr(READY_ATTR, True)


def _wait_ready(handle: StudyHandle) -> None:
    deadline = time.monotonic() + READY_WAIT_S
    while not handle.study.user_attrs.get(READY_ATTR):
        if time.monotonic() > deadline:
            raise ArchLabError(
                f"study {handle.study.study_name!r} was never finished initialising (its creator died?); delete it "
                f"with: optuna delete-study --study-name {handle.study.study_name} --storage {handle.storage.url}"
            )
        time.sleep(0.5)


def check_space(handle: StudyHandle, sweep: Sweep) -> None:
    """Refuse to join a study made with another space, fixed overrides, objective or replicates."""
    stored = handle.study.user_attrs.get(HASH_ATTR)
    new = sweep.space_hash()
    if stored != new:
        raise ConfigError(
            f"study {sweep.name!r} in {handle.storage.describe()} was created with a different search space, fixed "
            f"overrides, objective or replicates (hash {stored} != {new}); bump study.name (e.g. {sweep.name}_v2) "
            "to start a new study, or restore the original sweep to resume"
        )


def is_retry(trial: FrozenTrial) -> bool:
    """True for a trial requeued after its worker was lost or interrupted (it takes over an earlier slot)."""
    return "failed_trial" in trial.system_attrs


def issued_slots(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that opened a budget slot (every queued original, not their retries)."""
    return [t for t in trials if SLOT_ATTR in t.user_attrs and not is_retry(t)]


def issue_slots(handle: StudyHandle, sweep: Sweep) -> int:
    """Enqueue the slots still missing to reach ``budget.n_trials``; returns how many were added.

    Only the creator calls this at creation, and ``arch-lab sweep run`` before starting its workers (so raising
    ``n_trials`` and running again extends a study). Lowering ``n_trials`` below the slots already issued does
    not withdraw them.
    """
    study = handle.study
    trials = study.get_trials(deepcopy=False)
    issued = issued_slots(trials)
    missing = sweep.n_trials - len(issued)
    if missing <= 0:
        return 0
    if sweep.is_grid:
        seen = {_key(t.system_attrs.get("fixed_params", t.params)) for t in issued}
        queue = [p for p in (sweep.space.optuna_params(c) for c in sweep.grid()) if _key(p) not in seen]
    else:
        queue = [sweep.space.optuna_params(e) for e in sweep.spec.enqueue[len(issued) :]]
        queue += [{}] * max(0, missing - len(queue))
    for i, params in enumerate(queue[:missing]):
        study.enqueue_trial(params, user_attrs={SLOT_ATTR: len(issued) + i})
    return min(missing, len(queue))


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------ reading back
#: Files read as a SQLite storage or a journal storage when given as a study.
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
JOURNAL_SUFFIXES = (".log", ".journal")


class StudyLocation(NamedTuple):
    """Where :func:`locate_study` found a study.

    Parameters
    ----------
    name
        The study name (None: the one study the storage holds).
    storage
        Its storage.
    default
        True when the storage was derived from a bare study name (``sqlite:///runs/sweeps/<name>.db``).
    """

    name: str | None
    storage: StorageSpec
    default: bool


def locate_study(source: str | Path, storage: str | None = None, profile: str | None = None) -> StudyLocation:
    """The name and storage a study argument stands for; nothing is opened.

    Parameters
    ----------
    source
        A sweep YAML (its ``study`` section is used); a storage URL (``sqlite:///...``, ``postgresql://...``,
        ``journal:PATH``) holding one study, or ``URL#NAME`` to pick one; the path of a ``.db`` or journal
        (``.log``) file; or a study name (looked up in ``storage``, default ``sqlite:///runs/sweeps/<name>.db``).
    storage
        Overrides the storage of a sweep YAML or a study name.
    profile
        A profile of the sweep YAML (its study is ``<name>_<profile>``); with a study name, appended to it.

    Raises
    ------
    ConfigError
        A malformed storage URL or sweep YAML.
    """
    text = str(source)
    p = Path(text)
    if p.suffix in (".yaml", ".yml") or (p.is_file() and p.suffix not in SQLITE_SUFFIXES + JOURNAL_SUFFIXES):
        from arch_lab.sweeps.sweep import load_sweep

        sweep = load_sweep(p, profile)
        st = sweep.spec.study
        return StudyLocation(
            sweep.name, parse_storage(storage or st.storage or default_storage_url(st.name, st.output_dir)), False
        )
    if storage is not None:
        return StudyLocation(f"{text}_{profile}" if profile else text, parse_storage(storage), False)
    if "://" in text or text.startswith(JOURNAL_PREFIX):
        url, _, name = text.partition("#")
        return StudyLocation(name or None, parse_storage(url), False)
    if p.is_file() and p.suffix in SQLITE_SUFFIXES:
        return StudyLocation(None, parse_storage(f"sqlite:///{p}"), False)
    if p.is_file() and p.suffix in JOURNAL_SUFFIXES:
        return StudyLocation(None, parse_storage(f"{JOURNAL_PREFIX}{p}"), False)
    name = f"{text}_{profile}" if profile else text
    return StudyLocation(name, parse_storage(default_storage_url(name)), True)


def load_study(source: str | Path, storage: str | None = None, profile: str | None = None) -> optuna.Study:
    """Open an existing study read-only: nothing is created when it is missing.

    Parameters
    ----------
    source, storage, profile
        See :func:`locate_study`.

    Returns
    -------
    optuna.Study

    Raises
    ------
    ArchLabError
        The storage is missing or unreachable, holds no study, several studies and none was named, or not the
        named one.
    """
    import optuna

    name, spec, default = locate_study(source, storage, profile)
    if not spec.exists():
        if default:
            raise ArchLabError(
                f"{source}: not a run directory, a folder of runs, or a study (no such file {spec.path}); pass a "
                "sweep YAML, a study name with --storage, or a storage URL"
            )
        kind = "journal" if spec.kind == "journal" else "database"
        raise ArchLabError(f"{spec.describe()}: {kind} file not found; check the path or pass --storage")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = spec.open(create=False)
    try:
        names = optuna.get_all_study_names(backend)
    except Exception as exc:  # storages raise many types (sqlalchemy, OSError, ...)
        raise ArchLabError(
            f"{spec.describe()}: cannot open the study storage ({type(exc).__name__}: {exc})".splitlines()[0]
        ) from None
    if not names:
        raise ArchLabError(f"{spec.describe()}: holds no study")
    if name is None or (default and name not in names and len(names) == 1):
        if len(names) > 1:
            raise ArchLabError(
                f"{spec.describe()}: holds several studies ({', '.join(sorted(names))}); pick one with URL#NAME"
            )
        name = names[0]
    if name not in names:
        raise ArchLabError(
            f"{spec.describe()}: no study named {name!r}; it holds {', '.join(sorted(names))}; check the name or "
            "--storage"
        )
    return optuna.load_study(study_name=name, storage=backend)


def retried_by(trials: list[FrozenTrial]) -> dict[int, int]:
    """Trial number -> the number of the trial that retried it (for trials whose worker was lost)."""
    out: dict[int, int] = {}
    for t in trials:
        if is_retry(t):
            history = t.system_attrs.get("retry_history", [])
            if history:
                out[history[-1]] = t.number
    return out


class BudgetCount(NamedTuple):
    """Where a study's budget stands: finished slots (complete, pruned or failed for good), issued slots, and
    running trials.
    """

    finished: int
    slots: int
    running: int


def budget_count(trials: list[FrozenTrial]) -> BudgetCount:
    """Count the budget of ``trials`` (a requeued trial's earlier attempt is not counted as finished)."""
    from optuna.trial import TrialState

    retried = retried_by(trials)
    return BudgetCount(
        finished=sum(1 for t in trials if t.state.is_finished() and t.number not in retried),
        slots=sum(1 for t in trials if SLOT_ATTR in t.user_attrs and not is_retry(t)),
        running=sum(1 for t in trials if t.state == TrialState.RUNNING),
    )


def trial_reason(trial: FrozenTrial, retried: dict[int, int]) -> str | None:
    """Why a trial failed or was pruned (None for others); ``retried`` comes from :func:`retried_by`."""
    from optuna.trial import TrialState

    if trial.state not in (TrialState.FAIL, TrialState.PRUNED):
        return None
    reason = trial.user_attrs.get("reason")
    if trial.number in retried:
        base = reason or "worker lost (no heartbeat within the grace period)"
        return f"{base}; retried as trial {retried[trial.number]}"
    if reason:
        return reason
    if trial.state == TrialState.FAIL:
        return "worker lost (no heartbeat within the grace period); retries exhausted"
    return "pruned"


def trials_table(study: optuna.Study, *, allow_empty: bool = False) -> pd.DataFrame:
    """One row per trial of ``study``, sorted by trial number.

    Parameters
    ----------
    study
        The study.
    allow_empty
        Return an empty table for a study without trials instead of raising.

    Returns
    -------
    pandas.DataFrame
        ``study``, ``trial`` (number), ``state`` (``complete``, ``pruned``, ``fail``, ``running``, ``waiting``),
        ``direction``, ``value`` (objective; NaN until complete; ``value_<i>`` for several objectives),
        ``duration_seconds``, ``backbone`` (from the ``network.name``/``method.name`` parameters when present),
        ``params_<key>`` per sampled value (lists and mappings as JSON text), ``value_seed_<s>`` (replicate
        ``s``'s objective), ``reason`` (why it failed or was pruned, retries included), ``retry_of`` (the trial it
        retried), ``datetime_start``, ``datetime_complete``, and ``user_attrs_<key>`` per user attribute
        (``run_dirs``, ``seeds``, ``values_per_seed``, ``parameter_count``, ``wall_seconds``, ``slot``,
        ``worker``, ``git_sha``, ``space_hash``, ``reason``...). Integer columns stay integers where some trials
        lack the value.

    Raises
    ------
    ArchLabError
        The study has no trials (unless ``allow_empty``).
    """
    import pandas as pd

    trials = study.get_trials(deepcopy=False)
    if not trials and not allow_empty:
        raise ArchLabError(f"study {study.study_name!r} has no trials; run the sweep first")
    directions = [d.name.lower() for d in study.directions]
    retried = retried_by(trials)
    rows: list[dict[str, Any]] = []
    for t in trials:
        ua = t.user_attrs
        params = ua.get("params") or t.params
        row: dict[str, Any] = {
            "study": study.study_name,
            "trial": t.number,
            "state": t.state.name.lower(),
            "direction": directions[0] if len(directions) == 1 else ",".join(directions),
        }
        if len(directions) == 1:
            row["value"] = _num(t.values[0]) if t.values else math.nan
        else:
            for i in range(len(directions)):
                row[f"value_{i}"] = _num(t.values[i]) if t.values else math.nan
        row["duration_seconds"] = t.duration.total_seconds() if t.duration is not None else math.nan
        row["backbone"] = _trial_backbone(params)
        row.update({f"params_{k}": _cell(v) for k, v in params.items()})
        for i, v in enumerate(ua.get("values_per_seed") or []):
            row[f"value_seed_{i}"] = v
        row["reason"] = trial_reason(t, retried)
        row["retry_of"] = (t.system_attrs.get("retry_history") or [None])[-1]
        row["datetime_start"] = t.datetime_start
        row["datetime_complete"] = t.datetime_complete
        row.update({f"user_attrs_{k}": v for k, v in ua.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for c in df.columns:  # keep ints as ints where some trials lack the value (pandas would make them floats)
        if c.startswith(("params_", "user_attrs_")) or c == "retry_of":
            df[c] = _column([row.get(c) for row in rows])
    params = sorted(c for c in df.columns if c.startswith("params_"))
    seeds = sorted((c for c in df.columns if c.startswith("value_seed_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    attrs = [c for c in df.columns if c.startswith("user_attrs_")]
    head = [c for c in df.columns if c not in params + seeds + attrs]
    tail = ["reason", "retry_of", "datetime_start", "datetime_complete"]
    head = [c for c in head if c not in tail]
    return df[head + params + seeds + tail + attrs].sort_values("trial").reset_index(drop=True)


def _num(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _trial_backbone(params: dict[str, Any]) -> str | None:
    if "network.name" in params and params.get("method.name", "flow_matching") == "flow_matching":
        return str(params["network.name"])
    if "method.name" in params:
        return str(params["method.name"])
    return None


def _column(values: list[Any]) -> pd.Series:
    import pandas as pd

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="Int64")
    return pd.Series(values, dtype=object).infer_objects()


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value
