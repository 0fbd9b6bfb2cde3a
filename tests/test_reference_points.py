"""The bench's reference points are unbiased: baselines never duplicate a source cell, and a prediction's response
is taken against the controls it was made from, disjoint from the scoring controls."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXPERIMENTS
from scipy.spatial.distance import cdist, pdist

from arch_lab.config import load_experiment
from arch_lab.data.task import build_task
from arch_lab.errors import DataError
from arch_lab.harness import condition_groups, evaluate, make_requests
from arch_lab.methods import build_method
from arch_lab.metrics import ConditionGroup, MetricSettings, score_conditions

SHIPPED_TASKS = ("devel_glioblastoma_transfer", "devel_k562_combination", "kang_celltype_transfer")


def independent_energy(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased energy distance written out with scipy: 2 E|x-y| - E|x-x'| - E|y-y'|, off-diagonal means."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(2 * cdist(x, y).mean() - pdist(x).mean() - pdist(y).mean())


@pytest.fixture(scope="module", params=SHIPPED_TASKS)
def shipped(request):
    cfg = load_experiment(EXPERIMENTS / f"{request.param}.yaml")
    return request.param, cfg, build_task(cfg)


def _baseline(cfg, task, name):
    cfg = cfg.model_copy(update={"method": cfg.method.model_copy(update={"name": name, "params": {}})})
    method = build_method(cfg, task)
    method.fit()
    return method


def test_requests_never_duplicate_a_source_cell(shipped):
    _, cfg, task = shipped
    conditions = task.conditions(cfg.eval.split)
    requests = make_requests(task, conditions, cfg.eval.split, "observed", np.random.default_rng(0))
    for c, r in zip(conditions, requests, strict=True):
        pool = task.controls(c.state, "train")
        assert len(np.unique(r.source_rows)) == len(r.source_rows) == r.n_cells == len(r.source)
        assert set(r.source_rows) <= set(pool)
        assert r.n_cells == min(len(task.cells(cfg.eval.split, c)), len(pool))
    # generation on demand may reuse sources when asked for more cells than there are controls
    big = make_requests(task, conditions[:1], "train", 10 * len(task.data.X), np.random.default_rng(0), True)
    assert big[0].n_cells == 10 * len(task.data.X)


@pytest.mark.parametrize("name", ["no_change", "perturbation_mean"])
def test_baseline_energy_equals_an_independent_computation_on_real_cells(shipped, name):
    """A baseline's energy distance is the unbiased energy of its cells, which are real training controls (plus a
    shift for perturbation_mean), each used once."""
    _, cfg, task = shipped
    method = _baseline(cfg, task, name)
    ecfg = cfg.eval.model_copy(update={"n_cells": "observed", "energy_max_cells": None, "reference_points": False})
    result = evaluate(task, method, ecfg, seed=3)
    pred = result.predictions
    for row in result.per_condition.itertuples():
        labels = pred.obs[cfg.data.perturbation_key]
        cells = pred.X[((pred.obs["state"] == row.state) & (labels == row.perturbation)).to_numpy()]
        assert len(np.unique(cells, axis=0)) == len(cells), "a source cell was used twice"
        condition = next(c for c in task.conditions(cfg.eval.split) if c.perturbation == row.perturbation
                         and c.state == row.state)  # fmt: skip
        observed = task.data.X[task.cells(cfg.eval.split, condition)]
        assert row.energy_distance == pytest.approx(independent_energy(cells, observed), rel=1e-6, abs=1e-9)
        if name == "no_change":  # the cells are the state's training controls themselves
            controls = task.data.X[task.controls(row.state, "train")]
            assert len(cells) == min(len(controls), len(observed))
            assert np.isin(cells.view([("", cells.dtype)] * cells.shape[1]),
                           controls.view([("", controls.dtype)] * controls.shape[1])).all()  # fmt: skip


def test_no_change_scores_like_real_controls_on_the_null_task():
    """On the null-effect task, pooled over its five folds, the no_change floor is as far from the observed cells as
    real control cells of the same states are, within noise (before the fix it scored 0.42 against 0.065, through
    duplicated cells)."""
    floor, real = [], []
    for fold in range(5):
        cfg = load_experiment(EXPERIMENTS / "devel_glioblastoma_transfer.yaml", {"task.fold": fold})
        task = build_task(cfg)
        method = _baseline(cfg, task, "no_change")
        ecfg = cfg.eval.model_copy(update={"n_cells": "observed", "energy_max_cells": None, "reference_points": False})
        floor += list(evaluate(task, method, ecfg, seed=0).per_condition["energy_distance"])
        real += [
            independent_energy(task.data.X[task.controls(c.state, "test")], task.data.X[task.cells("test", c)])
            for c in task.conditions("test")
        ]
    difference = np.asarray(real) - np.asarray(floor)
    se = difference.std(ddof=1) / np.sqrt(len(difference))
    assert len(difference) == 27
    assert abs(difference.mean()) < 3 * se
    assert np.mean(floor) < 0.1


def test_no_change_floor_has_zero_response_and_sits_below_the_ceiling(shipped):
    task_name, cfg, task = shipped
    method = _baseline(cfg, task, "no_change")
    result = evaluate(task, method, cfg.eval.model_copy(update={"n_cells": "observed"}), seed=0)
    floor, ceiling = result.reference_summary["no_change"], result.reference_summary["split_half"]
    for metric in ("cosine_logfc", "pearson_delta"):
        assert abs(floor[metric]) < 0.05, (task_name, metric, floor[metric])
        assert floor[metric] <= ceiling[metric], (task_name, metric)
    assert result.summary["pearson_delta"] == pytest.approx(floor["pearson_delta"])
    if task_name != "devel_glioblastoma_transfer":  # a real response: the ceiling is well above the floor
        assert ceiling["pearson_delta"] > floor["pearson_delta"] + 0.2
        assert floor["energy_distance"] > ceiling["energy_distance"] + 0.1


def test_condition_groups_use_disjoint_control_pools(shipped):
    _, cfg, task = shipped
    conditions = task.conditions(cfg.eval.split)
    requests = make_requests(task, conditions, cfg.eval.split, 20, np.random.default_rng(0))
    groups = condition_groups(task, cfg.eval.split, requests, [r.source for r in requests])
    for c, g in zip(conditions, groups, strict=True):
        np.testing.assert_array_equal(g.source_controls, task.data.X[task.controls(c.state, "train")])
        np.testing.assert_array_equal(g.controls, task.data.X[task.controls(c.state, cfg.eval.split)])
        assert not set(task.controls(c.state, "train")) & set(task.controls(c.state, cfg.eval.split))


# ------------------------------------------------------------------------------------- hand-computed cases
def test_response_metrics_by_hand_with_separate_control_pools():
    """Two genes wide enough to compute by hand: the predicted response is taken against the source controls."""
    source = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # mean (1, 1, 1)
    scoring = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])  # mean (2, 2, 2)
    predicted = np.array([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])  # response vs source: (1, 0, -1)
    observed = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])  # response vs scoring: (1, 0, -1)
    g = ConditionGroup("s", "A", predicted, observed, scoring, source)
    table, _ = score_conditions([g], MetricSettings(pca_components=1, deg_top_k=1))
    assert table.loc[0, "pearson_delta"] == pytest.approx(1.0)
    # against one shared pool (the scoring controls) the predicted response would be (0, -1, -2): still r = 1, but
    # the log fold changes differ; check the logFC cosine against the formula
    lf_pred = np.log2(predicted.mean(0) + 0.1) - np.log2(source.mean(0) + 0.1)
    lf_obs = np.log2(observed.mean(0) + 0.1) - np.log2(scoring.mean(0) + 0.1)
    expected = lf_pred @ lf_obs / np.linalg.norm(lf_pred) / np.linalg.norm(lf_obs)
    assert table.loc[0, "cosine_logfc"] == pytest.approx(expected)
    shared, _ = score_conditions([ConditionGroup("s", "A", predicted, observed, scoring)], MetricSettings(1, 1))
    lf_shared = np.log2(predicted.mean(0) + 0.1) - np.log2(scoring.mean(0) + 0.1)
    assert shared.loc[0, "cosine_logfc"] == pytest.approx(
        lf_shared @ lf_obs / np.linalg.norm(lf_shared) / np.linalg.norm(lf_obs)
    )


def test_a_prediction_of_no_change_scores_zero_not_nan():
    rng = np.random.default_rng(0)
    source = rng.random((5, 4))
    observed, scoring = rng.random((6, 4)) + 1.0, rng.random((5, 4))
    table, summary = score_conditions(
        [ConditionGroup("s", "A", source, observed, scoring, source)], MetricSettings(2, 2)
    )
    assert table.loc[0, "pearson_delta"] == 0.0
    assert table.loc[0, "cosine_logfc"] == 0.0
    assert summary["pearson_delta"] == 0.0


def test_overlapping_control_pools_are_refused():
    rng = np.random.default_rng(0)
    controls = rng.random((6, 4))
    with pytest.raises(DataError, match="source control cells are also scoring controls"):
        score_conditions([ConditionGroup("s", "A", rng.random((3, 4)), rng.random((3, 4)), controls, controls[:2])])


def test_cells_equal_by_value_across_disjoint_pools_are_not_overlap():
    """At low gene counts two distinct cells can share an expression vector: one such coincidence between the
    pools is not an overlap, and a prediction that leaves that source cell unchanged is not a leak."""
    rng = np.random.default_rng(1)
    twin = np.array([0.0, 1.5, 0.0, 0.0])
    source = np.vstack([twin, rng.random((5, 4)) + 2.0])
    scoring = np.vstack([twin, rng.random((5, 4)) + 4.0])
    observed = rng.random((6, 4)) + 1.0
    table, _ = score_conditions([ConditionGroup("s", "A", source.copy(), observed, scoring, source)],
                                MetricSettings(2, 2))  # fmt: skip
    assert len(table) == 1
    one_copy = np.vstack([scoring[1:2], source[1:]])  # one predicted cell equal to a scoring control: a coincidence
    assert (
        len(score_conditions([ConditionGroup("s", "A", one_copy, observed, scoring, source)], MetricSettings(2, 2))[0])
        == 1
    )
    leaked = np.vstack([scoring[1:4], source[4:]])  # half of the predicted cells copied from the scoring controls
    with pytest.raises(DataError, match="3 predicted cells are copies of the scoring controls"):
        score_conditions([ConditionGroup("s", "A", leaked, observed, scoring, source)], MetricSettings(2, 2))
    half = np.vstack([scoring[1:4], rng.random((3, 4)) + 2.0])  # half of the source pool is scoring cells
    with pytest.raises(DataError, match="source control cells are also scoring controls"):
        score_conditions([ConditionGroup("s", "A", half.copy(), observed, scoring, half)], MetricSettings(2, 2))
