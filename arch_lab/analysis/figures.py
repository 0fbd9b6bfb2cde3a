"""Paper figures drawn from tidy tables: each is ``fig_*(table, ax=None, ...) -> Figure``.

Given an ``ax``, a function draws into it and returns its figure; without one it makes a new figure sized for a
two-column paper. Plotted point sets carry a ``gid`` (``points:<backbone>``, ``curve:<backbone>``,
``pareto_front``...) so tests and scripts can find them. Figures are plain :class:`matplotlib.figure.Figure`
objects (no pyplot state); save them with :func:`arch_lab.analysis.style.save_figure`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from arch_lab.analysis.stats import HEADLINE_METRICS, condition_means, pareto_front
from arch_lab.analysis.style import (
    CEILING_COLOR,
    CONTROL_COLOR,
    DOUBLE_COLUMN,
    FLOOR_COLOR,
    OBSERVED_COLOR,
    SINGLE_COLUMN,
    backbone_order,
    backbone_palette,
    paper_style,
)
from arch_lab.analysis.tidy import require_metric
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS

F = TypeVar("F", bound=Callable[..., Any])

#: Axis labels of cost columns.
COST_LABELS: dict[str, str] = {
    "parameter_count": "trainable parameters",
    "train_seconds": "training time (s)",
    "wall_seconds": "wall time (s)",
}


def _styled(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with paper_style():
            return fn(*args, **kwargs)

    return cast(F, wrapper)


def _figure_of(ax: Axes) -> Figure:
    """The figure ``ax`` is drawn in."""
    fig = ax.get_figure(root=True)
    if fig is None:
        raise ArchLabError("the Axes given belongs to no figure")
    return fig


def _axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return _figure_of(ax), ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _backbone_points(ax: Axes, x: pd.Series, y: pd.Series, backbone: str, color: Any) -> None:
    """One backbone's points, tagged ``points:<backbone>`` for tests and legends."""
    ax.scatter(
        x, y, s=12, color=color, edgecolors="white", linewidths=0.3, zorder=3, label=backbone, gid=f"points:{backbone}"
    )


def _panels(ax: Sequence[Axes] | None, n: int, size: tuple[float, float]) -> tuple[Figure, list[Axes]]:
    if ax is None:
        fig = Figure(figsize=size, layout="constrained")
        return fig, list(fig.subplots(1, n, squeeze=False)[0])
    axes = list(ax)
    if len(axes) != n:
        raise ArchLabError(f"this figure has {n} panels; got {len(axes)} Axes")
    return _figure_of(axes[0]), axes


def compact_number(value: float) -> str:
    """A tick label in one format for every axis: ``0.5``, ``20``, ``300``, ``1.5k``, ``20k``, ``3M``."""
    a = abs(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.3g}"


def _log_x(ax: Axes, x: np.ndarray) -> None:
    """Logarithmic x axis (symmetric-log with zeros), every tick labelled in :func:`compact_number`'s format;
    minor ticks (2 and 5 times a power of ten) are labelled too when the axis spans under 2 decades.
    """
    compact = FuncFormatter(lambda v, _: compact_number(v))
    if not (x > 0).all():
        ax.set_xscale("symlog", linthresh=1.0)
        ax.xaxis.set_major_formatter(compact)
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(compact)
    if np.log10(x.max() / x.min()) < 2.0:
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(compact)
    else:
        ax.xaxis.set_minor_formatter(NullFormatter())


#: How a split is named in labels.
SPLIT_WORDS = {"test": "test", "val": "validation", "train": "training"}


