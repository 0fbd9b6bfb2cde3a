"""Why does the U-Net win? Gaps between the U-Net and its comparisons across the probe studies.

The probe studies (``sweeps/probes/*.yaml``, run by ``scripts/run_probes.sh``) each write one tidy per-run table,
``results/probes/<probe>.csv`` (one row per completed run: ``arm``, ``task``, ``locality``, ``seed``, every test
metric, ``val_<metric>``, ``floor_<metric>``, ``ceiling_<metric>``, ``config.*``). This module loads whatever is
there, builds the comparisons each probe was designed for, and estimates every gap with a bootstrap interval over
seeds:

- **backbones**: ``unet1d`` minus each other arm, per task (and per locality on synthetic data);
- **compute**: ``unet1d`` (of the same study, else the 800-step one of another probe of the same task and
  setting) minus every other arm (the longer and equal-FLOPs arms), plus like-for-like pairs of arms sharing a
  suffix (``unet1d_long`` minus ``mlp_matched_long``), and as secondary comparisons each arm minus its
  fixed-step counterpart (``mlp_matched_equal_flops`` minus ``mlp_matched``, ``unet1d_long`` minus ``unet1d``);
- **unet_dissection**: each U-Net arm minus the ``mlp_matched`` baseline of the same task and setting taken from
  another probe (the ``baseline`` column names the study) when one exists, else minus the default ``unet1d``;
  the variant minus the default ``unet1d`` (same study, else another probe) is always added as a secondary
  comparison;
- **transformer**: ``unet1d`` (from another probe of the same task and setting) minus each transformer arm,
  and, as secondary comparisons, each arm minus the cross-attention-only ``gt_cross_matched``;
- **gene_order**: ``unet1d`` minus ``mlp_matched`` under each gene order, and ``unet1d`` under each order minus
  ``unet1d`` with the stored order (the same for the MLP, a control, as a secondary comparison); the stored
  order may come from another probe (the backbones study);
- **fair_mlp**: ``unet1d`` of the same task and setting (from the backbones study) minus each MLP variant.

A gap is ``mean(first arm) - mean(second arm)`` over seeds (test split unless asked otherwise); its interval is
an unpaired percentile bootstrap of that difference (:func:`arch_lab.analysis.stats.bootstrap_difference_ci`).
The **normalised gap** divides it by the task's ``ceiling - floor`` (split-half minus ``no_change``), so it reads
the same way for every metric and task: the difference of :func:`normalised_score` values, positive when the first
arm is better, 1 being the whole floor-to-ceiling range.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from arch_lab.analysis.figures import metric_label
from arch_lab.analysis.stats import bootstrap_difference_ci
from arch_lab.analysis.style import (
    BACKBONE_COLORS,
    CEILING_COLOR,
    DOUBLE_COLUMN,
    FLOOR_COLOR,
    paper_style,
    save_figure,
)
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS

#: Probe files in the order ``scripts/run_probes.sh`` runs them.
PROBES: tuple[str, ...] = (
    "backbones_synthetic",
    "backbones_kang",
    "backbones_k562",
    "backbones_glioblastoma",
    "gene_order_synthetic",
    "compute_synthetic",
    "compute_k562",
    "unet_dissection_synthetic",
    "transformer_synthetic",
    "fair_mlp_synthetic",
    "gene_order_kang",
    "unet_dissection_k562",
    "fair_mlp_k562",
)
#: Probe kinds, by file-name prefix, in display order.
PROBE_KINDS: tuple[str, ...] = ("backbones", "compute", "unet_dissection", "transformer", "gene_order", "fair_mlp")
#: Metrics whose gaps are estimated by default.
GAP_METRICS: tuple[str, ...] = ("energy_distance", "cosine_logfc")
#: The arm every gap is about.
UNET = "unet1d"
#: The parameter-matched MLP arm used as the baseline of the dissection.
MLP_BASELINE = "mlp_matched"
#: Gene order of the stored data (the reference of the gene-order probe).
STORED_ORDER = "as_stored"
#: Probe kinds searched (in this order) for a cross-study reference arm of the same task and setting.
_LOOKUP_ORDER = ("backbones", "fair_mlp", "gene_order", "compute", "unet_dissection", "transformer")
#: Reference arm of the transformer probe's secondary comparisons (cross-attention only).
GT_CROSS = "gt_cross_matched"
#: Steps of the probes' fixed-step arms, used to look up references for arms with other budgets.
_FIXED_STEPS = pd.DataFrame({"config.train.max_steps": [800]})
#: Columns identifying one cell of a probe (with ``arm``).
CELL_KEYS: tuple[str, ...] = ("probe", "task", "locality", "gene_order")

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


def probe_kind(probe: str) -> str:
    """The kind of a probe from its file name (``backbones_k562`` -> ``backbones``).

    Raises
    ------
    ArchLabError
        A name that starts with none of :data:`PROBE_KINDS`.
    """
    for kind in sorted(PROBE_KINDS, key=len, reverse=True):
        if probe == kind or probe.startswith(f"{kind}_"):
            return kind
    raise ArchLabError(f"probe {probe!r}: unknown kind; probe names start with one of {', '.join(PROBE_KINDS)}")


def normalised_score(value: Any, floor: Any, ceiling: Any) -> Any:
    """``(floor - value) / (floor - ceiling)``: 0 at the floor (``no_change``), 1 at the ceiling (split half).

    The same formula serves metrics to minimise and to maximise; higher is better either way. NaN where the
    ceiling equals the floor.
    """
    f = np.asarray(floor, dtype=np.float64)
    c = np.asarray(ceiling, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(f != c, (f - v) / (f - c), np.nan)
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------------------------- loading
@dataclass
class ProbeResults:
    """Every probe table found: ``runs`` (all rows, with ``probe`` and ``kind``), ``missing`` (probe files absent)."""

    runs: pd.DataFrame
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _locality(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").round(6)


def tidy_probe_table(df: pd.DataFrame, probe: str) -> pd.DataFrame:
    """Add ``probe``, ``kind``, a numeric ``locality`` and ``gene_order`` to one probe's per-run table.

    Raises
    ------
    ArchLabError
        A table without the ``arm`` or ``task`` column.
    """
    for col in ("arm", "task"):
        if col not in df.columns:
            raise ArchLabError(f"{probe}: no {col!r} column; export it with arch-lab sweep export --runs")
    out = df.copy()
    out["probe"] = probe
    out["kind"] = probe_kind(probe)
    out["arm"] = out["arm"].astype(str)
    out["task"] = out["task"].astype(str)
    if "dataset" not in out.columns:
        out["dataset"] = out["task"]
    loc = out["locality"] if "locality" in out.columns else out.get("config.data.synthetic.locality")
    out["locality"] = _locality(loc) if loc is not None else np.nan
    order = None
    for col in ("params_data.gene_order", "config.data.gene_order"):
        if col in out.columns:
            order = out[col] if order is None else order.fillna(out[col])
    out["gene_order"] = order.fillna(STORED_ORDER).astype(str) if order is not None else STORED_ORDER
    if "network" not in out.columns:
        out["network"] = out.get("config.network.name", out["arm"])
    return out


def load_probe_results(results: str | Path, probes: Sequence[str] | None = None) -> ProbeResults:
    """Read ``<results>/<probe>.csv`` for every probe present (missing files are listed, not an error).

    Parameters
    ----------
    results
        Folder holding the per-probe CSVs (``results/probes``).
    probes
        Probe names to look for (default: :data:`PROBES` plus any other ``*.csv`` whose name has a known kind).

    Returns
    -------
    ProbeResults

    Raises
    ------
    ArchLabError
        ``results`` is not a folder, or none of the probe files is there.
    """
    folder = Path(results)
    if not folder.is_dir():
        raise ArchLabError(f"{folder}: not a folder; pass the folder holding the probe CSVs (results/probes)")
    names = list(probes) if probes is not None else list(PROBES)
    if probes is None:
        for p in sorted(folder.glob("*.csv")):
            try:
                probe_kind(p.stem)
            except ArchLabError:
                continue
            if p.stem not in names:
                names.append(p.stem)
    frames, found, missing = [], [], []
    for name in names:
        path = folder / f"{name}.csv"
        if not path.is_file():
            missing.append(name)
            continue
        df = pd.read_csv(path)
        if df.empty:
            missing.append(name)
            continue
        frames.append(tidy_probe_table(df, name))
        found.append(name)
    if not frames:
        raise ArchLabError(f"{folder}: no probe results yet (expected {names[0]}.csv ...); run scripts/run_probes.sh")
    return ProbeResults(pd.concat(frames, ignore_index=True, sort=False), found, missing)


# --------------------------------------------------------------------------------------------- expected cells
def expected_cells(sweep_dir: str | Path, probes: Iterable[str]) -> pd.DataFrame:
    """The cells each probe YAML asks for: ``probe``, ``arm``, ``locality``, ``gene_order``, ``replicates``.

    Only the ``arms`` dimension, ``data.synthetic.locality`` and ``data.gene_order`` are crossed (the probe
    studies use no other dimension). Probes without a YAML in ``sweep_dir`` are left out.
    """
    rows = []
    for probe in probes:
        path = Path(sweep_dir) / f"{probe}.yaml"
        if not path.is_file():
            continue
        spec = yaml.safe_load(path.read_text()) or {}
        space = spec.get("space") or {}
        arms: list[str] = []
        localities: list[float] = []
        orders = [STORED_ORDER]
        for key, dim in space.items():
            if not isinstance(dim, dict):
                continue
            if dim.get("type") == "arms":
                arms = [str(a) for a in dim.get("choices", {})]
            elif key == "data.synthetic.locality":
                localities = [round(float(v), 6) for v in dim.get("choices", [])]
            elif key == "data.gene_order":
                orders = [str(v) for v in dim.get("choices", [])]
        if not localities:  # the synthetic experiment's default locality; none for real data
            localities = [1.0] if "synthetic" in str(spec.get("base", "")) else [math.nan]
        reps = int((spec.get("budget") or {}).get("replicates", 1))
        for arm in arms:
            for loc in localities:
                for order in orders:
                    rows.append({"probe": probe, "arm": arm, "locality": loc, "gene_order": order, "replicates": reps})
    return pd.DataFrame(rows, columns=["probe", "arm", "locality", "gene_order", "replicates"])


def coverage(runs: pd.DataFrame, expected: pd.DataFrame, missing_probes: Sequence[str] = ()) -> pd.DataFrame:
    """Runs found per expected cell: ``probe``, ``arm``, ``locality``, ``gene_order``, ``expected``, ``found``,
    ``status`` (``complete``, ``partial``, ``missing``; ``missing`` for every cell of an absent probe file)."""
    cols = ["probe", "arm", "locality", "gene_order", "expected", "found", "status"]
    if expected.empty:
        return pd.DataFrame(columns=cols)
    counts: dict[tuple[Any, ...], int] = {}
    if not runs.empty:
        for key, g in runs.groupby(["probe", "arm", "locality", "gene_order"], dropna=False):
            counts[_cell_key(*key)] = int(g["seed"].nunique()) if "seed" in g.columns else len(g)
    rows = []
    for rec in expected.to_dict("records"):
        loc = rec["locality"]
        found = counts.get(_cell_key(rec["probe"], rec["arm"], loc, rec["gene_order"]), 0)
        if found == 0 and not math.isnan(loc) and rec["probe"] not in missing_probes:
            found = counts.get(_cell_key(rec["probe"], rec["arm"], math.nan, rec["gene_order"]), 0)
        status = "complete" if found >= rec["replicates"] else ("partial" if found else "missing")
        rows.append({**rec, "expected": rec.pop("replicates"), "found": found, "status": status})
    return pd.DataFrame(rows, columns=cols)


# ------------------------------------------------------------------------------------------------ comparisons
def _loc_key(loc: Any) -> float | None:
    try:
        v = float(loc)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v, 6)


def _cell_key(probe: str, arm: str, loc: Any, order: str) -> tuple[Any, ...]:
    return (probe, arm, _loc_key(loc), order)


def setting_label(locality: Any, gene_order: str) -> str:
    """Short text for a cell's setting: ``loc 0.25``, ``order random``, ``loc 1 · order clustered`` or ``""``."""
    parts = []
    loc = _loc_key(locality)
    if loc is not None:
        parts.append(f"loc {loc:g}")
    if gene_order != STORED_ORDER:
        parts.append(f"order {gene_order}")
    return " · ".join(parts)


