"""Runs from Python: train on an AnnData held in memory, open the run again, generate cells, and use the run from the
command line later without the AnnData."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import EXPERIMENTS, experiment_dict, synthetic_adata
from typer.testing import CliRunner

import arch_lab
from arch_lab import api
from arch_lab.analysis import read_run
from arch_lab.cli import app
from arch_lab.errors import ArchLabError, ConfigError, DataError
from arch_lab.provenance import GIT_SHA_ENV
from arch_lab.rundir import RunDir
from arch_lab.runs import Run, experiment_config

STEPS = 12


def renamed() -> ad.AnnData:
    """The synthetic cells with the user's own column names (``guide``, ``line``)."""
    adata = synthetic_adata()
    adata.obs = adata.obs.rename(columns={"condition": "guide", "cell_type": "line"})
    adata.var["symbol"] = [f"S{i}" for i in range(adata.n_vars)]
    return adata


def in_memory_experiment(tmp_path) -> dict:
    """An experiment with no data.path: only the column names of the AnnData."""
    raw = experiment_dict(tmp_path / "unused.h5ad", tmp_path,
                          train={"max_steps": STEPS, "eval_every": 6, "checkpoint_every": 6})  # fmt: skip
    raw["data"] = {"perturbation_key": "guide", "control_value": "control", "covariate_keys": ["line"]}
    return raw


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memory")
    adata = renamed()
    run = arch_lab.train(in_memory_experiment(tmp), adata=adata, overrides={"seed": 1})
    return run, adata


def test_train_on_an_in_memory_anndata_returns_a_completed_run(memory_run):
    run, adata = memory_run
    assert isinstance(run, Run)
    assert run.status == "completed"
    assert run.config.seed == 1
    assert np.isfinite(run.metrics["energy_distance"])
    assert set(run.reference) == {"no_change", "split_half"}  # floor and ceiling
    assert {"state", "perturbation", "energy_distance"} <= set(run.per_condition.columns)
    assert run.history["step"].tolist() == [6, 12]
    assert run.train_log["step"].tolist() == list(range(1, STEPS + 1))
    assert repr(run).startswith("Run(")
    assert "status='completed'" in repr(run)
    assert run.predictions().n_obs > 0


def test_the_run_records_its_data_source_and_keeps_a_snapshot(memory_run):
    run, adata = memory_run
    data = run.meta["data"]
    assert data["source"] == "anndata"
    assert data["content_hash"].startswith("sha256:")
    assert data["snapshot"] == RunDir.SNAPSHOT
    assert RunDir(run.run_dir).snapshot.is_file()
    assert run.config.data.path == RunDir.SNAPSHOT
    assert run.config.base_dir == str(run.run_dir.resolve())
    task = run.task()
    assert task.data.content_hash == data["content_hash"]
    assert task.data.genes == list(adata.var_names)


def test_predict_uses_the_users_column_names(memory_run):
    run, adata = memory_run
    wanted = pd.DataFrame({"guide": ["A", "A+B", "C"], "line": ["s0", "s1", "s2"]})
    pred = run.predict(wanted, n_cells=5)
    assert pred.n_obs == 15
    assert {"guide", "line"} <= set(pred.obs.columns)
    assert "perturbation" not in pred.obs
    assert pred.obs["guide"].tolist() == ["A"] * 5 + ["A+B"] * 5 + ["C"] * 5
    assert list(pred.var_names) == list(adata.var_names)
    assert pred.var["symbol"].tolist() == adata.var["symbol"].tolist()
    np.testing.assert_array_equal(run.predict(wanted, n_cells=5).X, pred.X)  # seeded
    rows = run.predict([{"guide": "A", "line": "s0"}], n_cells=5)  # a list of rows works too
    assert rows.obs["guide"].tolist() == ["A"] * 5
    observed = run.predict({"guide": ["B"], "line": ["s1"]}, n_cells="observed")
    assert observed.n_obs == int(((adata.obs["guide"] == "B") & (adata.obs["line"] == "s1")).sum())
    with pytest.raises(DataError, match="unknown to the training vocabulary"):
        run.predict({"guide": ["Z"], "line": ["s0"]})


def test_load_run_gives_the_same_run_back_without_the_anndata(memory_run):
    run, _ = memory_run
    back = arch_lab.load_run(run.run_dir)
    assert back.run_dir == run.run_dir
    assert back.config == run.config
    assert back.metrics == run.metrics
    pd.testing.assert_frame_equal(back.per_condition, run.per_condition)
    wanted = pd.DataFrame({"guide": ["A+B"], "line": ["s2"]})
    np.testing.assert_array_equal(back.predict(wanted, n_cells=4, seed=3).X, run.predict(wanted, n_cells=4, seed=3).X)
    with pytest.raises(ArchLabError, match="not a run directory"):
        arch_lab.load_run(run.run_dir.parent)


