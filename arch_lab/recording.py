"""What a run records in its directory: a header when it starts, the results when it completes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from arch_lab.provenance import device_info, git_sha, package_versions
from arch_lab.rundir import RunDir, utc_now

if TYPE_CHECKING:
    import pandas as pd

    from arch_lab.config import ExperimentConfig
    from arch_lab.harness import EvalResult
    from arch_lab.methods import Method


def start_run(
    run: RunDir,
    cfg: ExperimentConfig,
    split: pd.Series,
    extra: dict[str, Any] | None = None,
    gene_order: Sequence[str] | None = None,
) -> None:
    """Write the resolved config, the provenance meta (plus ``extra``), the split and the network's gene order (the
    gene names in the order it reads them), and mark the run running.
    """
    run.write_config(cfg)
    run.write_meta(
        {
            "seed": cfg.seed,
            "git_sha": git_sha(),
            "packages": package_versions(),
            "device": device_info(),
            "command": sys.argv,
            "started": utc_now(),
            **(extra or {}),
        }
    )
    run.write_split(split)
    if gene_order is not None:
        run.write_gene_order(gene_order)
    run.set_status("running")


def record_resume(run: RunDir) -> tuple[str, str] | None:
    """Note in ``meta.json`` that the run is being resumed, and under which commit (appended to ``resumes``).

    Returns
    -------
    tuple of str, or None
        ``(started, now)``: the commit the run was started under and the one resuming it, when they differ (the run
        then mixes commits, and whoever resumes it should be told); None when they are the same or either is
        unknown.
    """
    meta = run.read_meta()
    now = git_sha()
    resumes = [*(meta.get("resumes") or []), {"git_sha": now, "at": utc_now()}]
    run.update_meta(resumes=resumes)
    started = meta.get("git_sha")
    if not started or not now or started == "unknown" or now == "unknown" or started == now:
        return None
    return str(started), now


def trained_commits(meta: dict[str, Any]) -> list[str]:
    """Every commit a run was trained under: the one it started under, then each resume's, without repeats."""
    shas = [meta.get("git_sha"), *((r or {}).get("git_sha") for r in meta.get("resumes") or [])]
    return list(dict.fromkeys(str(s) for s in shas if s))


def record_results(
    run: RunDir,
    method: Method,
    result: EvalResult,
    val_summary: dict[str, float] | None,
    fit_summary: dict[str, Any],
    elapsed: float,
    readouts: dict[str, float] | None = None,
) -> None:
    """Write what a finished run produced; the summary goes last, so its presence means the rest is whole.

    Parameters
    ----------
    run
        The run directory.
    method
        The trained method (its state is saved).
    result
        The scored evaluated split.
    val_summary
        The validation split's summary (None when the evaluated split is ``val`` or there is none).
    fit_summary
        What ``method.fit`` returned; its ``history`` goes to its own table, the rest into the summary.
    elapsed
        Wall seconds of fitting and scoring.
    readouts
        The method's mechanistic read-outs on the evaluated split (:meth:`~arch_lab.methods.base.Method.readouts`).
    """
    run.write_predictions(result.predictions)
    run.write_per_condition(result.per_condition)
    if result.reference_per_condition is not None:
        run.write_reference_per_condition(result.reference_per_condition)
    fit_summary = dict(fit_summary)
    history = fit_summary.pop("history", None)
    if history:
        run.write_history(history)
    run.save_model(method.name, method.state_dict())
    run.write_metrics(
        {
            "method": method.name,
            "network": method.cfg.network.name if method.name == "flow_matching" else None,
            "split": method.cfg.eval.split,
            "metrics": result.summary,
            "val_metrics": val_summary,
            "reference": result.reference_summary,
            "parameter_count": method.parameter_count(),
            "fit": fit_summary,
            "wall_seconds": elapsed,
            "readouts": readouts or {},
            "out_of_range_cells": result.out_of_range_cells,
        }
    )
