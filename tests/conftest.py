"""Shared fixtures: the shipped real datasets and small synthetic perturbation data made here."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DEVEL = REPO / "data" / "perturbench_devel" / "devel.h5ad"
KANG = REPO / "data" / "kang_scgen_valid" / "valid.h5ad"
EXPERIMENTS = REPO / "experiments"


def synthetic_adata(
    n_genes: int = 24,
    states: tuple[str, ...] = ("s0", "s1", "s2"),
    perts: tuple[str, ...] = ("A", "B", "C", "A+B"),
    cells: int = 40,
    effect: float = 2.0,
    seed: int = 0,
) -> ad.AnnData:
    """Log-normalised-looking cells with a strong, known mean shift per single perturbation.

    Single ``p`` shifts genes ``3k..3k+2`` (k = index of p) by ``effect``; a combination adds its singles'
    shifts; each state has its own baseline. Values are non-negative and non-integer.
    """
    rng = np.random.default_rng(seed)
    singles = sorted({t for p in perts for t in p.split("+")})
    rows, obs = [], []
    for si, state in enumerate(states):
        base = 1.0 + 0.5 * si + 0.2 * np.sin(np.arange(n_genes) + si)
        for pert in ("control", *perts):
            mu = base.copy()
            if pert != "control":
                for t in pert.split("+"):
                    k = singles.index(t)
                    mu[3 * k : 3 * k + 3] += effect
            rows.append(np.abs(mu + 0.3 * rng.standard_normal((cells, n_genes))) + 1e-3)
            obs += [(pert, state)] * cells
    X = np.concatenate(rows).astype(np.float32)
    frame = pd.DataFrame(obs, columns=["condition", "cell_type"])
    frame.index = [f"cell{i}" for i in range(len(frame))]
    return ad.AnnData(X=X, obs=frame, var=pd.DataFrame(index=[f"gene{i}" for i in range(n_genes)]))


@pytest.fixture
def synthetic_h5ad(tmp_path: Path) -> Path:
    """A synthetic dataset written to disk."""
    path = tmp_path / "synthetic.h5ad"
    synthetic_adata().write_h5ad(path)
    return path


def experiment_dict(path: Path, tmp_path: Path, **sections: dict) -> dict:
    """A small experiment on a synthetic file: covariate transfer, tiny MLP, few steps."""
    cfg = {
        "name": "synthetic",
        "seed": 0,
        "output_dir": str(tmp_path / "runs"),
        "data": {"path": str(path), "perturbation_key": "condition", "control_value": "control",
                 "covariate_keys": ["cell_type"]},
        "task": {"kind": "covariate_transfer", "seed": 0, "heldout_fraction": 0.4},
        "method": {"name": "flow_matching"},
        "network": {"name": "mlp", "width": 64, "depth": 2},
        "optim": {"lr": 2e-3, "batch_size": 64, "conditions_per_batch": 4, "warmup_steps": 5},
        "train": {"max_steps": 30, "eval_every": 10, "checkpoint_every": 10, "progress": False, "threads": 1,
                  "val_conditions": 2, "val_cells": 16},
        "flow": {"steps": 5},
        "eval": {"pca_components": 5, "deg_top_k": 5},
    }  # fmt: skip
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg
