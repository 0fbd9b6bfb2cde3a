"""Creating, joining and budgeting a study.

The budget is a queue. Whoever creates the study enqueues exactly ``n_trials`` trials ("slots": the ``enqueue``
configurations first, then empty slots the sampler fills, or every grid combination), and workers only ever run
queued trials. So the budget holds exactly however many workers join, and a trial requeued after its worker was
lost (heartbeat) or interrupted takes over its slot instead of adding one.

The study records a hash of its search space, fixed overrides, objective and replicates; joining it with a
different one is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arch_lab.errors import ArchLabError, ConfigError
from arch_lab.sweeps.storage import StorageSpec
from arch_lab.sweeps.sweep import Sweep

if TYPE_CHECKING:
    import optuna
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


def make_sampler(sweep: Sweep, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The configured sampler; ``seed_offset`` gives each worker (and each resume) its own random stream."""
    import optuna

    s = sweep.spec.sampler
    seed = None if s.seed is None else _mix(s.seed, seed_offset)
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


def _mix(seed: int, offset: int) -> int:
    if offset == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{offset}".encode()).digest()[:4], "little")


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
    study.sampler = make_sampler(sweep, seed_offset if n_existing == 0 else seed_offset * 1_000_003 + n_existing)
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

    from arch_lab.runs import git_sha

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