def test_the_command_line_predicts_and_exports_a_run_trained_in_memory(memory_run, tmp_path):
    run, _ = memory_run
    conditions = tmp_path / "conditions.csv"
    pd.DataFrame({"guide": ["A", "B"], "line": ["s0", "s0"]}).to_csv(conditions, index=False)
    out = tmp_path / "generated.h5ad"
    result = CliRunner().invoke(app, ["predict", str(run.run_dir), "--conditions", str(conditions), "--n-cells", "3",
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    generated = ad.read_h5ad(out)
    assert generated.n_obs == 6
    assert "guide" in generated.obs
    export = run.export_cell_eval(tmp_path / "cell_eval")
    assert export.pert_col == "guide"
    assert export.celltype_col == "line"
    assert ad.read_h5ad(export.real).n_obs > 0


def test_resume_rebuilds_the_task_from_the_snapshot(tmp_path):
    run = arch_lab.train(in_memory_experiment(tmp_path), adata=renamed())
    RunDir(run.run_dir).set_status("running")  # as if interrupted after its last checkpoint
    RunDir(run.run_dir).metrics.unlink()
    notes: list[str] = []
    result = api.resume(run.run_dir, notes=notes.append)
    assert result.summary["energy_distance"] == pytest.approx(run.metrics["energy_distance"], rel=1e-6)
    assert Run(run.run_dir).status == "completed"
    assert not any("resumed under" in n for n in notes)  # the same commit: nothing to report
    assert len(RunDir(run.run_dir).read_meta()["resumes"]) == 1
    assert read_run(run.run_dir)["resumed_git_shas"] == ""


def test_a_resume_under_another_commit_is_recorded_and_reported(tmp_path, monkeypatch):
    started, later = "a" * 40, "b" * 40
    monkeypatch.setenv(GIT_SHA_ENV, started)
    run = arch_lab.train(in_memory_experiment(tmp_path), adata=renamed())
    RunDir(run.run_dir).set_status("running")
    RunDir(run.run_dir).metrics.unlink()
    monkeypatch.setenv(GIT_SHA_ENV, later)
    notes: list[str] = []
    api.resume(run.run_dir, notes=notes.append)
    assert [n for n in notes if "resumed under" in n] == [
        f"{run.run_dir}: started under commit {started[:12]}, resumed under {later[:12]}; its meta.json lists both "
        "(resumes), and analyses report runs that mix commits"
    ]
    meta = RunDir(run.run_dir).read_meta()
    assert meta["git_sha"] == started
    assert [r["git_sha"] for r in meta["resumes"]] == [later]
    row = read_run(run.run_dir)
    assert (row["git_sha"], row["resumed_git_shas"]) == (started, later)


def test_experiment_yaml_with_an_anndata_replaces_its_data_path(tmp_path):
    kang = EXPERIMENTS / "kang_celltype_transfer.yaml"
    adata = synthetic_adata()
    cfg = experiment_config(kang, {"data.max_genes": None}, adata=adata)
    assert cfg.data.path == RunDir.SNAPSHOT
    assert cfg.network.name == "mlp"
    with_file = experiment_config(kang)
    assert with_file.data.path.endswith("valid.h5ad")
    raw = yaml.safe_load(kang.read_text())
    assert experiment_config(raw, {"seed": 4}).seed == 4
    assert experiment_config(with_file).data == with_file.data
    with pytest.raises(ConfigError, match=r"^data\.path: not set|^data: give exactly one"):
        api.train(experiment_config({k: v for k, v in raw.items() if k != "data"} | {"data": {}}))


def test_a_backed_anndata_is_read_from_its_file(synthetic_h5ad, tmp_path):
    adata = ad.read_h5ad(synthetic_h5ad, backed="r")
    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 4, "eval_every": 4, "checkpoint_every": 4})
    del raw["data"]["path"]
    run = arch_lab.train(raw, adata=adata)
    assert run.meta["data"]["source"] == "memory"
    assert run.meta["data"]["path"] == str(synthetic_h5ad.resolve())
    assert not RunDir(run.run_dir).snapshot.exists()
    adata.file.close()


def test_a_file_that_changed_since_the_run_is_refused(synthetic_h5ad, tmp_path):
    raw = experiment_dict(synthetic_h5ad, tmp_path, method={"name": "perturbation_mean"})
    run = arch_lab.train(raw)
    assert run.meta["data"]["source"] == "memory"
    assert run.meta["data"]["content_hash"].startswith("sha256:")
    run.predict({"condition": ["A"], "cell_type": ["s0"]}, n_cells=2)
    changed = synthetic_adata()
    changed.X[0, 0] += 1.0
    changed.write_h5ad(synthetic_h5ad)
    with pytest.raises(DataError, match=r"synthetic\.h5ad: the data changed since run .* restore the data"):
        arch_lab.load_run(run.run_dir).predict({"condition": ["A"], "cell_type": ["s0"]}, n_cells=2)


