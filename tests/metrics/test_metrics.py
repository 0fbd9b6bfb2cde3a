"""Tests for arch_lab.metrics: hand-computed cases, independent re-implementations and a calibration on real data."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from threadpoolctl import threadpool_limits

from arch_lab.errors import ConfigError, DataError
from arch_lab.metrics import (
    DIAGNOSTIC_COLUMNS,
    DIAGNOSTICS,
    ID_COLUMNS,
    METRIC_COLUMNS,
    METRICS,
    ConditionGroup,
    MetricSettings,
    cosine,
    de_scores,
    energy_distance,
    fit_pca,
    gene_spread_ratio,
    logfc,
    pairwise_cosine,
    pairwise_pearson,
    pairwise_rmse,
    pearson,
    rank_matrix_scores,
    rmse,
    score_conditions,
    split_half_groups,
    top_k_recall,
)

DEVEL = Path(__file__).resolve().parents[2] / "data" / "perturbench_devel" / "devel.h5ad"


# ---------------------------------------------------------------------------------------------------------------------
# pseudobulk
# ---------------------------------------------------------------------------------------------------------------------


def test_rmse_hand_computed():
    assert rmse(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0])) == pytest.approx(math.sqrt(4.0 / 3.0))
    assert rmse(np.array([0.5, -1.0]), np.array([0.5, -1.0])) == 0.0


def test_cosine_hand_computed():
    assert cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1.0 / math.sqrt(2.0))
    assert cosine(np.array([1.0, 2.0]), np.array([-2.0, 1.0])) == pytest.approx(0.0, abs=1e-15)
    assert cosine(np.array([1.0, 2.0]), np.array([-2.0, -4.0])) == pytest.approx(-1.0)
    # A constant non-zero vector has a well-defined cosine; only the zero vector is degenerate.
    assert cosine(np.array([2.0, 2.0]), np.array([1.0, 0.0])) == pytest.approx(1.0 / math.sqrt(2.0))


def test_pearson_hand_computed():
    # a - mean = (-1, 0, 1); b - mean = (-7/3, -1/3, 8/3); r = 5 / (sqrt(2) * sqrt(114) / 3) = 15 / sqrt(228)
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(15.0 / math.sqrt(228.0))
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    # Pearson is invariant to shift and positive scale, cosine is not.
    a, b = np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 5.0])
    assert pearson(a, b) == pytest.approx(pearson(3.0 * a + 7.0, b))
    assert cosine(a, b) != pytest.approx(cosine(a + 7.0, b))


def test_degenerate_vectors_give_nan_not_a_crash():
    zero, const, x = np.zeros(4), np.full(4, 0.3), np.array([1.0, 2.0, 0.0, 1.0])
    assert math.isnan(cosine(zero, x))
    assert math.isnan(cosine(x, zero))
    assert math.isnan(pearson(const, x))
    assert math.isnan(pearson(x, const))
    assert math.isnan(pearson(zero, zero))
    # A constant whose mean is not exact in floating point (centred values ~1e-17) is still constant.
    assert math.isnan(pearson(np.full(3, 0.1), np.array([1.0, 2.0, 4.0])))


def test_pairwise_matrices_match_the_vector_functions():
    rng = np.random.default_rng(1)
    A, B = rng.normal(size=(4, 30)), rng.normal(size=(5, 30))
    A[2] = 0.0  # degenerate row: NaN for cosine and pearson
    for pairwise, single in ((pairwise_rmse, rmse), (pairwise_cosine, cosine), (pairwise_pearson, pearson)):
        expected = np.array([[single(a, b) for b in B] for a in A])
        np.testing.assert_allclose(pairwise(A, B), expected, rtol=1e-12, atol=1e-14, equal_nan=True)
    assert np.isnan(pairwise_cosine(A, B)[2]).all()
    assert np.isfinite(pairwise_rmse(A, B)).all()


def test_logfc_hand_computed():
    out = logfc(np.array([0.9, 0.1, 0.0]), np.array([0.1, 0.1, 0.3]))
    np.testing.assert_allclose(out, [math.log2(1.0 / 0.2), 0.0, math.log2(0.1 / 0.4)])
    assert logfc(np.array([1.9]), np.array([0.1]), pseudocount=1.0)[0] == pytest.approx(math.log2(2.9 / 1.1))


def test_logfc_clips_negative_means_and_rejects_bad_pseudocount():
    np.testing.assert_array_equal(logfc(np.array([-0.5, -0.05]), np.array([0.2, 0.2])), logfc(np.zeros(2), [0.2, 0.2]))
    assert np.isfinite(logfc(np.array([-0.5]), np.array([0.0]))).all()
    with pytest.raises(ValueError, match="pseudocount"):
        logfc(np.ones(2), np.ones(2), pseudocount=0.0)


# ---------------------------------------------------------------------------------------------------------------------
# ranks
# ---------------------------------------------------------------------------------------------------------------------

# Distances; rows = predictions, columns = observations. M[1, 0] ties the diagonal entry M[0, 0], and M[1, 2] ties
# M[1, 1]: ties count against the model.
TIE_MATRIX = np.array(
    [
        [1.0, 2.0, 0.5],
        [1.0, 3.0, 3.0],
        [4.0, 0.0, 2.0],
    ]
)


def test_rank_hand_computed_with_tie_counted_against_the_model():
    rank, rank_t = rank_matrix_scores(TIE_MATRIX, higher_is_better=False)
    # column 0: M[1,0]=1 <= 1 (tie), M[2,0]=4 > 1 -> 1/2
    # column 1: M[0,1]=2 <= 3, M[2,1]=0 <= 3        -> 2/2
    # column 2: M[0,2]=0.5 <= 2, M[1,2]=3 > 2       -> 1/2
    np.testing.assert_array_equal(rank, [0.5, 1.0, 0.5])
    # row 0: M[0,1]=2 > 1, M[0,2]=0.5 <= 1          -> 1/2
    # row 1: M[1,0]=1 <= 3, M[1,2]=3 <= 3 (tie)     -> 2/2
    # row 2: M[2,0]=4 > 2, M[2,1]=0 <= 2            -> 1/2
    np.testing.assert_array_equal(rank_t, [0.5, 1.0, 0.5])


def test_rank_for_similarities_uses_greater_or_equal():
    rank, rank_t = rank_matrix_scores(-TIE_MATRIX, higher_is_better=True)
    np.testing.assert_array_equal(rank, [0.5, 1.0, 0.5])
    np.testing.assert_array_equal(rank_t, [0.5, 1.0, 0.5])
    # The same matrix read with the wrong direction gives different ranks.
    wrong, _ = rank_matrix_scores(-TIE_MATRIX, higher_is_better=False)
    assert not np.array_equal(wrong, rank)


def test_rank_and_transposed_rank_differ_on_an_asymmetric_case():
    # Prediction 0 is close to every observation: it wins its own column but loses its row.
    M = np.array(
        [
            [0.1, 0.1, 0.1],
            [5.0, 1.0, 5.0],
            [5.0, 5.0, 1.0],
        ]
    )
    rank, rank_t = rank_matrix_scores(M, higher_is_better=False)
    np.testing.assert_array_equal(rank, [0.0, 0.5, 0.5])
    np.testing.assert_array_equal(rank_t, [1.0, 0.0, 0.0])


def test_rank_perfect_and_identical_predictions():
    perfect = np.full((4, 4), 3.0)
    np.fill_diagonal(perfect, 1.0)
    rank, rank_t = rank_matrix_scores(perfect, higher_is_better=False)
    np.testing.assert_array_equal(rank, np.zeros(4))
    np.testing.assert_array_equal(rank_t, np.zeros(4))
    # Identical predictions: every column is constant, so every competitor ties -> worst rank.
    same = np.tile(np.array([[0.2, 0.7, 0.4, 0.9]]), (4, 1))
    rank, _ = rank_matrix_scores(same, higher_is_better=False)
    np.testing.assert_array_equal(rank, np.ones(4))


def test_rank_normalised_by_p_minus_one_and_undefined_cases():
    rng = np.random.default_rng(0)
    M = rng.random((5, 5))
    rank, _ = rank_matrix_scores(M, higher_is_better=False)
    expected = [sum(M[j, i] <= M[i, i] for j in range(5) if j != i) / 4 for i in range(5)]
    np.testing.assert_allclose(rank, expected)
    rank, rank_t = rank_matrix_scores(np.array([[0.3]]), higher_is_better=False)
    assert np.isnan(rank).all()
    assert np.isnan(rank_t).all()
    M[2, 2] = np.nan
    rank, rank_t = rank_matrix_scores(M, higher_is_better=False)
    assert np.isnan(rank[2])
    assert np.isnan(rank_t[2])
    assert np.isfinite(np.delete(rank, 2)).all()
    with pytest.raises(ValueError, match="square"):
        rank_matrix_scores(np.ones((2, 3)), higher_is_better=False)


def test_rank_nan_competitor_counts_against_the_model():
    M = np.array(
        [
            [1.0, 2.0, 2.0],
            [np.nan, np.nan, np.nan],
            [3.0, 3.0, 1.0],
        ]
    )
    rank, rank_t = rank_matrix_scores(M, higher_is_better=False)
    np.testing.assert_array_equal(rank, [0.5, np.nan, 0.5])
    np.testing.assert_array_equal(rank_t, [0.0, np.nan, 0.0])


def test_rank_float_rounding_counts_as_tie():
    M = np.array([[1.0, 0.0], [1.0 + 1e-15, 0.0]])
    rank, _ = rank_matrix_scores(M, higher_is_better=False)
    assert rank[0] == 1.0


# ---------------------------------------------------------------------------------------------------------------------
# DEG scores and recall
# ---------------------------------------------------------------------------------------------------------------------


def test_de_scores_match_scipy_welch():
    rng = np.random.default_rng(2)
    X = rng.normal(loc=0.3, scale=1.5, size=(17, 12))
    C = rng.normal(scale=0.7, size=(23, 12))
    expected = stats.ttest_ind(X, C, equal_var=False, axis=0).statistic
    np.testing.assert_allclose(de_scores(X, C), expected, rtol=1e-12)


def test_de_scores_zero_variance_in_both_gives_zero():
    X = np.array([[1.0, 2.0, 0.0], [1.0, 4.0, 0.0], [1.0, 3.0, 0.0]])
    C = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = stats.ttest_ind(X, C, equal_var=False, axis=0).statistic
    assert not np.isfinite(ref[0])
    assert not np.isfinite(ref[2])
    out = de_scores(X, C)
    assert out[0] == 0.0
    assert out[2] == 0.0
    assert out[1] == pytest.approx(ref[1])


def test_top_k_recall_hand_computed():
    pred = np.array([5.0, -4.0, 0.1, 0.2])
    obs = np.array([-3.0, 0.5, 4.0, 0.1])
    assert top_k_recall(pred, obs, 2) == 0.5  # {0, 1} vs {0, 2}
    assert top_k_recall(pred, obs, 1) == 0.0  # {0} vs {2}
    assert top_k_recall(pred, obs, 4) == 1.0
    assert top_k_recall(pred, -pred, 2) == 1.0  # absolute values
    with pytest.raises(ValueError, match="k must be"):
        top_k_recall(pred, obs, 5)


# ---------------------------------------------------------------------------------------------------------------------
# energy distance
# ---------------------------------------------------------------------------------------------------------------------


def _energy_double_loop(X: np.ndarray, Y: np.ndarray, unbiased: bool) -> float:
    """Direct definition, pair by pair."""

    def mean_dist(A, B, skip_diagonal):
        total, count = 0.0, 0
        for i, a in enumerate(A):
            for j, b in enumerate(B):
                if skip_diagonal and i == j:
                    continue
                total += math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b, strict=True)))
                count += 1
        return total / count

    return 2 * mean_dist(X, Y, False) - mean_dist(X, X, unbiased) - mean_dist(Y, Y, unbiased)


def test_energy_hand_computed_1d():
    # X = {0}, Y = {1}: 2 * 1 - 0 - 0
    assert energy_distance(np.array([[0.0]]), np.array([[1.0]]), unbiased=False) == 2.0
    assert math.isnan(energy_distance(np.array([[0.0]]), np.array([[1.0]]), unbiased=True))
    # X = {0, 2}, Y = {1, 3}: cross mean (1 + 3 + 1 + 1) / 4 = 1.5; within-X and within-Y distance 2.
    X, Y = np.array([[0.0], [2.0]]), np.array([[1.0], [3.0]])
    assert energy_distance(X, Y, unbiased=False) == pytest.approx(2 * 1.5 - 4 / 4 - 4 / 4)  # 1
    assert energy_distance(X, Y, unbiased=True) == pytest.approx(2 * 1.5 - 4 / 2 - 4 / 2)  # -1


def test_energy_uses_plain_not_squared_distances():
    # One point each, distance 3 in 2-D: 2 * 3, not 2 * 9.
    assert energy_distance(np.array([[0.0, 0.0]]), np.array([[3.0, 0.0]]), unbiased=False) == pytest.approx(6.0)


def test_energy_matches_double_loop_and_is_symmetric():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(7, 4)), rng.normal(loc=0.5, size=(5, 4))
    for unbiased in (True, False):
        e = energy_distance(X, Y, unbiased=unbiased)
        assert e == pytest.approx(_energy_double_loop(X, Y, unbiased), rel=1e-12)
        assert e == pytest.approx(energy_distance(Y, X, unbiased=unbiased), rel=1e-12)


def test_energy_biased_is_zero_for_identical_sets_and_positive_otherwise():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(20, 6))
    assert energy_distance(X, X, unbiased=False) == 0.0
    assert energy_distance(X, X + 1e-3, unbiased=False) > 0.0
    assert energy_distance(X, rng.normal(size=(15, 6)), unbiased=False) > 0.0


def test_energy_unbiased_averages_zero_under_the_null_biased_does_not():
    rng = np.random.default_rng(5)
    unbiased, biased = [], []
    for _ in range(300):
        X, Y = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
        unbiased.append(energy_distance(X, Y, unbiased=True))
        biased.append(energy_distance(X, Y, unbiased=False))
    unbiased, biased = np.array(unbiased), np.array(biased)
    se = unbiased.std(ddof=1) / math.sqrt(unbiased.size)
    assert abs(unbiased.mean()) < 4 * se
    assert (unbiased < 0).any()  # single values may be negative
    assert (biased > 0).all()
    assert biased.mean() > unbiased.mean() + 10 * se


def test_energy_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature"):
        energy_distance(np.zeros((3, 2)), np.zeros((3, 4)))


def test_fit_pca_is_deterministic_and_validated():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(40, 10)) @ rng.normal(size=(10, 10))
    a, b = fit_pca(X, 3), fit_pca(X.copy(), 3)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert a.transform(X).shape == (40, 3)
    assert fit_pca(X[:8], 3).transform(X[:8]).shape == (8, 3)  # fewer cells than features
    with pytest.raises(ValueError, match="n_components"):
        fit_pca(X, 11)


# ---------------------------------------------------------------------------------------------------------------------
# score_conditions
# ---------------------------------------------------------------------------------------------------------------------


def _synthetic_groups(seed: int = 0, n_genes: int = 20) -> list[ConditionGroup]:
    rng = np.random.default_rng(seed)
    groups = []
    for state in ("s1", "s2"):
        controls = rng.gamma(2.0, 0.5, size=(30, n_genes))
        for p in range(4):
            shift = np.zeros(n_genes)
            shift[p * 3 : p * 3 + 3] = 2.0
            observed = rng.gamma(2.0, 0.5, size=(25, n_genes)) + shift
            predicted = rng.gamma(2.0, 0.5, size=(18, n_genes)) + 0.8 * shift
            groups.append(ConditionGroup(state, f"P{p}", predicted, observed, controls))
    return groups


def test_score_conditions_columns_and_summary():
    groups = _synthetic_groups()
    table, summary = score_conditions(groups, MetricSettings(pca_components=5, deg_top_k=3))
    assert tuple(table.columns) == ID_COLUMNS + METRIC_COLUMNS + DIAGNOSTIC_COLUMNS
    assert list(table["perturbation"]) == [g.perturbation for g in groups]
    assert list(table["n_predicted"]) == [18] * 8
    assert list(table["n_controls"]) == [30] * 8
    for name in METRIC_COLUMNS + DIAGNOSTIC_COLUMNS:
        assert summary[name] == pytest.approx(float(np.nanmean(table[name].to_numpy())))
        assert np.isfinite(summary[name])
    assert summary["n_conditions"] == 8
    assert summary["pca_components"] == 5
    assert summary["deg_top_k"] == 3
    assert set(summary) == set(METRIC_COLUMNS) | set(DIAGNOSTIC_COLUMNS) | {
        "n_conditions",
        "pca_components",
        "deg_top_k",
    }
    # Predictions carry the right shift: good ranks, high cosine.
    assert summary["rmse_mean_rank"] == 0.0
    assert summary["cosine_logfc"] > 0.8


def test_score_conditions_values_match_the_array_functions():
    groups = _synthetic_groups(seed=1)
    table, _ = score_conditions(groups, MetricSettings(pca_components=5, deg_top_k=3))
    g, row = groups[5], table.iloc[5]
    pm, om, cm = g.predicted.mean(0), g.observed.mean(0), g.controls.mean(0)
    assert row["rmse_mean"] == pytest.approx(rmse(pm, om), rel=1e-12)
    assert row["cosine_logfc"] == pytest.approx(cosine(logfc(pm, cm), logfc(om, cm)), rel=1e-12)
    assert row["pearson_delta"] == pytest.approx(pearson(pm - cm, om - cm), rel=1e-12)
    assert row["energy_distance"] == pytest.approx(energy_distance(g.predicted, g.observed), rel=1e-12)
    k_recall = top_k_recall(de_scores(g.predicted, g.controls), de_scores(g.observed, g.controls), 3)
    assert row["deg_recall"] == k_recall
    # PCs are fit on every observed cell once: all observed sets plus each distinct control pool.
    reference = np.concatenate([h.observed for h in groups] + [groups[0].controls, groups[4].controls])
    pca = fit_pca(reference, 5)
    expected_pca = energy_distance(pca.transform(g.predicted), pca.transform(g.observed))
    assert row["energy_distance_pca"] == pytest.approx(expected_pca, rel=1e-9)
    # Ranks are computed within a state: state s2 alone gives the same ranks.
    table_s2, _ = score_conditions(groups[4:], MetricSettings(pca_components=5, deg_top_k=3))
    for name in ("rmse_mean_rank", "cosine_logfc_rank_transposed", "pearson_delta_rank"):
        np.testing.assert_array_equal(table_s2[name].to_numpy(), table[name].to_numpy()[4:])


def test_score_conditions_clips_pca_and_k_and_single_condition_ranks_are_nan():
    rng = np.random.default_rng(7)
    g = ConditionGroup("s", "A", rng.random((3, 6)), rng.random((2, 6)), rng.random((2, 6)))
    table, summary = score_conditions([g], MetricSettings(pca_components=50, deg_top_k=50))
    assert summary["pca_components"] == 3  # 4 observed cells -> at most 3 PCs
    assert summary["deg_top_k"] == 6
    assert np.isnan(table.loc[0, "rmse_mean_rank"])
    assert np.isnan(summary["cosine_logfc_rank_transposed"])
    assert np.isfinite(table.loc[0, "energy_distance_pca"])


def test_energy_subsampling_is_seeded():
    groups = _synthetic_groups(seed=2)
    a, _ = score_conditions(groups, MetricSettings(pca_components=5, energy_max_cells=10, seed=3))
    b, _ = score_conditions(groups, MetricSettings(pca_components=5, energy_max_cells=10, seed=3))
    c, _ = score_conditions(groups, MetricSettings(pca_components=5, energy_max_cells=10, seed=4))
    np.testing.assert_array_equal(a["energy_distance"], b["energy_distance"])
    assert not np.array_equal(a["energy_distance"], c["energy_distance"])
    # Order of the groups does not change a condition's subsample.
    d, _ = score_conditions(groups[::-1], MetricSettings(pca_components=5, energy_max_cells=10, seed=3))
    np.testing.assert_array_equal(a["energy_distance"].to_numpy(), d["energy_distance"].to_numpy()[::-1])


@pytest.mark.parametrize("field", ["predicted", "observed"])
def test_empty_group_raises_data_error_naming_it(field):
    groups = _synthetic_groups()
    setattr(groups[6], field, np.zeros((0, 20)))
    with pytest.raises(DataError) as err:
        score_conditions(groups, MetricSettings(pca_components=5))
    message = str(err.value)
    assert "'P2'" in message
    assert "'s2'" in message
    assert field in message
    assert "\n" not in message


def test_non_finite_prediction_raises_data_error_naming_it():
    groups = _synthetic_groups()
    groups[1].predicted[3, 4] = np.nan
    with pytest.raises(DataError, match="'P1' in state 's1'.*predicted.*NaN"):
        score_conditions(groups)
    groups = _synthetic_groups()
    groups[2].predicted[0, 0] = np.inf
    with pytest.raises(DataError, match="'P2' in state 's1'"):
        score_conditions(groups)


def test_predictions_copied_from_scoring_controls_are_refused():
    groups = _synthetic_groups()
    groups[0].predicted = groups[0].controls.copy()
    with pytest.raises(DataError, match="'P0' in state 's1'.*scoring controls"):
        score_conditions(groups)


def test_other_input_errors():
    with pytest.raises(DataError, match="no conditions"):
        score_conditions([])
    groups = _synthetic_groups()
    groups[3].observed = groups[3].observed[:, :10]
    with pytest.raises(DataError, match="'P3'.*gene counts"):
        score_conditions(groups)
    groups = _synthetic_groups()
    groups[1].perturbation = "P0"
    with pytest.raises(DataError, match="more than once"):
        score_conditions(groups)
    with pytest.raises(ConfigError, match="pca_components"):
        score_conditions(_synthetic_groups(), MetricSettings(pca_components=0))


def test_metrics_registry_covers_every_metric_with_its_direction():
    _, summary = score_conditions(_synthetic_groups(), MetricSettings(pca_components=5))
    assert set(METRICS) == set(summary) - {"n_conditions", "pca_components", "deg_top_k"} - set(DIAGNOSTICS)
    maximise = {"cosine_logfc", "pearson_delta", "deg_recall"}
    for name, info in METRICS.items():
        assert info.direction == ("maximize" if name in maximise else "minimize"), name
        assert info.description


def test_split_half_groups():
    groups = _synthetic_groups()
    halves = split_half_groups(groups, seed=0)
    again = split_half_groups(groups, seed=0)
    other = split_half_groups(groups, seed=1)
    for g, h, h2 in zip(groups, halves, again, strict=True):
        assert h.predicted.shape[0] == 12
        assert h.observed.shape[0] == 13
        together = np.concatenate([h.predicted, h.observed])
        np.testing.assert_array_equal(np.sort(together, axis=0), np.sort(g.observed, axis=0))
        assert h.controls is g.controls
        np.testing.assert_array_equal(h.predicted, h2.predicted)
    assert any(not np.array_equal(h.predicted, h3.predicted) for h, h3 in zip(halves, other, strict=True))
    single = ConditionGroup("s", "A", np.ones((2, 3)), np.ones((1, 3)), np.ones((4, 3)))
    with pytest.raises(DataError, match="'A'.*at least 2"):
        split_half_groups([single], seed=0)


# ---------------------------------------------------------------------------------------------------------------------
# calibration on real data (PerturBench devel subset, Norman19 K562)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k562():
    ad = pytest.importorskip("anndata")
    adata = ad.read_h5ad(DEVEL)
    adata = adata[adata.obs["cell_type"] == "k562"]
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    condition = adata.obs["condition"].astype(str).to_numpy()
    return X.astype(np.float64), condition


@pytest.fixture(scope="module")
def calibration(k562):
    X, condition = k562
    rng = np.random.default_rng(0)
    control_idx = rng.permutation(np.flatnonzero(condition == "control"))
    assert control_idx.size == 100
    scoring, source = X[control_idx[:50]], X[control_idx[50:]]
    perts = sorted(set(condition) - {"control"})
    assert len(perts) == 33
    full = [ConditionGroup("k562", p, X[condition == p][:0], X[condition == p], scoring) for p in perts]
    split = split_half_groups(full, seed=0)
    derangement = rng.permutation(len(split))
    while np.any(derangement == np.arange(len(split))):
        derangement = rng.permutation(len(split))
    shuffled = [
        ConditionGroup(g.state, g.perturbation, split[derangement[i]].predicted, g.observed, g.controls)
        for i, g in enumerate(split)
    ]
    no_change = [ConditionGroup(g.state, g.perturbation, source, g.observed, g.controls) for g in split]
    settings = MetricSettings()
    # The matrices are small; on a busy machine multi-threaded BLAS only adds synchronisation overhead.
    with threadpool_limits(limits=1):
        summaries = {
            name: score_conditions(g, settings)[1]
            for name, g in (("split_half", split), ("shuffled", shuffled), ("no_change", no_change))
        }
    return {**summaries, "scoring": scoring, "source": source, "split": split}


RANKS = ("rmse_mean_rank", "cosine_logfc_rank", "pearson_delta_rank")


def test_calibration_split_half_ranks_near_zero(calibration):
    s = calibration["split_half"]
    assert s["rmse_mean_rank"] < 0.1
    assert s["cosine_logfc_rank"] < 0.2
    assert s["pearson_delta_rank"] < 0.2
    assert s["rmse_mean_rank_transposed"] < 0.1
    assert abs(s["energy_distance"]) < 0.05  # unbiased: ~0 for two halves of one population
    assert s["n_conditions"] == 33
    assert s["pca_components"] == 50
    assert s["deg_top_k"] == 50


def test_calibration_shuffled_labels_rank_near_half(calibration):
    s, ceiling = calibration["shuffled"], calibration["split_half"]
    for name in RANKS:
        assert 0.3 < s[name] < 0.7, name
        assert 0.3 < s[f"{name}_transposed"] < 0.7, name
    assert ceiling["cosine_logfc"] > s["cosine_logfc"] + 0.15
    assert ceiling["pearson_delta"] > s["pearson_delta"] + 0.3
    assert s["energy_distance"] > 10 * abs(ceiling["energy_distance"])
    # With only 50 scoring controls, every logFC shares the control-mean noise, which lifts the cosine of unrelated
    # conditions above 0: a shuffled prediction sits at the level of the no-change floor, not near the ceiling.
    assert s["cosine_logfc"] < calibration["no_change"]["cosine_logfc"] + 0.1


def test_calibration_shuffled_cosine_is_zero_without_shared_control_noise(calibration):
    """Unrelated conditions have uncorrelated logFC once the two logFCs use disjoint control pools."""
    split = calibration["split"]
    pred = np.stack([g.predicted.mean(0) for g in split])
    obs = np.stack([g.observed.mean(0) for g in split])
    a, b = calibration["source"].mean(0), calibration["scoring"].mean(0)
    off_diagonal = ~np.eye(len(split), dtype=bool)
    independent = pairwise_cosine(logfc(pred, a), logfc(obs, b))[off_diagonal].mean()
    shared = pairwise_cosine(logfc(pred, b), logfc(obs, b))[off_diagonal].mean()
    assert abs(independent) < 0.1
    assert shared > independent + 0.15


def test_calibration_no_change_floor_ties_to_the_worst_rank(calibration):
    s = calibration["no_change"]
    for name in RANKS:
        assert s[name] == 1.0, name  # identical predictions for every condition: all ties, counted against
    assert s["energy_distance"] > 0.3


def test_biased_energy_matches_pertpy_reference_value(k562):
    """pertpy 1.0.3 ``edistance`` (a V-statistic), k562 control vs KLF1 (100 v 100 cells, 500 genes): 1.067."""
    X, condition = k562
    control, klf1 = X[condition == "control"], X[condition == "KLF1"]
    assert energy_distance(control, klf1, unbiased=False) == pytest.approx(1.067, abs=5e-4)
    assert energy_distance(control, klf1, unbiased=True) < energy_distance(control, klf1, unbiased=False)


def test_gene_spread_ratio_hand_computed():
    # gene 0: predicted sd 2, observed sd 1 -> 2; gene 1: 0.5 / 1 -> 0.5; gene 2: 3 / 1 -> 3; gene 3 constant in
    # the observed cells -> left out. Median of (2, 0.5, 3) = 2.
    obs = np.array([[0.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 1.0]]) / np.sqrt(2) * 1.0
    pred = np.array([[0.0, 0.0, 0.0, 5.0], [4.0, 1.0, 6.0, 0.0]]) / np.sqrt(2)
    assert gene_spread_ratio(pred, obs) == pytest.approx(2.0)
    # Blur: every predicted cell at the observed mean.
    rng = np.random.default_rng(0)
    cells = rng.normal(size=(50, 6))
    assert gene_spread_ratio(np.repeat(cells.mean(0, keepdims=True), 50, 0), cells) == pytest.approx(0.0, abs=1e-12)
    assert gene_spread_ratio(cells * 3.0, cells) == pytest.approx(3.0)
    assert math.isnan(gene_spread_ratio(cells[:1], cells))
    assert math.isnan(gene_spread_ratio(cells, np.ones((5, 6))))


def test_diagnostics_are_not_metrics():
    assert not set(DIAGNOSTICS) & set(METRICS)
