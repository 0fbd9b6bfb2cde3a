"""Where cells came from: the content hash of the data as read, and the snapshot of prepared cells a run trained on
an in-memory AnnData keeps."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import synthetic_adata

from arch_lab.data import load_perturbation_data
from arch_lab.data.loading import content_hash
from arch_lab.data.snapshot import SNAPSHOT_KEY, data_from_snapshot, snapshot_anndata
from arch_lab.errors import DataError

ARGS = {"perturbation_key": "condition", "control_value": "control", "covariate_keys": ["cell_type"]}


def test_content_hash_follows_the_values_names_and_labels_only():
    adata = synthetic_adata()
    first = load_perturbation_data(adata, **ARGS).content_hash
    assert first.startswith("sha256:")
    assert len(first) == len("sha256:") + 64
    same = adata.copy()
    same.X = sp.csr_matrix(same.X)  # another layout, other annotations: same cells
    same.obs["note"] = "x"
    same.uns["anything"] = 1
    assert load_perturbation_data(same, **ARGS).content_hash == first
    for change in ("value", "label", "gene"):
        other = adata.copy()
        if change == "value":
            other.X[0, 0] += 0.5
        elif change == "label":
            other.obs.iloc[0, other.obs.columns.get_loc("cell_type")] = "s1"
        else:
            other.var_names = [f"x{i}" for i in range(other.n_vars)]
        assert load_perturbation_data(other, **ARGS).content_hash != first, change


def test_content_hash_is_taken_on_the_values_as_read_before_normalisation():
    counts = np.random.default_rng(0).poisson(3.0, size=(40, 6)).astype(np.float32)
    obs = pd.DataFrame(
        {"condition": ["control", "A"] * 20, "cell_type": ["s"] * 40}, index=[f"c{i}" for i in range(40)]
    )
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(6)]))
    data = load_perturbation_data(adata, **ARGS)
    assert data.preprocessing["normalized"]
    assert data.content_hash == content_hash(counts, obs.index, list(adata.var_names), obs[["condition", "cell_type"]])


@pytest.mark.parametrize("max_genes", [None, 12])
def test_snapshot_round_trip_restores_the_prepared_data(tmp_path, max_genes):
    adata = synthetic_adata()
    adata.var["symbol"] = [f"S{i}" for i in range(adata.n_vars)]
    data = load_perturbation_data(adata, **ARGS, max_genes=max_genes, subset={"cell_type": ["s0", "s2"]})
    path = tmp_path / "data.h5ad"
    snapshot_anndata(data).write_h5ad(path)
    back = data_from_snapshot(ad.read_h5ad(path))
    np.testing.assert_array_equal(back.X, data.X)
    assert back.X.dtype == np.float32
    pd.testing.assert_frame_equal(back.obs, data.obs)
    pd.testing.assert_frame_equal(back.gene_annotations(), data.gene_annotations())
    for field in ("genes", "covariate_keys", "control_value", "delimiter", "notes", "perturbation_key",
                  "preprocessing", "content_hash"):  # fmt: skip
        assert getattr(back, field) == getattr(data, field), field


def test_mostly_zero_cells_are_stored_sparse():
    adata = synthetic_adata()
    adata.X[:, 4:] = 0.0
    snap = snapshot_anndata(load_perturbation_data(adata, **ARGS))
    assert sp.issparse(snap.X)
    dense = snapshot_anndata(load_perturbation_data(synthetic_adata(), **ARGS))
    assert not sp.issparse(dense.X)
    assert SNAPSHOT_KEY in dense.uns


def test_a_foreign_anndata_is_not_a_snapshot():
    with pytest.raises(DataError, match="^not a snapshot of prepared cells"):
        data_from_snapshot(synthetic_adata())
