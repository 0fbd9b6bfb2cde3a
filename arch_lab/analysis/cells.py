"""Generated and observed cells of chosen conditions, as tidy tables for figures 6 and 7."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from arch_lab.analysis.tidy import read_run
from arch_lab.data.task import Condition, Task
from arch_lab.errors import ArchLabError
from arch_lab.harness import perturbation_column
from arch_lab.metrics.deg import de_scores
from arch_lab.metrics.pseudobulk import logfc
from arch_lab.rundir import RunDir

_PathLike = str | Path


def parse_condition(text: str | Condition) -> Condition:
    """``STATE/PERTURBATION`` (the label used in tables) as a :class:`Condition`."""
    if isinstance(text, Condition):
        return text
    state, sep, pert = str(text).rpartition("/")
    if not sep or not state or not pert:
        raise ArchLabError(f"condition {text!r}: expected STATE/PERTURBATION, e.g. s0/A+B")
    return Condition(state, pert)


def _load(run_dirs: Sequence[_PathLike]) -> tuple[list[dict], Task]:
    from arch_lab.api import load_run_task

    if not run_dirs:
        raise ArchLabError("no run directory given")
    runs = [read_run(d) for d in run_dirs]
    experiments = {r["experiment"] for r in runs}
    splits = {r["split"] for r in runs}
    if len(experiments) > 1 or len(splits) > 1:
        raise ArchLabError(
            f"runs come from different experiments or splits ({sorted(map(str, experiments))}); "
            "compare cells of one task at a time"
        )
    return runs, load_run_task(Path(runs[0]["run_dir"]))


def _predicted(run_dir: _PathLike, task: Task) -> ad.AnnData:
    pred = RunDir(run_dir).read_predictions()
    if list(pred.var_names) != list(task.data.genes):
        raise ArchLabError(f"{run_dir}: predicted genes differ from the task's genes; the data file changed")
    return pred


def _rows(adata: ad.AnnData, c: Condition) -> np.ndarray:
    obs = adata.obs
    labels = obs[perturbation_column(adata)]
    return np.flatnonzero(((obs["state"] == c.state) & (labels == c.perturbation)).to_numpy())


def _dense(x: object) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def _check(task: Task, split: str, conditions: Iterable[Condition]) -> list[Condition]:
    known = set(task.conditions(split))
    out = []
    for c in conditions:
        if c not in known:
            labels = ", ".join(x.label for x in sorted(known, key=lambda x: x.label)[:8])
            raise ArchLabError(f"condition {c.label!r} is not held out in split {split!r}; conditions: {labels}, ...")
        out.append(c)
    return out


def strongest_conditions(task: Task, split: str, n: int) -> list[Condition]:
    """The ``n`` conditions of ``split`` whose observed mean moves furthest from their state's controls."""
    X = task.data.X
    scored = []
    for c in task.conditions(split):
        ctrl = task.controls(c.state, split)
        cells = task.cells(split, c)
        if len(ctrl) and len(cells):
            scored.append((float(np.linalg.norm(X[cells].mean(0) - X[ctrl].mean(0))), c.label, c))
    return [c for *_, c in sorted(scored, key=lambda t: (-t[0], t[1]))[:n]]


