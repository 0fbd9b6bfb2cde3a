"""Score predicted cells against observed cells, condition by condition, and summarise.

A condition is one (covariate state, perturbation) pair. Pseudobulk metrics compare per-gene means; rank metrics
compare each prediction with the other conditions of the same state; energy distances and DEG recall compare the
cells themselves.
"""

from __future__ import annotations

import hashlib
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from arch_lab.errors import ConfigError, DataError
from arch_lab.metrics.deg import de_scores, top_k_recall
from arch_lab.metrics.energy import energy_distance, fit_pca
from arch_lab.metrics.info import DIAGNOSTICS, METRICS
from arch_lab.metrics.pseudobulk import logfc, pairwise_cosine, pairwise_pearson, pairwise_rmse
from arch_lab.metrics.ranks import rank_matrix_scores
from arch_lab.metrics.spread import gene_spread_ratio

#: Per-condition identity and size columns, in output order.
ID_COLUMNS: tuple[str, ...] = ("state", "perturbation", "n_predicted", "n_observed", "n_controls")
#: Per-condition metric columns, in output order (the keys of :data:`METRICS`).
METRIC_COLUMNS: tuple[str, ...] = tuple(METRICS)
#: Per-condition diagnostic columns, after the metrics (the keys of :data:`DIAGNOSTICS`).
DIAGNOSTIC_COLUMNS: tuple[str, ...] = tuple(DIAGNOSTICS)


@dataclass
class ConditionGroup:
    """Cells of one condition to score.

    Parameters
    ----------
    state
        Covariate state label, e.g. ``"k562"`` or ``"A172|lapatinib"``. Ranks compare conditions of one state.
    perturbation
        Perturbation label, e.g. ``"KLF1+MAP2K6"``.
    predicted
        ``[n_pred, G]`` generated cells (log-normalised).
    observed
        ``[n_obs, G]`` observed cells of this condition in the evaluated split.
    controls
        ``[n_ctrl, G]`` observed control cells of this state in the evaluated split: the reference of the observed
        cells' response (``observed - controls``). They must not be the cells the predictions were made from.
    source_controls
        ``[n_src, G]`` the control cells the prediction was made from (the state's training controls): the
        reference of the predicted response (``predicted - source_controls``), disjoint from ``controls``, as
        cell-eval keeps separate control sets in its predicted and real AnnData. Then the controls' own noise is
        not shared by the two responses, and predicting "no change" gives a zero response that scores about 0 on
        the response metrics. None uses ``controls`` for both (one shared control pool).
    """

    state: str
    perturbation: str
    predicted: np.ndarray
    observed: np.ndarray
    controls: np.ndarray
    source_controls: np.ndarray | None = None

    @property
    def prediction_controls(self) -> np.ndarray:
        """The reference of the predicted response: ``source_controls``, or ``controls`` when there are none."""
        return self.controls if self.source_controls is None else self.source_controls

    @property
    def label(self) -> str:
        """``"<perturbation>" in state "<state>"``, used in error messages."""
        return f"condition '{self.perturbation}' in state '{self.state}'"


