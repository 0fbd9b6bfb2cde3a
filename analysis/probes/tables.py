"""The probe studies' derived tables: every comparison's gap with its interval, and synthetic program contiguity.

A gap is ``mean(first arm) - mean(second arm)`` over seeds (test split unless asked otherwise). When the two arms
were run on the same seeds (the seed fixes the evaluation subsample), the seeds pair them and the interval is
the paired t interval of the per-seed differences; otherwise it is Welch's unpaired interval. The **normalised
gap** divides the gap by the task's ``ceiling - floor`` (split-half minus ``no_change``), so it reads the same way
for every metric and task: the difference of :func:`arch_lab.analysis.gaps.normalised_score` values, positive
when the first arm is better, 1 being the whole floor-to-ceiling range; it is left out where that range is
within its own run-to-run noise (all from :func:`arch_lab.analysis.gaps.metric_gap`).

The probe studies form one family of comparisons, split in two: the **primary** gaps (a probe's primary
comparisons on its pre-declared primary metric, the objective of its sweep YAML unless ``analysis.primary_metric``
says otherwise) and the **secondary** ones (every other comparison and metric). P-values are Holm- and
Benjamini-Hochberg-adjusted within each (:func:`arch_lab.analysis.multiplicity.adjust_family`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from arch_lab.analysis.gaps import keyed_rng, metric_gap, reference_value
from arch_lab.analysis.multiplicity import adjust_family
from arch_lab.analysis.paired import align_units
from arch_lab.analysis.roles import PRIMARY, SECONDARY
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
    "role",
    "family",
    "pairing",
    "n_a",
    "n_b",
    "mean_a",
    "mean_b",
    "gap",
    "ci_low",
    "ci_high",
    "level",
    "method",
    "se",
    "df",
    "p_value",
    "excludes_zero",
    "family_size",
    "p_holm",
    "p_bh",
    "significant_holm",
    "significant_bh",
    "level_holm",
    "ci_low_holm",
    "ci_high_holm",
    "a_better",
    "floor",
    "ceiling",
    "span_ci_low",
    "span_ci_high",
    "range_within_noise",
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
    primary_metrics: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Every comparison's gap in each metric, with its interval over seeds, adjusted p-values and the normalised
    gap (see the module docstring).

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
        Bootstrap resamples (unused by the default t intervals), coverage, and the seed (each row gets its own
        stream derived from it).
    primary_metrics
        Each probe's pre-declared primary metric (default, and for probes not listed: the first of ``metrics``).

    Returns
    -------
    tuple
        The table (:data:`GAP_COLUMNS`: ``role`` is the metric's role in its probe, ``family`` the adjustment
        family, ``pairing`` ``paired`` or ``unpaired``) and notes (metrics skipped for lack of values, intervals
        left out).

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
    primary = dict(primary_metrics or {})
    rows, notes = [], []
    skipped: dict[tuple[str, str], int] = {}
    for c in comparisons:
        ga = index.get((c.probe_a, c.task, c.locality, c.order_a, c.arm_a))
        gb = index.get((c.probe_b, c.task, c.locality, c.order_b, c.arm_b))
        if ga is None or gb is None:
            continue
        for m in metrics:
            col = f"{prefix}{m}"
            a, b, paired = align_units(ga, gb, ["seed"], col)
            floor = reference_value([ga, gb], f"floor_{m}") if split == "test" else math.nan
            ceiling = reference_value([ga, gb], f"ceiling_{m}") if split == "test" else math.nan
            floors, ceilings = _run_references(ga, gb, m) if split == "test" else (None, None)
            direction = METRICS[m].direction
            rng = keyed_rng(seed, c.probe, c.task, c.locality, c.order_a, c.arm_a, c.arm_b, c.order_b, m)
            est = metric_gap(
                a,
                b,
                direction,
                floor=floor,
                ceiling=ceiling,
                floors=floors,
                ceilings=ceilings,
                n_boot=n_boot,
                level=level,
                rng=rng,
                paired=paired,
                flag_missing_range=split == "test",
            )
            if est["n_a"] == 0 or est["n_b"] == 0:
                skipped[(m, c.task)] = skipped.get((m, c.task), 0) + 1
                continue
            role = PRIMARY if m == primary.get(c.probe, metrics[0]) else SECONDARY
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
                    "role": role,
                    "family": PRIMARY if c.primary and role == PRIMARY else SECONDARY,
                    "pairing": "paired" if paired else "unpaired",
                    **est,
                }
            )
    for (m, task), k in sorted(skipped.items()):
        notes.append(f"{m} has no finite values on {task}: {k} comparison(s) skipped")
    few = [r for r in rows if r["flag"].startswith("n<2")]
    if few:
        notes.append(f"{len(few)} gap(s) from an arm with fewer than 2 seeds: shown without an interval")
    table = adjust_family(pd.DataFrame(rows), family="family", level=level, estimate="gap") if rows else None
    return pd.DataFrame(table if table is not None else [], columns=list(GAP_COLUMNS)), notes


def _run_references(ga: pd.DataFrame, gb: pd.DataFrame, metric: str) -> tuple[list[float] | None, list[float] | None]:
    """The floor and ceiling of ``metric`` as each run of the two arms measured them, one pair per distinct
    (seed, floor, ceiling): both arms of a seed share the evaluation, so their references count once."""
    cols = ["seed", f"floor_{metric}", f"ceiling_{metric}"]
    frames = [g[cols] for g in (ga, gb) if all(c in g.columns for c in cols)]
    if not frames:
        return None, None
    refs = pd.concat(frames, ignore_index=True).drop_duplicates()
    return refs[cols[1]].tolist(), refs[cols[2]].tolist()


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
