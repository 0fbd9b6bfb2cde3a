"""Orders of the gene axis seen by networks (the locality probe).

Metrics are always computed in the stored order: networks read ``X[:, order]`` and their outputs are put
back with the inverse permutation.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

GENE_ORDERS = ("as_stored", "reversed", "random", "clustered")


def gene_order(kind: str, X_train: np.ndarray, seed: int = 0) -> np.ndarray:
    """A permutation of the genes.

    Parameters
    ----------
    kind
        ``as_stored`` (identity), ``reversed``, ``random`` (seeded) or ``clustered`` (average-linkage
        hierarchical clustering on 1 − correlation of training cells, leaves in dendrogram order, so
        co-expressed genes sit next to each other).
    X_train
        Training cells × genes (only used by ``clustered``).
    seed
        Seed of the ``random`` order.

    Returns
    -------
    numpy.ndarray
        ``order[i]`` is the stored index of the gene placed at position ``i``.
    """
    n = X_train.shape[1]
    if kind == "as_stored":
        return np.arange(n)
    if kind == "reversed":
        return np.arange(n)[::-1].copy()
    if kind == "random":
        return np.random.default_rng(seed).permutation(n)
    if kind == "clustered":
        X = X_train.astype(np.float64)
        sd = X.std(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(X, rowvar=False)
        corr = np.where(np.isfinite(corr), corr, 0.0)
        corr[sd == 0, :] = 0.0
        corr[:, sd == 0] = 0.0
        np.fill_diagonal(corr, 1.0)
        dist = np.clip(1.0 - corr, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        return leaves_list(linkage(squareform(dist, checks=False), method="average")).astype(np.int64)
    raise ValueError(f"unknown gene order {kind!r}; choose one of {', '.join(GENE_ORDERS)}")