@dataclass
class MetricSettings:
    """Arguments of the metrics.

    Parameters
    ----------
    pca_components
        Principal components for ``energy_distance_pca`` (clipped to ``min(n_cells - 1, G)``).
    deg_top_k
        ``k`` of ``deg_recall`` (clipped to ``G``).
    energy_max_cells
        Predicted and observed sets larger than this are subsampled without replacement (seeded) for both energy
        distances; None uses every cell.
    seed
        Seed of the subsampling.
    """

    pca_components: int = 50
    deg_top_k: int = 50
    energy_max_cells: int | None = 500
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` on an unusable setting."""
        if self.pca_components < 1:
            raise ConfigError(f"metrics.pca_components must be >= 1, got {self.pca_components}")
        if self.deg_top_k < 1:
            raise ConfigError(f"metrics.deg_top_k must be >= 1, got {self.deg_top_k}")
        if self.energy_max_cells is not None and self.energy_max_cells < 2:
            raise ConfigError(f"metrics.energy_max_cells must be >= 2 or null, got {self.energy_max_cells}")
        if self.seed < 0:
            raise ConfigError(f"metrics.seed must be >= 0, got {self.seed}")


def _condition_rng(seed: int, group: ConditionGroup, purpose: str) -> np.random.Generator:
    """A generator that depends on the seed and the condition's name only, not on the order of the groups."""
    key = zlib.crc32(f"{purpose}\x1f{group.state}\x1f{group.perturbation}".encode())
    return np.random.default_rng([seed, key])


def _dense(x: np.ndarray) -> np.ndarray:
    if hasattr(x, "toarray"):
        x = x.toarray()
    return np.asarray(x, dtype=np.float64)


def _shared_mask(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-zero rows of ``A`` that are identical to some row of ``B``."""
    mask = np.zeros(A.shape[0], dtype=bool)
    nonzero = np.flatnonzero(np.any(A != 0.0, axis=1))
    if nonzero.size == 0 or B.shape[0] == 0:
        return mask
    _, inverse = np.unique(np.concatenate([A[nonzero], B]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    mask[nonzero] = np.isin(inverse[: nonzero.size], inverse[nonzero.size :])
    return mask


def _nonzero_rows_shared(A: np.ndarray, B: np.ndarray) -> int:
    """Number of non-zero rows of ``A`` that are identical to some row of ``B``."""
    return int(_shared_mask(A, B).sum())


def _prepare(groups: list[ConditionGroup]) -> list[ConditionGroup]:
    """Dense float64 copies of the groups, validated; raises :class:`DataError` naming the first bad condition."""
    if not groups:
        raise DataError("no conditions to score: the list of condition groups is empty")
    prepared: list[ConditionGroup] = []
    seen: set[tuple[str, str]] = set()
    n_genes: int | None = None
    for group in groups:
        names = ("predicted", "observed", "controls") + (
            ("source_controls",) if group.source_controls is not None else ()
        )
        arrays = {name: _dense(getattr(group, name)) for name in names}
        for name, arr in arrays.items():
            if arr.ndim != 2:
                raise DataError(f"{group.label}: {name} must be 2-D [cells, genes], got shape {arr.shape}")
        for name in names:
            if arrays[name].shape[0] == 0:
                raise DataError(
                    f"{group.label}: 0 {name} cells; every condition needs predicted, observed and control cells"
                )
        genes = {arr.shape[1] for arr in arrays.values()}
        if n_genes is not None:
            genes.add(n_genes)
        if len(genes) != 1:
            raise DataError(f"{group.label}: gene counts differ ({'/'.join(names)}/other conditions: {sorted(genes)})")
        n_genes = genes.pop()
        for name, arr in arrays.items():
            if not np.all(np.isfinite(arr)):
                raise DataError(f"{group.label}: {name} cells contain NaN or infinite values")
        key = (group.state, group.perturbation)
        if key in seen:
            raise DataError(f"{group.label} appears more than once")
        seen.add(key)
        # Predictions made from the scoring controls copy most of them (no change) or stay close; distinct cells
        # can also share one expression vector by value at low gene counts (a single non-zero gene), in real cells
        # and in predictions that leave their source cell unchanged. So a leak is a majority of the predicted
        # cells equal to scoring controls, not counting those equal to a cell of their own source pool.
        copies = _shared_mask(arrays["predicted"], arrays["controls"])
        if "source_controls" in arrays:
            copies &= ~_shared_mask(arrays["predicted"], arrays["source_controls"])
        shared = int(copies.sum())
        predicted_rows = int(np.any(arrays["predicted"] != 0.0, axis=1).sum())
        if shared and shared * 2 >= predicted_rows:
            raise DataError(
                f"{group.label}: {shared} predicted cells are copies of the scoring controls; "
                "score against a control pool disjoint from the one predictions were made from"
            )
        if "source_controls" in arrays:
            # Pools drawn from one set of cells share most rows; disjoint pools share at most the few cells whose
            # expression vectors coincide by value (low gene counts), so only a majority counts as overlap.
            source_rows = int(np.any(arrays["source_controls"] != 0.0, axis=1).sum())
            shared = _nonzero_rows_shared(arrays["source_controls"], arrays["controls"])
            if shared and shared * 2 >= source_rows:
                raise DataError(
                    f"{group.label}: {shared} source control cells are also scoring controls; the two control pools "
                    "must be disjoint (source: training controls, scoring: the evaluated split's controls)"
                )
        prepared.append(ConditionGroup(group.state, group.perturbation, **arrays))
    return prepared


def _unique_arrays(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The arrays with exact duplicates (same object, or same shape and bytes) removed, first occurrence kept."""
    seen_ids: set[int] = set()
    seen_content: set[tuple[tuple[int, ...], str]] = set()
    unique = []
    for arr in arrays:
        if id(arr) in seen_ids:
            continue
        seen_ids.add(id(arr))
        key = (arr.shape, hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest())
        if key not in seen_content:
            seen_content.add(key)
            unique.append(arr)
    return unique


def _subsample(cells: np.ndarray, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_cells is None or cells.shape[0] <= max_cells:
        return cells
    return cells[np.sort(rng.choice(cells.shape[0], size=max_cells, replace=False))]


def _no_response_scores_zero(
    similarity: Callable[[np.ndarray, np.ndarray], np.ndarray], predicted: np.ndarray, observed: np.ndarray
) -> np.ndarray:
    """``similarity(predicted, observed)`` with the rows of an exactly constant predicted response (a prediction
    of no change against its own source controls) set to 0: no agreement, rather than undefined.
    """
    M = similarity(predicted, observed)
    M[np.isnan(M) & (np.ptp(predicted, axis=1) == 0.0)[:, None]] = 0.0
    return M


def _rank_columns(groups: list[ConditionGroup], columns: dict[str, np.ndarray]) -> None:
    """Fill the pseudobulk metric and rank columns, state by state."""
    pred_mean = np.stack([g.predicted.mean(axis=0) for g in groups])
    obs_mean = np.stack([g.observed.mean(axis=0) for g in groups])
    ctrl_mean = np.stack([g.controls.mean(axis=0) for g in groups])
    src_mean = np.stack([g.prediction_controls.mean(axis=0) for g in groups])
    states = pd.unique(pd.Series([g.state for g in groups]))
    for state in states:
        idx = np.array([i for i, g in enumerate(groups) if g.state == state])
        pred, obs, ctrl, src = pred_mean[idx], obs_mean[idx], ctrl_mean[idx], src_mean[idx]
        matrices = {
            "rmse_mean": (pairwise_rmse(pred, obs), False),
            "cosine_logfc": (_no_response_scores_zero(pairwise_cosine, logfc(pred, src), logfc(obs, ctrl)), True),
            "pearson_delta": (_no_response_scores_zero(pairwise_pearson, pred - src, obs - ctrl), True),
        }
        for name, (M, higher_is_better) in matrices.items():
            rank, rank_transposed = rank_matrix_scores(M, higher_is_better=higher_is_better)
            columns[name][idx] = np.diag(M)
            columns[f"{name}_rank"][idx] = rank
            columns[f"{name}_rank_transposed"][idx] = rank_transposed


def score_conditions(
    groups: list[ConditionGroup], settings: MetricSettings | None = None
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Score every condition and summarise.

    Parameters
    ----------
    groups
        One :class:`ConditionGroup` per (state, perturbation); pairs must be unique and all arrays share ``G``.
    settings
        Metric arguments; defaults to :class:`MetricSettings()`.

    Returns
    -------
    tuple[pd.DataFrame, dict[str, float]]
        Per-condition table with columns :data:`ID_COLUMNS` + :data:`METRIC_COLUMNS` + :data:`DIAGNOSTIC_COLUMNS`
        (one row per group, in input order), and the summary: the NaN-ignoring mean of each metric and diagnostic
        column over conditions (equal weight per condition) under the same names, plus ``n_conditions``,
        ``pca_components`` and ``deg_top_k`` (the values actually used after clipping).

    Raises
    ------
    DataError
        On an empty list, a condition with 0 predicted, observed or control cells, non-finite values, mismatched
        gene counts, a duplicated condition, or predicted cells copied from the scoring controls.
    ConfigError
        On invalid settings.
    """
    settings = settings if settings is not None else MetricSettings()
    settings.validate()
    groups = _prepare(groups)
    n = len(groups)
    n_genes = groups[0].predicted.shape[1]
    columns: dict[str, np.ndarray] = {name: np.full(n, np.nan) for name in METRIC_COLUMNS + DIAGNOSTIC_COLUMNS}

    _rank_columns(groups, columns)

    reference = np.concatenate([g.observed for g in groups] + _unique_arrays([g.controls for g in groups]))
    n_pcs = min(settings.pca_components, reference.shape[0] - 1, n_genes)
    pca = fit_pca(reference, n_pcs) if n_pcs >= 1 else None
    k = min(settings.deg_top_k, n_genes)

    for i, g in enumerate(groups):
        rng = _condition_rng(settings.seed, g, "energy")
        pred = _subsample(g.predicted, settings.energy_max_cells, rng)
        obs = _subsample(g.observed, settings.energy_max_cells, rng)
        columns["energy_distance"][i] = energy_distance(pred, obs, unbiased=True)
        if pca is not None:
            columns["energy_distance_pca"][i] = energy_distance(pca.transform(pred), pca.transform(obs), unbiased=True)
        columns["gene_spread_ratio"][i] = gene_spread_ratio(g.predicted, g.observed)
        if min(g.predicted.shape[0], g.observed.shape[0], g.controls.shape[0]) >= 2:
            columns["deg_recall"][i] = top_k_recall(
                de_scores(g.predicted, g.prediction_controls), de_scores(g.observed, g.controls), k
            )

    table = pd.DataFrame(
        {
            "state": [g.state for g in groups],
            "perturbation": [g.perturbation for g in groups],
            "n_predicted": [g.predicted.shape[0] for g in groups],
            "n_observed": [g.observed.shape[0] for g in groups],
            "n_controls": [g.controls.shape[0] for g in groups],
            **columns,
        }
    )
    summary: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        for name in METRIC_COLUMNS + DIAGNOSTIC_COLUMNS:
            summary[name] = float(np.nanmean(columns[name]))
    summary["n_conditions"] = n
    summary["pca_components"] = n_pcs if pca is not None else 0
    summary["deg_top_k"] = k
    return table, summary


def split_half_groups(groups: list[ConditionGroup], seed: int = 0) -> list[ConditionGroup]:
    """The split-half ceiling: half of each condition's observed cells predict the other half.

    For each group a seeded random ``floor(n_obs / 2)`` of the observed cells become ``predicted`` and the remaining
    cells ``observed``; ``controls`` and ``source_controls`` are unchanged, so the "predicted" half's response is
    taken against the same controls as a model's prediction would be. No model can be expected to beat this reference on average.

    Parameters
    ----------
    groups
        Groups whose ``observed`` cells are split; ``predicted`` is ignored.
    seed
        Seed; the split of a condition depends only on the seed and the condition's name.

    Returns
    -------
    list[ConditionGroup]
        New groups, in input order.
    """
    halves = []
    for group in groups:
        observed = _dense(group.observed)
        n_obs = observed.shape[0]
        if n_obs < 2:
            raise DataError(f"{group.label}: split-half needs at least 2 observed cells, got {n_obs}")
        order = _condition_rng(seed, group, "split_half").permutation(n_obs)
        head, tail = np.sort(order[: n_obs // 2]), np.sort(order[n_obs // 2 :])
        halves.append(
            ConditionGroup(
                group.state, group.perturbation, observed[head], observed[tail], group.controls, group.source_controls
            )
        )
    return halves
