"""Summaries over seeds: means with t intervals, paired differences per condition, Pareto fronts.

The intervals themselves come from :mod:`~arch_lab.analysis.intervals` (Student t by default; the percentile and
BCa bootstraps on request) and the pairing of arms from :mod:`~arch_lab.analysis.paired`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from arch_lab.analysis.gaps import bootstrap_ci, bootstrap_difference_ci, finite_values, gap_estimate, keyed_rng  # noqa: F401
from arch_lab.analysis.intervals import mean_interval
from arch_lab.analysis.paired import FOLD_COLUMNS, align_units
from arch_lab.analysis.style import backbone_order
from arch_lab.analysis.tidy import require_metric
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS

if TYPE_CHECKING:
    import optuna

#: Metrics shown first in figures and tables: distributional fit, direction of change, identity, DE genes.
HEADLINE_METRICS: tuple[str, ...] = ("energy_distance", "cosine_logfc", "rmse_mean_rank", "deg_recall")
_CONDITION_KEYS = ("experiment", "state", "perturbation")


def summarize(
    runs: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    by: Sequence[str] = ("backbone",),
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "t",
) -> pd.DataFrame:
    """Mean of each metric per group with an interval over the group's runs (seeds).

    Parameters
    ----------
    runs
        A runs table (one row per run).
    metrics
        Column names to summarise (default: every metric with values, then ``parameter_count`` and
        ``train_seconds``).
    by
        Grouping columns.
    n_boot, level, seed
        Bootstrap resamples (bootstrap methods only), coverage, and the seed of the bootstrap.
    method
        ``t`` (Student t interval, default), ``bca`` or ``percentile`` (:func:`arch_lab.analysis.intervals.mean_interval`).

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, ``metric``, ``direction`` (``minimize``/``maximize``, empty for costs), ``n``, ``mean``,
        ``std``, ``ci_low``, ``ci_high``, ``level`` (a single run has no interval: NaN with ``t``).
    """
    if metrics is None:
        metrics = [m for m in METRICS if m in runs.columns and runs[m].notna().any()]
        metrics += [c for c in ("parameter_count", "train_seconds") if c in runs.columns and runs[c].notna().any()]
    else:
        metrics = [require_metric(runs, m) for m in metrics]
    rows = []
    for key, group in runs.groupby(list(by), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            v = finite_values(pd.to_numeric(group[m], errors="coerce"))
            est = mean_interval(v, method, level, n_boot, keyed_rng(seed, *key, m))
            lo, hi = est.low, est.high
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "metric": m,
                    "direction": METRICS[m].direction if m in METRICS else "",
                    "n": int(v.size),
                    "mean": float(v.mean()) if v.size else np.nan,
                    "std": float(v.std(ddof=1)) if v.size > 1 else np.nan,
                    "ci_low": lo,
                    "ci_high": hi,
                    "level": level,
                }
            )
    out = pd.DataFrame(rows)
    if "backbone" in by and not out.empty:
        ranks = {
            "metric": {m: i for i, m in enumerate(metrics)},
            "backbone": {b: i for i, b in enumerate(backbone_order(out["backbone"].astype(str)))},
        }
        out = out.sort_values(["metric", "backbone"], key=lambda s: s.map(ranks[s.name]), kind="stable")
        out = out.reset_index(drop=True)
    return out


def reference_summary(
    runs: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "t",
) -> pd.DataFrame:
    """Mean floor (``no_change``) and ceiling (``split_half``) of each metric over the runs (one per task and
    seed), with intervals by ``method`` (as for :func:`summarize`).
    """
    metrics = metrics or list(METRICS)
    rows = []
    for ref, prefix in (("no_change", "floor"), ("split_half", "ceiling")):
        for m in metrics:
            col = f"{prefix}_{m}"
            if col not in runs.columns:
                continue
            per_task = runs.drop_duplicates(["experiment", "seed"]) if "experiment" in runs.columns else runs
            v = finite_values(per_task[col])
            if v.size:
                est = mean_interval(v, method, level, n_boot, keyed_rng(seed, ref, m))
                lo, hi = est.low, est.high
                rows.append(
                    {
                        "reference": ref,
                        "metric": m,
                        "n": int(v.size),
                        "mean": float(v.mean()),
                        "ci_low": lo,
                        "ci_high": hi,
                        "level": level,
                    }
                )
    return pd.DataFrame(rows, columns=["reference", "metric", "n", "mean", "ci_low", "ci_high", "level"])


def _condition_keys(df: pd.DataFrame) -> list[str]:
    return [k for k in _CONDITION_KEYS if k in df.columns]


def condition_means(per_condition: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-condition metric averaged over each backbone's runs: conditions × backbones."""
    col = require_metric(per_condition, metric)
    keys = _condition_keys(per_condition)
    table = per_condition.pivot_table(index=keys, columns="backbone", values=col, aggfunc="mean")
    return table[[b for b in backbone_order(table.columns) if b in table.columns]]


