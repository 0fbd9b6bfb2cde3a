"""Differential-expression scores and top-k DEG recall."""

from __future__ import annotations

import numpy as np


def de_scores(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Welch t statistic per gene of the cells ``X`` against the control cells ``C``.

    ``t_g = (mean(X_g) - mean(C_g)) / sqrt(var(X_g) / n + var(C_g) / m)`` with sample variances (``ddof=1``).
    Non-finite statistics (both variances zero, or fewer than 2 cells in a set) are set to 0.

    Parameters
    ----------
    X
        ``[n, G]`` cells of the condition.
    C
        ``[m, G]`` control cells.

    Returns
    -------
    np.ndarray
        ``[G]`` t statistics, positive where ``X`` is higher than the controls.
    """
    X = np.asarray(X, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    if X.ndim != 2 or C.ndim != 2 or X.shape[1] != C.shape[1]:
        raise ValueError(f"X and C must be 2-D with the same number of genes, got {X.shape} and {C.shape}")
    n, m = X.shape[0], C.shape[0]
    if n == 0 or m == 0:
        raise ValueError(f"X and C need at least one cell each, got {n} and {m}")
    with np.errstate(divide="ignore", invalid="ignore"):
        var_x = X.var(axis=0, ddof=1) if n > 1 else np.full(X.shape[1], np.nan)
        var_c = C.var(axis=0, ddof=1) if m > 1 else np.full(C.shape[1], np.nan)
        t = (X.mean(axis=0) - C.mean(axis=0)) / np.sqrt(var_x / n + var_c / m)
    t[~np.isfinite(t)] = 0.0
    return t


def top_k_genes(score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` genes with the largest ``|score|`` (ties broken by the lower gene index)."""
    order = np.argsort(-np.abs(score), kind="stable")
    return order[:k]


def top_k_recall(score_pred: np.ndarray, score_obs: np.ndarray, k: int) -> float:
    """Overlap of the top-``k`` genes by absolute score: ``|top_k(|pred|) & top_k(|obs|)| / k``.

    Parameters
    ----------
    score_pred
        ``[G]`` DE scores of the predicted cells.
    score_obs
        ``[G]`` DE scores of the observed cells.
    k
        Number of top genes, ``1 <= k <= G``.

    Returns
    -------
    float
        The recall in ``[0, 1]``.
    """
    score_pred = np.asarray(score_pred, dtype=np.float64)
    score_obs = np.asarray(score_obs, dtype=np.float64)
    if score_pred.ndim != 1 or score_pred.shape != score_obs.shape:
        raise ValueError(f"scores must be 1-D of equal length, got {score_pred.shape} and {score_obs.shape}")
    if not np.all(np.isfinite(score_pred)) or not np.all(np.isfinite(score_obs)):
        raise ValueError("scores must be finite")
    n_genes = score_pred.shape[0]
    if not 1 <= k <= n_genes:
        raise ValueError(f"k must be between 1 and the number of genes ({n_genes}), got {k}")
    shared = np.intersect1d(top_k_genes(score_pred, k), top_k_genes(score_obs, k))
    return shared.size / k
