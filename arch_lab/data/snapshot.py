"""The prepared cells of an experiment as one AnnData file, and back.

A run trained on an AnnData held in memory has no file to read its cells from again, yet predicting, exporting
and resuming rebuild its task: the gene order, the training controls that seed generation, the observed cells
that ``--n-cells observed`` counts and that an export compares against. So the run keeps a snapshot of the
prepared cells (normalised, genes selected, cells subset): :func:`snapshot_anndata` writes it and
:func:`data_from_snapshot` reads it back unchanged, without preparing it a second time.
"""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import scipy.sparse as sp

from arch_lab.data.loading import PerturbationData
from arch_lab.errors import DataError

#: ``uns`` key of a snapshot: the fields of :class:`PerturbationData` that are not matrices or tables, as JSON.
SNAPSHOT_KEY = "arch_lab_snapshot"
#: Below this fraction of non-zero values the matrix is stored sparse (CSR).
SPARSE_BELOW = 0.5


def snapshot_anndata(data: PerturbationData) -> ad.AnnData:
    """The prepared cells as an AnnData that :func:`data_from_snapshot` turns back into the same data.

    Parameters
    ----------
    data
        Prepared cells held in memory.

    Returns
    -------
    anndata.AnnData
        ``X`` the log-normalised expression (CSR when mostly zeros), ``obs`` the prepared table (``perturbation``,
        covariates, ``state``), ``var`` the kept genes' annotations, ``uns`` the column names, control value,
        preprocessing, notes and content hash.

    Raises
    ------
    DataError
        The cells are not in memory (``storage: backed``): they have a file already.
    """
    if not isinstance(data.X, np.ndarray):
        raise DataError("a snapshot holds cells in memory; backed data is read from its file instead")
    X = data.X
    matrix = sp.csr_matrix(X) if X.size and np.count_nonzero(X) < SPARSE_BELOW * X.size else X
    adata = ad.AnnData(X=matrix, obs=data.obs.copy(), var=data.gene_annotations())
    adata.uns[SNAPSHOT_KEY] = json.dumps(
        {
            "perturbation_key": data.perturbation_key,
            "control_value": data.control_value,
            "covariate_keys": list(data.covariate_keys),
            "delimiter": data.delimiter,
            "notes": list(data.notes),
            "preprocessing": data.preprocessing,
            "content_hash": data.content_hash,
        }
    )
    return adata


def data_from_snapshot(adata: ad.AnnData) -> PerturbationData:
    """The prepared cells stored by :func:`snapshot_anndata`.

    Raises
    ------
    DataError
        The AnnData is not a snapshot.
    """
    if SNAPSHOT_KEY not in adata.uns:
        raise DataError("not a snapshot of prepared cells (written by arch_lab.data.snapshot.snapshot_anndata)")
    info = json.loads(str(adata.uns[SNAPSHOT_KEY]))
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    obs = adata.obs.copy()
    for col in obs.columns:
        obs[col] = obs[col].astype(str)
    obs.index = obs.index.astype(str).rename("cell_id")
    genes = [str(g) for g in adata.var_names]
    return PerturbationData(
        X=np.ascontiguousarray(X, dtype=np.float32),
        obs=obs,
        genes=genes,
        covariate_keys=list(info["covariate_keys"]),
        control_value=info["control_value"],
        delimiter=info["delimiter"],
        notes=list(info["notes"]),
        perturbation_key=info["perturbation_key"],
        var=adata.var.copy(),
        preprocessing=dict(info["preprocessing"]),
        content_hash=info["content_hash"],
    )
