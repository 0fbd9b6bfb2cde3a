"""Read a user's perturbation AnnData into a dense, validated, log-normalised matrix."""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from arch_lab.data.preprocess import (
    is_raw_counts,
    mean_expression_ranking,
    median_total_count,
    normalize_log1p,
    select_genes,
    seurat_v3_ranking,
)
from arch_lab.errors import DataError

log = logging.getLogger(__name__)

#: Separator between covariate values in a state label (``A172|lapatinib``).
STATE_SEP = "|"
#: Label texts that mean "no label" (what NaN becomes as text), besides NaN itself and empty or blank labels.
MISSING_TEXT = frozenset({"", "nan", "<na>"})


class RowMatrix(Protocol):
    """A ``[cells, genes]`` matrix that stays on disk and reads the rows asked for, such as
    :class:`arch_lab.data.backed.BackedMatrix`: ``X[rows]`` is a dense array.
    """

    @property
    def shape(self) -> tuple[int, int]:
        """``(cells, genes)``."""
        ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


@dataclass
class PerturbationData:
    """Cells of a perturbation experiment, ready to split.

    Attributes
    ----------
    X
        ``[cells, genes]`` float32 log-normalised expression: dense in memory, or a
        :class:`arch_lab.data.backed.BackedMatrix` that reads rows from disk (``data.storage: backed``).
    obs
        One row per cell, indexed by cell id, with columns ``perturbation`` (str), ``state`` (str, covariate
        values joined by ``|``) and one column per covariate key.
    genes
        Gene names, in stored order.
    covariate_keys
        The covariate columns that define a state.
    control_value
        Label of control cells in ``obs['perturbation']``.
    delimiter
        Separator of combined perturbations.
    notes
        Human-readable preprocessing notes (normalisation, gene selection) recorded in the run directory.
    perturbation_key
        The user's obs column of perturbation labels (outputs use the same name).
    var
        The user's gene annotations of the kept genes, indexed by gene name, in stored order (None: none kept).
    preprocessing
        What was done to the expression: ``normalized`` (raw counts scaled per cell, then log1p), ``target_sum``
        (the per-cell total they were scaled to, None when the data came log-normalised), ``log1p_base``
        (None: natural log, scanpy's convention) and ``gene_selection`` (how genes were kept).
    rows
        Positions in the source file of the kept cells, in order (None: all of them).
    content_hash
        ``sha256:<hex>`` of the cells as read (see :func:`content_hash`); None for data on disk (``backed``).
    """

    X: np.ndarray | RowMatrix
    obs: pd.DataFrame
    genes: list[str]
    covariate_keys: list[str]
    control_value: str
    delimiter: str = "+"
    notes: list[str] = field(default_factory=list)
    perturbation_key: str = "perturbation"
    var: pd.DataFrame | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    rows: np.ndarray | None = None
    content_hash: str | None = None

    def gene_annotations(self) -> pd.DataFrame:
        """The kept genes' annotations (``var``), indexed by gene name in stored order; empty columns when none."""
        index = pd.Index(self.genes, name=None)
        if self.var is None:
            return pd.DataFrame(index=index)
        return self.var.reindex(index)

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.X.shape[0])

    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return int(self.X.shape[1])

    def tokens(self, perturbation: str) -> list[str]:
        """The single perturbations making up a label (``[]`` for control)."""
        if perturbation == self.control_value:
            return []
        return [t for t in perturbation.split(self.delimiter) if t]

    @property
    def is_control(self) -> np.ndarray:
        """Boolean mask of control cells."""
        return (self.obs["perturbation"] == self.control_value).to_numpy()


def _most_common(values: pd.Series, n: int = 8) -> str:
    counts = values.astype(str).value_counts().head(n)
    return ", ".join(f"{k!r} ({v})" for k, v in counts.items())


def _require_column(obs: pd.DataFrame, key: str, what: str) -> None:
    if key not in obs.columns:
        cols = ", ".join(map(str, obs.columns))
        near = [str(c) for c in obs.columns if str(c).strip() == str(key).strip()]
        hint = f" (did you mean {near[0]!r}? the names differ in surrounding whitespace)" if near else ""
        raise DataError(f"{what} column {key!r} not in obs{hint}; available columns: {cols}")


