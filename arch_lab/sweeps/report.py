"""Reports on a study: progress, best trials and failures with reasons, and the trials and runs as CSV."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from arch_lab.rundir import RunDir
from arch_lab.sweeps.runner import worker_alive
from arch_lab.sweeps.study import (
    budget_count,
    load_study,
    locate_study,
    retried_by,
    trial_reason,
    trials_table,
)

if TYPE_CHECKING:
    import pandas as pd


#: Columns of the CSV ``arch-lab sweep export`` writes, after the ``params_<key>`` and ``value_seed_<s>`` ones.
EXPORT_TAIL = (
    "seeds",
    "run_dirs",
    "wall_seconds",
    "parameter_count",
    "reason",
    "retry_of",
    "slot",
    "worker",
    "git_sha",
    "datetime_start",
    "datetime_complete",
)


def export_layout(trials: pd.DataFrame) -> pd.DataFrame:
    """:func:`~arch_lab.sweeps.study.trials_table` in the layout of ``arch-lab sweep export``.

    ``number``, ``state`` (upper case, as Optuna names it), ``value``, ``params_<key>``, ``value_seed_<s>``,
    ``seeds`` and ``run_dirs`` (``;``-separated), ``wall_seconds``, ``parameter_count``, ``reason``, ``retry_of``,
    ``slot``, ``worker``, ``git_sha``, ``datetime_start``, ``datetime_complete``.
    """
    import pandas as pd

    if trials.empty:
        return pd.DataFrame()
    out = pd.DataFrame({"number": trials["trial"], "state": trials["state"].str.upper()})
    for c in trials.columns:
        if c == "value" or c.startswith(("value_", "params_")):
            out[c] = trials[c]
    n = len(trials)
    for c in EXPORT_TAIL:
        attr = f"user_attrs_{c}"
        if c in ("seeds", "run_dirs"):
            lists = trials[attr] if attr in trials else pd.Series([None] * n, index=trials.index)
            out[c] = [";".join(str(v) for v in x) if isinstance(x, list | tuple) else "" for x in lists]
        elif c in trials.columns:
            out[c] = trials[c]
        else:
            out[c] = trials[attr] if attr in trials else pd.Series([None] * n, index=trials.index, dtype=object)
    return out


def export_trials(
    name_or_yaml: str | Path, out: str | Path, storage: str | None = None, profile: str | None = None
) -> pd.DataFrame:
    """Write the trials of a study as CSV (:func:`export_layout`) and return the written table."""
    df = export_layout(trials_table(load_study(name_or_yaml, storage, profile), allow_empty=True))
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
        Running trials with their worker (``worker``), ``gone`` (True when the worker runs on this machine and
        its process is gone, None when that cannot be seen from here) and, once its run has recorded progress,
        ``run`` (which of the trial's runs), ``runs``, ``step``, ``max_steps``, ``seconds_per_step`` and
        ``eta_seconds`` (of that run).
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


def _gone(trial: Any) -> bool | None:
    alive = worker_alive(trial)
    return None if alive is None else not alive


def sweep_status(
    name_or_yaml: str | Path, storage: str | None = None, top: int = 5, profile: str | None = None
) -> SweepStatus:
    """Progress, the best trials and the failures of a study."""
    from optuna.trial import TrialState

    spec = locate_study(name_or_yaml, storage, profile).storage
    study = load_study(name_or_yaml, storage, profile)
    trials = study.get_trials(deepcopy=False)
    retried = retried_by(trials)
    counts = {s.name: sum(1 for t in trials if t.state == s) for s in TrialState}
    finished, slots, _ = budget_count(trials)
    direction = study.direction.name.lower()
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    complete.sort(key=lambda t: cast(float, t.value), reverse=direction == "maximize")  # values checked above
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
        {"number": t.number, "state": t.state.name, "reason": trial_reason(t, retried)}
        for t in trials
        if t.state in (TrialState.FAIL, TrialState.PRUNED)
    ]
    running = [
        {"number": t.number, "worker": t.user_attrs.get("worker"), "gone": _gone(t), **_run_progress(t.user_attrs)}
        for t in trials
        if t.state == TrialState.RUNNING
    ]
    return SweepStatus(
        name=study.study_name,
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


def _run_progress(attrs: dict[str, Any]) -> dict[str, Any]:
    """The progress of a running trial's run that will end last, as it recorded it in its status (empty when no
    run has yet); ``running`` counts the trial's runs training now (several with ``--parallel-runs``).
    """
    dirs = attrs.get("run_dirs") or []
    found = [(i, p) for i, d in enumerate(dirs) if (p := RunDir(d).read_progress()) is not None]
    if not found:
        return {}
    index, progress = max(found, key=lambda item: float(item[1].get("eta_seconds", 0.0)))
    runs = max(int(attrs.get("n_runs") or 0), len(dirs))
    return {"run": index + 1, "runs": runs, "running": len(found), **progress}


def stuck_message(
    status: SweepStatus, source: str | Path, storage: str | None = None, profile: str | None = None
) -> str | None:
    """One line for a study left with running trials once every local worker has stopped (None when there is
    none): how many, which, and the command that requeues them.

    Without heartbeats (journal storage) a trial whose worker was killed stays running for ever; workers on this
    machine requeue such trials themselves, so what is left ran on other machines, or is still running there.
    """
    if not status.running:
        return None
    shown = [f"#{r['number']} on {r['worker'] or '?'}" + (" (gone)" if r.get("gone") else "") for r in status.running]
    listing = ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
    command = f"arch-lab sweep requeue {source}"
    command += f" --storage {storage}" if storage else ""
    command += f" --profile {profile}" if profile else ""
    n = len(status.running)
    return (
        f"budget {status.finished}/{status.slots} finished: {n} trial{'s' if n > 1 else ''} still RUNNING with no "
        f"worker here to finish {'them' if n > 1 else 'it'} ({listing}); if {'their workers are' if n > 1 else 'its worker is'} "
        f"gone, requeue with: {command}, then rerun this command"
    )