def metric_label(metric: str, prefix: str = "", *, wrap: bool = False) -> str:
    """A metric in words with its unit and which way is better, e.g. ``energy distance, genes (log expression;
    lower is better ↓)``.

    Parameters
    ----------
    metric
        A metric name (names outside :data:`arch_lab.metrics.info.METRICS` are spelled out as they are).
    prefix
        Put before the name, e.g. the split (:func:`split_prefix`).
    wrap
        Put the unit and direction on a second line (axis labels).
    """
    info = METRICS.get(metric)
    if info is None:
        return f"{prefix}{metric.replace('_', ' ')}"
    arrow = "↓" if info.direction == "minimize" else "↑"
    detail = "; ".join(x for x in (info.unit, f"{info.better} {arrow}") if x)
    return f"{prefix}{info.label or metric.replace('_', ' ')}{chr(10) if wrap else ' '}({detail})"


def split_prefix(table: pd.DataFrame) -> str:
    """``test split: `` for a table whose ``split`` column holds one split (``test/validation split: `` for
    several); empty without the column.
    """
    if "split" not in table.columns:
        return ""
    splits = sorted({str(v) for v in table["split"].dropna().unique()})
    return f"{'/'.join(SPLIT_WORDS.get(v, v) for v in splits)} split: " if splits else ""


def _numeric(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    out = df.copy()
    for c in cols:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out[np.isfinite(out[list(cols)]).all(axis=1)]


def _rotate(ax: Axes) -> None:
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")


def _reference_lines(ax: Axes, runs: pd.DataFrame, metric: str) -> bool:
    drawn = False
    for prefix, name, color, style in (
        ("floor", "floor (no change)", FLOOR_COLOR, "--"),
        ("ceiling", "ceiling (split half)", CEILING_COLOR, ":"),
    ):
        col = f"{prefix}_{metric}"
        if col in runs.columns:
            v = pd.to_numeric(runs[col], errors="coerce").to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                ax.axhline(float(v.mean()), color=color, linestyle=style, linewidth=0.8, label=name, gid=prefix)
                drawn = True
    return drawn


# ------------------------------------------------------------------------------------------- 1: by backbone
@_styled
def fig_metric_by_backbone(
    runs: pd.DataFrame,
    ax: Axes | None = None,
    *,
    metric: str = "energy_distance",
    references: bool = True,
    legend: bool = True,
    seed: int = 0,
) -> Figure:
    """Figure 1 (one panel): a metric per backbone, as a box plus every run (seed) as a point.

    Parameters
    ----------
    runs
        Runs table, one row per run.
    metric
        Metric column.
    references
        Draw the mean floor (``no_change``) and ceiling (``split_half``) as horizontal lines when known.
    legend
        Label the reference lines.
    seed
        Seed of the horizontal jitter of the points.
    """
    col = require_metric(runs, metric)
    data = _numeric(runs.assign(backbone=runs["backbone"].astype(str)), col)
    order = backbone_order(data["backbone"])
    palette = backbone_palette(order)
    fig, ax = _axes(ax, (0.42 * len(order) + 1.0, 2.0))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="vert: bool", category=DeprecationWarning)
        sns.boxplot(
            data=data,
            x="backbone",
            y=col,
            hue="backbone",
            order=order,
            hue_order=order,
            palette=palette,
            fill=False,
            showfliers=False,
            width=0.6,
            linewidth=0.8,
            legend=False,
            ax=ax,
        )
    rng = np.random.default_rng(seed)
    for i, b in enumerate(order):
        v = data.loc[data["backbone"] == b, col].to_numpy(dtype=np.float64)
        x = i + rng.uniform(-0.15, 0.15, v.size)
        ax.scatter(x, v, s=10, color=palette[b], edgecolors="white", linewidths=0.3, zorder=3, gid=f"points:{b}")
    if references and _reference_lines(ax, runs, metric) and legend:
        ax.legend(loc="best")
    ax.set_xlabel("")
    ax.set_ylabel(metric_label(metric, split_prefix(runs), wrap=True))
    _rotate(ax)
    return fig


