"""The recommended recipe against the baselines on every fold of the shipped tasks (test split, paired intervals).

Usage:
  python analysis/recipe_check.py runs/recipe_check --out docs/results.md           # from run directories
  python analysis/recipe_check.py --from-csv results/recipe_check --out docs/results.md  # from the committed rows

From run directories (the ``sweeps/recipes/check_*.yaml`` studies) it first writes the committed results:
``results/recipe_check/per_condition.csv`` (one row per run and held-out condition: task, fold, seed, backbone, the
test metrics, steps, train_seconds, git_sha) and ``runs.csv`` (one row per run). The report is regenerated from
those files alone. The baselines (``no_change``, ``perturbation_mean``, ``linear_additive``) and the split-half
ceiling come from ``docs/reference_points.csv`` (``analysis/reference_points.py``), scored on the same test cells.
The tables go between the ``<!-- recipe check: begin -->`` and ``end`` markers of ``--out`` (text around them is
kept; a file without them gets the block appended).

Every comparison is paired per held-out condition (the flow's value is the mean over its seeds), with a t
interval over conditions; the p-values of the primary metric (energy distance) are Holm-adjusted over every
(task, backbone, baseline) comparison, and the Holm-consistent interval is given beside the plain one. For
combination tasks the share of the floor-to-ceiling gap closed is reported per seed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from arch_lab.analysis.intervals import t_interval
from arch_lab.analysis.multiplicity import adjust_family
from arch_lab.analysis.paired import compare_arms
from arch_lab.analysis.tidy import load_per_condition, load_runs
from arch_lab.scoreboard import write_generated

PRIMARY = "energy_distance"
SECONDARY = ("pearson_delta", "cosine_logfc")
BASELINES = ("no_change", "perturbation_mean", "linear_additive")
CEILING = "ceiling (split-half)"
KEYS = ("task", "fold", "state", "perturbation")
#: The generated block's markers in ``--out`` (text outside them is kept).
BEGIN = "<!-- recipe check: begin -->"
END = "<!-- recipe check: end -->"
RUN_COLUMNS = (
    "task", "fold", "seed", "backbone", "recipe", "steps", "best_step", "train_seconds", "wall_seconds", "git_sha",
)  # fmt: skip


def collect(run_roots: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-condition and per-run tables of the completed runs under ``run_roots`` (test split)."""
    runs = load_runs(list(run_roots))
    if runs.empty:
        raise SystemExit(f"no completed runs under {', '.join(map(str, run_roots))}")
    runs = runs.assign(
        task=runs["experiment"],
        fold=pd.to_numeric(runs["config.task.fold"], errors="coerce").astype("Int64"),
        recipe=runs.get("config.recipe", "none"),
    )
    per = load_per_condition(runs)
    per = per[per["split"] == "test"].merge(runs[["run_dir", "task", "fold", "recipe", "steps", "git_sha"]],
                                            on="run_dir")  # fmt: skip
    metric_cols = [PRIMARY, *SECONDARY, "rmse_mean", "deg_recall"]
    per = per[["task", "fold", "seed", "backbone", "recipe", "state", "perturbation", *metric_cols, "steps", "git_sha"]]
    return per.sort_values(["task", "fold", "backbone", "seed"]), runs[list(RUN_COLUMNS)].sort_values(
        ["task", "fold", "backbone", "seed"]
    )


def _reference(path: Path) -> pd.DataFrame:
    ref = pd.read_csv(path)
    ref = ref[ref["entry"].isin([*BASELINES, CEILING])]
    return ref.rename(columns={"entry": "arm"})


