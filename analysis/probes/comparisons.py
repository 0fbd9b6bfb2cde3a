"""The comparisons each probe kind was designed for, built from the cells present in the probe tables.

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
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .results import STORED_ORDER, loc_key, probe_kind

#: The arm every gap is about.
UNET = "unet1d"
#: The parameter-matched MLP arm used as the baseline of the dissection.
MLP_BASELINE = "mlp_matched"
#: Probe kinds searched (in this order) for a cross-study reference arm of the same task and setting.
_LOOKUP_ORDER = ("backbones", "fair_mlp", "gene_order", "compute", "unet_dissection", "transformer")
#: Reference arm of the transformer probe's secondary comparisons (cross-attention only).
GT_CROSS = "gt_cross_matched"
#: Steps of the probes' fixed-step arms, used to look up references for arms with other budgets.
_FIXED_STEPS = pd.DataFrame({"config.train.max_steps": [800]})


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


def index_runs(runs: pd.DataFrame) -> dict[tuple[Any, ...], pd.DataFrame]:
    """Runs by ``(probe, task, locality, gene_order, arm)``."""
    out: dict[tuple[Any, ...], pd.DataFrame] = {}
    for (probe, task, loc, order, arm), g in runs.groupby(
        ["probe", "task", "locality", "gene_order", "arm"], dropna=False, sort=False
    ):
        out[(probe, task, loc_key(loc), order, arm)] = g
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
    index = index_runs(runs)
    out: list[Comparison] = []
    probes = list(dict.fromkeys(runs["probe"]))
    for probe in probes:
        kind = probe_kind(probe)
        sub = runs[runs["probe"] == probe]
        for (task, loc_raw), cell in sub.groupby(["task", "locality"], dropna=False, sort=True):
            loc = loc_key(loc_raw)
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
