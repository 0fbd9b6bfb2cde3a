"""A wall-clock budget for training (``train.max_seconds``) and the expected-time message."""

from __future__ import annotations

import logging

from conftest import experiment_dict

from arch_lab import api
from arch_lab.config import experiment_from_dict


def test_training_stops_at_its_wall_time_budget_with_a_last_validation(synthetic_h5ad, tmp_path, caplog):
    cfg = experiment_from_dict(
        experiment_dict(
            synthetic_h5ad,
            tmp_path,
            train={"max_steps": 1_000_000, "eval_every": 500_000, "checkpoint_every": 500_000, "max_seconds": 3.0},
        )  # fmt: skip
    )
    with caplog.at_level(logging.INFO, logger="arch_lab.training.trainer"):
        res = api.train(cfg)
    fit = res.fit_summary
    assert fit["time_limited"] is True
    assert 20 < fit["steps"] < 1_000_000
    assert fit["train_seconds"] >= 3.0
    assert fit["history"][-1]["step"] == fit["steps"]  # the last validation ran at the stopping step
    assert fit["best_step"] == fit["steps"]
    messages = [r.getMessage() for r in caplog.records if "expected training time" in r.getMessage()]
    assert len(messages) == 1
    assert "capped at train.max_seconds=3 s" in messages[0]


def test_without_a_budget_training_runs_all_its_steps(synthetic_h5ad, tmp_path):
    cfg = experiment_from_dict(experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 12, "eval_every": 6}))
    fit = api.train(cfg).fit_summary
    assert fit["time_limited"] is False
    assert fit["steps"] == 12