def clean_labels(
    column: pd.Series, delimiter: str | None = None, keep: str | None = None
) -> tuple[pd.Series, np.ndarray]:
    """Labels as text without surrounding whitespace, and which cells have none.

    Parameters
    ----------
    column
        An obs column.
    delimiter
        For perturbation labels: also strip whitespace around each single of a combination (``"A + B"`` becomes
        ``"A+B"``).
    keep
        A label never taken for a missing one (the control value).

    Returns
    -------
    tuple
        The cleaned labels (same index) and a boolean mask of cells without a label: NaN, empty, only whitespace,
        or the text ``nan``.
    """
    missing = column.isna().to_numpy()
    text = column.astype(str)
    split = delimiter if delimiter and delimiter.strip() else None

    def clean(value: str) -> str:
        value = value.strip()
        if split is not None and split in value:
            value = split.join(t.strip() for t in value.split(split))
        return value

    mapping = {v: clean(v) for v in pd.unique(text)}
    cleaned = text.map(mapping)
    empty = cleaned.str.lower().isin(MISSING_TEXT) & (cleaned != keep)
    return cleaned, missing | empty.to_numpy()


def check_unique_genes(genes: list[str] | np.ndarray) -> None:
    """Refuse duplicate gene names (they make genes ambiguous in every output).

    Raises
    ------
    DataError
        Names a few duplicates and the fix.
    """
    dup = pd.Index(genes).duplicated()
    if dup.any():
        names = sorted({str(g) for g in np.asarray(genes, dtype=object)[dup]})
        raise DataError(
            f"{int(dup.sum())} duplicate gene names in var_names (e.g. {', '.join(map(repr, names[:3]))}); make them "
            "unique first, e.g. adata.var_names_make_unique() in anndata/scanpy, then write the file again"
        )


def check_gene_count(n_genes: int, deg_top_k: int) -> None:
    """Refuse too few genes for the metrics to mean anything.

    Raises
    ------
    DataError
        Fewer than 2 genes (no expression profile to compare), or no more genes than ``eval.deg_top_k`` (every
        gene would be a top DEG, so ``deg_recall`` would be 1 whatever the prediction).
    """
    if n_genes < 2:
        raise DataError(
            f"the data has {n_genes} gene{'s' if n_genes != 1 else ''}; the metrics compare expression profiles and "
            "need at least 2 (check data.path, data.max_genes or data.gene_key)"
        )
    if n_genes <= deg_top_k:
        raise DataError(
            f"the data has {n_genes} genes but eval.deg_top_k is {deg_top_k}: every gene would be a top DEG and "
            f"deg_recall would be 1 whatever the prediction; set eval.deg_top_k below {n_genes} "
            f"(e.g. --set eval.deg_top_k={max(1, n_genes // 5)}) or use more genes"
        )


