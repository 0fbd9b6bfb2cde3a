"""The recipe searches (sweeps/recipes/): equal budgets across backbones, and every one runs end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from arch_lab.sweeps import load_sweep, run_sweep

RECIPES = sorted((REPO / "sweeps" / "recipes").glob("recipe_*.yaml"))


def test_recipe_searches_share_everything_but_the_network_knobs():
    assert {p.stem for p in RECIPES} == {"recipe_mlp", "recipe_unet1d", "recipe_gene_transformer"}
    sweeps = [load_sweep(p) for p in RECIPES]
    for path, s in zip(RECIPES, sweeps, strict=True):
        assert s.spec.fixed["network.name"] == path.stem.removeprefix("recipe_")
    shared = [
        (
            {k: v for k, v in s.spec.fixed.items() if k != "network.name"},
            {k: v for k, v in s.spec.space.items() if not k.startswith("network.")},
            s.spec.budget,
            s.spec.sampler,
            s.spec.pruner,
            s.objective,
            s.folds,
        )
        for s in sweeps
    ]
    assert all(item == shared[0] for item in shared)
    assert shared[0][0]["train.max_seconds"] > 0  # equal wall-clock budget per run
    assert len(shared[0][6]) >= 2  # trials pool several folds


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_quick_profile_runs_end_to_end(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    run = run_sweep(path, storage=f"sqlite:///{tmp_path / 'quick.db'}", profile="quick")
    assert run.status.finished == 2
    assert run.status.best is not None
