"""Write a run's predictions in the layout other evaluators read (cell-eval's predicted and real AnnData)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np

from arch_lab.data.h5ad import write_h5ad
from arch_lab.data.task import Condition, Task
from arch_lab.errors import ArchLabError
from arch_lab.harness import cells_to_anndata, perturbation_column


@dataclass
class CellEvalExport:
    """The files of a cell-eval export and the command that scores them.

    Attributes
    ----------
    pred, real
        ``pred.h5ad`` (generated cells plus the training controls they were made from) and ``real.h5ad``
        (observed cells of the same conditions plus the evaluated split's controls).
    pert_col, control_pert, celltype_col
        The arguments cell-eval needs (the data's own column names).
    outdir
        Where the printed command writes cell-eval's results.
    """

    pred: Path
    real: Path
    pert_col: str
    control_pert: str
    celltype_col: str | None
    outdir: Path

    def command(self, num_threads: int = 2, profile: str = "full") -> str:
        """The ``cell-eval run`` command line scoring the export."""
        parts = ["cell-eval", "run", "-ap", str(self.pred), "-ar", str(self.real), "--control-pert",
                 self.control_pert, "--pert-col", self.pert_col]  # fmt: skip
        if self.celltype_col is not None:
            parts += ["--celltype-col", self.celltype_col]
        parts += ["--num-threads", str(num_threads), "--profile", profile, "-o", str(self.outdir)]
        return shlex.join(parts)


def cell_eval_tables(task: Task, predictions: ad.AnnData, split: str) -> tuple[ad.AnnData, ad.AnnData]:
    """The predicted and real AnnData cell-eval compares, for the conditions predicted in ``predictions``.

    Each holds the same perturbations, control included, the same genes in the same order and the data's column
    names. The two control sets are disjoint, as arch_lab scores them: ``pred`` carries the training controls of
    each state (the pool the predictions were made from, the reference of the predicted response), ``real`` the
    controls of ``split`` (the reference of the observed response).

    Raises
    ------
    ArchLabError
        When the predictions' genes differ from the task's or name a condition the split does not hold.
    """
    if list(predictions.var_names) != list(task.data.genes):
        raise ArchLabError("predicted genes differ from the task's genes; the data file changed since the run")
    key = perturbation_column(predictions)
    perts = predictions.obs[key].astype(str).to_numpy()
    states = predictions.obs["state"].astype(str).to_numpy()
    X = task.data.X
    pred_parts, pred_perts, pred_states = [np.asarray(_dense(predictions.X), np.float32)], list(perts), list(states)
    real_parts: list[np.ndarray] = []
    real_perts: list[str] = []
    real_states: list[str] = []
    control = task.data.control_value
    held = set(task.conditions(split))
    for state in sorted(set(states)):
        for pert in sorted(set(perts[states == state])):
            c = Condition(state, pert)
            if c not in held:
                raise ArchLabError(f"condition {c.label} has predictions but no observed {split} cells to compare")
            rows = task.cells(split, c)
            real_parts.append(X[rows])
            real_perts += [pert] * len(rows)
            real_states += [state] * len(rows)
        source = task.controls(state, "train")
        pred_parts.append(X[source])
        pred_perts += [control] * len(source)
        pred_states += [state] * len(source)
        scoring = task.controls(state, split)
        real_parts.append(X[scoring])
        real_perts += [control] * len(scoring)
        real_states += [state] * len(scoring)
    pred = cells_to_anndata(task, np.concatenate(pred_parts), pred_perts, pred_states, prefix="pred")
    real = cells_to_anndata(task, np.concatenate(real_parts), real_perts, real_states, prefix="real")
    return pred, real


def _dense(x: object) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)


def export_cell_eval(task: Task, predictions: ad.AnnData, split: str, out: Path) -> CellEvalExport:
    """Write ``out/pred.h5ad`` and ``out/real.h5ad`` for ``cell-eval run`` (see :func:`cell_eval_tables`).

    The cell-type column given to cell-eval is the single covariate key, or ``state`` (covariate values joined
    by ``|``) when there are several; none without covariates.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pred, real = cell_eval_tables(task, predictions, split)
    keys = task.data.covariate_keys
    celltype = keys[0] if len(keys) == 1 else ("state" if keys else None)
    export = CellEvalExport(out / "pred.h5ad", out / "real.h5ad", task.data.perturbation_key, task.data.control_value,
                            celltype, out / "cell_eval")  # fmt: skip
    write_h5ad(pred, export.pred)
    write_h5ad(real, export.real)
    return export


def export_run_cell_eval(run_dir: str | Path, out: str | Path) -> CellEvalExport:
    """Export a completed run's predictions for cell-eval (see :func:`export_cell_eval`).

    The real cells come from the split the run scored (``eval.split``), rebuilt from the run's ``split.csv``.

    Raises
    ------
    ArchLabError
        Not a completed run, or its data changed since the run.
    """
    from arch_lab.api import load_run_task
    from arch_lab.rundir import RunDir

    run = RunDir(run_dir)
    if not run.is_completed():
        raise ArchLabError(f"{run_dir}: run is not completed; finish it (arch-lab train --resume) before exporting")
    cfg = run.read_config()
    return export_cell_eval(load_run_task(run, cfg), run.read_predictions(), cfg.eval.split, Path(out))