def _table(per: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    flows = per.assign(arm=per["backbone"])
    cols = ["arm", *KEYS, PRIMARY, *SECONDARY]
    tasks = set(flows["task"])
    ref = ref[ref["task"].isin(tasks) & ref["arm"].isin([*BASELINES, CEILING])]
    return pd.concat([flows[[*cols, "seed"]], ref[cols]], ignore_index=True)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over held-out conditions (flows: each condition's mean over seeds) with a 95% t interval."""
    rows = []
    order = {name: i for i, name in enumerate(("no_change", "perturbation_mean", "linear_additive", CEILING))}
    table = table.assign(_order=table["arm"].map(order).fillna(-1)).sort_values(
        ["task", "_order", "arm"], kind="stable"
    )
    for (task, arm), g in table.groupby(["task", "arm"], sort=False):
        units = g.groupby(list(KEYS[1:]))[[PRIMARY, *SECONDARY]].mean()
        row = {"task": task, "arm": arm, "conditions": len(units)}
        seeds = g["seed"].dropna().nunique() if "seed" in g else 0
        row["seeds"] = int(seeds)
        for m in (PRIMARY, *SECONDARY):
            ci = t_interval(units[m].to_numpy())
            row[m] = f"{ci.estimate:.3f} [{ci.low:.3f}, {ci.high:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons(table: pd.DataFrame) -> pd.DataFrame:
    """Every flow backbone minus every baseline, paired per condition; Holm over the primary metric's family."""
    out = []
    backbones = sorted(set(table["arm"]) - {*BASELINES, CEILING})
    for task, g in table.groupby("task", sort=False):
        pairs = [(b, base) for b in backbones if b in set(g["arm"]) for base in BASELINES if base in set(g["arm"])]
        res = compare_arms(g, list(KEYS), "arm", pairs, [PRIMARY, *SECONDARY], unit="condition", pairing="paired")
        out.append(res.assign(task=task))
    res = pd.concat(out, ignore_index=True)
    res["role"] = np.where(res["metric"] == PRIMARY, "primary", "secondary")
    return adjust_family(res, family="role", estimate="difference")


def gap_closed(table: pd.DataFrame) -> pd.DataFrame:
    """Share of the no_change-to-ceiling energy gap each seed of each backbone closes, pooled over conditions."""
    rows = []
    for task, g in table.groupby("task", sort=False):
        floor = g[g["arm"] == "no_change"].groupby(list(KEYS[1:]))[PRIMARY].mean()
        ceiling = g[g["arm"] == CEILING].groupby(list(KEYS[1:]))[PRIMARY].mean()
        gap = floor.mean() - ceiling.mean()
        for arm, a in g[~g["arm"].isin([*BASELINES, CEILING])].groupby("arm"):
            shares = []
            for _, s in a.groupby("seed"):
                v = s.groupby(list(KEYS[1:]))[PRIMARY].mean().reindex(floor.index)
                shares.append((floor.mean() - v.mean()) / gap)
            pm = g[g["arm"] == "perturbation_mean"].groupby(list(KEYS[1:]))[PRIMARY].mean()
            rows.append({
                "task": task, "arm": arm, "floor": floor.mean(), "ceiling": ceiling.mean(), "gap": gap,
                "closed_per_seed": ", ".join(f"{x:.2f}" for x in shares), "closed_mean": float(np.mean(shares)),
                "perturbation_mean_closed": (floor.mean() - pm.mean()) / gap,
            })  # fmt: skip
    return pd.DataFrame(rows)


def per_fold(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Mean energy per task and fold (flows: over seeds and conditions) and how many seeds kept the untrained flow."""
    means = table.groupby(["task", "fold", "arm"])[PRIMARY].mean().unstack("arm")
    keep = [c for c in means.columns if c not in (CEILING, "linear_additive")]
    out = means[keep].reset_index()
    if "best_step" in runs:
        untrained = runs.assign(untrained=runs["best_step"] == 0).groupby(["task", "fold"])["untrained"].sum()
        out = out.merge(untrained.rename("seeds_untrained").reset_index(), on=["task", "fold"], how="left")
    return out


def _fmt(df: pd.DataFrame, digits: int = 3) -> str:
    """A markdown table; floats with ``digits`` decimals."""

    def cell(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "" if not np.isfinite(v) else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def report(per: pd.DataFrame, runs: pd.DataFrame, reference: Path) -> str:
    """The markdown report."""
    table = _table(per, _reference(reference))
    comp = comparisons(table)
    lines = [
        "Test split of every fold, pooled over folds; a flow's value per held-out condition is its mean over seeds.",
        "Intervals: 95% t over held-out conditions; differences are paired per condition (flow minus baseline,",
        "negative = the flow is closer for energy distance); `ci_holm` is the Holm-consistent interval over the",
        f"{int((comp['role'] == 'primary').sum())} primary (energy distance) comparisons.",
        "",
        "### Per task",
        "",
        _fmt(summary(table)),
        "",
        "### Flow minus baseline (paired per condition)",
        "",
    ]
    comp = comp.assign(
        ci=[f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(comp["ci_low"], comp["ci_high"], strict=True)],
        ci_holm=[
            f"[{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else ""
            for lo, hi in zip(comp["ci_low_holm"], comp["ci_high_holm"], strict=True)
        ],
    )
    cols = ["task", "metric", "arm_a", "arm_b", "n_a", "mean_a", "mean_b", "difference", "ci", "ci_holm", "p_holm"]
    lines += [_fmt(comp[comp["role"] == "primary"][cols]), "", "Secondary metrics (not corrected):", ""]
    lines += [_fmt(comp[comp["role"] == "secondary"][[c for c in cols if c not in ("ci_holm", "p_holm")]]), ""]
    lines += ["### Share of the no_change-to-ceiling energy gap closed", "", _fmt(gap_closed(table), 3), ""]
    lines += [
        "### Per fold: mean energy distance, and seeds whose selected checkpoint is the untrained flow",
        "",
        _fmt(per_fold(table, runs), 3),
        "",
    ]
    cost = runs.groupby(["task", "backbone"]).agg(
        runs=("seed", "size"), steps=("steps", "median"), train_seconds=("train_seconds", "median"),
        wall_seconds=("wall_seconds", "median"), commits=("git_sha", "nunique"),
    ).reset_index()  # fmt: skip
    lines += ["### Cost per run (median; one thread per run, two runs at a time on 2 cores)", "", _fmt(cost, 1), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (or folders of them)")
    parser.add_argument("--from-csv", type=Path, help="folder with per_condition.csv and runs.csv")
    parser.add_argument("--results", type=Path, default=Path("results/recipe_check"), help="where to write the CSVs")
    parser.add_argument("--reference", type=Path, default=Path("docs/reference_points.csv"))
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"))
    args = parser.parse_args(argv)
    if args.from_csv is not None:
        per = pd.read_csv(args.from_csv / "per_condition.csv")
        runs = pd.read_csv(args.from_csv / "runs.csv")
    elif args.runs:
        per, runs = collect(args.runs)
        args.results.mkdir(parents=True, exist_ok=True)
        per.to_csv(args.results / "per_condition.csv", index=False)
        runs.to_csv(args.results / "runs.csv", index=False)
        print(f"wrote {args.results / 'per_condition.csv'} ({len(per)} rows) and runs.csv ({len(runs)} runs)")
    else:
        parser.error("give run directories or --from-csv")
    text = report(per, runs, args.reference)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_generated(args.out, text, BEGIN, END)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