@_styled
def fig_metrics_by_backbone(
    runs: pd.DataFrame,
    ax: Sequence[Axes] | None = None,
    *,
    metrics: Sequence[str] = HEADLINE_METRICS,
    references: bool = True,
) -> Figure:
    """Figure 1: one :func:`fig_metric_by_backbone` panel per metric (metrics without values are left out).

    ``ax``, when given, holds one Axes per panel.
    """
    usable = []
    for m in metrics:
        if m not in METRICS:
            require_metric(runs, m)
        if m in runs.columns and np.isfinite(pd.to_numeric(runs[m], errors="coerce")).any():
            usable.append(m)
    if not usable:
        raise ArchLabError(f"none of the metrics {list(metrics)} has values in these runs")
    fig, axes = _panels(ax, len(usable), (DOUBLE_COLUMN, 2.3))
    for i, (a, m) in enumerate(zip(axes, usable, strict=True)):
        fig_metric_by_backbone(runs, a, metric=m, references=references, legend=i == 0)
    return fig


# ----------------------------------------------------------------------------------------- 2: paired plot
@_styled
def fig_paired_conditions(
    per_condition: pd.DataFrame, ax: Axes | None = None, *, a: str, b: str, metric: str = "energy_distance"
) -> Figure:
    """Figure 2: backbone ``a`` against backbone ``b``, one point per held-out condition (mean over seeds).

    Points are coloured by the backbone that does better on the condition; the dashed line is the diagonal.
    """
    means = condition_means(per_condition, metric)
    for name in (a, b):
        if name not in means.columns:
            raise ArchLabError(f"backbone {name!r} not in the table; backbones are {', '.join(means.columns)}")
    both = means[[a, b]].dropna()
    if both.empty:
        raise ArchLabError(f"no condition was scored for both {a} and {b}")
    palette = backbone_palette([a, b])
    maximize = METRICS[metric].direction == "maximize"
    a_better = (both[a] > both[b]) if maximize else (both[a] < both[b])
    colors = [palette[a] if w else palette[b] for w in a_better]
    fig, ax = _axes(ax, (SINGLE_COLUMN * 0.62, SINGLE_COLUMN * 0.62))
    ax.scatter(both[a], both[b], s=12, c=colors, edgecolors="white", linewidths=0.3, zorder=3, gid="points:paired")
    lo, hi = float(np.nanmin(both.to_numpy())), float(np.nanmax(both.to_numpy()))
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    lims = (lo - pad, hi + pad)
    ax.plot(lims, lims, color=FLOOR_COLOR, linestyle="--", linewidth=0.7, zorder=1, gid="diagonal")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_aspect("equal")
    where = split_prefix(per_condition)
    ax.set_xlabel(f"{a}, {where}{metric_label(metric, wrap=True)}")
    ax.set_ylabel(f"{b}, {where}{metric_label(metric, wrap=True)}")
    ax.set_title(f"{a} better on {int(a_better.sum())} of {len(both)} conditions", fontsize="small", loc="left")
    return fig


# ---------------------------------------------------------------------------------------- 3: quality/cost
@_styled
def fig_quality_vs_cost(
    runs: pd.DataFrame, ax: Axes | None = None, *, metric: str = "energy_distance", cost: str = "parameter_count"
) -> Figure:
    """Figure 3 (one panel): a metric against a cost, every run a point coloured by backbone, the Pareto front marked.

    The x axis is logarithmic (symmetric-log when some runs cost 0, e.g. parameter-free baselines).
    """
    col = require_metric(runs, metric)
    if cost not in runs.columns:
        raise ArchLabError(f"unknown cost column {cost!r}; use one of {', '.join(COST_LABELS)}")
    data = _numeric(runs.assign(backbone=runs["backbone"].astype(str)), cost, col)
    if data.empty:
        raise ArchLabError(f"no run has both {cost} and {metric}")
    order = backbone_order(data["backbone"])
    palette = backbone_palette(order)
    fig, ax = _axes(ax, (SINGLE_COLUMN, 2.2))
    for b in order:
        d = data[data["backbone"] == b]
        _backbone_points(ax, d[cost], d[col], b, palette[b])
    front = data[pareto_front(data[cost], data[col], METRICS[metric].direction == "maximize")].sort_values(cost)
    ax.plot(
        front[cost],
        front[col],
        color="black",
        linestyle="--",
        linewidth=0.7,
        marker="o",
        markersize=6,
        markerfacecolor="none",
        markeredgewidth=0.7,
        drawstyle="steps-post",
        zorder=4,
        label="Pareto front",
        gid="pareto_front",
    )
    _log_x(ax, data[cost].to_numpy(dtype=np.float64))
    ax.set_xlabel(COST_LABELS.get(cost, cost))
    ax.set_ylabel(metric_label(metric, split_prefix(runs), wrap=True))
    ax.legend(loc="best")
    return fig


