# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # arch_lab from a notebook
#
# From an AnnData in memory to trained velocity networks, a small sweep, the report figures, a cell-eval export
# and the study in optuna-dashboard. This file is a notebook in jupytext's percent format: open it in Jupyter
# (`jupytext --to notebook docs/tutorial.py`, or the jupytext extension) or run it as a script:
#
# ```bash
# python docs/tutorial.py                     # a few minutes on 2 CPU cores
# TUTORIAL_TINY=1 python docs/tutorial.py     # seconds of training: what CI runs (tests/test_tutorial.py)
# ```
#
# Outputs go to `runs/tutorial/` (or `$TUTORIAL_OUT`).

# %%
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import yaml

import arch_lab

TINY = os.environ.get("TUTORIAL_TINY") == "1"
STEPS = 8 if TINY else 400  # training steps per run
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "data" / "kang_scgen_valid").is_dir())
OUT = Path(os.environ.get("TUTORIAL_OUT", ROOT / "runs" / "tutorial")).resolve()
OUT.mkdir(parents=True, exist_ok=True)
print(f"arch_lab {arch_lab.__version__}; networks: {arch_lab.list_networks()}; writing to {OUT}")

# %% [markdown]
# ## 1. An AnnData, prepared the scverse way
#
# The shipped Kang PBMC data (control vs IFN-β stimulated cells of 7 cell types, log-normalised). Any AnnData
# works: arch_lab only needs the obs column holding the perturbation, its control value and the covariate columns.
# Here scanpy marks the highly variable genes in `var['highly_variable']`, and `data.hvg: var` makes arch_lab
# train on exactly those. The alternatives: `data.hvg: dispersion` (the default, with `data.max_genes`) and
# `data.hvg: seurat_v3` (scanpy's flavour on raw counts, PerturBench's choice: the matrix itself when it holds
# counts, else `data.counts_layer`). On Kang the default and `seurat_v3` share only 14 of their top 50 genes
# (`docs/tasks.md`, "Gene selection").

# %%
adata = ad.read_h5ad(ROOT / "data" / "kang_scgen_valid" / "valid.h5ad")
sc.pp.highly_variable_genes(adata, n_top_genes=64 if TINY else 500)  # log-normalised data: scanpy's default flavour
print(adata)
print(adata.obs.groupby(["cell_type", "condition"], observed=True).size().unstack())

# %% [markdown]
# ## 2. Train two backbones on it
#
# `arch_lab.train` takes the experiment as a YAML path, a dict or a config, plus dotted overrides. With `adata=`
# the experiment needs no `data.path`: the run keeps a snapshot of the prepared cells and a content hash of the
# data, so it can predict, export and resume later without this AnnData. The shipped YAML is the Kang cell-type
# transfer task: fold 0 of 7 tests one held-out cell type's response, having seen it in the others.