@dataclass(frozen=True)
class Comparison:
    """``arm_a`` of ``probe_a`` minus ``arm_b`` of ``probe_b`` in one task and setting (the orders may differ).

    ``probe`` is the probe the comparison is filed under; ``baseline`` names the second arm and its source.
    """

    probe: str
    kind: str
    task: str
    locality: float | None
    probe_a: str
    arm_a: str
    order_a: str
    probe_b: str
    arm_b: str
    order_b: str
    baseline: str
    primary: bool = True

    @property
    def label(self) -> str:
        """``unet1d − mlp_matched``, with the gene orders when they differ."""
        if self.order_a != self.order_b:
            return f"{self.arm_a}[{self.order_a}] − {self.arm_b}[{self.order_b}]"
        return f"{self.arm_a} − {self.arm_b}"


def _index(runs: pd.DataFrame) -> dict[tuple[Any, ...], pd.DataFrame]:
    """Runs by ``(probe, task, locality, gene_order, arm)``."""
    out: dict[tuple[Any, ...], pd.DataFrame] = {}
    for (probe, task, loc, order, arm), g in runs.groupby(
        ["probe", "task", "locality", "gene_order", "arm"], dropna=False, sort=False
    ):
        out[(probe, task, _loc_key(loc), order, arm)] = g
    return out


