"""Does a property of the gene order predict the U-Net's result? Four order statistics, tested on the lottery's orders.

Usage:
  python analysis/gene_order_stats.py --results results/probes_v2 --out results/probes_v2/gene_order_stats.csv \
      --report docs/gene_order_stats.md

The 1D U-Net reads the gene axis in an order that carries no biology, and the gene-order probes found its test energy
moving with that order (``docs/findings.md``, points 5 and 9): 0.83 to 2.14 over the 20 random orders of
``gene_order_lottery_synthetic``, and at the ``no_change`` floor for one stored order (``failing_order_synthetic``,
generator seed 0) and for one of five more scattered datasets (``scattered_datasets_synthetic``). A convolution sees
a gene through its neighbours and the zero padding at the ends, so four properties of the data as the network reads
it were named before looking (each on the training means and the test conditions' mean shifts from their state's
training controls, both in the network's order):

- ``hf_mean``: the share of the per-gene training mean's variation (its DCT-II energy, mean removed) in the upper half
  of the frequencies. A U-Net with a Gaussian source must write this profile from position alone; a rougher profile is
  harder to write with smooth, padding-derived position features.
- ``hf_shift``: the same for each test condition's mean shift, averaged over the test conditions.
- ``edge_share``: the share of the test shifts' squared size on the ``EDGE`` genes at either end (next to the padding).
- ``ac_shift``: the lag-1 autocorrelation of each test shift along the axis, averaged (neighbouring genes that move
  together).

For a uniformly random order each statistic has a known spread (a null of ``--null`` random permutations of the same
dataset gives each order's percentile). Two readings follow:

1. **Across the lottery's 20 orders** (one dataset, one run per order), Spearman's rho between each statistic and the
   U-Net's test energy; Holm over the four statistics; intervals by Fisher's z with the Bonett-Wright standard error,
   Bonferroni-adjusted to hold for the four at once. The U-Net with a gene embedding, whose result barely depends on
   the order, is reported beside it as a control (secondary, not in the Holm family).
2. **The failing orders** (the stored orders of generator seeds 0 to 5, their U-Net energy over seeds and the floor):
   where each stands in its own dataset's null. An order that fails because of one of these properties should sit in
   a tail. ``failing_layout_synthetic`` adds generator seeds 1 to 5 put in generator seed 0's order
   (``data.synthetic.layout_seed: 0``): the failing order's statistics on biologies where it did not fail.

With 20 orders only a strong monotone relation can be told from none: the table states the smallest |rho| that would
pass Holm's first threshold (alpha / 4).

3. **The flow, not the order** (when ``gene_order_readouts_synthetic.csv`` is there: the lottery's U-Nets re-run with
   the same seeds, so the same orders, recording the per-run read-outs). Spearman's rho across the 20 orders between
   the U-Net's test energy and each of ``READOUTS`` (how strongly the generated cells follow their source sample, the
   per-gene spread ratio, the velocity gain at t = 0), Holm over the three, with the same intervals as in 1; and how
   far the re-run's energies are from the lottery's.

4. **The failing order rolled** (when ``failing_shift_synthetic.csv`` is there: generator seed 0's failing order
   rolled cyclically by k genes, ``data.gene_order_shift``, and reversed). Each U-Net arm's order with the four
   statistics and their percentiles in the same dataset's null, beside the arm's mean test energy and source
   sensitivity over its seeds. A roll leaves the neighbours (and so ``ac_shift``, nearly ``hf_*``) as they were and
   moves ``edge_share``; descriptive, one order per arm.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.fft import dct

from arch_lab.analysis.multiplicity import holm
from arch_lab.data.task import Task, build_task
from arch_lab.errors import ArchLabError
from arch_lab.sweeps.sweep import load_sweep

#: genes at each end of the axis counted by ``edge_share`` (the first level's 3-wide convolutions, two per block, two
#: blocks, reach 4 genes; the stride-2 down-sampling doubles that at the next level)
EDGE = 8
STATISTICS = ("hf_mean", "hf_shift", "edge_share", "ac_shift")
LOTTERY = "gene_order_lottery_synthetic"
STORED = ("failing_order_synthetic", "scattered_datasets_synthetic", "failing_layout_synthetic")
UNET, CONTROL, MLP = "unet1d", "unet1d_gene_embedding", "mlp_matched"
ALPHA = 0.05
READOUT_STUDY = "gene_order_readouts_synthetic"
SHIFTED = "failing_shift_synthetic"
#: more rolls of the same order; their rows join ``SHIFTED``'s when the study's table is there
SHIFTED_MORE = ("failing_roll_map_synthetic",)
READOUTS = ("readout_source_sensitivity", "gene_spread_ratio", "readout_source_velocity_gain")
PROBES = Path(__file__).resolve().parents[1] / "sweeps" / "probes"


def high_frequency_share(profile: np.ndarray) -> float:
    """The share of ``profile``'s variation (orthonormal DCT-II energy, mean removed) in the upper half of the
    frequencies: 0 for a profile that varies only slowly along the axis, near 1 for one that alternates gene to
    gene, about (G / 2) / (G - 1) for white noise (G = 128: 0.504).
    """
    energy = dct(np.asarray(profile, dtype=np.float64) - np.mean(profile), norm="ortho") ** 2
    total = energy.sum()
    return float(energy[len(energy) // 2 :].sum() / total) if total > 0 else math.nan


def edge_share(shifts: np.ndarray, edge: int = EDGE) -> float:
    """The share of ``shifts``' squared size (conditions x genes) on the ``edge`` genes at either end of the axis."""
    energy = (np.asarray(shifts, dtype=np.float64) ** 2).sum(axis=0)
    total = energy.sum()
    return float((energy[:edge].sum() + energy[-edge:].sum()) / total) if total > 0 else math.nan