def paired_differences(
    per_condition: pd.DataFrame,
    metric: str,
    pairs: Sequence[tuple[str, str]] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "t",
) -> pd.DataFrame:
    """Backbone A minus backbone B on each held-out condition, with an interval over seeds.

    On each condition the two backbones' values are paired by seed (and fold) when both cover the same seeds
    (runs of one backbone sharing a seed are averaged first): the interval is then the paired t interval of the
    per-seed differences. Otherwise the seeds' values are compared unpaired (Welch).

    Parameters
    ----------
    per_condition
        A per-condition table (:func:`arch_lab.analysis.load_per_condition`).
    metric
        Metric column.
    pairs
        ``(a, b)`` backbone pairs (default: every pair, in display order).
    n_boot, level, seed, method
        Interval settings (:func:`arch_lab.analysis.gaps.gap_estimate`; ``t`` by default).

    Returns
    -------
    pandas.DataFrame
        ``metric``, ``direction``, ``backbone_a``, ``backbone_b``, the condition keys (``experiment``, ``state``,
        ``perturbation``) and ``condition``, ``n_a``, ``n_b`` (seeds), ``mean_a``, ``mean_b``, ``difference``
        (``mean_a - mean_b``), ``ci_low``, ``ci_high``, ``p_value``, ``pairing`` (``paired`` / ``unpaired``),
        ``method``, ``a_better`` (by the metric's direction).

    Raises
    ------
    ArchLabError
        Unknown metric, or a pair naming a backbone absent from the table.
    """
    col = require_metric(per_condition, metric)
    present = backbone_order(per_condition["backbone"].astype(str).unique())
    pairs = list(pairs) if pairs is not None else list(itertools.combinations(present, 2))
    for a, b in pairs:
        for name in (a, b):
            if name not in present:
                raise ArchLabError(f"backbone {name!r} not in the table; backbones are {', '.join(present)}")
    keys = _condition_keys(per_condition)
    seed_keys = [*[c for c in FOLD_COLUMNS if c in per_condition.columns][:1], "seed"]
    sign = 1.0 if METRICS[metric].direction == "maximize" else -1.0
    groups = dict(iter(per_condition.groupby(["backbone", *keys], sort=True)))
    conditions = per_condition[keys].drop_duplicates().sort_values(keys).itertuples(index=False, name=None)
    conditions = list(conditions)
    rows = []
    for a, b in pairs:
        for cond in conditions:
            ga, gb = groups.get((a, *cond)), groups.get((b, *cond))
            if ga is None or gb is None:
                continue
            va, vb, paired = align_units(ga, gb, seed_keys, col)
            rng = keyed_rng(seed, a, b, *cond, metric)
            est = gap_estimate(va, vb, n_boot, level, rng, method=method, paired=paired)
            if est["n_a"] == 0 or est["n_b"] == 0:
                continue
            diff = est["gap"]
            cond_map = dict(zip(keys, cond, strict=True))
            rows.append(
                {
                    "metric": metric,
                    "direction": METRICS[metric].direction,
                    "backbone_a": a,
                    "backbone_b": b,
                    **cond_map,
                    "condition": f"{cond_map['state']}/{cond_map['perturbation']}",
                    "n_a": est["n_a"],
                    "n_b": est["n_b"],
                    "mean_a": est["mean_a"],
                    "mean_b": est["mean_b"],
                    "difference": diff,
                    "ci_low": est["ci_low"],
                    "ci_high": est["ci_high"],
                    "p_value": est["p_value"],
                    "pairing": "paired" if paired else "unpaired",
                    "method": est["method"],
                    "a_better": bool(sign * diff > 0),
                }
            )
    return pd.DataFrame(rows)


