"""Energy distance between two sets of cells, and the PCA used to compare cells in a reduced space."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA

#: Largest number of distance entries held in memory at once when summing pairwise distances.
_BLOCK_ENTRIES = 2_000_000


def _as_cells(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [cells, features], got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no cells")
    return arr


def sum_pairwise_distances(X: np.ndarray, Y: np.ndarray) -> float:
    """Sum of Euclidean distances ``sum_{i, j} |X_i - Y_j|`` over all pairs.

    Distances are computed directly from coordinate differences (no ``|x|^2 + |y|^2 - 2 x.y`` expansion), so they
    are never negative, identical cells are exactly 0 apart, and the result is deterministic. Rows of ``X`` are
    processed in blocks to bound memory.

    Parameters
    ----------
    X
        ``[n, d]`` cells.
    Y
        ``[m, d]`` cells.

    Returns
    -------
    float
        The sum over all ``n * m`` pairs.
    """
    step = max(1, _BLOCK_ENTRIES // max(Y.shape[0], 1))
    return float(sum(cdist(X[s : s + step], Y, metric="euclidean").sum() for s in range(0, X.shape[0], step)))


def energy_distance(X: np.ndarray, Y: np.ndarray, unbiased: bool = True) -> float:
    """Energy distance ``2 E|x - y| - E|x - x'| - E|y - y'|`` with Euclidean (not squared) distances.

    Parameters
    ----------
    X
        ``[n, d]`` cells of the first set (e.g. predicted).
    Y
        ``[m, d]`` cells of the second set (e.g. observed).
    unbiased
        If True (default), the within-set means run over pairs ``i != j`` (divide by ``n (n - 1)``); this
        U-statistic averages 0 when both sets come from one distribution, so single values can be negative. If
        False, the within-set means include the zero diagonal (divide by ``n**2``): the V-statistic (pertpy's
        ``edistance``), which is >= 0, exactly 0 for identical sets, and biased upward by about ``1/n``.

    Returns
    -------
    float
        The energy distance; symmetric in ``X`` and ``Y``. NaN for the unbiased form when a set has fewer than
        2 cells.
    """
    X = _as_cells(X, "X")
    Y = _as_cells(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"feature dimensions differ: {X.shape[1]} vs {Y.shape[1]}")
    n, m = X.shape[0], Y.shape[0]
    if unbiased and (n < 2 or m < 2):
        return float("nan")
    within_x = n * (n - 1) if unbiased else n * n
    within_y = m * (m - 1) if unbiased else m * m
    cross = sum_pairwise_distances(X, Y) / (n * m)
    return float(2.0 * cross - sum_pairwise_distances(X, X) / within_x - sum_pairwise_distances(Y, Y) / within_y)


def fit_pca(X: np.ndarray, n_components: int) -> PCA:
    """Fit a deterministic PCA (centred, not scaled) on the rows of ``X``.

    Parameters
    ----------
    X
        ``[n, d]`` cells to fit on.
    n_components
        Number of principal components, ``1 <= n_components <= min(n, d)``.

    Returns
    -------
    sklearn.decomposition.PCA
        The fitted PCA; ``.transform(Z)`` projects cells onto the components. An exact solver is used (full SVD,
        or the covariance eigendecomposition when cells outnumber features) and component signs are fixed by
        scikit-learn, so the result does not depend on a random state.
    """
    X = _as_cells(X, "X")
    n, d = X.shape
    if not 1 <= n_components <= min(n, d):
        raise ValueError(
            f"n_components must be between 1 and min(n_cells, n_features) = {min(n, d)}, got {n_components}"
        )
    solver = "covariance_eigh" if n > d else "full"
    return PCA(n_components=int(n_components), svd_solver=solver).fit(X)
