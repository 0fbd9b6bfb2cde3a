"""Studies read back: one lookup from a sweep YAML, a name, a URL or a file, and one trials table with its export
layout. Trials are made with ``optuna.trial.create_trial``; nothing is trained."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from conftest import experiment_dict, synthetic_adata
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from arch_lab.errors import ArchLabError
from arch_lab.sweeps.report import EXPORT_TAIL, export_layout, export_trials
from arch_lab.sweeps.study import load_study, locate_study, trials_table

DISTRIBUTIONS = {
    "network.name": CategoricalDistribution(["mlp", "unet1d"]),
    "network.width": IntDistribution(8, 64),
    "optim.lr": FloatDistribution(1e-4, 1e-2),
}


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a sweep YAML (``toy.yaml``, study ``toy`` in ``runs/sweeps/toy.db``)."""
    monkeypatch.chdir(tmp_path)
    synthetic_adata().write_h5ad(tmp_path / "synthetic.h5ad")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(experiment_dict(tmp_path / "synthetic.h5ad", tmp_path)))
    sweep = {
        "study": {"name": "toy"},
        "base": "base.yaml",
        "objective": {"metric": "energy_distance"},
        "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}},
        "budget": {"n_trials": 2},
        "profiles": {"quick": {"budget": {"n_trials": 1}}},
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(sweep))
    return tmp_path


def _trials(study: optuna.Study) -> None:
    """Two complete trials (one without a width), a failed one without a parameter count, a pruned one."""
    for i, state in enumerate([TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]):
        params = {"network.name": ["mlp", "unet1d"][i % 2], "optim.lr": 1e-3 * (i + 1)}
        if i % 2:
            params["network.width"] = 16 * i
        attrs = {
            "params": {**params, "fixed.blocks": [1, 2]},
            "run_dirs": [f"/r/trial-{i}/seed-0", f"/r/trial-{i}/seed-1"],
            "seeds": [0, 1],
            "values_per_seed": [1.0 + i, 2.0 + i],
            "slot": i,
            "worker": "host:1",
        }
        if state != TrialState.FAIL:
            attrs |= {"parameter_count": 1000 + i, "wall_seconds": 2.5}
        if state == TrialState.PRUNED:
            attrs["reason"] = "pruned at step 10"
        distributions = {k: DISTRIBUTIONS[k] for k in params}
        value = 1.5 + i if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(params=params, distributions=distributions, value=value, state=state,
                                     user_attrs=attrs))  # fmt: skip


def test_one_lookup_for_yaml_name_url_and_file(bench: Path):
    db = bench / "runs" / "sweeps" / "toy.db"
    assert locate_study("toy.yaml")[:2] == locate_study("toy")[:2] == locate_study(f"sqlite:///{db}#toy")[:2]
    assert locate_study("toy.yaml").storage.path == db
    assert locate_study("toy.yaml").name == "toy"
    assert locate_study("toy").default
    assert not locate_study("toy.yaml").default
    assert locate_study("toy.yaml", profile="quick").name == "toy_quick"
    assert locate_study("toy", profile="quick").storage.path == bench / "runs" / "sweeps" / "toy_quick.db"
    assert locate_study("other", storage=f"sqlite:///{db}") == ("other", locate_study("toy").storage, False)
    with pytest.raises(ArchLabError, match="not a run directory, a folder of runs, or a study.*no such file"):
        load_study("toy")
    with pytest.raises(ArchLabError, match="database file not found"):
        load_study("toy.yaml")
    assert not db.parent.exists()  # reading never creates a storage
    db.parent.mkdir(parents=True)
    _trials(optuna.create_study(study_name="toy", storage=f"sqlite:///{db}"))
    for source in ("toy", "toy.yaml", f"sqlite:///{db}", f"sqlite:///{db}#toy", db, str(db)):
        assert load_study(source).study_name == "toy"
    assert locate_study(db) == (None, locate_study("toy").storage, False)
    with pytest.raises(ArchLabError, match="no study named 'nope'"):
        load_study("nope", storage=f"sqlite:///{db}")


def test_one_trials_table_and_the_export_layout(bench: Path):
    study = optuna.create_study(study_name="toy", storage=f"sqlite:///{bench / 'toy.db'}")
    with pytest.raises(ArchLabError, match="has no trials"):
        trials_table(study)
    assert trials_table(study, allow_empty=True).empty
    assert export_layout(trials_table(study, allow_empty=True)).empty
    _trials(study)
    trials = trials_table(study)
    assert trials["trial"].tolist() == [0, 1, 2, 3]
    assert trials["state"].tolist() == ["complete", "complete", "fail", "pruned"]
    assert trials["backbone"].tolist() == ["mlp", "unet1d", "mlp", "unet1d"]
    assert trials["params_fixed.blocks"].tolist() == ["[1, 2]"] * 4  # sampled values, fixed ones included
    assert str(trials["params_network.width"].dtype) == "Int64"
    assert str(trials["user_attrs_slot"].dtype) == "Int64"
    assert trials["reason"].tolist()[2:] == [
        "worker lost (no heartbeat within the grace period); retries exhausted",
        "pruned at step 10",
    ]
    assert trials["value_seed_1"].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert trials["user_attrs_run_dirs"][0] == ["/r/trial-0/seed-0", "/r/trial-0/seed-1"]

    out = export_trials(str(bench / "toy.db"), bench / "trials.csv")
    assert list(out.columns[:3]) == ["number", "state", "value"]
    assert list(out.columns[-len(EXPORT_TAIL) :]) == list(EXPORT_TAIL)
    assert out["state"].tolist() == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"]
    assert out["run_dirs"][1] == "/r/trial-1/seed-0;/r/trial-1/seed-1"
    assert set(out["seeds"]) == {"0;1"}
    csv = pd.read_csv(bench / "trials.csv", dtype=str, keep_default_na=False)
    assert csv["parameter_count"].tolist() == ["1000", "1001", "", "1003"]  # integers stay integers
    assert csv["params_network.width"].tolist() == ["", "16", "", "48"]


def test_every_worker_and_resume_gets_its_own_sampler_stream():
    """Worker 0 joining a study after one finished trial drew worker 1's fresh stream under the old arithmetic mix
    (``offset * K + n_existing``): the same first parameters twice in a race of three workers."""
    import hashlib

    from arch_lab.sweeps.study import _mix

    assert _mix(7, 0, 0) == 7  # a single fresh worker keeps the configured seed
    by_hand = int.from_bytes(hashlib.sha256(b"7:3").digest()[:4], "little")
    assert _mix(7, 3, 0) == by_hand  # a fresh worker's stream is what it was
    seeds = {_mix(7, offset, n) for offset in range(10) for n in range(10)}
    assert len(seeds) == 100
    assert _mix(0, 0, 1) != _mix(0, 1, 0)