def _max_steps(g: pd.DataFrame) -> float:
    col = "config.train.max_steps"
    if col not in g.columns:
        return math.nan
    v = pd.to_numeric(g[col], errors="coerce").dropna()
    return float(v.iloc[0]) if len(v) else math.nan


def _find_reference(
    index: dict[tuple[Any, ...], pd.DataFrame], arm: str, task: str, loc: float | None, order: str, like: pd.DataFrame
) -> str | None:
    """The probe holding ``arm`` in the same task and setting (and training steps as ``like``), preferring
    the probe kinds in :data:`_LOOKUP_ORDER`."""
    steps = _max_steps(like)
    candidates = []
    for (probe, t, lk, o, a), g in index.items():
        if a != arm or t != task or lk != loc or o != order:
            continue
        s = _max_steps(g)
        if not (math.isnan(steps) or math.isnan(s) or s == steps):
            continue
        kind = probe_kind(probe)
        candidates.append((_LOOKUP_ORDER.index(kind) if kind in _LOOKUP_ORDER else 99, probe))
    return min(candidates)[1] if candidates else None


def _natural(text: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def arm_sort_key(arm: str, rank: float = math.nan) -> tuple[Any, ...]:
    """Display order of arms: by ``rank`` (the YAML order) when known, else U-Net arms, MLP arms, gene
    transformers, then the rest, each in natural order (``mlp_w64`` before ``mlp_w128``)."""
    family = next((i for i, p in enumerate((UNET, "mlp", "gt_")) if arm.startswith(p)), 3)
    return (rank if np.isfinite(rank) else math.inf, family, _natural(arm))


def ordered_arms(df: pd.DataFrame) -> list[str]:
    """The distinct ``arm`` values of ``df`` in display order (:func:`arm_sort_key`, with ``arm_rank`` if present)."""
    ranks = df.groupby("arm")["arm_rank"].min().to_dict() if "arm_rank" in df.columns else {}
    return sorted(dict.fromkeys(df["arm"]), key=lambda a: arm_sort_key(a, float(ranks.get(a, math.nan))))


def _ordered_gene_orders(values: Iterable[str]) -> list[str]:
    return sorted(dict.fromkeys(values), key=lambda o: (o != STORED_ORDER, o))


def build_comparisons(runs: pd.DataFrame) -> list[Comparison]:
    """Every comparison the probe kinds define (see the module docstring), for the cells present in ``runs``.

    Parameters
    ----------
    runs
        Rows of :func:`load_probe_results` (columns ``probe``, ``kind``, ``task``, ``locality``, ``gene_order``,
        ``arm``).

    Returns
    -------
    list of Comparison
        In probe order, then task, setting and arm order of first appearance. A comparison whose reference arm
        is absent is not built (the coverage table lists the missing cell).
    """
    index = _index(runs)
    out: list[Comparison] = []
    probes = list(dict.fromkeys(runs["probe"]))
    for probe in probes:
        kind = probe_kind(probe)
        sub = runs[runs["probe"] == probe]
        for (task, loc_raw), cell in sub.groupby(["task", "locality"], dropna=False, sort=True):
            loc = _loc_key(loc_raw)
            orders = _ordered_gene_orders(cell["gene_order"])
            for order in orders:
                arms = ordered_arms(cell[cell["gene_order"] == order])
                has = {a: (probe, task, loc, order, a) in index for a in arms}

                def add(
                    a: str,
                    b: str,
                    baseline: str,
                    primary: bool = True,
                    pa: str = probe,
                    pb: str = probe,
                    ob: str = order,
                ) -> None:
                    out.append(Comparison(probe, kind, task, loc, pa, a, order, pb, b, ob, baseline, primary))  # noqa: B023

                if kind == "backbones":
                    if has.get(UNET):
                        for b in arms:
                            if b != UNET:
                                add(UNET, b, f"{b} (same study)")
                elif kind == "compute":
                    unet_ref = probe if has.get(UNET) else _find_reference(index, UNET, task, loc, order, _FIXED_STEPS)
                    if unet_ref is not None:
                        for b in arms:
                            if b != UNET:
                                add(UNET, b, f"{b} (same study; {UNET} from {unet_ref})", pa=unet_ref)
                    for a in arms:
                        prefixes = ((f"{UNET}_", UNET), (f"{MLP_BASELINE}_", MLP_BASELINE), ("gt_cross_", GT_CROSS))
                        base = next((b for p, b in prefixes if a.startswith(p)), None)
                        if base is None or base == a:
                            continue
                        ref = probe if has.get(base) else _find_reference(index, base, task, loc, order, _FIXED_STEPS)
                        if ref is not None:
                            add(a, base, f"{base} ({ref})", primary=False, pb=ref)
                    for a in arms:
                        if a.startswith(f"{UNET}_"):
                            suffix = a[len(UNET) :]
                            for b in arms:
                                if b != a and b.endswith(suffix) and not b.startswith(UNET):
                                    add(a, b, f"{b} (same study)")
                elif kind == "unet_dissection":
                    like = index.get((probe, task, loc, order, UNET), cell)
                    ref = _find_reference(index, MLP_BASELINE, task, loc, order, like)
                    for a in arms:
                        if not a.startswith(UNET):
                            continue
                        if ref is not None:
                            add(a, MLP_BASELINE, f"{MLP_BASELINE} ({ref})", pb=ref)
                        unet_ref = probe if has.get(UNET) else _find_reference(index, UNET, task, loc, order, like)
                        if a != UNET and unet_ref is not None:
                            add(a, UNET, f"{UNET} ({unet_ref})", primary=ref is None, pb=unet_ref)
                elif kind == "transformer":
                    like = cell[cell["gene_order"] == order]
                    unet_ref = _find_reference(index, UNET, task, loc, order, like)
                    cross_ref = probe if has.get(GT_CROSS) else _find_reference(index, GT_CROSS, task, loc, order, like)
                    for b in arms:
                        if unet_ref is not None and b != UNET:
                            add(UNET, b, f"{b} (same study; {UNET} from {unet_ref})", pa=unet_ref)
                        if cross_ref is not None and b != GT_CROSS:
                            add(b, GT_CROSS, f"{GT_CROSS} ({cross_ref})", primary=False, pb=cross_ref)
                elif kind == "gene_order":
                    if has.get(UNET) and has.get(MLP_BASELINE):
                        add(UNET, MLP_BASELINE, f"{MLP_BASELINE} (same order)")
                    if order != STORED_ORDER:
                        like = cell[cell["gene_order"] == order]
                        for a, primary in ((UNET, True), (MLP_BASELINE, False)):
                            if not has.get(a):
                                continue
                            stored = (
                                probe
                                if (probe, task, loc, STORED_ORDER, a) in index
                                else _find_reference(index, a, task, loc, STORED_ORDER, like)
                            )
                            if stored is not None:
                                add(
                                    a, a, f"{a} ({STORED_ORDER}, {stored})", primary=primary, pb=stored, ob=STORED_ORDER
                                )
                elif kind == "fair_mlp":
                    like = cell[cell["gene_order"] == order]
                    ref = _find_reference(index, UNET, task, loc, order, like)
                    if ref is None:
                        continue
                    for b in arms:
                        if b != UNET:
                            add(UNET, b, f"{b} (same study; {UNET} from {ref})", pa=ref)
    return out


# ------------------------------------------------------------------------------------------------------- gaps
def _rng(seed: int, *key: object) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def _finite(values: Iterable[Any]) -> np.ndarray:
    v = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return v[np.isfinite(v)]


def gap_estimate(
    a: Iterable[float], b: Iterable[float], n_boot: int = 2000, level: float = 0.95, rng: np.random.Generator | int = 0
) -> dict[str, Any]:
    """``mean(a) - mean(b)`` with an unpaired percentile-bootstrap interval (non-finite values dropped).

    Returns
    -------
    dict
        ``n_a``, ``n_b``, ``mean_a``, ``mean_b``, ``gap``, ``ci_low``, ``ci_high``; the interval is NaN when either
        side has fewer than 2 values (the gap is still given when both have one), everything NaN when a side is
        empty.
    """
    va, vb = _finite(a), _finite(b)
    out: dict[str, Any] = {"n_a": int(va.size), "n_b": int(vb.size)}
    out["mean_a"] = float(va.mean()) if va.size else math.nan
    out["mean_b"] = float(vb.mean()) if vb.size else math.nan
    out["gap"] = out["mean_a"] - out["mean_b"]
    if va.size >= 2 and vb.size >= 2:
        out["ci_low"], out["ci_high"] = bootstrap_difference_ci(va, vb, n_boot, level, rng)
    else:
        out["ci_low"] = out["ci_high"] = math.nan
    return out


def _reference_value(frames: Sequence[pd.DataFrame], col: str) -> float:
    vals = [pd.to_numeric(f[col], errors="coerce") for f in frames if col in f.columns]
    v = _finite(pd.concat(vals)) if vals else np.zeros(0)
    return float(v.mean()) if v.size else math.nan


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
    index = _index(runs)
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
            est = gap_estimate(
                a, b, n_boot, level, _rng(seed, c.probe, c.task, c.locality, c.order_a, c.arm_a, c.arm_b, c.order_b, m)
            )
            if est["n_a"] == 0 or est["n_b"] == 0:
                skipped[(m, c.task)] = skipped.get((m, c.task), 0) + 1
                continue
            floor = _reference_value([ga, gb], f"floor_{m}") if split == "test" else math.nan
            ceiling = _reference_value([ga, gb], f"ceiling_{m}") if split == "test" else math.nan
            direction = METRICS[m].direction
            span = ceiling - floor
            good_span = np.isfinite(span) and span != 0 and ((span < 0) == (direction == "minimize"))
            norm = [v / span if good_span else math.nan for v in (est["gap"], est["ci_low"], est["ci_high"])]
            lo, hi = est["ci_low"], est["ci_high"]
            flag = []
            if min(est["n_a"], est["n_b"]) < 2:
                flag.append("n<2: no interval")
            elif lo > 0 or hi < 0:
                flag.append("CI excludes 0")
            if split == "test" and not good_span:
                flag.append("no floor-ceiling range")
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
                    "level": level,
                    "excludes_zero": bool(lo > 0 or hi < 0),
                    "a_better": bool(est["gap"] < 0) if direction == "minimize" else bool(est["gap"] > 0),
                    "floor": floor,
                    "ceiling": ceiling,
                    "norm_gap": norm[0],
                    "norm_ci_low": min(norm[1], norm[2]) if good_span else math.nan,
                    "norm_ci_high": max(norm[1], norm[2]) if good_span else math.nan,
                    "flag": "; ".join(flag),
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


def _no_negative_zero(v: float) -> float:
    return 0.0 if abs(v) < 0.005 else v


# ---------------------------------------------------------------------------------------------------- figures
_GAP_AXIS = {
    "minimize": "< 0: U-Net better",
    "maximize": "> 0: U-Net better",
}
_TASK_SHORT = {
    "synthetic_combination": "synthetic",
    "kang_celltype_transfer": "Kang",
    "devel_k562_combination": "K562",
    "devel_glioblastoma_transfer": "glioblastoma",
}


def task_label(task: str) -> str:
    """Short display name of a task (``devel_k562_combination`` -> ``K562``)."""
    return _TASK_SHORT.get(task, task)


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


def _forest_rows(gaps: pd.DataFrame) -> pd.DataFrame:
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

    Filled markers: the interval excludes 0; open: it does not; a cross: an arm with fewer than 2 seeds (no
    interval). Marker colour: the comparison arm's backbone. ``normalised`` plots the gap in floor-to-ceiling units
    (positive = the first arm better for every metric).
    """
    rows = _forest_rows(gaps)
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
                    face = color if rec["excludes_zero"] else "white"
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
            ax.set_title(metric_label(m))
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
                top.set_xticks(shown, [f"{_no_negative_zero(cmap[round(v, 6)]):.2f}" for v in shown])
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
                        v = _finite(cell.loc[cell["arm"] == arm, m])
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
                fl, ce = _reference_value([g], f"floor_{m}"), _reference_value([g], f"ceiling_{m}")
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
    n_rows = len(_forest_rows(gaps)) // max(len(metrics), 1)
    height = max(5.0, 0.11 * n_rows + 2.0)
    with paper_style():
        fig = Figure(figsize=(DOUBLE_COLUMN * 1.7, height), layout="constrained")
        left, right = fig.subfigures(1, 2, width_ratios=[1.0, 1.1])
        if _forest_rows(gaps).empty:
            left.text(0.5, 0.5, "no comparison yet:\nboth arms of a pair are needed", ha="center", va="center")
        else:
            fig_gap_forest(gaps, list(left.subplots(1, len(metrics), sharey=True, squeeze=False)[0]), metrics=metrics)
        left.suptitle(
            "(a) U-Net − comparison, 95% bootstrap CI over seeds\n"
            "filled: CI excludes 0 · open: it does not · ×: an arm with < 2 seeds (no CI)",
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


# ---------------------------------------------------------------------------------------------------- summary
def _fmt(v: float, digits: int = 3) -> str:
    return "—" if not np.isfinite(v) else f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"


def _gap_cell(rec: dict[str, Any]) -> str:
    gap = _fmt(rec["gap"])
    if not np.isfinite(rec["ci_low"]):
        return f"{gap} (no CI, n<2)" if np.isfinite(rec["gap"]) else "—"
    star = " **✱**" if rec["excludes_zero"] else ""
    return f"{gap} [{_fmt(rec['ci_low'])}, {_fmt(rec['ci_high'])}]{star}"


def summary_markdown(
    gaps: pd.DataFrame,
    cover: pd.DataFrame,
    results: ProbeResults,
    notes: Sequence[str] = (),
    metrics: Sequence[str] = GAP_METRICS,
    split: str = "test",
    contiguity: pd.DataFrame | None = None,
) -> str:
    """``summary.md``: sources, missing cells, notes, then one table of gaps per probe kind.

    Each gap cell is ``gap [95% CI]``, bold ✱ when the interval excludes 0; ``norm`` is the normalised gap
    (floor-to-ceiling units, > 0: first arm better).
    """
    level = float(gaps["level"].iloc[0]) if not gaps.empty else 0.95
    lines = [
        "# Why does the U-Net win? Gaps between the U-Net and its comparisons",
        "",
        f"Generated by `python analysis/why_unet.py` from the per-run probe tables ({split} split). "
        f"Gap = mean(first arm) − mean(second arm) over seeds; interval: {level:.0%} unpaired percentile bootstrap "
        "of the difference of means (seeds resampled within each arm). Energy distance: < 0 means the first arm "
        "(the U-Net) is better; cosine logFC: > 0. **✱**: the interval excludes 0. `norm`: the gap in units of the "
        "task's floor-to-ceiling range (floor `no_change`, ceiling split half), > 0 = first arm better for every "
        "metric. `n`: seeds of the first / second arm.",
        "",
        "## Sources",
        "",
        "| probe | runs | arms |",
        "|---|---:|---|",
    ]
    for probe in results.found:
        r = results.runs[results.runs["probe"] == probe]
        lines.append(f"| {probe} | {len(r)} | {', '.join(dict.fromkeys(r['arm']))} |")
    if results.missing:
        lines += ["", f"Missing probe files (not run or not finished yet): {', '.join(results.missing)}."]
    incomplete = cover[cover["status"] != "complete"] if not cover.empty else cover
    lines += ["", "## Missing or partial cells", ""]
    if not incomplete.empty:
        absent = incomplete["probe"].isin(results.missing)
        for probe, grp in incomplete[absent].groupby("probe", sort=False):
            lines.append(f"- {probe}: no file yet; all {len(grp)} cells ({int(grp['expected'].sum())} runs) missing.")
        incomplete = incomplete[~absent]
        lines.append("")
    if incomplete.empty and not cover.empty and cover["status"].ne("complete").any():
        lines.append("Every cell of the probe files found has all its seeds.")
    elif incomplete.empty:
        lines.append(
            "None: every cell of every probe file found has all its seeds."
            if not cover.empty
            else "Not checked (no probe YAMLs)."
        )
    else:
        lines += ["| probe | arm | setting | found / expected seeds |", "|---|---|---|---:|"]
        for rec in incomplete.to_dict("records"):
            lines.append(
                f"| {rec['probe']} | {rec['arm']} | {setting_label(rec['locality'], rec['gene_order']) or '—'} | "
                f"{rec['found']} / {rec['expected']} |"
            )
    if notes or (contiguity is not None and not contiguity.empty):
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in notes]
        if contiguity is not None and not contiguity.empty:
            pairs = ", ".join(
                f"{loc:g} → {_no_negative_zero(c):.2f}"
                for loc, c in zip(contiguity["locality"], contiguity["contiguity"], strict=True)
            )
            lines.append(f"- Program contiguity of the synthetic gene order by locality: {pairs}.")
    for kind in PROBE_KINDS:
        g = gaps[gaps["kind"] == kind]
        if g.empty:
            continue
        lines += ["", f"## {kind.replace('_', ' ')}", ""]
        header = "| task | setting | comparison | baseline | n |"
        rule = "|---|---|---|---|---:|"
        for m in metrics:
            header += f" Δ {m.replace('_', ' ')} [CI] | norm |"
            rule += "---|---:|"
        lines += [header + " primary |", rule + "---|"]
        keys = ["probe", "task", "setting", "comparison", "baseline"]
        for _, grp in g.groupby(keys, sort=False):
            first = grp.iloc[0]
            by_m = {r["metric"]: r for r in grp.to_dict("records")}
            ns = {(r["n_a"], r["n_b"]) for r in by_m.values()}
            n = ", ".join(f"{a}/{b}" for a, b in sorted(ns))
            row = f"| {task_label(first['task'])} | {first['setting'] or '—'} | {first['comparison']} | {first['baseline']} | {n} |"
            for m in metrics:
                r = by_m.get(m)
                row += f" {_gap_cell(r)} | {_fmt(r['norm_gap'], 2)} |" if r else " — | — |"
            lines.append(row + (" yes |" if first["primary"] else " no |"))
    return "\n".join(lines) + "\n"


def write_why_unet(
    results: str | Path,
    out: str | Path,
    *,
    sweep_dir: str | Path | None = "sweeps/probes",
    metrics: Sequence[str] = GAP_METRICS,
    split: str = "test",
    n_boot: int = 2000,
    seed: int = 0,
) -> list[Path]:
    """Load the probe tables, estimate every gap, and write the figures, ``gaps.csv``, ``coverage.csv`` and
    ``summary.md`` into ``out``.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ArchLabError
        No probe results, or an unknown metric or split. Results with no complete pair yet still give the
        summary, the coverage and the absolute panel.
    """
    res = load_probe_results(results)
    probes = list(dict.fromkeys([*res.found, *res.missing]))
    expected = (
        expected_cells(sweep_dir, probes) if sweep_dir is not None and Path(sweep_dir).is_dir() else pd.DataFrame()
    )
    if not expected.empty:  # arms in the order the YAMLs list them
        pairs = dict.fromkeys(zip(expected["probe"], expected["arm"], strict=True))
        rank = {key: i for i, key in enumerate(pairs)}
        res.runs["arm_rank"] = [rank.get(k, math.nan) for k in zip(res.runs["probe"], res.runs["arm"], strict=True)]
    gaps, notes = gap_table(res.runs, metrics=metrics, split=split, n_boot=n_boot, seed=seed)
    if gaps.empty:
        notes = [*notes, "no comparison could be built yet: each needs runs of both of its arms in the same setting"]
    cover = coverage(res.runs, expected, res.missing) if not expected.empty else pd.DataFrame()
    contig = locality_contiguity(res.runs)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    written += save_figure(fig_why_unet(res.runs, gaps, metrics=metrics, contiguity=contig), out_dir, "why_unet")
    if not _forest_rows(gaps).empty:
        written += save_figure(fig_gap_forest(gaps, metrics=metrics), out_dir, "why_unet_forest")
    if not _forest_rows(gaps).empty and gaps["norm_gap"].notna().any():
        written += save_figure(
            fig_gap_forest(gaps, metrics=metrics, normalised=True), out_dir, "why_unet_forest_normalised"
        )
    gaps_path = out_dir / "gaps.csv"
    gaps.to_csv(gaps_path, index=False)
    written.append(gaps_path)
    if not cover.empty:
        cover_path = out_dir / "coverage.csv"
        cover.to_csv(cover_path, index=False)
        written.append(cover_path)
    md = out_dir / "summary.md"
    md.write_text(summary_markdown(gaps, cover, res, notes, metrics, split, contig))
    written.append(md)
    return written
