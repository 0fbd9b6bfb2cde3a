"""The probe studies' per-run tables: probe names and kinds, loading, the cells each YAML asks for, coverage.

The probe studies (``sweeps/probes/*.yaml``, run by ``scripts/run_probes.sh``) each write one tidy per-run table,
``results/probes/<probe>.csv`` (one row per completed run: ``arm``, ``task``, ``locality``, ``seed``, every test
metric, ``val_<metric>``, ``floor_<metric>``, ``ceiling_<metric>``, ``config.*``). This module loads whatever is
there and checks it against what the YAMLs ask for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from arch_lab.errors import ArchLabError

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
#: Gene order of the stored data (the reference of the gene-order probe).
STORED_ORDER = "as_stored"
#: Columns identifying one cell of a probe (with ``arm``).
CELL_KEYS: tuple[str, ...] = ("probe", "task", "locality", "gene_order")


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


# ----------------------------------------------------------------------------------------------------- labels
def loc_key(loc: Any) -> float | None:
    """A locality as a lookup key: rounded to 6 decimals, ``None`` for real data (missing or NaN)."""
    try:
        v = float(loc)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v, 6)


def _cell_key(probe: str, arm: str, loc: Any, order: str) -> tuple[Any, ...]:
    return (probe, arm, loc_key(loc), order)


def setting_label(locality: Any, gene_order: str) -> str:
    """Short text for a cell's setting: ``loc 0.25``, ``order random``, ``loc 1 · order clustered`` or ``""``."""
    parts = []
    loc = loc_key(locality)
    if loc is not None:
        parts.append(f"loc {loc:g}")
    if gene_order != STORED_ORDER:
        parts.append(f"order {gene_order}")
    return " · ".join(parts)


_TASK_SHORT = {
    "synthetic_combination": "synthetic",
    "kang_celltype_transfer": "Kang",
    "devel_k562_combination": "K562",
    "devel_glioblastoma_transfer": "glioblastoma",
}


def task_label(task: str) -> str:
    """Short display name of a task (``devel_k562_combination`` -> ``K562``)."""
    return _TASK_SHORT.get(task, task)