def lag1_autocorrelation(profile: np.ndarray) -> float:
    """Pearson correlation of each gene's value with its right neighbour's."""
    p = np.asarray(profile, dtype=np.float64)
    return float(np.corrcoef(p[:-1], p[1:])[0, 1])


def order_statistics(means: np.ndarray, shifts: np.ndarray, order: np.ndarray) -> dict[str, float]:
    """The four statistics (module docstring) of a dataset's training means ``[G]`` and test shifts
    ``[conditions, G]`` (stored gene order), read in ``order`` (``order[i]``: the stored gene at position ``i``).
    """
    m, s = means[order], shifts[:, order]
    return {
        "hf_mean": high_frequency_share(m),
        "hf_shift": float(np.mean([high_frequency_share(row) for row in s])),
        "edge_share": edge_share(s),
        "ac_shift": float(np.mean([lag1_autocorrelation(row) for row in s])),
    }


def profiles(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """The training cells' per-gene means and each test condition's mean shift from its state's training controls
    (stored gene order).
    """
    means = np.asarray(task.gene_means("train"), dtype=np.float64)
    X = task.data.X
    shifts = []
    for c in task.conditions("test"):
        cells = np.asarray(X[np.sort(task.cells("test", c))], dtype=np.float64).mean(axis=0)
        controls = np.asarray(X[np.sort(task.controls(c.state, "train"))], dtype=np.float64).mean(axis=0)
        shifts.append(cells - controls)
    return means, np.asarray(shifts)


def percentile(value: float, null: np.ndarray) -> float:
    """The share of ``null`` below ``value`` (ties count half)."""
    return float(((null < value).sum() + 0.5 * (null == value).sum()) / len(null))


def spearman_interval(rho: float, n: int, level: float) -> tuple[float, float]:
    """A ``level`` interval for Spearman's rho: Fisher's z with the Bonett-Wright standard error
    ``sqrt((1 + rho^2 / 2) / (n - 3))``.
    """
    z = math.atanh(max(min(rho, 0.999999), -0.999999))
    half = stats.norm.ppf(0.5 + level / 2) * math.sqrt((1 + rho**2 / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)


def smallest_detectable_rho(n: int, alpha: float) -> float:
    """The smallest |rho| whose two-sided p value (t approximation, as :func:`scipy.stats.spearmanr`) is below
    ``alpha`` with ``n`` pairs.
    """
    t = stats.t.ppf(1 - alpha / 2, n - 2)
    return float(t / math.sqrt(n - 2 + t**2))


def order_rows(results: Path, null_size: int, seed: int = 0) -> pd.DataFrame:
    """One row per gene order the probes trained the U-Net on: the study, generator seed, replicate seeds, the four
    statistics, their percentiles in the dataset's null, and the test energy of the U-Net arms and the
    parameter-matched MLP, and the floor (means over the seeds that share the order).
    """
    rows: list[dict[str, object]] = []
    null_cache: dict[int, pd.DataFrame] = {}
    rng = np.random.default_rng(seed)
    for study in (LOTTERY, *STORED):
        sweep = load_sweep(PROBES / f"{study}.yaml")
        runs = pd.read_csv(results / f"{study}.csv")
        seen: set[int] = set()
        for values in sweep.grid():
            if values.get("arm") != UNET:
                continue
            for replicate in range(sweep.replicates):
                cfg = sweep.experiment(values, replicate)
                generator = int(cfg.data.synthetic.seed) if cfg.data.synthetic is not None else -1
                per_order = cfg.data.gene_order_seed == "run"
                if not per_order and generator in seen:
                    continue
                seen.add(generator)
                task = build_task(cfg)
                means, shifts = profiles(task)
                if generator not in null_cache:
                    null = [order_statistics(means, shifts, rng.permutation(means.size)) for _ in range(null_size)]
                    null_cache[generator] = pd.DataFrame(null)
                row: dict[str, object] = {
                    "study": study,
                    "generator_seed": generator,
                    "gene_order": cfg.data.gene_order,
                    "seeds": str(cfg.seed) if per_order else "all",
                    "n_genes": int(means.size),
                    "test_conditions": int(len(shifts)),
                }
                found = order_statistics(means, shifts, task.order)
                row.update(found)
                for name, value in found.items():
                    row[f"{name}_percentile"] = percentile(value, null_cache[generator][name].to_numpy())
                mine = runs["config.data.synthetic.seed"] == generator
                if per_order:
                    mine &= runs["seed"] == cfg.seed
                for arm in (UNET, CONTROL, MLP):
                    part = runs[mine & (runs["arm"] == arm)]
                    row[f"{arm}_energy"] = float(part["energy_distance"].mean()) if len(part) else math.nan
                    row[f"{arm}_runs"] = len(part)
                row["floor_energy"] = float(runs.loc[mine, "floor_energy_distance"].mean())
                rows.append(row)
                if not per_order:
                    break
    return pd.DataFrame(rows)


def shifted_rows(results: Path, null_size: int, seed: int = 0) -> pd.DataFrame | None:
    """One row per U-Net arm of ``SHIFTED`` and of the ``SHIFTED_MORE`` studies whose tables are there (its rolled or
    reversed order): ``study``, ``arm``, ``gene_order``, ``shift``, the four statistics and their percentiles among
    ``null_size`` random orders of the same dataset, the arm's mean test energy (``unet1d_energy``, over
    ``unet1d_runs`` runs) and source sensitivity, and ``SHIFTED``'s parameter-matched MLP energy and floor. None when
    ``SHIFTED``'s table is not there.
    """
    tables = {
        study: pd.read_csv(results / f"{study}.csv")
        for study in (SHIFTED, *SHIFTED_MORE)
        if (results / f"{study}.csv").is_file()
    }
    if SHIFTED not in tables:
        return None
    rng = np.random.default_rng(seed)
    profile: tuple[np.ndarray, np.ndarray] | None = None  # every arm reads the same dataset, in stored order
    null: pd.DataFrame | None = None
    rows: list[dict[str, object]] = []
    for study, study_runs in tables.items():
        sweep = load_sweep(PROBES / f"{study}.yaml")
        for values in sweep.grid():
            cfg = sweep.experiment(values, 0)
            if cfg.network.name != UNET:
                continue
            task = build_task(cfg)
            if profile is None:
                profile = profiles(task)
                null = pd.DataFrame(
                    [order_statistics(*profile, rng.permutation(profile[0].size)) for _ in range(null_size)]
                )
            assert null is not None
            part = study_runs[study_runs["arm"] == values["arm"]]
            row: dict[str, object] = {"study": study, "arm": values["arm"], "gene_order": cfg.data.gene_order,
                                      "shift": int(cfg.data.gene_order_shift)}  # fmt: skip
            found = order_statistics(*profile, task.order)
            row.update(found)
            for name, value in found.items():
                row[f"{name}_percentile"] = percentile(value, null[name].to_numpy())
            row["unet1d_energy"] = float(part["energy_distance"].mean()) if len(part) else math.nan
            row["unet1d_runs"] = len(part)
            has = "readout_source_sensitivity" in part
            row["source_sensitivity"] = (
                float(part["readout_source_sensitivity"].mean()) if has and len(part) else math.nan
            )
            rows.append(row)
    table = pd.DataFrame(rows).sort_values(["gene_order", "shift"], kind="stable").reset_index(drop=True)
    runs = tables[SHIFTED]
    mlp = runs[runs["arm"] == MLP]
    table["mlp_matched_energy"] = float(mlp["energy_distance"].mean()) if len(mlp) else math.nan
    table["floor_energy"] = float(runs["floor_energy_distance"].mean())
    return table


def shifted_report(table: pd.DataFrame) -> list[str]:
    """The markdown section of :func:`shifted_rows`."""
    lines = [
        "",
        "## The failing order rolled along the gene axis",
        "",
        f"`{SHIFTED}` and `{'`, `'.join(SHIFTED_MORE)}`: generator seed 0's failing order rolled by `shift` genes "
        "(`data.gene_order_shift`: the gene "
        "at position i moves to (i + shift) mod G) or reversed, one U-Net arm per order, seeds paired across arms "
        "(`docs/findings.md` has the paired intervals). Each order's statistics with their percentile among random "
        f"orders of the same dataset; energies are means over the arm's runs. Parameter-matched MLP (no order, shift "
        f"0): {table['mlp_matched_energy'].iloc[0]:.3f}; floor: {table['floor_energy'].iloc[0]:.3f}.",
        "",
        "| order | shift | U-Net energy (runs) | source sensitivity | "
        + " | ".join(f"{s} (percentile)" for s in STATISTICS)
        + " |",
        "|---|---|---|---|" + "---|" * len(STATISTICS),
    ]
    for r in table.itertuples():
        cells = " | ".join(f"{getattr(r, s):.3f} ({getattr(r, s + '_percentile'):.2f})" for s in STATISTICS)
        lines.append(
            f"| {r.gene_order} | {r.shift} | {r.unet1d_energy:.3f} ({r.unet1d_runs}) | {r.source_sensitivity:.2f} | "
            f"{cells} |"
        )
    return lines


def lottery_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho of each statistic with the U-Net's (primary, Holm over the statistics) and the embedding
    U-Net's (control) test energy across the lottery's orders.
    """
    lottery = table[table["study"] == LOTTERY]
    n = len(lottery)
    level = 1 - ALPHA / len(STATISTICS)
    out = []
    for arm in (UNET, CONTROL):
        for name in STATISTICS:
            res = stats.spearmanr(lottery[name], lottery[f"{arm}_energy"])
            low, high = spearman_interval(float(res.statistic), n, level)
            out.append({"arm": arm, "statistic": name, "n_orders": n, "rho": float(res.statistic),
                        "low": low, "high": high, "p": float(res.pvalue)})  # fmt: skip
    df = pd.DataFrame(out)
    primary = df["arm"] == UNET
    df["p_holm"] = math.nan
    df.loc[primary, "p_holm"] = holm(df.loc[primary, "p"].to_numpy())
    return df


def readout_correlations(results: Path) -> tuple[pd.DataFrame, dict[str, float]] | None:
    """Spearman's rho, across the re-run lottery orders, of the U-Net's test energy with each of ``READOUTS``
    (Holm over them; intervals as in :func:`lottery_correlations`), and how the re-run's test energies compare with
    the lottery's, seed for seed (same order, same seed): ``max_gap`` (largest absolute difference), ``sd_gap``
    (standard deviation of the differences), ``rho_runs`` (Spearman's rho between the two runs' energies over the
    orders), ``sd_rerun`` and ``sd_lottery`` (each run's standard deviation over the orders), and ``rho_cosine``
    (Spearman's rho of the re-run's energy with its cosine logFC, descriptive). None when ``READOUT_STUDY``'s table
    is not there.
    """
    path = results / f"{READOUT_STUDY}.csv"
    if not path.is_file():
        return None
    runs = pd.read_csv(path)
    runs = runs[runs["arm"] == UNET].sort_values("seed")
    n = len(runs)
    level = 1 - ALPHA / len(READOUTS)
    out = []
    for name in READOUTS:
        res = stats.spearmanr(runs[name], runs["energy_distance"])
        low, high = spearman_interval(float(res.statistic), n, level)
        out.append({"readout": name, "n_orders": n, "rho": float(res.statistic), "low": low, "high": high,
                    "p": float(res.pvalue), "median": float(runs[name].median()), "min": float(runs[name].min()),
                    "max": float(runs[name].max())})  # fmt: skip
    df = pd.DataFrame(out)
    df["p_holm"] = holm(df["p"].to_numpy())
    lottery = pd.read_csv(results / f"{LOTTERY}.csv")
    lottery = lottery[lottery["arm"] == UNET].set_index("seed")["energy_distance"]
    matched = runs.set_index("seed")["energy_distance"].reindex(lottery.index)
    gap = matched - lottery
    summary = {
        "max_gap": float(gap.abs().max()),
        "sd_gap": float(gap.std()),
        "rho_runs": float(stats.spearmanr(matched, lottery).statistic),
        "sd_rerun": float(matched.std()),
        "sd_lottery": float(lottery.std()),
        "rho_cosine": float(stats.spearmanr(runs["energy_distance"], runs["cosine_logfc"]).statistic)
        if "cosine_logfc" in runs.columns
        else math.nan,
    }
    return df, summary


def readout_report(found: tuple[pd.DataFrame, dict[str, float]]) -> list[str]:
    """The markdown section of :func:`readout_correlations`."""
    df, summary = found
    n = int(df["n_orders"].iloc[0])
    lines = [
        "",
        "## The flow, not the order: the lottery's U-Nets with their read-outs",
        "",
        f"`{READOUT_STUDY}` re-ran the lottery's {n} U-Net runs with the same seeds (so the same orders) in fp32, "
        f"recording the read-outs. Same order, same seed, another commit and precision: its test energies differ "
        f"from the lottery's by up to {summary['max_gap']:.2f} (standard deviation of the differences "
        f"{summary['sd_gap']:.2f}, against a spread over the orders of {summary['sd_lottery']:.2f} in the lottery "
        f"and {summary['sd_rerun']:.2f} here), and the two runs' energies rank the orders alike only in part "
        f"(Spearman's rho {summary['rho_runs']:+.2f}): one run per order does not separate the order's effect from "
        "the run-to-run differences that another commit and precision make (the lottery's precision is not "
        "recorded). Spearman's rho "
        f"across the orders between the U-Net's test energy and each read-out; intervals {100 * (1 - ALPHA / len(df)):.2f}% "
        f"each (Bonferroni over the {len(df)} read-outs), Holm over them. Source sensitivity: how strongly the "
        "generated cells follow their source sample, over the observed variance; spread ratio: generated over "
        "observed per-gene standard deviation (median over genes); velocity gain: -tr(J_v)/G at t = 0 "
        "(`docs/findings.md` defines all three).",
        "",
        "| read-out | median (range) over orders | rho with energy | interval | p | p (Holm) |",
        "|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.readout} | {r.median:.3f} ({r.min:.3f} to {r.max:.3f}) | {r.rho:+.2f} | "
            f"[{r.low:+.2f}, {r.high:+.2f}] | {r.p:.3g} | {r.p_holm:.3g} |"
        )
    lines += [
        "",
        f"Descriptive: the re-run's energy and its cosine logFC have Spearman's rho {summary['rho_cosine']:+.2f} "
        "over the orders (the worse runs miss the response direction too, not only its spread).",
    ]
    return lines


def report(
    table: pd.DataFrame,
    corr: pd.DataFrame,
    null_size: int,
    command: str,
    readouts: tuple[pd.DataFrame, float] | None = None,
    shifted: pd.DataFrame | None = None,
) -> str:
    """The markdown report (``docs/gene_order_stats.md``)."""
    n = int(corr["n_orders"].iloc[0])
    detect = smallest_detectable_rho(n, ALPHA / len(STATISTICS))
    lines = [
        "# Does a property of the gene order predict the U-Net's result?",
        "",
        f"Generated by `{command}` from the committed per-run tables of `{LOTTERY}`, "
        + ", ".join(f"`{s}`" for s in STORED[:-1])
        + f" and `{STORED[-1]}`; the statistics and the method are described in "
        "`analysis/gene_order_stats.py`. Energies are test energy distances (the primary metric of those studies).",
        "",
        f"## Across the lottery's {n} random orders (generator seed 0, G = {int(table['n_genes'].iloc[0])})",
        "",
        f"Spearman's rho between each order statistic and the test energy, one run per order. Intervals: Fisher z "
        f"with the Bonett-Wright standard error, {100 * (1 - ALPHA / len(STATISTICS)):.2f}% each (Bonferroni over "
        f"the {len(STATISTICS)} statistics). Holm over the {len(STATISTICS)} statistics for `{UNET}`; `{CONTROL}` "
        f"is a control, not corrected. With {n} orders the smallest |rho| that passes Holm's first threshold "
        f"(alpha {ALPHA / len(STATISTICS):g}) is {detect:.2f}.",
        "",
        "| arm | statistic | rho | interval | p | p (Holm) |",
        "|---|---|---|---|---|---|",
    ]
    for r in corr.itertuples():
        holm_p = "" if math.isnan(r.p_holm) else f"{r.p_holm:.3f}"
        lines.append(
            f"| {r.arm} | {r.statistic} | {r.rho:+.2f} | [{r.low:+.2f}, {r.high:+.2f}] | {r.p:.3f} | {holm_p} |"
        )
    lines += [
        "",
        "## The stored orders that failed, and the others",
        "",
        f"Each dataset's stored order (locality 0, itself a uniformly random order) against {null_size} random "
        "orders of the same dataset: the percentile of each statistic (0.5 = typical; a failure caused by one of them "
        "should sit near 0 or 1). Test energies are means over the runs with that order (the MLP reads no order); the "
        "floor is `no_change` on the same cells. The `failing_layout_synthetic` rows are generator seeds 1-5 in "
        "generator seed 0's order (`data.synthetic.layout_seed: 0`), the order of the first row; that study ran no "
        "embedding U-Net.",
        "",
        "| study | generator seed | U-Net energy (runs) | parameter-matched MLP | floor | embedding U-Net | "
        + " | ".join(f"{s} (percentile)" for s in STATISTICS)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(STATISTICS),
    ]
    stored = table[table["study"] != LOTTERY].sort_values("generator_seed", kind="stable")
    for r in stored.itertuples():
        cells = " | ".join(f"{getattr(r, s):.3f} ({getattr(r, s + '_percentile'):.2f})" for s in STATISTICS)
        embedding = "" if math.isnan(r.unet1d_gene_embedding_energy) else f"{r.unet1d_gene_embedding_energy:.3f}"
        lines.append(
            f"| {r.study} | {r.generator_seed} | {r.unet1d_energy:.3f} ({r.unet1d_runs}) | {r.mlp_matched_energy:.3f} | "
            f"{r.floor_energy:.3f} | {embedding} | {cells} |"
        )
    lottery = table[table["study"] == LOTTERY]
    lines += [
        "",
        f"The lottery's {len(lottery)} orders, for reference: U-Net energy {lottery['unet1d_energy'].min():.3f} to "
        f"{lottery['unet1d_energy'].max():.3f}; percentiles of the statistics "
        + "; ".join(
            f"{s} {lottery[s + '_percentile'].min():.2f} to {lottery[s + '_percentile'].max():.2f}" for s in STATISTICS
        )
        + ".",
    ]
    if readouts is not None:
        lines += readout_report(readouts)
    if shifted is not None:
        lines += shifted_report(shifted)
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: write the per-order table and the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/probes_v2"), help="the committed run tables")
    parser.add_argument("--out", type=Path, required=True, help="CSV of the per-order statistics to write")
    parser.add_argument("--report", type=Path, required=True, help="markdown report to write")
    parser.add_argument("--null", type=int, default=2000, help="random orders per dataset for the percentiles")
    args = parser.parse_args(argv)
    try:
        table = order_rows(args.results, args.null)
    except (ArchLabError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    corr = lottery_correlations(table)
    readouts = readout_correlations(args.results)
    shifted = shifted_rows(args.results, args.null)
    command = (
        f"python analysis/gene_order_stats.py --results {args.results} --out {args.out} --report {args.report}"
        + (f" --null {args.null}" if args.null != 2000 else "")
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    corr.to_csv(args.out.with_name(args.out.stem + "_correlations.csv"), index=False)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    if readouts is not None:
        readouts[0].to_csv(args.out.with_name(args.out.stem + "_readouts.csv"), index=False)
    if shifted is not None:
        shifted.to_csv(args.out.with_name(args.out.stem + "_shifted.csv"), index=False)
    args.report.write_text(report(table, corr, args.null, command, readouts, shifted))
    print(f"wrote {args.out}, {args.report} ({len(table)} orders)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
