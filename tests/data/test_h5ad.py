"""Writing ``.h5ad`` when pandas stores text as its ``str`` dtype (pandas 3's default; pandas 2's
``future.infer_string``): anndata refuses such columns unless told otherwise; arch_lab writes them as object
strings, leaves the AnnData as it was, and a whole run on such data completes with its predictions written.
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import experiment_dict, synthetic_adata

from arch_lab import api
from arch_lab.config import experiment_from_dict
from arch_lab.data.h5ad import object_strings, write_h5ad
from arch_lab.rundir import RunDir


@pytest.fixture
def str_dtype():
    """Text as pandas' ``str`` dtype while the test runs."""
    with pd.option_context("future.infer_string", True):
        yield


def text_adata() -> ad.AnnData:
    obs = pd.DataFrame(
        {"condition": ["A", "control", "A+B"], "cell_type": pd.Categorical(["t", "t", "b"]), "n": [1, 2, 3]},
        index=["c0", "c1", "c2"],
    )
    var = pd.DataFrame({"symbol": ["g0", "g1"]}, index=["ENSG0", "ENSG1"])
    return ad.AnnData(np.arange(6, dtype=np.float32).reshape(3, 2), obs=obs, var=var)


def test_anndata_alone_refuses_str_columns(str_dtype, tmp_path: Path):
    adata = text_adata()
    assert isinstance(adata.obs["condition"].dtype, pd.StringDtype)
    with pytest.raises(Exception, match="allow_write_nullable_strings"):
        adata.write_h5ad(tmp_path / "plain.h5ad")


def test_str_columns_categories_and_names_round_trip_and_the_input_is_left_alone(str_dtype, tmp_path: Path):
    adata = text_adata()
    adata.raw = adata.copy()
    before = (adata.obs.dtypes.to_dict(), adata.obs.index.dtype, adata.var.index.dtype)
    write_h5ad(adata, tmp_path / "x.h5ad")
    assert (adata.obs.dtypes.to_dict(), adata.obs.index.dtype, adata.var.index.dtype) == before
    back = ad.read_h5ad(tmp_path / "x.h5ad")
    assert list(back.obs_names) == ["c0", "c1", "c2"]
    assert list(back.var_names) == ["ENSG0", "ENSG1"]
    assert back.obs["condition"].astype(str).tolist() == ["A", "control", "A+B"]
    assert back.obs["cell_type"].astype(str).tolist() == ["t", "t", "b"]
    assert list(back.obs["cell_type"].cat.categories) == ["b", "t"]
    assert back.obs["n"].tolist() == [1, 2, 3]
    assert back.var["symbol"].astype(str).tolist() == ["g0", "g1"]
    np.testing.assert_array_equal(back.X, adata.X)
    assert back.raw is not None  # the rest of the AnnData is written as it is
    np.testing.assert_array_equal(back.raw.X, adata.X)


def test_frames_without_str_text_are_written_as_they_are():
    with pd.option_context("future.infer_string", False):
        adata = text_adata()
    assert object_strings(adata.obs) is None
    assert object_strings(adata.var) is None


def test_a_run_on_str_text_completes_with_its_predictions(str_dtype, tmp_path: Path):
    path = tmp_path / "synthetic.h5ad"
    write_h5ad(synthetic_adata(), path)
    cfg = experiment_from_dict(experiment_dict(path, tmp_path, train={"max_steps": 10, "eval_every": 5}))
    result = api.train(cfg)
    run = RunDir(result.run_dir)
    assert run.read_status()["status"] == "completed"
    assert json.loads(run.metrics.read_text())["metrics"]["energy_distance"] == pytest.approx(
        result.summary["energy_distance"]
    )
    predicted = ad.read_h5ad(run.predictions)
    assert predicted.n_obs > 0
    assert set(predicted.obs[cfg.data.perturbation_key].astype(str)) <= set(synthetic_adata().obs["condition"])