# %%
experiment = ROOT / "experiments" / "kang_celltype_transfer.yaml"
overrides = {
    "output_dir": str(OUT / "runs"),
    "data.max_genes": None,  # the genes come from var['highly_variable']
    "data.hvg": "var",
    "train.max_steps": STEPS,
    "train.eval_every": max(STEPS // 4, 1),
    "train.checkpoint_every": STEPS,
    "train.progress": False,
    "optim.warmup_steps": max(STEPS // 10, 1),
    "train.loggers": ["csv", "tensorboard"],  # the default; add wandb or mlflow (pip install 'arch-lab[wandb]')
}
if TINY:  # seconds, not minutes: few ODE steps, few cells scored, and very small networks
    overrides |= {"flow.steps": 4, "eval.pca_components": 10, "eval.energy_max_cells": 64, "train.val_cells": 16,
                  "train.val_conditions": 1}  # fmt: skip


def network(name: str) -> dict:
    """``network.name`` and, at the tiny budget, the network's smallest knobs."""
    from arch_lab.networks import get_network_class

    knobs = get_network_class(name).tiny_config() if TINY else {}
    return {"network.name": name, **{f"network.{k}": v for k, v in knobs.items()}}


runs = {name: arch_lab.train(experiment, adata=adata, overrides={**overrides, **network(name)})
        for name in ("mlp", "unet1d")}  # fmt: skip
pd.DataFrame({name: run.metrics for name, run in runs.items()}).loc[
    ["energy_distance", "pearson_delta", "cosine_logfc", "deg_recall"]
]

# %% [markdown]
# Each run is a directory (`run.run_dir`); `run.metrics` is the evaluated split's summary, `run.reference` the
# task's floor (`no_change`) and ceiling (`split_half`), `run.per_condition` one row per held-out condition,
# `run.history` the validation curve and `run.train_log` every step (loss, learning rate, gradient norm, step
# time). The same curves are in TensorBoard:

# %%
run = runs["unet1d"]
print(run)
print(run.reference)
print(f"tensorboard --logdir {OUT / 'runs'}")
run.train_log.tail()

# %% [markdown]
# ## 3. Generate cells, and open the run again later
#
# `run.predict` takes a table in the data's own column names and returns an AnnData with those names, the genes
# and their annotations. `arch_lab.load_run` opens a run directory as the same object (no AnnData needed);
# `arch-lab predict RUN --conditions conditions.csv` does the same from the shell.

# %%
held_out = run.per_condition[["state", "perturbation"]].drop_duplicates()
conditions = pd.DataFrame({"condition": held_out["perturbation"], "cell_type": held_out["state"]})
pred = run.predict(conditions, n_cells=50 if TINY else 200)
print(pred)

again = arch_lab.load_run(run.run_dir)
same = again.predict(conditions, n_cells=50 if TINY else 200)
assert np.array_equal(same.X, pred.X)  # seeded
assert list(pred.obs.columns[:2]) == ["condition", "cell_type"]

# %% [markdown]
# Splits from PerturBench load as they are: `task.split_file: path/to/split.csv` reads a headerless
# `cell_id,split` file (PerturBench's layout) or a run's own `split.csv`, instead of computing the split.

# %%
print(pd.read_csv(run.run_dir / "split.csv").head(3))

# %% [markdown]
# ## 4. A small sweep
#
# Sweeps are Optuna studies from a YAML (`docs/sweeps.md`) and their trials may run in other processes or on other
# machines, so they read the cells from a file: write the AnnData once, point an experiment at it, and sweep the
# learning rate (and, at the full budget, the backbone).

# %%
adata.write_h5ad(OUT / "kang_hvg.h5ad")
base = yaml.safe_load(experiment.read_text())
base["data"] |= {"path": str(OUT / "kang_hvg.h5ad"), "max_genes": None, "hvg": "var"}
(OUT / "experiment.yaml").write_text(yaml.safe_dump(base))

storage = f"sqlite:///{OUT / 'sweep.db'}"
sweep = {
    "study": {"name": "tutorial_sweep", "storage": storage, "output_dir": str(OUT / "sweeps")},
    "base": str(OUT / "experiment.yaml"),
    "fixed": {k: v for k, v in overrides.items() if k.startswith(("train.", "optim.", "flow.", "eval."))},
    "objective": {"metric": "energy_distance", "split": "val"},
    "space": {"optim.lr": {"type": "float", "low": 3.0e-4, "high": 3.0e-3, "log": True}},
    "sampler": {"type": "random", "seed": 0},
    "pruner": {"type": "none"},
    "budget": {"n_trials": 2 if TINY else 8},
}
if TINY:  # the learning rate of the tiny MLP
    sweep["fixed"] |= network("mlp")
else:  # the backbone and the learning rate
    sweep["space"]["network.name"] = {"type": "categorical", "choices": ["mlp", "unet1d"]}
(OUT / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))

from arch_lab.sweeps import load_study, run_sweep, trials_table

result = run_sweep(OUT / "sweep.yaml", workers=1)
trials = trials_table(load_study("tutorial_sweep", storage))
trials[["trial", "state", "value", "backbone", "params_optim.lr"]]

# %% [markdown]
# ## 5. The report figures
#
# `build_report` (the library behind `arch-lab report`) reads runs or studies and writes every figure they
# support, tables with paired intervals, and `report.md` (`docs/report.md`).

# %%
from arch_lab.analysis import build_report

report = build_report(["tutorial_sweep"], OUT / "report", storage=storage, n_boot=200 if TINY else 2000)
print(f"{report.path}: {len(report.figures)} figures, {len(report.tables)} tables")
for name, why in report.skipped:
    print(f"not drawn: {name}: {why}")
pngs = sorted((OUT / "report" / "figures").glob("*.png"))
if pngs:
    try:
        from IPython.display import Image, display

        display(Image(filename=str(pngs[0])))
    except ImportError:
        print(pngs[0])

# %% [markdown]
# ## 6. Score it with cell-eval
#
# `run.export_cell_eval` (or `arch-lab export cell-eval RUN --out DIR`) writes the predicted and real AnnData in
# cell-eval's layout, in the data's own column names, and gives the command that scores them.

# %%
export = run.export_cell_eval(OUT / "cell_eval")
print(export.command())

# %% [markdown]
# ## 7. The study in optuna-dashboard
#
# Browse the trials, the parameter importances and the optimisation history (`pip install optuna-dashboard`):

# %%
print(f"optuna-dashboard {storage}")
