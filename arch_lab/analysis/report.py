"""``arch-lab report``: every figure the data supports, summary and comparison tables, and a ``report.md``.

The comparison tables (:mod:`~arch_lab.analysis.comparisons`) pair the backbones by seed and by held-out
condition, give t intervals and Holm-adjusted p-values, and put the study's pre-declared primary metric
(:mod:`~arch_lab.analysis.roles`) first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from arch_lab.analysis import cells as cells_mod
from arch_lab.analysis import figures as figs
from arch_lab.analysis.comparisons import study_comparisons
from arch_lab.analysis.gaps import reference_standing
from arch_lab.analysis.roles import MetricRoles, resolve_roles
from arch_lab.analysis.stats import (
    HEADLINE_METRICS,
    paired_differences,
    paired_summary,
    param_importances,
    reference_summary,
    summarize,
)
from arch_lab.analysis.style import backbone_order, save_figure
from arch_lab.analysis.tidy import load_history, load_per_condition, load_runs, require_metric, study_runs
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS
from arch_lab.sweeps.study import load_study, trials_table

if TYPE_CHECKING:
    import optuna

_PathLike = str | Path


@dataclass
class Sources:
    """What a list of report arguments resolved to."""

    runs: pd.DataFrame
    studies: list[optuna.Study] = field(default_factory=list)
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class Artifact:
    """One written figure or table."""

    name: str
    caption: str
    files: list[Path]


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    out: Path
    path: Path
    backbones: list[str]
    figures: list[Artifact] = field(default_factory=list)
    tables: list[Artifact] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_sources(
    sources: _PathLike | Sequence[_PathLike], storage: str | None = None, base_dir: _PathLike | None = None
) -> Sources:
    """Resolve report arguments into one runs table (and the studies' trials).

    Parameters
    ----------
    sources
        Each a run directory, a folder of run directories, or a study (name, storage URL, ``URL#NAME`` or a
        ``.db`` file; see :func:`arch_lab.sweeps.study.load_study`).
    storage
        Storage URL for bare study names (an existing directory is still read as runs).
    base_dir
        Folder against which a study's relative run directories are resolved.

    Raises
    ------
    ArchLabError
        A source that cannot be resolved, or no completed run at all.
    """
    items = [sources] if isinstance(sources, str | Path) else list(sources)
    if not items:
        raise ArchLabError("give at least one run directory, folder of runs, or study")
    study_frames, run_frames, trial_frames, studies = [], [], [], []
    for item in items:
        if Path(item).is_dir():
            run_frames.append(load_runs([item]))
            continue
        study = load_study(item, storage)
        studies.append(study)
        trial_frames.append(trials_table(study))
        study_frames.append(study_runs(study, base_dir))
    frames = [f for f in study_frames + run_frames if not f.empty]
    if not frames:
        raise ArchLabError(f"no completed run in {', '.join(map(str, items))}")
    runs = pd.concat(frames, ignore_index=True).drop_duplicates("run_dir", keep="first").reset_index(drop=True)
    trials = pd.concat(trial_frames, ignore_index=True) if trial_frames else pd.DataFrame()
    return Sources(runs, studies, trials)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _fmt(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3g} [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) else f"{mean:.3g}"


def _fmt_p(p: float) -> str:
    return "–" if not np.isfinite(p) else f"{p:.2g}" if p >= 1e-3 else "<0.001"


def best_runs(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The best run of each backbone on ``metric``, within the task with the most runs."""
    experiment = runs["experiment"].mode().iloc[0]
    part = runs[(runs["experiment"] == experiment) & np.isfinite(pd.to_numeric(runs[metric], errors="coerce"))]
    ascending = METRICS[metric].direction == "minimize"
    best = part.sort_values([metric, "run_dir"], ascending=[ascending, True]).drop_duplicates("backbone")
    order = {b: i for i, b in enumerate(backbone_order(best["backbone"]))}
    return best.sort_values("backbone", key=lambda s: s.map(order))


def report_split(runs: pd.DataFrame) -> str:
    """The split the runs scored (``eval.split``): ``test``, ``val``, or ``test/val`` when they differ."""
    splits = sorted({str(v) for v in runs["split"].dropna().unique()}) if "split" in runs.columns else []
    return "/".join(splits) if splits else "unknown"


def one_parameter_grid(study: optuna.Study) -> str | None:
    """The parameter's name when the study's completed trials cover every choice of a single categorical
    parameter and nothing else varies (a grid such as the demo's three backbones); None otherwise.
    """
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    dists: dict = {}
    for t in done:
        dists.update(t.distributions)
    if len(dists) != 1:
        return None
    ((name, dist),) = dists.items()
    if not isinstance(dist, CategoricalDistribution):
        return None
    return name if {t.params.get(name) for t in done} == set(dist.choices) else None


def standing_table(runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Each backbone against the floor and the ceiling its own runs measured, per metric
    (:func:`arch_lab.analysis.gaps.reference_standing`), for metrics with floor and ceiling columns.
    """
    rows = []
    for m in metrics:
        if not {m, f"floor_{m}", f"ceiling_{m}"} <= set(runs.columns):
            continue
        for b in backbone_order(runs["backbone"].astype(str)):
            part = runs[runs["backbone"].astype(str) == b]
            value, floor, ceiling = (pd.to_numeric(part[c], errors="coerce") for c in (m, f"floor_{m}", f"ceiling_{m}"))
            est = reference_standing(value, floor, ceiling, direction=METRICS[m].direction)
            if est["n"]:
                rows.append({"metric": m, "backbone": b, "direction": METRICS[m].direction, **est})
    return pd.DataFrame(rows)


def _standing_sentence(row: dict) -> str:
    """One backbone against the floor and the ceiling, in words."""
    runs = "1 run" if row["n"] == 1 else f"{row['n']} runs"
    floor = {
        "better": "better than the floor (no change): its paired 95% interval excludes it",
        "worse": "worse than the floor: predicting no change does better",
        "within noise": "not distinguishable from the floor: the paired 95% interval includes it",
        "better (one run)": "better than the floor (one run, no interval)",
        "worse (one run)": "worse than the floor (one run, no interval)",
    }.get(row["floor_verdict"], f"{row['floor_verdict']} against the floor")
    ceiling = {
        "better": "beyond the ceiling (split half), which is itself noisy",
        "worse": "short of the ceiling (split half)",
        "within noise": "as close to the observed cells as the ceiling (split half), within noise",
        "better (one run)": "beyond the ceiling (one run)",
        "worse (one run)": "short of the ceiling (one run)",
    }.get(row["ceiling_verdict"], f"{row['ceiling_verdict']} against the ceiling")
    text = (
        f"- **{row['backbone']}** ({runs}): {row['mean']:.3g} against the floor's {row['floor']:.3g} and the "
        f"ceiling's {row['ceiling']:.3g}; {floor}; {ceiling}"
    )
    score = row["normalised"]
    if np.isfinite(score) and 0 <= score <= 1.2:
        text += f"; it covers {score:.0%} of the way from the floor to the ceiling"
    elif np.isfinite(score):
        text += f"; on the floor-to-ceiling scale (0 at the floor, 1 at the ceiling) it scores {score:.3g}"
    return text + "."


def _standing_markdown(standing: pd.DataFrame, metric: str, split: str) -> list[str]:
    part = standing[standing["metric"] == metric] if not standing.empty else standing
    if part.empty:
        return []
    label = METRICS[metric].label or metric.replace("_", " ")
    lines = [
        "",
        "## Against the floor and the ceiling",
        "",
        f"Primary metric `{metric}` ({label}; {METRICS[metric].better}) on the {split} split, each backbone against the floor (`no_change`: the source "
        "control cells as the prediction) and the ceiling (half of the observed cells scored against the other "
        "half) measured by its own runs; differences are paired by run (`tables/standing.csv` has every metric).",
        "",
    ]
    lines += [_standing_sentence(r) for r in part.to_dict("records")]
    if part["range_within_noise"].any():
        lines += [
            "",
            "On this task the floor and the ceiling are within noise of each other for this metric: no method can "
            "show a real gain over predicting no change here.",
        ]
    return lines


def _summary_markdown(summary: pd.DataFrame, references: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    head = "| backbone | n | " + " | ".join(figs.metric_label(m) for m in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    for b in backbone_order(summary["backbone"].astype(str)):
        s = summary[summary["backbone"] == b].set_index("metric")
        n = int(s["n"].max()) if not s.empty else 0
        cells = [_fmt(*s.loc[m, ["mean", "ci_low", "ci_high"]]) if m in s.index else "–" for m in metrics]
        lines.append(f"| {b} | {n} | " + " | ".join(cells) + " |")
    for ref, label in (("no_change", "floor (no change)"), ("split_half", "ceiling (split half)")):
        r = references[references["reference"] == ref].set_index("metric")
        if not r.empty:
            cells = [_fmt(*r.loc[m, ["mean", "ci_low", "ci_high"]]) if m in r.index else "–" for m in metrics]
            lines.append(f"| *{label}* | {int(r['n'].max())} | " + " | ".join(cells) + " |")
    return lines


def build_report(
    sources: _PathLike | Sequence[_PathLike],
    out: _PathLike,
    metric: str | None = None,
    storage: str | None = None,
    conditions: Sequence[str] | None = None,
    importance: str = "fanova",
    n_boot: int = 2000,
    seed: int = 0,
) -> Report:
    """Write every figure the data supports, the summary tables and ``report.md`` into ``out``.

    Parameters
    ----------
    sources
        Run directories, folders of runs, or studies (see :func:`load_sources`).
    out
        Output folder: ``figures/*.pdf|png``, ``tables/*.csv`` and ``report.md``.
    metric
        The primary metric (comparisons listed first and labelled primary, paired plots, cost plots, best runs for
        figures 6-7, learning curves). Default: the primary metric a study among the sources declared
        (``analysis.primary_metric`` of its sweep YAML, else its objective), else ``energy_distance``. A metric
        given here that differs from the declared one is reported as chosen at report time, not pre-declared.
    storage
        Storage URL for bare study names.
    conditions
        ``STATE/PERTURBATION`` labels for figures 6 and 7 (default: the strongest observed shifts).
    importance
        Optuna importance evaluator for figure 5.
    n_boot
        Bootstrap resamples (only the figures' summaries use the bootstrap; tables use t intervals).
    seed
        Seed of the bootstrap and of subsampling.

    Returns
    -------
    Report
        The written figures and tables, and the figures skipped with the reason.

    Raises
    ------
    ArchLabError
        Unresolvable sources, no completed runs, or an unknown metric.
    """
    src = load_sources(sources, storage)
    runs = src.runs
    roles = resolve_roles(src.studies, metric, "energy_distance")
    metric = roles.primary
    require_metric(runs, metric)
    out = Path(out)
    fig_dir, tab_dir = out / "figures", out / "tables"
    tab_dir.mkdir(parents=True, exist_ok=True)
    order = backbone_order(runs["backbone"].astype(str))
    report = Report(out=out, path=out / "report.md", backbones=order)
    per_condition = load_per_condition(runs)
    history = load_history(runs)
    table_metrics = roles.ordered([metric, *roles.secondary, *HEADLINE_METRICS])
    split = report_split(runs)
    on = f" Scored on the {split} split."

    def table(name: str, caption: str, df: pd.DataFrame) -> None:
        if df.empty:
            report.skipped.append((f"tables/{name}.csv", "no rows"))
            return
        if "split" not in df.columns and "objective_split" not in df.columns:
            df = df.copy()
            df.insert(0, "split", split)
        path = tab_dir / f"{name}.csv"
        df.to_csv(path, index=False)
        report.tables.append(Artifact(name, caption, [path]))

    summary = summarize(runs, n_boot=n_boot, seed=seed)
    references = reference_summary(runs, n_boot=n_boot, seed=seed)
    differences = (
        pd.concat(
            [
                paired_differences(per_condition, m, n_boot=n_boot, seed=seed)
                for m in table_metrics
                if m in per_condition.columns and per_condition[m].notna().any()
            ],
            ignore_index=True,
        )
        if len(order) > 1 and not per_condition.empty
        else pd.DataFrame()
    )
    table("runs", "One row per completed run: backbone, seed, cost and every summary metric." + on, runs)
    table("per_condition", "One row per (run, held-out condition) with every metric." + on, per_condition)
    per_seed, per_cond = study_comparisons(runs, per_condition, roles, table_metrics, arms=order)
    table("summary", "Mean per backbone and metric with a 95% t interval over seeds (runs)." + on, summary)
    table(
        "references",
        "Floor (no change) and ceiling (split half) per metric, mean with 95% t interval." + on,
        references,
    )
    standing = standing_table(runs, table_metrics)
    table(
        "standing",
        "Each backbone against the floor and the ceiling its own runs measured: mean differences with 95% paired t "
        "intervals over runs, verdicts, and the share of the floor-to-ceiling range covered." + on,
        standing,
    )
    table(
        "comparisons",
        "Backbone A minus B per metric, paired by seed: mean difference, 95% paired t interval, p-value, Holm and "
        "BH adjusted within the primary and the secondary family, Holm-consistent interval; primary metric first." + on,
        per_seed,
    )
    table(
        "condition_comparisons",
        "Backbone A minus B per metric over held-out conditions (mean over seeds per condition, paired by "
        "condition, pooled over folds): paired t interval, Holm and BH adjusted per family; primary metric first." + on,
        per_cond,
    )
    table(
        "paired_differences",
        "Backbone A minus B per held-out condition (mean over seeds), 95% paired t interval over seeds." + on,
        differences,
    )
    table(
        "paired_summary",
        "Backbone A minus B averaged over conditions, 95% paired t interval over conditions (unadjusted)." + on,
        paired_summary(differences, n_boot=n_boot, seed=seed) if not differences.empty else pd.DataFrame(),
    )
    if not src.trials.empty:
        objective_splits = {st.study_name: st.user_attrs.get("objective_split") for st in src.studies}
        trials = src.trials.copy()
        trials.insert(1, "objective_split", trials["study"].map(objective_splits))
        table(
            "trials",
            "One row per Optuna trial: state, objective (`value`, on the study's objective split, "
            "`objective_split`), parameters and user attributes.",
            trials,
        )

    def figure(name: str, caption: str, make: Callable[[], Figure]) -> None:
        try:
            fig = make()
        except ArchLabError as exc:
            report.skipped.append((name, str(exc).splitlines()[0]))
            return
        report.figures.append(Artifact(name, caption, save_figure(fig, fig_dir, name)))

    label = figs.metric_label(metric)
    figure(
        "fig1_metric_by_backbone",
        f"Headline metrics per backbone on the {split} split: box over runs, every seed a point; dashed "
        "floor (no change), dotted ceiling (split half).",
        lambda: figs.fig_metrics_by_backbone(runs),
    )
    means = summary[summary["metric"] == metric].set_index("backbone")["mean"]
    best = (means.idxmin() if METRICS[metric].direction == "minimize" else means.idxmax()) if len(means) else None
    if len(order) < 2:
        report.skipped.append(("fig2_paired", "needs at least two backbones"))
    for other in [b for b in order if b != best] if best is not None else []:
        figure(
            f"fig2_paired_{metric}_{best}_vs_{other}",
            f"{label} per held-out condition of the {split} split (mean over seeds), {best} against {other}; "
            "dashed line: equal.",
            lambda other=other: figs.fig_paired_conditions(per_condition, a=best, b=other, metric=metric),
        )
    figure(
        "fig3_quality_vs_cost",
        f"{label} on the {split} split against trainable parameters and training time, every run a point; "
        "dashed: Pareto front.",
        lambda: figs.fig_quality_cost_panels(runs, metric=metric),
    )
    figure(
        "fig4_learning_curves",
        f"{label} on the validation conditions the trainer scores (val split) against training step: mean over "
        "runs with a marker per validation, band ± 1 s.d.; dashed: floor (no change), dotted: ceiling (split half) "
        "of those conditions.",
        lambda: figs.fig_learning_curves(history, metric=metric),
    )
    if not src.studies:
        report.skipped.append(("fig5_sweep_diagnostics", "no Optuna study among the sources"))
    for study in src.studies:
        suffix = "" if len(src.studies) == 1 else f"_{_slug(study.study_name)}"
        grid = one_parameter_grid(study)
        if grid is not None:
            n = len({t.params.get(grid) for t in study.get_trials(deepcopy=False) if grid in t.params})
            report.skipped.append(
                (
                    f"fig5_sweep_diagnostics{suffix}",
                    f"study {study.study_name} is a grid over {grid} alone ({n} configurations, each run): there is "
                    "no search to diagnose; figure 1 and the summary compare them",
                )
            )
            continue
        trials = src.trials[src.trials["study"] == study.study_name]
        objective_split = study.user_attrs.get("objective_split")
        try:
            importances = param_importances(study, importance, seed)
        except ArchLabError as exc:
            importances = None
            report.skipped.append((f"fig5_sweep_diagnostics{suffix} (importances panel)", str(exc)))
        figure(
            f"fig5_sweep_diagnostics{suffix}",
            f"Study {study.study_name}: objective (on its {objective_split or 'declared'} split) per trial with the "
            "best so far" + (f", and {importance} hyperparameter importances." if importances is not None else "."),
            functools.partial(figs.fig_sweep_diagnostics, trials, importances=importances, split=objective_split),
        )
    shown = list(best_runs(runs, metric)["run_dir"])
    chosen = list(conditions) if conditions else None
    figure(
        "fig6_cells_pca",
        f"Observed (dark), control (grey rings, drawn over the rest) and generated cells (best run per backbone) "
        f"of the {split} split on two PCs of the observed cells.",
        lambda: figs.fig_cells_pca(cells_mod.cell_projection(shown, chosen, seed=seed)),
    )
    figure(
        "fig7_gene_logfc",
        f"Per-gene log2 fold change against the controls, predicted against observed (best run per backbone, "
        f"{split} split); circled and labelled: top DE genes.",
        lambda: figs.fig_gene_logfc(cells_mod.gene_logfc(shown, chosen[0] if chosen else None)),
    )
    figure(
        "fig8_guidance_sweep",
        f"Energy distance against DEG recall on the {split} split as the guidance scale varies (mean over "
        "seeds; points labelled with the scale).",
        lambda: figs.fig_guidance_sweep(runs),
    )
    _write_markdown(report, src, runs, summary, references, table_metrics, roles, per_seed, per_cond, standing)
    return report


def _write_markdown(
    report: Report,
    src: Sources,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    references: pd.DataFrame,
    metrics: Sequence[str],
    roles: MetricRoles,
    per_seed: pd.DataFrame,
    per_cond: pd.DataFrame,
    standing: pd.DataFrame,
) -> None:
    metric = roles.primary
    split = report_split(runs)
    counts = runs["backbone"].astype(str).value_counts()
    lines = ["# arch_lab report", ""]
    studies = ", ".join(f"`{s.study_name}`" for s in src.studies)
    lines.append(
        f"{len(runs)} completed runs"
        + (f" from studies {studies}" if studies else "")
        + f"; experiments: {', '.join(sorted(map(str, runs['experiment'].dropna().unique())))}."
    )
    runs_of = {b: f"{counts[b]} run{'s' if counts[b] != 1 else ''}" for b in report.backbones}
    lines.append("Backbones: " + ", ".join(f"{b} ({runs_of[b]})" for b in report.backbones) + ".")
    how = f"pre-declared by the {roles.source}" if roles.declared else f"chosen by {roles.source}, not pre-declared"
    lines.append(
        f"Primary metric: `{metric}` ({METRICS[metric].direction}; {METRICS[metric].description}; {how}). "
        "Every other metric is secondary."
    )
    lines += _split_markdown(src, runs, split, metric)
    lines += ["", "## Summary", "", f"Mean over runs (seeds) with a 95% t interval, on the {split} split.", ""]
    lines += _summary_markdown(summary, references, [m for m in metrics if m in set(summary["metric"])])
    lines += _standing_markdown(standing, metric, split)
    lines += _comparisons_markdown(per_seed, per_cond, metric, split)
    lines += ["", "## Figures", ""]
    for art in report.figures:
        pdf, png = (p.relative_to(report.out).as_posix() for p in art.files)
        lines += [f"### {art.name}", "", art.caption, "", f"![{art.name}]({png}) ([PDF]({pdf}))", ""]
    lines += ["## Tables", ""]
    lines += [
        f"- [`{a.files[0].relative_to(report.out).as_posix()}`]({a.files[0].relative_to(report.out).as_posix()}): "
        f"{a.caption}"
        for a in report.tables
    ]
    if report.skipped:
        lines += ["", "## Not drawn", ""]
        lines += [f"- {name}: {why}" for name, why in report.skipped]
    report.path.parent.mkdir(parents=True, exist_ok=True)
    report.path.write_text("\n".join(lines) + "\n")


def _split_markdown(src: Sources, runs: pd.DataFrame, split: str, metric: str) -> list[str]:
    """Which split the report scores, and how that relates to the studies' objective."""
    lines = [
        "",
        f"Split: every table and figure scores the **{split}** split (each run's `eval.split`: held-out conditions "
        "the model never saw), except figure 4 (the validation conditions the trainer scores while training) and "
        "figure 5 (each study's objective).",
    ]
    if "/" in split:
        lines.append("The runs scored different splits; their numbers are not comparable with each other.")
    val = f"val_{metric}"
    for study in src.studies:
        objective_split = study.user_attrs.get("objective_split")
        if objective_split is None or objective_split == split:
            continue
        text = (
            f"Study `{study.study_name}` ranked its trials by `{study.user_attrs.get('objective', metric)}` on the "
            f"**{objective_split}** split: that is the value `arch-lab sweep run` and `arch-lab sweep status` print"
        )
        mine = runs[runs["study"] == study.study_name] if "study" in runs.columns else runs.iloc[0:0]
        if objective_split == "val" and val in mine.columns and mine[val].notna().any():
            means = mine.assign(v=pd.to_numeric(mine[val], errors="coerce")).groupby("backbone")["v"].mean()
            text += " (`" + metric + "` on val, mean over runs: "
            text += ", ".join(f"{b} {means[b]:.3g}" for b in backbone_order(means.index) if np.isfinite(means[b]))
            text += ")"
        lines.append(text + f"; the numbers below are on the {split} split, so they differ.")
    return lines


def _comparison_rows(table: pd.DataFrame, with_metric: bool) -> list[str]:
    head = "| " + ("metric | " if with_metric else "") + "A − B | n | difference [95% CI] | p | Holm p | BH p |"
    head += " Holm-consistent interval |"
    lines = [head, "|" + "---|" * (8 if with_metric else 7)]
    for r in table.to_dict("records"):
        star = " **✱**" if r["significant_holm"] else ""
        n = str(r["n_a"]) if r["pairing"] == "paired" else f"{r['n_a']}/{r['n_b']} (unpaired)"
        holm_ci = (
            f"[{r['ci_low_holm']:.3g}, {r['ci_high_holm']:.3g}] ({r['level_holm']:.1%})"
            if np.isfinite(r["ci_low_holm"])
            else "–"
        )
        cells = [
            *([f"`{r['metric']}`"] if with_metric else []),
            f"{r['arm_a']} − {r['arm_b']}",
            n,
            _fmt(r["difference"], r["ci_low"], r["ci_high"]) + star,
            _fmt_p(r["p_value"]),
            _fmt_p(r["p_holm"]),
            _fmt_p(r["p_bh"]),
            holm_ci,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _family_size(table: pd.DataFrame) -> int:
    return int(table["family_size"].max()) if not table.empty else 0


def _comparisons_markdown(per_seed: pd.DataFrame, per_cond: pd.DataFrame, metric: str, split: str) -> list[str]:
    if per_seed.empty and per_cond.empty:
        return []
    lines = [
        "",
        "## Comparisons",
        "",
        f"Backbone A minus B on the {split} split. Per seed: the runs of A and B with the same task, fold and seed form a pair (the seed "
        "fixes the evaluation subsample), and the interval is the 95% paired t interval of the mean difference "
        "(Welch's unpaired interval, marked, where the backbones do not share their seeds). The primary metric's "
        "comparisons are one family and all secondary comparisons another: `Holm p` is Holm-adjusted "
        "(family-wise error) and `BH p` Benjamini-Hochberg-adjusted (false discovery rate) within the family. "
        "**✱**: significant after Holm correction (Holm p < 0.05). The Holm-consistent interval, at the level "
        "shown, excludes 0 exactly when Holm rejects. `n`: pairs.",
    ]
    for title, table in (("per seed", per_seed), ("per held-out condition", per_cond)):
        if table.empty:
            continue
        primary = table[table["role"] == "primary"]
        secondary = table[table["role"] != "primary"]
        unit = "seeds" if title == "per seed" else "conditions (pooled over folds; each backbone's mean over seeds)"
        lines += ["", f"### Primary claim: `{metric}`, {title}", ""]
        lines += [f"Units: {unit}; family of {_family_size(primary)} tests.", ""]
        lines += _comparison_rows(primary, with_metric=False) if not primary.empty else ["No comparison."]
        if not secondary.empty:
            lines += ["", f"### Secondary metrics, {title}", ""]
            lines += [f"Secondary (exploratory); family of {_family_size(secondary)} tests.", ""]
            lines += _comparison_rows(secondary, with_metric=True)
    return lines