def content_hash(X: np.ndarray, cells: pd.Index, genes: list[str], labels: pd.DataFrame) -> str:
    """A content hash of cells as read: ``sha256:<hex>`` of the expression values and every name and label.

    It covers the float32 expression matrix (before any normalisation), the cell ids, the gene names and the
    label columns a task reads (perturbation and covariates), so it changes when any of them does and not when
    the file is merely rewritten or the AnnData holds other annotations.

    Parameters
    ----------
    X
        ``[cells, genes]`` float32 expression, as read.
    cells, genes
        Cell ids and gene names.
    labels
        The obs columns read (one row per cell).

    Returns
    -------
    str
    """
    h = hashlib.sha256()
    h.update(np.asarray(X.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    for values in (list(map(str, cells)), list(genes), list(map(str, labels.columns))):
        h.update("\x1f".join(values).encode() + b"\x1e")
    for col in labels.columns:
        h.update("\x1f".join(labels[col].astype(str)).encode() + b"\x1e")
    return f"sha256:{h.hexdigest()}"


def read_anndata(path: str | Path) -> ad.AnnData:
    """Read an ``.h5ad`` file with a one-line error when it is missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: data file not found; check data.path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ad.read_h5ad(p)
    except Exception as exc:
        raise DataError(f"{p}: not a readable .h5ad file ({type(exc).__name__}: {exc})") from None


def load_perturbation_data(
    adata: ad.AnnData,
    *,
    perturbation_key: str,
    control_value: str,
    covariate_keys: list[str],
    delimiter: str = "+",
    layer: str | None = None,
    counts: str = "normalize",
    max_genes: int | None = None,
    subset: dict[str, list[str]] | None = None,
    hvg: str = "dispersion",
    counts_layer: str | None = None,
) -> PerturbationData:
    """Validate and prepare an AnnData for perturbation tasks.

    Parameters
    ----------
    adata
        Cells × genes.
    perturbation_key, control_value, covariate_keys, delimiter, layer
        Where the labels and the expression live (see :class:`arch_lab.config.DataConfig`).
    counts
        ``normalize`` raw counts (median total count, log1p) or ``refuse`` them.
    max_genes
        Keep this many highly variable genes plus every measured perturbed gene.
    subset
        Keep only cells whose obs values are in these lists.
    hvg, counts_layer
        How genes are ranked for ``max_genes`` (``dispersion``, ``seurat_v3``, ``mean``) or kept (``var``), and where
        ``seurat_v3`` finds raw counts when the matrix is log-normalised (see :class:`arch_lab.config.DataConfig`).

    Returns
    -------
    PerturbationData

    Raises
    ------
    DataError
        No cells, a missing column, cells without a label, an absent control value, non-finite values, raw counts
        when refused, an empty subset, or duplicate gene names.

    Notes
    -----
    Labels are read as text without surrounding whitespace (``"KLF1 "`` is ``"KLF1"``; each single of a
    combination too); when that changes a label, a note says so. Every note is in ``notes`` (printed by the
    command line and recorded in the run's ``meta.json``).
    """
    obs = adata.obs
    if adata.n_obs == 0:
        raise DataError("the data holds no cells (obs has 0 rows); check data.path")
    _require_column(obs, perturbation_key, "perturbation_key")
    for key in covariate_keys:
        _require_column(obs, key, "covariate_keys")
    check_unique_genes(adata.var_names)
    notes: list[str] = []
    labels: dict[str, pd.Series] = {}
    unlabelled: dict[str, np.ndarray] = {}
    for key in dict.fromkeys([perturbation_key, *covariate_keys]):
        raw = obs[key]
        labels[key], unlabelled[key] = clean_labels(
            raw, delimiter if key == perturbation_key else None, control_value if key == perturbation_key else None
        )
        changed = (labels[key] != raw.astype(str)).to_numpy() & ~unlabelled[key]
        if changed.any():
            i = int(np.flatnonzero(changed)[0])
            before, after = str(raw.iloc[i]), str(labels[key].iloc[i])
            msg = (
                f"obs[{key!r}]: stripped surrounding whitespace from {raw.astype(str)[changed].nunique()} labels "
                f"(e.g. {before!r} -> {after!r}); they now match the labels written without it"
            )
            log.info(msg)
            notes.append(msg)
    pert = labels[perturbation_key]
    if not (pert == control_value).any():
        raise DataError(
            f"control_value {control_value!r} not found in obs[{perturbation_key!r}]; "
            f"most common values: {_most_common(pert)}"
        )
    keep = np.ones(adata.n_obs, dtype=bool)
    for key, values in (subset or {}).items():
        _require_column(obs, key, "subset")
        col = labels[key] if key in labels else obs[key].astype(str).str.strip()
        missing = sorted(set(map(str, values)) - set(col.unique()))
        if missing:
            raise DataError(f"subset {key}: values {missing} not present; most common values: {_most_common(col)}")
        keep &= col.isin([str(v) for v in values]).to_numpy()
    if not keep.any():
        raise DataError("subset keeps no cells; loosen data.subset")
    for key, mask in unlabelled.items():
        bad = int((mask & keep).sum())
        if bad:
            raise DataError(
                f"obs[{key!r}]: {bad} of {int(keep.sum())} cells have no label (NaN, empty or only whitespace); "
                f"label them{f' (controls as {control_value!r})' if key == perturbation_key else ''} or drop them from "
                "the file first"
            )

    if layer is not None:
        if layer not in adata.layers:
            raise DataError(f"layer {layer!r} not in the AnnData; available layers: {list(adata.layers) or 'none'}")
        matrix = adata.layers[layer]
    else:
        matrix = adata.X
    if matrix is None:
        raise DataError("the AnnData has no expression matrix in X; set data.layer")
    matrix = matrix if keep.all() else matrix[keep]
    X = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).sum())
        raise DataError(f"expression matrix holds {bad} non-finite values (NaN/inf); clean or impute them first")
    if (X < 0).any():
        raise DataError("expression matrix holds negative values; expected counts or log-normalised expression")
    genes = [str(g) for g in adata.var_names]
    label_keys = list(dict.fromkeys([perturbation_key, *covariate_keys]))
    digest = content_hash(X, obs.index[keep], genes, obs.loc[keep, label_keys])
    raw = X

    preprocessing: dict[str, Any] = {"normalized": False, "target_sum": None, "log1p_base": None,
                                     "gene_selection": "all genes"}  # fmt: skip
    if is_raw_counts(X):
        if counts == "refuse":
            raise DataError(
                "the matrix holds raw counts; set data.counts: normalize or pass log-normalised data (or data.layer)"
            )
        target = median_total_count(X)
        X = normalize_log1p(X, target)
        preprocessing.update(normalized=True, target_sum=target)
        msg = f"raw counts detected: normalised each cell to the median total count ({target:g}), then log1p"
        log.info(msg)
        notes.append(msg)

    cells = obs.index[keep].astype(str)
    out = pd.DataFrame(index=pd.Index(cells, name="cell_id"))
    out["perturbation"] = pert[keep].to_numpy()
    for key in covariate_keys:
        out[key] = labels[key][keep].to_numpy()
    if covariate_keys:
        out["state"] = out[covariate_keys].agg(STATE_SEP.join, axis=1)
    else:
        out["state"] = "all"
    if out.index.duplicated().any():
        out.index = pd.Index([f"{c}-{i}" for i, c in enumerate(out.index)], name="cell_id")
        notes.append("cell ids were not unique; suffixed with their position")

    var = adata.var.copy()
    var.index = pd.Index(genes)
    data = PerturbationData(
        X, out, genes, list(covariate_keys), control_value, delimiter, notes, perturbation_key, var, preprocessing,
        content_hash=digest,
    )  # fmt: skip
    data.rows = np.flatnonzero(keep)
    if hvg == "var":
        _keep_marked_genes(data)
    elif max_genes is not None and max_genes < data.n_genes:
        ranking = None
        if hvg == "seurat_v3":
            ranking = seurat_v3_ranking(
                raw if preprocessing["normalized"] else _counts_layer(adata, counts_layer, keep)
            )
        elif hvg == "mean":
            ranking = mean_expression_ranking(np.asarray(data.X))
        _keep_top_genes(data, max_genes, hvg, ranking)
    return data


def _counts_layer(adata: ad.AnnData, layer: str | None, keep: np.ndarray) -> np.ndarray:
    """The raw counts ``hvg: seurat_v3`` ranks genes on when the expression matrix is log-normalised."""
    if layer is None:
        raise DataError(
            "hvg: seurat_v3 ranks genes on raw counts but the matrix is log-normalised; name a layer of counts with "
            "data.counts_layer (or use hvg: dispersion)"
        )
    if layer not in adata.layers:
        raise DataError(f"counts_layer {layer!r} not in the AnnData; available layers: {list(adata.layers) or 'none'}")
    matrix = adata.layers[layer]
    matrix = matrix if keep.all() else matrix[keep]
    counts = np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float32)
    if not is_raw_counts(counts):
        raise DataError(f"counts_layer {layer!r} does not hold raw counts (non-negative integers)")
    return counts


def _perturbed_genes(data: PerturbationData) -> set[str]:
    return {t for p in data.obs["perturbation"].unique() for t in data.tokens(p)}


def _subset_genes(data: PerturbationData, idx: np.ndarray) -> None:
    data.X = np.ascontiguousarray(data.X[:, idx])
    data.var = data.var.iloc[idx] if data.var is not None else None
    data.genes = [data.genes[i] for i in idx]


def _keep_top_genes(data: PerturbationData, max_genes: int, hvg: str, ranking: np.ndarray | None) -> None:
    """Keep the ``max_genes`` top-ranked genes (``ranking``, or normalised dispersion) plus measured perturbed ones."""
    perturbed = _perturbed_genes(data)
    idx = select_genes(np.asarray(data.X), data.genes, max_genes, always_keep=perturbed, ranking=ranking)
    _subset_genes(data, idx)
    kept = len(perturbed & set(data.genes))
    how = {
        "dispersion": "normalised dispersion (Seurat recipe on log-normalised data)",
        "seurat_v3": "scanpy's seurat_v3 (standardised variance of raw counts)",
        "mean": "mean expression (log-normalised)",
    }[hvg]
    data.preprocessing["gene_selection"] = f"top {max_genes} by {how} plus measured perturbed genes"
    which = "most highly expressed" if hvg == "mean" else "top highly variable"
    data.notes.append(f"kept {len(idx)} genes: {which} genes plus {kept} measured perturbed genes")


def _keep_marked_genes(data: PerturbationData) -> None:
    """``hvg: var``: keep the genes marked in ``var['highly_variable']`` plus measured perturbed ones."""
    var = data.var if data.var is not None else pd.DataFrame(index=data.genes)
    if "highly_variable" not in var.columns:
        cols = ", ".join(map(str, var.columns)) or "none"
        raise DataError(f"hvg: var needs a boolean var['highly_variable'] column; var columns: {cols}")
    marked = var["highly_variable"].to_numpy()
    if marked.dtype != bool:
        raise DataError(f"var['highly_variable'] must be boolean (got dtype {marked.dtype})")
    perturbed = _perturbed_genes(data)
    idx = np.flatnonzero(marked | np.isin(np.asarray(data.genes), list(perturbed)))
    if not len(idx):
        raise DataError("var['highly_variable'] marks no gene; mark some or use max_genes")
    _subset_genes(data, idx)
    data.preprocessing["gene_selection"] = "genes marked in var['highly_variable'] plus measured perturbed genes"
    data.notes.append(f"kept {len(idx)} genes marked in var['highly_variable'] (or perturbed and measured)")