def test_top_level_exports():
    from arch_lab import networks

    assert arch_lab.list_networks is networks.list_networks
    assert arch_lab.register_network is networks.register_network
    assert {"mlp", "unet1d", "gene_transformer"} <= set(arch_lab.list_networks())
    assert arch_lab.train is __import__("arch_lab.runs").runs.train
    assert set(arch_lab.__all__) <= set(dir(arch_lab))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = arch_lab.nope
    for name in ("train", "load_run", "Run", "list_networks", "register_network"):
        doc = getattr(arch_lab, name).__doc__
        assert doc, name
        assert "Parameters" in doc or "Returns" in doc, name


def test_a_run_keeps_its_gene_order_file_and_checks_the_order_when_reopened(synthetic_h5ad, tmp_path):
    from arch_lab.data.task import build_task

    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": STEPS, "eval_every": 6, "checkpoint_every": 6})
    genes = list(build_task(experiment_config(raw)).data.genes)
    listing = tmp_path / "order.txt"
    listing.write_text("\n".join(genes[::-1]))
    raw["data"] |= {"gene_order": "file", "gene_order_file": str(listing), "gene_order_shift": 2}
    run = arch_lab.train(raw)
    wanted = [*genes[::-1][-2:], *genes[::-1][:-2]]  # reversed, then rolled by 2: by hand
    assert RunDir(run.run_dir).gene_order.read_text().splitlines() == wanted
    listing.write_text("\n".join(genes))  # the user edits the file later: the run still reads its own copy
    assert list(api.load_run_task(run.run_dir).spec.gene_names) == wanted
    RunDir(run.run_dir).set_status("running")  # as if interrupted after its last checkpoint
    RunDir(run.run_dir).metrics.unlink()
    result = api.resume(run.run_dir)
    assert result.summary["energy_distance"] == pytest.approx(run.metrics["energy_distance"], rel=1e-6)
    # a run with a computed order records it too, and a rebuilt order that differs is refused
    plain = arch_lab.train(experiment_dict(synthetic_h5ad, tmp_path, data={"gene_order": "reversed"},
                                           train={"max_steps": 2, "eval_every": 2, "checkpoint_every": 2}))  # fmt: skip
    assert RunDir(plain.run_dir).read_gene_order() == genes[::-1]
    config = RunDir(plain.run_dir).config
    config.write_text(config.read_text().replace("gene_order: reversed", "gene_order: as_stored"))
    with pytest.raises(DataError, match=r"the gene order built again differs from the one the run recorded in "
                                        r"gene_order\.txt; restore"):  # fmt: skip
        api.load_run_task(plain.run_dir)


def test_a_key_added_at_its_default_leaves_the_config_hash_as_it_was(tmp_path):
    import hashlib
    import json

    from arch_lab.config import _UNHASHED, config_hash

    cfg = experiment_config(experiment_dict(tmp_path / "x.h5ad", tmp_path))
    data = cfg.model_dump(mode="json")
    for key in ("output_dir", "base_dir"):
        data.pop(key)
    for sub in _UNHASHED["train"]:
        data["train"].pop(sub)
    del data["data"]["gene_order_file"]  # the config as it was before the key existed
    assert config_hash(cfg) == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    listed = cfg.model_copy(update={"data": cfg.data.model_copy(update={"gene_order": "file",
                                                                         "gene_order_file": "o.txt"})})  # fmt: skip
    other = listed.model_copy(update={"data": listed.data.model_copy(update={"gene_order_file": "p.txt"})})
    assert len({config_hash(cfg), config_hash(listed), config_hash(other)}) == 3


def test_the_config_hash_of_a_fixed_experiment_is_the_one_earlier_checkpoints_hold(tmp_path):
    """Checkpoints store this hash and a resume compares it: a change here orphans every checkpoint written so far.
    The value is the hash computed at 98ab0b1, before ``data.gene_order_file`` existed."""
    from pathlib import Path

    from arch_lab.config import config_hash

    cfg = experiment_config(experiment_dict(Path("/data/x.h5ad"), tmp_path))
    assert config_hash(cfg) == "e9ca19ee2044871e", (
        "a key added to ExperimentConfig changes every run's config hash, so earlier checkpoints no longer resume: "
        "list it in arch_lab.config._HASHED_WHEN_SET with the default that keeps the earlier behaviour"
    )
