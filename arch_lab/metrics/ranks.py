"""Rank metrics over the conditions of one covariate state (PerturBench Eq. 2 and its transpose)."""

from __future__ import annotations

import numpy as np

#: Relative tolerance under which two metric values count as a tie (absorbs float rounding between matrix entries).
TIE_RTOL = 1e-12


def _at_least_as_good(values: np.ndarray, own: np.ndarray, higher_is_better: bool, rtol: float) -> np.ndarray:
    """True where ``values`` is at least as good as ``own`` (ties and NaN competitors count as at least as good)."""
    tol = rtol * np.maximum(np.abs(own), 1.0)
    with np.errstate(invalid="ignore"):
        better = values >= own - tol if higher_is_better else values <= own + tol
    return better | np.isnan(values)


def rank_matrix_scores(M: np.ndarray, higher_is_better: bool, rtol: float = TIE_RTOL) -> tuple[np.ndarray, np.ndarray]:
    """Normalised rank of each condition's own prediction, and the transposed rank.

    ``M[i, j]`` is ``metric(prediction i, observed j)`` over the ``p`` conditions of one covariate state, so the
    diagonal holds each prediction's score against its own observation.

    - ``rank[i] = #{j != i : M[j, i] at least as good as M[i, i]} / (p - 1)``: the fraction of *other predictions*
      that match observation ``i`` at least as well as prediction ``i`` does (PerturBench Eq. 2).
    - ``rank_transposed[i] = #{j != i : M[i, j] at least as good as M[i, i]} / (p - 1)``: the fraction of *other
      observations* that prediction ``i`` matches at least as well as its own observation.

    "At least as good" is ``<=`` for distances and ``>=`` for similarities, so ties count against the model; values
    within ``rtol * max(|M[i, i]|, 1)`` of the diagonal count as ties. A NaN competitor entry also counts against
    the model. 0 is perfect, about 0.5 is a random predictor, 1 is worst (also the value when all predictions are
    identical).

    Parameters
    ----------
    M
        ``[p, p]`` metric matrix.
    higher_is_better
        True for similarities (cosine, Pearson), False for distances (RMSE).
    rtol
        Relative tie tolerance.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        ``(rank, rank_transposed)``, each ``[p]`` in ``[0, 1]``. NaN where ``M[i, i]`` is NaN, and everywhere when
        ``p == 1`` (no competitors).
    """
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be a square matrix, got shape {M.shape}")
    p = M.shape[0]
    if p == 0:
        return np.empty(0), np.empty(0)
    if p == 1:
        return np.full(1, np.nan), np.full(1, np.nan)
    own = np.diag(M)
    off_diagonal = ~np.eye(p, dtype=bool)
    # Column i against own[i]: other predictions j scored on observation i.
    cols = _at_least_as_good(M, own[None, :], higher_is_better, rtol) & off_diagonal
    # Row i against own[i]: prediction i scored on other observations j.
    rows = _at_least_as_good(M, own[:, None], higher_is_better, rtol) & off_diagonal
    rank = cols.sum(axis=0) / (p - 1)
    rank_transposed = rows.sum(axis=1) / (p - 1)
    undefined = np.isnan(own)
    rank[undefined] = np.nan
    rank_transposed[undefined] = np.nan
    return rank, rank_transposed