def paired_summary(
    differences: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, seed: int = 0, method: str = "t"
) -> pd.DataFrame:
    """Per backbone pair and metric: the mean per-condition difference with an interval over conditions.

    The conditions are the units: the interval is the paired t interval of the per-condition differences
    (``method="t"``, with its p-value), or a bootstrap over conditions (``bca``, ``percentile``).

    Returns
    -------
    pandas.DataFrame
        ``metric``, ``direction``, ``backbone_a``, ``backbone_b``, ``n_conditions``, ``mean_difference``,
        ``ci_low``, ``ci_high``, ``p_value``, ``method``, ``fraction_a_better``, ``level``.
    """
    rows: list[dict[str, Any]] = []
    if differences.empty:
        return pd.DataFrame(rows)
    for (metric, a, b), g in differences.groupby(["metric", "backbone_a", "backbone_b"], sort=False):
        d = finite_values(g["difference"])
        est = mean_interval(d, method, level, n_boot, keyed_rng(seed, metric, a, b))
        rows.append(
            {
                "metric": metric,
                "direction": METRICS[metric].direction,
                "backbone_a": a,
                "backbone_b": b,
                "n_conditions": int(d.size),
                "mean_difference": float(d.mean()) if d.size else np.nan,
                "ci_low": est.low,
                "ci_high": est.high,
                "p_value": est.p_value,
                "method": "paired t" if method == "t" else est.method,
                "fraction_a_better": float(g["a_better"].mean()),
                "level": level,
            }
        )
    return pd.DataFrame(rows)


def pareto_front(cost: Iterable[float], quality: Iterable[float], maximize: bool) -> np.ndarray:
    """Mask of the points no other point beats: no cheaper-or-equal point with better-or-equal quality.

    Parameters
    ----------
    cost
        Lower is better (e.g. parameters, seconds).
    quality
        The metric.
    maximize
        Whether higher ``quality`` is better.

    Returns
    -------
    numpy.ndarray
        Boolean mask; non-finite points are never on the front.
    """
    c = np.asarray(list(cost), dtype=np.float64)
    q = np.asarray(list(quality), dtype=np.float64)
    q = q if maximize else -q
    ok = np.isfinite(c) & np.isfinite(q)
    front = np.zeros(c.size, dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok.copy()
        others[i] = False
        dominated = others & (c <= c[i]) & (q >= q[i]) & ((c < c[i]) | (q > q[i]))
        front[i] = not dominated.any()
    return front


#: Optuna importance evaluators by name.
IMPORTANCE_EVALUATORS: tuple[str, ...] = ("fanova", "mean_decrease_impurity", "ped_anova")


def param_importances(study: optuna.Study, evaluator: str = "fanova", seed: int = 0) -> pd.DataFrame:
    """Hyperparameter importances of a single-objective study, by one of Optuna's evaluators.

    Parameters
    ----------
    study
        The study; its completed trials are used.
    evaluator
        ``fanova`` (default), ``mean_decrease_impurity`` or ``ped_anova``.

    Returns
    -------
    pandas.DataFrame
        ``param`` and ``importance`` (summing to 1), largest first; ``attrs['evaluator']`` names the evaluator.

    Raises
    ------
    ArchLabError
        An unknown evaluator, a multi-objective study, fewer than two completed trials, or no parameter that
        varies across them.
    """
    import optuna

    makers = {
        "fanova": lambda: optuna.importance.FanovaImportanceEvaluator(seed=seed),
        "mean_decrease_impurity": lambda: optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=seed),
        "ped_anova": lambda: optuna.importance.PedAnovaImportanceEvaluator(),
    }
    if evaluator not in makers:
        raise ArchLabError(f"unknown importance evaluator {evaluator!r}; choose one of {', '.join(makers)}")
    if len(study.directions) != 1:
        raise ArchLabError("importances need a single-objective study")
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2:
        raise ArchLabError(f"too few completed trials for importances ({len(done)}; need at least 2)")
    try:
        values = optuna.importance.get_param_importances(study, evaluator=makers[evaluator]())
    except (ValueError, RuntimeError) as exc:
        raise ArchLabError(f"cannot compute importances: {str(exc).splitlines()[0]}") from None
    if not values:
        raise ArchLabError("no hyperparameter varies across the completed trials; nothing to rank")
    out = pd.DataFrame({"param": list(values), "importance": [float(v) for v in values.values()]})
    out.attrs["evaluator"] = evaluator
    return out
