"""The probe studies' figure: (a) a forest of U-Net-minus-comparison gaps, (b) the gap against synthetic
locality, (c) the absolute metric per arm and task, and the whole panel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from arch_lab.analysis.figures import metric_label
from arch_lab.analysis.gaps import finite_values, reference_value
from arch_lab.analysis.style import (
    BACKBONE_COLORS,
    CEILING_COLOR,
    DOUBLE_COLUMN,
    FLOOR_COLOR,
    paper_style,
)
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS

from .comparisons import ordered_arms
from .results import PROBE_KINDS, task_label
from .tables import GAP_METRICS, no_negative_zero

_GAP_AXIS = {
    "minimize": "< 0: U-Net better",
    "maximize": "> 0: U-Net better",
}
#: Arms that share a backbone with another arm of the same figure but need their own colour.
_ARM_COLORS = {"gt_latent_matched": "#CC79A7"}


def _arm_color(arm: str, network: str | None = None) -> str:
    if arm in _ARM_COLORS:
        return _ARM_COLORS[arm]
    for name in (arm, network or ""):
        if name in BACKBONE_COLORS:
            return BACKBONE_COLORS[name]
    for name in BACKBONE_COLORS:
        if arm.startswith(name) or (network or "").startswith(name):
            return BACKBONE_COLORS[name]
    return "#7F7F7F"


def forest_rows(gaps: pd.DataFrame) -> pd.DataFrame:
    """One row per primary comparison (metrics side by side), in probe, task, setting order."""
    g = gaps[gaps["primary"].astype(bool)].copy()
    if g.empty:
        return g
    g["row_label"] = [
        " ".join(x for x in (task_label(t), s) if x) + f"  {c}"
        for t, s, c in zip(g["task"], g["setting"], g["comparison"], strict=True)
    ]
    kinds = {k: i for i, k in enumerate(PROBE_KINDS)}
    g["_k"] = g["kind"].map(kinds)
    g["_p"] = g["probe"].map({p: i for i, p in enumerate(dict.fromkeys(g["probe"]))})
    g["_loc"] = g["locality"].fillna(-1.0)
    g["_r"] = np.arange(len(g))
    first = g.groupby(["probe", "row_label"])["_r"].transform("min")
    g["_r"] = first
    return g.sort_values(["_k", "_p", "_r"], kind="stable")


def fig_gap_forest(
    gaps: pd.DataFrame,
    axes: Sequence[Axes] | None = None,
    *,
    metrics: Sequence[str] = GAP_METRICS,
    normalised: bool = False,
) -> Figure:
    """Panel (a): every primary comparison's gap with its interval, one column per metric, grouped by probe.

    Bars: the 95% paired t interval (Welch when the arms do not share seeds). Filled markers: significant after
    Holm correction within the gap's family; open: not; a cross: an arm with fewer than 2 seeds (no interval).
    Each metric's title says whether it is the primary metric or a secondary one. Marker colour: the comparison arm's backbone. ``normalised`` plots the gap in floor-to-ceiling units
    (positive = the first arm better for every metric).
    """
    rows = forest_rows(gaps)
    metrics = [m for m in metrics if m in set(rows.get("metric", []))]
    if rows.empty or not metrics:
        raise ArchLabError("no gap to plot: no primary comparison has values")
    labels = list(dict.fromkeys(zip(rows["probe"], rows["row_label"], strict=True)))
    y: dict[tuple[str, str], float] = {}
    headers: list[tuple[float, str]] = []
    pos, current = 0.0, None
    for probe, label in labels:
        if probe != current:
            if current is not None:
                pos += 0.6
            headers.append((pos, probe))
            pos += 1.0
            current = probe
        y[(probe, label)] = pos
        pos += 1.0
    height = max(2.5, 0.105 * pos + 0.8)
    with paper_style():
        if axes is None:
            fig = Figure(figsize=(DOUBLE_COLUMN, height), layout="constrained")
            axes = list(fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0])
        else:
            fig = axes[0].get_figure(root=True)
        for j, (ax, m) in enumerate(zip(axes, metrics, strict=True)):
            sub = rows[rows["metric"] == m]
            for rec in sub.to_dict("records"):
                yy = y[(rec["probe"], rec["row_label"])]
                x, lo, hi = (
                    (rec["norm_gap"], rec["norm_ci_low"], rec["norm_ci_high"])
                    if normalised
                    else (rec["gap"], rec["ci_low"], rec["ci_high"])
                )
                if not np.isfinite(x):
                    continue
                color = _arm_color(rec["arm_b"], rec["network_b"])
                if np.isfinite(lo) and np.isfinite(hi):
                    ax.plot([lo, hi], [yy, yy], color=color, linewidth=0.9, solid_capstyle="butt", zorder=2)
                    face = color if rec.get("significant_holm", rec["excludes_zero"]) else "white"
                    ax.scatter([x], [yy], s=11, marker="o", facecolors=face, edgecolors=color, linewidths=0.7, zorder=3)
                else:
                    ax.scatter([x], [yy], s=14, marker="x", color=color, linewidths=0.8, zorder=3)
            ax.axvline(0.0, color="#555555", linewidth=0.6, zorder=1)
            for h, _ in headers[1:]:
                ax.axhline(h - 0.8, color="#DDDDDD", linewidth=0.5, zorder=0)
            short = m.replace("_distance", "").replace("_", " ")
            if normalised:
                ax.set_xlabel(f"Δ {short}\n(U-Net − comparison,\nfloor→ceiling units)\n> 0: U-Net better")
            else:
                ax.set_xlabel(f"Δ {short}\n(U-Net − comparison)\n{_GAP_AXIS[METRICS[m].direction]}")
            roles = set(sub["role"]) if "role" in sub.columns else set()
            ax.set_title(metric_label(m) + (f" ({roles.pop()})" if len(roles) == 1 else ""))
            ax.grid(axis="x", color="#EEEEEE", linewidth=0.5, zorder=0)
            if j == 0:
                ticks = list(y.values()) + [h for h, _ in headers]
                names = [lab for (_, lab) in y] + [p.replace("_", " ") for _, p in headers]
                ax.set_yticks(ticks, names)
                n_rows = len(y)
                for t in ax.get_yticklabels()[n_rows:]:
                    t.set_fontweight("bold")
                    t.set_fontsize(6.5)
                for t in ax.get_yticklabels()[:n_rows]:
                    t.set_fontsize(5.5)
            ax.set_ylim(pos - 0.2, -0.8)
            ax.tick_params(axis="y", length=0)
    return fig


def fig_gap_vs_locality(
    gaps: pd.DataFrame,
    axes: Sequence[Axes] | None = None,
    *,
    metrics: Sequence[str] = GAP_METRICS,
    contiguity: pd.DataFrame | None = None,
) -> Figure:
    """Panel (b): the backbones study's gap against synthetic locality, mean and interval band per comparison arm.

    The top axis gives each locality's program contiguity when ``contiguity`` (:func:`locality_contiguity`) is
    given.
    """
    sub = gaps[(gaps["kind"] == "backbones") & gaps["locality"].notna() & gaps["primary"].astype(bool)]
    metrics = [m for m in metrics if m in set(sub["metric"])]
    if sub.empty or not metrics:
        raise ArchLabError("no synthetic backbones gaps with a locality to plot")
    with paper_style():
        if axes is None:
            fig = Figure(figsize=(DOUBLE_COLUMN * 0.5, 1.9), layout="constrained")
            axes = list(fig.subplots(1, len(metrics), squeeze=False)[0])
        else:
            fig = axes[0].get_figure(root=True)
        for ax, m in zip(axes, metrics, strict=True):
            d = sub[sub["metric"] == m]
            for arm, g in d.groupby("arm_b", sort=False):
                g = g.sort_values("locality")
                color = _arm_color(str(arm), str(g["network_b"].iloc[0]))
                x = g["locality"].to_numpy(dtype=float)
                ax.fill_between(x, g["ci_low"], g["ci_high"], color=color, alpha=0.2, linewidth=0, gid=f"band:{arm}")
                ax.plot(x, g["gap"], color=color, marker="o", markersize=2.5, label=f"U-Net − {arm}", gid=f"gap:{arm}")
            ax.axhline(0.0, color="#555555", linewidth=0.6)
            ax.set_xlabel("synthetic locality (0 scattered … 1 contiguous)")
            ax.set_ylabel(f"Δ {m.replace('_', ' ')} ({_GAP_AXIS[METRICS[m].direction]})")
            locs = sorted(d["locality"].unique())
            ax.set_xticks(locs, [f"{v:g}" for v in locs])
            if contiguity is not None and not contiguity.empty:
                cmap = dict(zip(contiguity["locality"].round(6), contiguity["contiguity"], strict=True))
                top = ax.secondary_xaxis("top")
                shown = [v for v in locs if round(v, 6) in cmap]
                top.set_xticks(shown, [f"{no_negative_zero(cmap[round(v, 6)]):.2f}" for v in shown])
                top.set_xlabel("program contiguity", fontsize=6)
                top.tick_params(labelsize=5.5)
        axes[0].legend(loc="best", fontsize=5.5)
    return fig


def _absolute_facets(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame, list[float | None]]]:
    """One facet per backbones task: its name, its runs and its localities (``[None]`` for real data)."""
    bb = runs[runs["kind"] == "backbones"]
    facets: list[tuple[str, pd.DataFrame, list[float | None]]] = []
    for task, g in bb.groupby("task", sort=False):
        locs = sorted(g["locality"].dropna().unique())
        facets.append((task_label(str(task)), g, [float(v) for v in locs] if locs else [None]))
    return facets


def fig_absolute_by_task(
    runs: pd.DataFrame, fig: Figure | SubFigure | None = None, *, metrics: Sequence[str] = GAP_METRICS, seed: int = 0
) -> Figure:
    """Panel (c): each backbones study's metric per arm, every seed a point, the mean as a bar, floor (dashed) and
    ceiling (dotted) lines.

    One column per task, one row per metric; on synthetic data the arms sit side by side at each locality.
    """
    facets = _absolute_facets(runs)
    metrics = [m for m in metrics if m in runs.columns]
    if not facets or not metrics:
        raise ArchLabError("no backbones study among the results: nothing for the absolute panel")
    rng = np.random.default_rng(seed)
    all_arms = ordered_arms(runs[runs["kind"] == "backbones"])
    widths = [max(0.9 * len(locs), 1.2) if locs != [None] else 1.2 for _, _, locs in facets]
    with paper_style():
        root = (
            fig if fig is not None else Figure(figsize=(DOUBLE_COLUMN, 1.5 * len(metrics) + 0.5), layout="constrained")
        )
        axs = root.subplots(len(metrics), len(facets), squeeze=False, gridspec_kw={"width_ratios": widths})
        handles: dict[str, Any] = {}
        for i, m in enumerate(metrics):
            for j, (name, g, locs) in enumerate(facets):
                ax = axs[i][j]
                arms = [a for a in all_arms if a in set(g["arm"])]
                step = 0.8 / max(len(arms), 1)
                ticks, tick_labels = [], []
                for gi, loc in enumerate(locs):
                    cell = g if loc is None else g[np.isclose(g["locality"], loc)]
                    for k, arm in enumerate(arms):
                        x0 = gi + (k - (len(arms) - 1) / 2) * step
                        if loc is None:
                            ticks.append(x0)
                            tick_labels.append(arm.replace("_matched", ""))
                        v = finite_values(cell.loc[cell["arm"] == arm, m])
                        if v.size == 0:
                            continue
                        net = str(cell.loc[cell["arm"] == arm, "network"].iloc[0])
                        color = _arm_color(arm, net)
                        ax.scatter(
                            x0 + rng.uniform(-0.25, 0.25, v.size) * step, v, s=5, color=color, edgecolors="white",
                            linewidths=0.3, zorder=3, gid=f"points:{arm}",
                        )  # fmt: skip
                        handles[arm] = ax.plot(
                            [x0 - 0.4 * step, x0 + 0.4 * step], [v.mean()] * 2, color=color, linewidth=1.3, zorder=2
                        )[0]
                    if loc is not None:
                        ticks.append(gi)
                        tick_labels.append(f"{loc:g}")
                fl, ce = reference_value([g], f"floor_{m}"), reference_value([g], f"ceiling_{m}")
                if np.isfinite(fl):
                    handles["floor (no change)"] = ax.axhline(fl, color=FLOOR_COLOR, linestyle="--", linewidth=0.7)
                if np.isfinite(ce):
                    handles["ceiling (split half)"] = ax.axhline(ce, color=CEILING_COLOR, linestyle=":", linewidth=0.8)
                ax.set_xlim(-0.5, len(locs) - 0.5)
                last = i == len(metrics) - 1
                ax.set_xticks(ticks, tick_labels if last else [])
                if last and locs == [None]:
                    for t in ax.get_xticklabels():
                        t.set_rotation(40)
                        t.set_horizontalalignment("right")
                if last and locs != [None]:
                    ax.set_xlabel("locality", fontsize=6)
                ax.tick_params(axis="both", labelsize=5.5)
                if i == 0:
                    ax.set_title(name, fontsize=7)
                if j == 0:
                    ax.set_ylabel(metric_label(m))
        keys = [a for a in all_arms if a in handles] + [k for k in handles if k not in all_arms]
        root.legend([handles[k] for k in keys], keys, loc="outside lower center", ncols=min(len(keys), 6), fontsize=5.5)
    return root if isinstance(root, Figure) else root.get_figure(root=True)  # type: ignore[return-value]


def fig_why_unet(
    runs: pd.DataFrame,
    gaps: pd.DataFrame,
    *,
    metrics: Sequence[str] = GAP_METRICS,
    contiguity: pd.DataFrame | None = None,
) -> Figure:
    """The whole panel: (a) the forest of gaps on the left, (b) the gap against locality and (c) the absolute
    metrics per task on the right; a panel the data cannot support is left out."""
    n_rows = len(forest_rows(gaps)) // max(len(metrics), 1)
    height = max(5.0, 0.11 * n_rows + 2.0)
    with paper_style():
        fig = Figure(figsize=(DOUBLE_COLUMN * 1.7, height), layout="constrained")
        left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.1])
        if forest_rows(gaps).empty:
            left.text(0.5, 0.5, "no comparison yet:\nboth arms of a pair are needed", ha="center", va="center")
        else:
            fig_gap_forest(gaps, list(left.subplots(1, len(metrics), sharey=True, squeeze=False)[0]), metrics=metrics)
        left.suptitle(
            "(a) U-Net − comparison, 95% paired t CI over seeds\n"
            "filled: significant after Holm correction · open: not · ×: an arm with < 2 seeds (no CI)",
            fontsize=7,
            x=0.02,
            ha="left",
        )
        has_loc = not gaps[(gaps["kind"] == "backbones") & gaps["locality"].notna()].empty
        has_bb = (runs["kind"] == "backbones").any()
        parts = [p for p, ok in (("b", has_loc), ("c", has_bb)) if ok]
        if parts:
            subs = right.subfigures(
                len(parts), 1, height_ratios=[1.0 if p == "b" else 1.6 for p in parts], squeeze=False
            )
            for sf, p in zip(subs[:, 0], parts, strict=True):
                if p == "b":
                    fig_gap_vs_locality(
                        gaps,
                        list(sf.subplots(1, len(metrics), squeeze=False)[0]),
                        metrics=metrics,
                        contiguity=contiguity,
                    )
                    sf.suptitle(
                        "(b) gap against gene-order locality (synthetic, backbones study)",
                        fontsize=8,
                        x=0.02,
                        ha="left",
                    )
                else:
                    fig_absolute_by_task(runs, sf, metrics=metrics)
                    sf.suptitle(
                        "(c) test metric per arm (backbones studies); dashed: floor, dotted: ceiling",
                        fontsize=8,
                        x=0.02,
                        ha="left",
                    )
    return fig
