"""Metrics on pseudobulk profiles: per-gene vectors such as mean expression, deltas and log fold changes.

Every function works on float64 numpy arrays. The 1-D functions compare one predicted profile ``a`` with one
reference profile ``b``; the ``pairwise_*`` functions compare every row of ``A`` with every row of ``B`` and are
used to build the matrices the rank metrics need. ``cosine(a, b) == pairwise_cosine(a[None], b[None])[0, 0]``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

#: Pseudocount added to mean log-expression before taking log2 in :func:`logfc` (PerturBench's value).
LOGFC_PSEUDOCOUNT = 0.1


def _as_vector(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [rows, genes], got shape {arr.shape}")
    return arr


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"gene dimensions differ: {a.shape[-1]} vs {b.shape[-1]}")
    if a.shape[-1] == 0:
        raise ValueError("profiles have no genes")


def _unit_rows(A: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm; rows of zero norm become NaN."""
    norms = np.linalg.norm(A, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = A / norms
    unit[(norms == 0.0)[:, 0]] = np.nan
    return unit


def _centred_rows(A: np.ndarray) -> np.ndarray:
    """Rows minus their mean; constant rows (zero variance) become NaN."""
    centred = A - A.mean(axis=1, keepdims=True)
    centred[np.ptp(A, axis=1) == 0.0] = np.nan
    return centred


def pairwise_rmse(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Root-mean-square error between every row of ``A`` and every row of ``B``.

    Parameters
    ----------
    A
        ``[p, G]`` profiles (predictions).
    B
        ``[q, G]`` profiles (references).

    Returns
    -------
    np.ndarray
        ``[p, q]`` matrix with ``out[i, j] = sqrt(mean_g (A[i, g] - B[j, g])**2)``. Each entry is computed directly
        from its two rows, so identical rows give bit-identical entries.
    """
    A = _as_matrix(A, "A")
    B = _as_matrix(B, "B")
    _check_pair(A, B)
    return cdist(A, B, metric="euclidean") / np.sqrt(A.shape[1])


def pairwise_cosine(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Cosine similarity between every row of ``A`` and every row of ``B``.

    Parameters
    ----------
    A
        ``[p, G]`` profiles.
    B
        ``[q, G]`` profiles.

    Returns
    -------
    np.ndarray
        ``[p, q]`` matrix of ``a . b / (|a| |b|)`` clipped to ``[-1, 1]``; NaN wherever either row has zero norm.
    """
    A = _as_matrix(A, "A")
    B = _as_matrix(B, "B")
    _check_pair(A, B)
    return np.clip(_unit_rows(A) @ _unit_rows(B).T, -1.0, 1.0)


def pairwise_pearson(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pearson correlation between every row of ``A`` and every row of ``B`` (correlation across genes).

    Parameters
    ----------
    A
        ``[p, G]`` profiles.
    B
        ``[q, G]`` profiles.

    Returns
    -------
    np.ndarray
        ``[p, q]`` matrix, clipped to ``[-1, 1]``; NaN wherever either row is constant (zero variance).
    """
    A = _as_matrix(A, "A")
    B = _as_matrix(B, "B")
    _check_pair(A, B)
    return np.clip(_unit_rows(_centred_rows(A)) @ _unit_rows(_centred_rows(B)).T, -1.0, 1.0)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square error ``sqrt((1/G) sum_g (a_g - b_g)**2)`` between two profiles.

    Parameters
    ----------
    a
        ``[G]`` predicted profile.
    b
        ``[G]`` reference profile.

    Returns
    -------
    float
        The RMSE (0 for identical profiles).
    """
    a = _as_vector(a, "a")
    b = _as_vector(b, "b")
    _check_pair(a, b)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity ``a . b / (|a| |b|)`` between two profiles.

    Parameters
    ----------
    a
        ``[G]`` predicted profile.
    b
        ``[G]`` reference profile.

    Returns
    -------
    float
        The similarity in ``[-1, 1]``; NaN when either vector is all zeros (the cosine is undefined).
    """
    a = _as_vector(a, "a")
    b = _as_vector(b, "b")
    return float(pairwise_cosine(a[None, :], b[None, :])[0, 0])


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation across genes between two profiles.

    Parameters
    ----------
    a
        ``[G]`` predicted profile.
    b
        ``[G]`` reference profile.

    Returns
    -------
    float
        The correlation in ``[-1, 1]``; NaN when either vector is constant (zero variance).
    """
    a = _as_vector(a, "a")
    b = _as_vector(b, "b")
    return float(pairwise_pearson(a[None, :], b[None, :])[0, 0])


def logfc(mean_x: np.ndarray, mean_ctrl: np.ndarray, pseudocount: float = LOGFC_PSEUDOCOUNT) -> np.ndarray:
    """Per-gene log2 fold change of pseudobulk means: ``log2(mean_x + c) - log2(mean_ctrl + c)``.

    The means are means of log1p-normalised expression (as in PerturBench), so this is a log-ratio of mean
    log-expressions, not a count fold change. Expression is non-negative, so means below 0 (possible for generated
    cells) are clipped to 0 first; for non-negative input the formula is unchanged.

    Parameters
    ----------
    mean_x
        ``[..., G]`` mean expression of the condition.
    mean_ctrl
        ``[..., G]`` mean expression of the control cells (broadcast against ``mean_x``).
    pseudocount
        ``c`` above, strictly positive. Default 0.1.

    Returns
    -------
    np.ndarray
        The per-gene log2 fold change, same shape as the broadcast inputs.
    """
    if not pseudocount > 0:
        raise ValueError(f"pseudocount must be > 0, got {pseudocount}")
    x = np.maximum(np.asarray(mean_x, dtype=np.float64), 0.0)
    c = np.maximum(np.asarray(mean_ctrl, dtype=np.float64), 0.0)
    return np.log2(x + pseudocount) - np.log2(c + pseudocount)
