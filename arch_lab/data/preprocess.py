"""Normalisation and gene selection (numpy, vectorised)."""

from __future__ import annotations

import numpy as np

from arch_lab.errors import DataError


def is_raw_counts(X: np.ndarray, sample: int = 200_000) -> bool:
    """True when the non-zero entries look like integer counts.

    Log-normalised data is almost never integer-valued; counts always are. A matrix is called raw counts when
    every sampled non-zero value is an integer and some exceed 1 (so a binary matrix is not mistaken for counts).
    """
    nz = X[X != 0]
    if nz.size == 0:
        return False
    if nz.size > sample:
        nz = nz[np.linspace(0, nz.size - 1, sample).astype(np.int64)]
    return bool(np.all(np.abs(nz - np.round(nz)) < 1e-6) and nz.max() > 1)


def median_total_count(X: np.ndarray) -> float:
    """The median total count of the cells with any counts (1.0 when none has), scanpy's default target."""
    totals = X.sum(axis=1).astype(np.float64)
    return float(np.median(totals[totals > 0])) if (totals > 0).any() else 1.0


def normalize_log1p(X: np.ndarray, target_sum: float | None = None) -> np.ndarray:
    """Scale each cell to ``target_sum`` total counts (default: the median total count), then natural log1p, as
    scanpy's ``normalize_total`` followed by ``log1p``.
    """
    totals = X.sum(axis=1, keepdims=True).astype(np.float64)
    target = median_total_count(X) if target_sum is None else float(target_sum)
    scale = np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(X * scale).astype(np.float32)


def highly_variable_genes(X: np.ndarray, n_top: int, n_bins: int = 20) -> np.ndarray:
    """Rank genes by normalised dispersion (the Seurat recipe on log-normalised data).

    Mean and dispersion (variance / mean) are computed on ``expm1(X)``; the log dispersion is z-scored within
    bins of log mean expression, and the ``n_top`` genes with the highest normalised dispersion are returned
    (indices, best first). Genes with zero mean are never selected before expressed genes.
    """
    E = np.expm1(X.astype(np.float64))
    mean = E.mean(axis=0)
    var = E.var(axis=0, ddof=1) if E.shape[0] > 1 else np.zeros_like(mean)
    return rank_by_dispersion(mean, var, n_bins)[:n_top]


def rank_by_dispersion(mean: np.ndarray, var: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """All gene indices ranked by normalised dispersion, best first, from per-gene moments of ``expm1(X)``.

    The ranking step of :func:`highly_variable_genes`, shared with the chunk-wise moments of backed data.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = np.log(np.where(mean > 0, var / np.where(mean > 0, mean, 1), np.nan))
        logmean = np.log1p(mean)
    edges = np.linspace(np.nanmin(logmean), np.nanmax(logmean) + 1e-12, n_bins + 1)
    bins = np.clip(np.digitize(logmean, edges) - 1, 0, n_bins - 1)
    norm = np.full_like(disp, np.nan)
    for b in np.unique(bins):
        m = (bins == b) & np.isfinite(disp)
        if m.sum() == 0:
            continue
        mu, sd = disp[m].mean(), disp[m].std(ddof=1) if m.sum() > 1 else 0.0
        norm[m] = (disp[m] - mu) / sd if sd > 0 else 0.0
    score = np.where(np.isfinite(norm), norm, -np.inf)
    return np.lexsort((np.arange(score.size), -score))


def seurat_v3_ranking(counts: np.ndarray) -> np.ndarray:
    """All gene indices ranked by scanpy's ``seurat_v3`` flavour on raw counts, best first.

    The rank ``sc.pp.highly_variable_genes(adata, flavor="seurat_v3")`` gives (``variances_norm``: the variance of
    counts standardised by a loess fit of variance on mean, clipped at sqrt(cells)), so its top ``n`` are the genes
    scanpy marks with ``n_top_genes=n``; ties keep the stored order.

    Parameters
    ----------
    counts
        ``[cells, genes]`` raw counts.

    Returns
    -------
    numpy.ndarray
        Gene indices, most variable first.

    Raises
    ------
    DataError
        scanpy or scikit-misc (its loess) is not installed.
    """
    import anndata as ad

    try:
        import scanpy as sc
        import skmisc.loess  # noqa: F401  (what seurat_v3 imports; checked here for a one-line error)
    except ImportError as exc:
        raise DataError(
            f"hvg: seurat_v3 needs scanpy and scikit-misc ({exc.name} is missing); pip install 'arch-lab[scverse]'"
        ) from None
    adata = ad.AnnData(X=np.asarray(counts, dtype=np.float32))
    table = sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=adata.n_vars, inplace=False)
    score = np.nan_to_num(table["variances_norm"].to_numpy(np.float64), nan=-np.inf)
    return np.lexsort((np.arange(score.size), -score))


def mean_expression_ranking(X: np.ndarray) -> np.ndarray:
    """All gene indices ranked by mean expression over cells, highest first; ties keep the stored order.

    Parameters
    ----------
    X
        ``[cells, genes]`` expression (log-normalised, as the networks see it).

    Returns
    -------
    numpy.ndarray
        Gene indices, most highly expressed first.
    """
    mean = np.asarray(X, dtype=np.float64).mean(axis=0)
    return np.lexsort((np.arange(mean.size), -mean))


def select_genes(
    X: np.ndarray, genes: list[str], n_top: int, always_keep: set[str], ranking: np.ndarray | None = None
) -> np.ndarray:
    """Indices (in stored order) of the ``n_top`` most variable genes plus every gene in ``always_keep``.

    ``ranking`` gives every gene index, most variable first (default: :func:`highly_variable_genes` of ``X``).
    """
    keep = {i for i, g in enumerate(genes) if g in always_keep}
    for i in highly_variable_genes(X, X.shape[1]) if ranking is None else ranking:
        if len(keep) >= n_top:
            break
        keep.add(int(i))
    return np.array(sorted(keep), dtype=np.int64)