@_styled
def fig_quality_cost_panels(
    runs: pd.DataFrame,
    ax: Sequence[Axes] | None = None,
    *,
    metric: str = "energy_distance",
    costs: Sequence[str] = ("parameter_count", "train_seconds"),
) -> Figure:
    """Figure 3: :func:`fig_quality_vs_cost` against each cost that has values (``ax``: one Axes per panel)."""
    require_metric(runs, metric)
    usable = [c for c in costs if c in runs.columns and np.isfinite(pd.to_numeric(runs[c], errors="coerce")).any()]
    if not usable:
        raise ArchLabError(f"none of the costs {list(costs)} has values in these runs")
    fig, axes = _panels(ax, len(usable), (DOUBLE_COLUMN * 0.5 * len(usable), 2.3))
    for a, c in zip(axes, usable, strict=True):
        fig_quality_vs_cost(runs, a, metric=metric, cost=c)
    return fig


# ------------------------------------------------------------------------------------- 4: learning curves
@_styled
def fig_learning_curves(history: pd.DataFrame, ax: Axes | None = None, *, metric: str = "energy_distance") -> Figure:
    """Figure 4: a validation metric against training step per backbone: mean over runs with a marker at each
    validation, band of ± 1 s.d. over runs, the x axis from step 0.

    The floor (``no_change``) and ceiling (split half) of the same validation conditions are drawn as dashed and
    dotted lines when the history records them (``val_floor_<metric>``, ``val_ceiling_<metric>``).
    """
    if history.empty or "step" not in history.columns:
        raise ArchLabError("no training history in these runs (closed-form baselines keep none)")
    col = require_metric(history, metric, prefix="val_")
    data = _numeric(history.assign(backbone=history["backbone"].astype(str)), "step", col)
    agg = data.groupby(["backbone", "step"])[col].agg(["mean", "std"]).reset_index()
    order = backbone_order(agg["backbone"])
    palette = backbone_palette(order)
    fig, ax = _axes(ax, (SINGLE_COLUMN, 2.2))
    for b in order:
        d = agg[agg["backbone"] == b].sort_values("step")
        sd = d["std"].fillna(0.0)
        ax.fill_between(
            d["step"], d["mean"] - sd, d["mean"] + sd, color=palette[b], alpha=0.2, linewidth=0, gid=f"band:{b}"
        )
        ax.plot(d["step"], d["mean"], color=palette[b], marker="o", markersize=3, label=b, gid=f"curve:{b}")
    _reference_lines(
        ax, history.rename(columns={f"val_{p}_{metric}": f"{p}_{metric}" for p in ("floor", "ceiling")}), metric
    )
    ax.set_xlim(left=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(metric_label(metric, prefix="validation split: ", wrap=True))
    ax.legend(loc="best")
    return fig


# --------------------------------------------------------------------------------------- 5: sweep plots
@_styled
def fig_optimization_history(trials: pd.DataFrame, ax: Axes | None = None, *, split: str | None = None) -> Figure:
    """Figure 5a: each completed trial's objective (coloured by backbone) and the best value so far.

    ``split`` names the split the objective was scored on (the study's ``objective.split``) in the axis label.
    """
    if "value" not in trials.columns:
        raise ArchLabError("the optimisation history needs a single-objective study")
    done = _numeric(trials[trials["state"] == "complete"], "value").sort_values("trial")
    if done.empty:
        raise ArchLabError("the study has no completed trial with a value")
    maximize = str(trials["direction"].iloc[0]) == "maximize"
    backbones = done["backbone"].fillna("trial").astype(str) if "backbone" in done else pd.Series("trial", done.index)
    order = backbone_order(backbones)
    palette = backbone_palette(order)
    fig, ax = _axes(ax, (SINGLE_COLUMN, 2.2))
    for b in order:
        d = done[backbones == b]
        _backbone_points(ax, d["trial"], d["value"], b, palette[b])
    best = done["value"].cummax() if maximize else done["value"].cummin()
    ax.step(done["trial"], best, where="post", color="black", linewidth=0.8, label="best so far", gid="best_so_far")
    counts = trials["state"].value_counts()
    note = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("complete", "pruned", "fail") if counts.get(s, 0))
    ax.set_title(note, fontsize="small", loc="left")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    where = f"{SPLIT_WORDS.get(split, split)} split: " if split else ""
    better = "higher is better ↑" if maximize else "lower is better ↓"
    ax.set_ylabel(f"{where}objective\n({better})")
    ax.legend(loc="best")
    return fig