def _subsample(x: np.ndarray, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_cells is None or len(x) <= max_cells:
        return x
    return x[np.sort(rng.choice(len(x), size=max_cells, replace=False))]


def cell_projection(
    run_dirs: Sequence[_PathLike],
    conditions: Sequence[str | Condition] | None = None,
    n_conditions: int = 3,
    max_cells: int | None = 300,
    controls: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Observed and generated cells of chosen conditions on two principal components of the observed cells.

    The PCA is fit on the observed cells of the chosen conditions (evaluated split) only; generated cells of every
    run and the state's observed controls are projected onto it.

    Parameters
    ----------
    run_dirs
        Completed runs of one task (e.g. one per backbone).
    conditions
        ``STATE/PERTURBATION`` labels (default: the ``n_conditions`` with the largest observed shift).
    max_cells
        Cells kept per (set, condition), drawn without replacement; None keeps all.
    controls
        Also project the observed control cells of each condition's state.

    Returns
    -------
    pandas.DataFrame
        ``source`` (``observed``, ``generated``, ``control``), ``backbone``, ``run_dir`` and ``seed`` (set for
        generated cells), ``condition``, ``state``, ``perturbation``, ``pc1``, ``pc2``. ``attrs`` holds
        ``explained_variance_ratio`` and ``split`` (the evaluated split the cells come from).
    """
    runs, task = _load(run_dirs)
    split = runs[0]["split"]
    chosen = (
        _check(task, split, [parse_condition(c) for c in conditions])
        if conditions
        else strongest_conditions(task, split, n_conditions)
    )
    if not chosen:
        raise ArchLabError(f"split {split!r} holds no condition to show")
    rng = np.random.default_rng(seed)
    X = task.data.X
    sets: list[tuple[dict, np.ndarray]] = []
    for c in chosen:
        base = {"condition": c.label, "state": c.state, "perturbation": c.perturbation}
        sets.append(({**base, "source": "observed"}, _subsample(_dense(X[task.cells(split, c)]), max_cells, rng)))
        if controls:
            ctrl = _dense(X[task.controls(c.state, split)])
            sets.append(({**base, "source": "control"}, _subsample(ctrl, max_cells, rng)))
    for run in runs:
        pred = _predicted(run["run_dir"], task)
        for c in chosen:
            cells = _dense(pred.X[_rows(pred, c)])
            if len(cells) == 0:
                raise ArchLabError(f"{run['run_dir']}: no generated cells for {c.label}")
            ident = {"backbone": run["backbone"], "run_dir": run["run_dir"], "seed": run["seed"]}
            base = {"condition": c.label, "state": c.state, "perturbation": c.perturbation}
            sets.append(({**base, **ident, "source": "generated"}, _subsample(cells, max_cells, rng)))
    observed = np.concatenate([x for meta, x in sets if meta["source"] == "observed"])
    if observed.shape[0] < 3:
        raise ArchLabError(f"only {observed.shape[0]} observed cells in the chosen conditions; need 3 for a PCA")
    pca = PCA(n_components=2, random_state=seed).fit(observed)
    frames = []
    for meta, x in sets:
        z = pca.transform(x)
        frames.append(pd.DataFrame({**meta, "pc1": z[:, 0], "pc2": z[:, 1]}))
    out = pd.concat(frames, ignore_index=True)
    cols = ["source", "backbone", "run_dir", "seed", "condition", "state", "perturbation", "pc1", "pc2"]
    out = out.reindex(columns=cols)
    out.attrs["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
    out.attrs["split"] = split
    return out


def gene_logfc(run_dirs: Sequence[_PathLike], condition: str | Condition | None = None) -> pd.DataFrame:
    """Per-gene log2 fold change against the state's controls, predicted vs observed, for one condition.

    Parameters
    ----------
    run_dirs
        Completed runs of one task (e.g. the best run of each backbone).
    condition
        ``STATE/PERTURBATION`` (default: the condition with the largest observed shift).

    Returns
    -------
    pandas.DataFrame
        One row per (run, gene): ``backbone``, ``run_dir``, ``seed``, ``condition``, ``gene``,
        ``logfc_observed``, ``logfc_predicted``, ``de_score`` (observed Welch t against the controls) and
        ``de_rank`` (1 = largest ``|de_score|``). The controls are the observed controls of the evaluated split,
        as in scoring. ``attrs["split"]`` names that split.
    """
    runs, task = _load(run_dirs)
    split = runs[0]["split"]
    c = _check(task, split, [parse_condition(condition)])[0] if condition else None
    if c is None:
        strongest = strongest_conditions(task, split, 1)
        c = strongest[0] if strongest else None
    if c is None:
        raise ArchLabError(f"split {split!r} holds no condition to show")
    X = task.data.X
    observed = _dense(X[task.cells(split, c)])
    ctrl = _dense(X[task.controls(c.state, split)])
    if len(ctrl) == 0:
        raise ArchLabError(f"state {c.state!r} has no control cells in split {split!r}")
    lfc_obs = logfc(observed.mean(0), ctrl.mean(0))
    t = de_scores(observed, ctrl)
    rank = np.empty(len(t), dtype=int)
    rank[np.argsort(-np.abs(t), kind="stable")] = np.arange(1, len(t) + 1)
    frames = []
    for run in runs:
        pred = _predicted(run["run_dir"], task)
        cells = _dense(pred.X[_rows(pred, c)])
        if len(cells) == 0:
            raise ArchLabError(f"{run['run_dir']}: no generated cells for {c.label}")
        frames.append(
            pd.DataFrame(
                {
                    "backbone": run["backbone"],
                    "run_dir": run["run_dir"],
                    "seed": run["seed"],
                    "condition": c.label,
                    "gene": list(task.data.genes),
                    "logfc_observed": lfc_obs,
                    "logfc_predicted": logfc(cells.mean(0), ctrl.mean(0)),
                    "de_score": t,
                    "de_rank": rank,
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out.attrs["split"] = split
    return out
