"""The probe studies' derived tables: every comparison's gap with its interval, and synthetic program contiguity.

A gap is ``mean(first arm) - mean(second arm)`` over seeds (test split unless asked otherwise); its interval is
an unpaired percentile bootstrap of that difference, and the **normalised gap** divides it by the task's
``ceiling - floor`` (split-half minus ``no_change``), so it reads the same way for every metric and task: the
difference of :func:`arch_lab.analysis.gaps.normalised_score` values, positive when the first arm is better,
1 being the whole floor-to-ceiling range (all from :func:`arch_lab.analysis.gaps.metric_gap`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from arch_lab.analysis.gaps import keyed_rng, metric_gap, reference_value
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS

from .comparisons import Comparison, build_comparisons, index_runs
from .results import setting_label

#: Metrics whose gaps are estimated by default.
GAP_METRICS: tuple[str, ...] = ("energy_distance", "cosine_logfc")

GAP_COLUMNS: tuple[str, ...] = (
    "probe",
    "kind",
    "task",
    "dataset",
    "locality",
    "gene_order",
    "setting",
    "metric",
    "direction",
    "comparison",
    "probe_a",
    "arm_a",
    "arm_b",
    "probe_b",
    "network_b",
    "baseline",
    "primary",
    "n_a",
    "n_b",
    "mean_a",
    "mean_b",
    "gap",
    "ci_low",
    "ci_high",
    "level",
    "excludes_zero",
    "a_better",
    "floor",
    "ceiling",
    "norm_gap",
    "norm_ci_low",
    "norm_ci_high",
    "flag",
)


def gap_table(
    runs: pd.DataFrame,
    comparisons: Sequence[Comparison] | None = None,
    metrics: Sequence[str] = GAP_METRICS,
    split: str = "test",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """Every comparison's gap in each metric, with a bootstrap interval over seeds and the normalised gap.

    Parameters
    ----------
    runs
        Rows of :func:`load_probe_results`.
    comparisons
        Default: :func:`build_comparisons` of ``runs``.
    metrics
        Metric names (:data:`arch_lab.metrics.info.METRICS`).
    split
        ``test`` (the bare metric columns) or ``val`` (``val_<metric>``).
    n_boot, level, seed
        Bootstrap resamples, coverage, and the seed (each row gets its own stream derived from it).

    Returns
    -------
    tuple
        The table (:data:`GAP_COLUMNS`) and notes (metrics skipped for lack of values, intervals left out).

    Raises
    ------
    ArchLabError
        An unknown metric or split.
    """
    for m in metrics:
        if m not in METRICS:
            raise ArchLabError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
    if split not in ("test", "val"):
        raise ArchLabError(f"unknown split {split!r}; use test or val")
    prefix = "" if split == "test" else "val_"
    comparisons = build_comparisons(runs) if comparisons is None else comparisons
    index = index_runs(runs)
    rows, notes = [], []
    skipped: dict[tuple[str, str], int] = {}
    for c in comparisons:
        ga = index.get((c.probe_a, c.task, c.locality, c.order_a, c.arm_a))
        gb = index.get((c.probe_b, c.task, c.locality, c.order_b, c.arm_b))
        if ga is None or gb is None:
            continue
        for m in metrics:
            col = f"{prefix}{m}"
            a = ga[col] if col in ga.columns else pd.Series(dtype=float)
            b = gb[col] if col in gb.columns else pd.Series(dtype=float)
            floor = reference_value([ga, gb], f"floor_{m}") if split == "test" else math.nan
            ceiling = reference_value([ga, gb], f"ceiling_{m}") if split == "test" else math.nan
            direction = METRICS[m].direction
            rng = keyed_rng(seed, c.probe, c.task, c.locality, c.order_a, c.arm_a, c.arm_b, c.order_b, m)
            est = metric_gap(
                a,
                b,
                direction,
                floor=floor,
                ceiling=ceiling,
                n_boot=n_boot,
                level=level,
                rng=rng,
                flag_missing_range=split == "test",
            )
            if est["n_a"] == 0 or est["n_b"] == 0:
                skipped[(m, c.task)] = skipped.get((m, c.task), 0) + 1
                continue
            rows.append(
                {
                    "probe": c.probe,
                    "kind": c.kind,
                    "task": c.task,
                    "dataset": str(ga["dataset"].iloc[0]) if "dataset" in ga.columns else c.task,
                    "locality": c.locality if c.locality is not None else math.nan,
                    "gene_order": c.order_a,
                    "setting": setting_label(c.locality, c.order_a),
                    "metric": m,
                    "direction": direction,
                    "comparison": c.label,
                    "probe_a": c.probe_a,
                    "arm_a": c.arm_a,
                    "arm_b": c.arm_b,
                    "probe_b": c.probe_b,
                    "network_b": str(gb["network"].iloc[0]) if "network" in gb.columns else c.arm_b,
                    "baseline": c.baseline,
                    "primary": c.primary,
                    **est,
                }
            )
    for (m, task), k in sorted(skipped.items()):
        notes.append(f"{m} has no finite values on {task}: {k} comparison(s) skipped")
    few = [r for r in rows if r["flag"].startswith("n<2")]
    if few:
        notes.append(f"{len(few)} gap(s) from an arm with fewer than 2 seeds: shown without an interval")
    return pd.DataFrame(rows, columns=list(GAP_COLUMNS)), notes


# ------------------------------------------------------------------------------------------------- contiguity
def _synthetic_settings(row: pd.Series) -> dict[str, Any]:
    prefix = "config.data.synthetic."
    out: dict[str, Any] = {}
    for col, v in row.items():
        if not str(col).startswith(prefix) or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, str) and v.strip().startswith("["):
            v = json.loads(v)
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and v.is_integer() and col.removeprefix(prefix) != "locality":
            v = int(v)
        out[str(col).removeprefix(prefix)] = v
    return out


def locality_contiguity(runs: pd.DataFrame) -> pd.DataFrame:
    """Program contiguity of the stored gene order (:func:`arch_lab.data.synthetic.contiguity_score`) per locality.

    Recomputed from each synthetic run's ``config.data.synthetic.*`` settings (layout only, no cells simulated);
    the mean over the distinct configurations of a locality. Empty without synthetic runs.
    """
    from arch_lab.data.synthetic import (
        _LAYOUT,
        canonical_programs,
        contiguity_score,
        locality_order,
        synthetic_config,
    )
    from arch_lab.data.synthetic import (
        _rng as _layout_rng,
    )

    cols = ["locality", "contiguity"]
    if runs.empty or "config.data.synthetic.locality" not in runs.columns:
        return pd.DataFrame(columns=cols)
    syn = runs[pd.to_numeric(runs["config.data.synthetic.locality"], errors="coerce").notna()]
    syn_cols = [c for c in syn.columns if c.startswith("config.data.synthetic.")]
    rows = []
    for _, row in syn[syn_cols].astype(str).drop_duplicates().iterrows():
        settings = _synthetic_settings(syn.loc[row.name, syn_cols])
        try:
            cfg = synthetic_config(settings)
        except ArchLabError:
            continue
        order = locality_order(cfg.n_genes, cfg.locality, _layout_rng(cfg.seed, _LAYOUT))
        rows.append(
            {"locality": round(cfg.locality, 6), "contiguity": contiguity_score(canonical_programs(cfg)[order])}
        )
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows).groupby("locality", as_index=False)["contiguity"].mean()


def no_negative_zero(v: float) -> float:
    """``v``, or 0.0 when it would print as ``-0.00`` or ``0.00`` (a contiguity near zero)."""
    return 0.0 if abs(v) < 0.005 else v