@_styled
def fig_param_importances(importances: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Figure 5b: hyperparameter importances as horizontal bars (largest on top)."""
    if importances.empty:
        raise ArchLabError("no hyperparameter importances to draw")
    d = importances.sort_values("importance")
    fig, ax = _axes(ax, (SINGLE_COLUMN, 0.3 + 0.22 * len(d)))
    bars = ax.barh(d["param"], d["importance"], color="#555555", height=0.6)
    for p in bars.patches:
        p.set_gid("importance")
    ax.set_xlabel(f"importance ({importances.attrs.get('evaluator', 'fANOVA')})")
    ax.set_xlim(0, max(1e-9, float(d["importance"].max())) * 1.1)
    return fig


@_styled
def fig_sweep_diagnostics(
    trials: pd.DataFrame,
    ax: Sequence[Axes] | None = None,
    *,
    importances: pd.DataFrame | None = None,
    split: str | None = None,
) -> Figure:
    """Figure 5: optimisation history beside the hyperparameter importances (history alone without them).

    ``ax``, when given, holds one Axes per panel; ``split`` is the objective's split.
    """
    n = 2 if importances is not None and not importances.empty else 1
    fig, axes = _panels(ax, n, (DOUBLE_COLUMN * 0.5 * n, 2.3))
    fig_optimization_history(trials, ax=axes[0], split=split)
    if n == 2:
        fig_param_importances(importances, ax=axes[1])
    return fig


# ------------------------------------------------------------------------------------------ 6: cells PCA
@_styled
def fig_cells_pca(cells: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Figure 6: generated and observed cells on the observed cells' principal components.

    Without ``ax`` there is one panel per (backbone, condition): rows are backbones, columns conditions. With
    ``ax`` every backbone and condition is overlaid.
    """
    if cells.empty:
        raise ArchLabError("no cells to draw")
    gen = cells[cells["source"] == "generated"]
    order = backbone_order(gen["backbone"].astype(str).unique())
    palette = backbone_palette(order)
    conds = list(dict.fromkeys(cells["condition"]))
    if ax is None:
        width = min(DOUBLE_COLUMN, 1.7 * len(conds) + 0.4)
        rows: list[str | None] = [*order] or [None]
        fig = Figure(figsize=(width, 1.6 * len(rows) + 0.5), layout="constrained")
        grid = fig.subplots(len(rows), len(conds), squeeze=False, sharex=True, sharey=True)
        panels = [(grid[i, j], [b] if b else [], [c], i, j) for i, b in enumerate(rows) for j, c in enumerate(conds)]
    else:
        fig, panels = _figure_of(ax), [(ax, order, conds, 0, 0)]
    evr = cells.attrs.get("explained_variance_ratio", [np.nan, np.nan])
    for a, bs, cs, i, j in panels:
        sub = cells[cells["condition"].isin(cs)]
        for b in bs:  # generated cells at the bottom, half transparent
            d = sub[(sub["source"] == "generated") & (sub["backbone"] == b)]
            if not d.empty:
                a.scatter(
                    d["pc1"],
                    d["pc2"],
                    s=4,
                    color=palette[b],
                    alpha=0.45,
                    linewidths=0,
                    zorder=2,
                    rasterized=True,
                    gid=f"points:generated:{b}",
                )
        d = sub[sub["source"] == "observed"]
        if not d.empty:
            a.scatter(
                d["pc1"], d["pc2"], s=4, color=OBSERVED_COLOR, alpha=0.6, linewidths=0, zorder=3, rasterized=True,
                gid="points:observed",
            )  # fmt: skip
        d = sub[sub["source"] == "control"]
        if not d.empty:  # rings on top: visible wherever generated cells cover them
            a.scatter(
                d["pc1"], d["pc2"], s=6, facecolors="none", edgecolors=CONTROL_COLOR, linewidths=0.5, zorder=4,
                rasterized=True, gid="points:control",
            )  # fmt: skip
        if i == 0 and len(cs) == 1:
            a.set_title(cs[0], fontsize="small")
        row_name = f"{bs[0]}\n" if ax is None and j == 0 and bs else ""
        a.set_ylabel(f"{row_name}PC2 ({100 * evr[1]:.0f}%)" if j == 0 else "")
        a.set_xlabel(f"PC1 ({100 * evr[0]:.0f}%)" if ax is not None or i == len(panels) // len(conds) - 1 else "")
    handles = [
        Line2D([], [], marker="o", linestyle="", color=OBSERVED_COLOR, label="observed"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="none", color=CONTROL_COLOR, label="control"),
    ]
    handles += [Line2D([], [], marker="o", linestyle="", color=palette[b], label=f"generated: {b}") for b in order]
    split = cells.attrs.get("split")
    (fig if ax is None else ax).legend(
        handles=handles,
        loc="outside lower center" if ax is None else "best",
        ncols=min(4, len(handles)),
        title=f"cells of the {SPLIT_WORDS.get(split, split)} split" if split else None,
    )
    return fig


# ------------------------------------------------------------------------------------------ 7: gene logFC
@_styled
def fig_gene_logfc(genes: pd.DataFrame, ax: Axes | None = None, *, n_labels: int = 6) -> Figure:
    """Figure 7: per-gene logFC, predicted against observed, the ``n_labels`` top DE genes labelled.

    Without ``ax`` there is one panel per backbone; with ``ax`` the backbones are overlaid. Several runs of a
    backbone are averaged per gene.
    """
    if genes.empty:
        raise ArchLabError("no genes to draw")
    order = backbone_order(genes["backbone"].astype(str).unique())
    palette = backbone_palette(order)
    if ax is None:
        fig = Figure(figsize=(min(DOUBLE_COLUMN, 2.0 * len(order) + 0.3), 2.2), layout="constrained")
        panels = list(
            zip(
                fig.subplots(1, len(order), squeeze=False, sharex=True, sharey=True)[0],
                [[b] for b in order],
                strict=True,
            )
        )
    else:
        fig, panels = _figure_of(ax), [(ax, order)]
    per_gene = (
        genes.groupby(["backbone", "gene"], sort=False)
        .agg(
            logfc_observed=("logfc_observed", "first"),
            logfc_predicted=("logfc_predicted", "mean"),
            de_rank=("de_rank", "first"),
        )
        .reset_index()
    )
    lo = float(np.nanmin(per_gene[["logfc_observed", "logfc_predicted"]].to_numpy()))
    hi = float(np.nanmax(per_gene[["logfc_observed", "logfc_predicted"]].to_numpy()))
    pad = 0.05 * (hi - lo) if hi > lo else 0.1
    lims = (lo - pad, hi + pad)
    split = genes.attrs.get("split")
    title = str(genes["condition"].iloc[0]) + (f" ({SPLIT_WORDS.get(split, split)} split)" if split else "")
    for a, bs in panels:
        a.plot(lims, lims, color=FLOOR_COLOR, linestyle="--", linewidth=0.7, zorder=1, gid="diagonal")
        for b in bs:
            d = per_gene[per_gene["backbone"] == b]
            a.scatter(
                d["logfc_observed"],
                d["logfc_predicted"],
                s=6,
                color=palette[b],
                alpha=0.7,
                linewidths=0,
                zorder=2,
                label=b,
                gid=f"points:{b}",
            )
            top = d[d["de_rank"] <= n_labels]
            a.scatter(
                top["logfc_observed"],
                top["logfc_predicted"],
                s=14,
                facecolors="none",
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
                gid=f"top_de:{b}",
            )
            if b == bs[0]:
                for k, row in enumerate(top.sort_values("logfc_predicted").itertuples(index=False)):
                    a.annotate(
                        row.gene,
                        (row.logfc_observed, row.logfc_predicted),
                        xytext=(3, 2) if k % 2 else (-3, -6),
                        ha="left" if k % 2 else "right",
                        textcoords="offset points",
                        fontsize=5,
                        gid="gene_label",
                    )
            r = np.corrcoef(d["logfc_observed"], d["logfc_predicted"])[0, 1] if len(d) > 1 else np.nan
            if len(bs) == 1:
                a.text(0.03, 0.97, f"r = {r:.2f}", transform=a.transAxes, va="top", fontsize="small")
        a.set_xlim(lims)
        a.set_ylim(lims)
        a.set_title(bs[0] if len(bs) == 1 else title, fontsize="small")
        a.set_xlabel("observed log2 fold change")
        a.set_ylabel("predicted log2 fold change")
    if ax is None:
        fig.suptitle(title, fontsize="medium")
    else:
        ax.legend(loc="lower right")
    return fig


# -------------------------------------------------------------------------------------- 8: guidance sweep
@_styled
def fig_guidance_sweep(
    runs: pd.DataFrame, ax: Axes | None = None, *, x_metric: str = "energy_distance", y_metric: str = "deg_recall"
) -> Figure:
    """Figure 8: distributional fit against DEG recall as the guidance scale varies (mean over seeds per scale).

    Each backbone is a line through its guidance values in increasing order; points are labelled with the scale.
    """
    xc, yc = require_metric(runs, x_metric), require_metric(runs, y_metric)
    if "guidance" not in runs.columns:
        raise ArchLabError("the runs table has no 'guidance' column")
    data = _numeric(runs.assign(backbone=runs["backbone"].astype(str)), "guidance", xc, yc)
    if data["guidance"].nunique() < 2:
        values = sorted(data["guidance"].unique())
        raise ArchLabError(f"flow.guidance does not vary across these runs (values: {values}); nothing to sweep")
    agg = data.groupby(["backbone", "guidance"])[[xc, yc]].mean().reset_index()
    order = [b for b in backbone_order(agg["backbone"]) if agg.loc[agg["backbone"] == b, "guidance"].nunique() > 1]
    if not order:
        raise ArchLabError("no backbone was run at more than one guidance scale")
    palette = backbone_palette(order)
    fig, ax = _axes(ax, (SINGLE_COLUMN, 2.4))
    for b in order:
        d = agg[agg["backbone"] == b].sort_values("guidance")
        ax.plot(d[xc], d[yc], color=palette[b], marker="o", markersize=3.5, label=b, gid=f"curve:{b}")
        for row in d.itertuples(index=False):
            ax.annotate(
                f"{row.guidance:g}",
                (getattr(row, xc), getattr(row, yc)),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=5,
                color=palette[b],
                gid="guidance_label",
            )
    where = split_prefix(runs)
    ax.set_xlabel(metric_label(x_metric, where))
    ax.set_ylabel(metric_label(y_metric, where, wrap=True))
    ax.legend(loc="best")
    return fig
