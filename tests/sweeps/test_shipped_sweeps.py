"""Every shipped sweep (``sweeps/*.yaml``, ``sweeps/recipes/*.yaml``, ``sweeps/probes/*.yaml``) has a ``quick``
profile, and the demo's, the tuning and the recipe-check sweeps' quick profiles run end to end (the recipe searches' in
``test_recipes.py``, the probes' in ``test_probes.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

from arch_lab.sweeps import load_sweep, run_sweep

TOP = sorted((REPO / "sweeps").glob("*.yaml"))
RECIPES = sorted((REPO / "sweeps" / "recipes").glob("*.yaml"))
#: The recipe checks (every fold of a task with the shipped recipe); the recipe searches run in test_recipes.py.
CHECKS = sorted((REPO / "sweeps" / "recipes").glob("check_*.yaml"))
SHIPPED = TOP + RECIPES + sorted((REPO / "sweeps" / "probes").glob("*.yaml"))


def test_the_top_level_sweeps_are_the_demo_and_the_tuning_sweeps():
    assert {p.stem for p in TOP} == {"demo", "tune_unet1d", "tune_mlp", "tune_gene_transformer"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_sweep_has_a_small_quick_profile(path: Path):
    sweep, quick = load_sweep(path), load_sweep(path, "quick")
    assert quick.name == f"{sweep.name}_quick"
    assert quick.replicates == 1
    assert quick.n_trials <= min(sweep.n_trials, 16)
    for values in quick.grid() if quick.is_grid else [quick.space.resolve({})]:
        assert quick.experiment(values).train.max_steps <= 10


@pytest.mark.parametrize("path", TOP + CHECKS, ids=lambda p: p.stem)
def test_quick_profile_runs_end_to_end(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'quick.db'}"
    result = run_sweep(path, storage=storage, profile="quick")
    assert result.sweep.name.endswith("_quick")
    assert result.status.finished == result.status.slots == result.sweep.n_trials
    assert result.status.counts == {"COMPLETE": result.status.slots}, result.status.failures
