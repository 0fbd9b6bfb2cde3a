"""The trainer's parts around the network: EMA cadence, gradient clipping through the fused optimizer."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import experiment_dict
from torch import nn

from arch_lab.config import experiment_from_dict
from arch_lab.data.task import build_task
from arch_lab.networks import build_network
from arch_lab.training import FlowTrainer
from arch_lab.training.ema import EMA


def reference_ema(weights: list[float], decay: float) -> float:
    """Per-step EMA of a scalar weight sequence, written out (``weights[0]`` is the initial weight)."""
    shadow = weights[0]
    for n, w in enumerate(weights[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        shadow = d * shadow + (1 - d) * w
    return shadow


def scalar_net(value: float) -> nn.Module:
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(value)
    return net


def run_ema(weights: list[float], decay: float | None, every: int) -> tuple[EMA, nn.Module]:
    net = scalar_net(weights[0])
    ema = EMA(net, decay, every=every)
    for w in weights[1:]:
        with torch.no_grad():
            net.weight.fill_(w)
        ema.update(net)
    return ema, net


def test_ema_every_step_matches_the_written_out_average():
    weights = [0.0, 1.0, 3.0, -2.0, 5.0, 4.0, 4.5, 0.5]
    ema, _ = run_ema(weights, 0.9, every=1)
    assert ema.module.weight.item() == pytest.approx(reference_ema(weights, 0.9), rel=1e-6)


def test_ema_every_k_is_exact_when_weights_change_only_at_flushes():
    # weights constant within each block of k steps (changing right before a flush): the product of the decays
    # applied once equals k single steps
    k = 3
    weights = [1.0] + [2.0] * k + [-1.0] * k + [7.0] * k
    lazy, _ = run_ema(weights, 0.95, every=k)
    assert lazy.module.weight.item() == pytest.approx(reference_ema(weights, 0.95), rel=1e-6)


def test_ema_every_k_reading_mid_block_applies_pending_steps():
    weights = [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # 5 updates, every 4: one flush, then one pending step
    lazy, _ = run_ema(weights, 0.9, every=4)
    assert lazy._pending_steps == 1
    assert lazy.module.weight.item() == pytest.approx(reference_ema(weights, 0.9), rel=1e-6)
    assert lazy._pending_steps == 0


def test_ema_every_k_stays_close_to_every_step_on_a_drifting_weight():
    weights = [0.01 * i for i in range(400)]
    exact = reference_ema(weights, 0.99)
    lazy, _ = run_ema(weights, 0.99, every=10)
    # the skipped steps count the current weight: off by at most every - 1 steps of drift (0.01 per step),
    # against a lag of the average itself of about 1 / (1 - decay) = 100 steps
    assert abs(lazy.module.weight.item() - exact) <= 9 * 0.01
    assert abs(lazy.module.weight.item() - exact) < 0.15 * abs(weights[-1] - exact)
    assert lazy.module.weight.item() != pytest.approx(weights[-1], abs=0.05)  # still an average


def test_ema_without_decay_is_the_network_when_read():
    ema, net = run_ema([0.0, 1.0, 2.0, 3.0], None, every=1)
    assert ema.module.weight.item() == 3.0
    with torch.no_grad():
        net.weight.fill_(-4.0)
    ema.update(net)
    assert ema.module.weight.item() == -4.0


def test_ema_state_dict_keeps_pending_steps():
    weights = [0.0, 2.0, 2.0, 5.0, 5.0]
    ema, net = run_ema(weights, 0.9, every=3)  # 4 updates: one flush, one pending
    state = copy.deepcopy(ema.state_dict())
    restored = EMA(scalar_net(123.0), 0.9, every=3)
    restored.load_state_dict(state)
    ema.update(net)  # one more step on each side
    restored.update(restored._network)
    with torch.no_grad():
        restored._network.weight.fill_(5.0)
    assert restored.module.weight.item() == pytest.approx(ema.module.weight.item(), rel=1e-6)


def test_ema_rejects_bad_every():
    with pytest.raises(ValueError, match="every"):
        EMA(scalar_net(0.0), 0.9, every=0)


# ------------------------------------------------------------------------------------------ clipping
def trainer_for(synthetic_h5ad, tmp_path, grad_clip: float | None, width: int = 64) -> FlowTrainer:
    raw = experiment_dict(synthetic_h5ad, tmp_path, optim={"grad_clip": grad_clip, "lr": 1e-2, "weight_decay": 0.1})
    raw["network"]["width"] = width  # 512: block weights large enough for the backward norm hooks
    cfg = experiment_from_dict(raw)
    task = build_task(cfg)
    network = build_network(cfg.network.name, cfg.network.knobs(), task.spec)
    return FlowTrainer(cfg, task, network, device="cpu")


def fixed_loss(network: nn.Module, spec, seed: int) -> torch.Tensor:
    from arch_lab.spec import CondBatch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, spec.n_genes, generator=g)
    t = torch.rand(16, generator=g)
    cond = CondBatch.repeat([1], [0], 16, width=spec.max_perturbations)
    return (network(x, t, cond) - 3.0 * x).square().mean() * 100.0  # large gradients: clipping bites


@pytest.mark.parametrize("width", [64, 512])  # 512: the block weights' norms come from backward hooks
@pytest.mark.parametrize("max_norm", [0.05, 1e9])
def test_clipping_matches_clip_grad_norm_(synthetic_h5ad, tmp_path, max_norm, width):
    trainer = trainer_for(synthetic_h5ad, tmp_path, grad_clip=max_norm, width=width)
    assert bool(trainer._hook_handles) == (width == 512)  # both ways of taking the norm are exercised
    reference = copy.deepcopy(trainer.network)
    # the same fused kernel: only the clipping differs
    opt = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    trainer.optimizer.param_groups[0]["lr"] = 1e-2  # warm-up off: compare the update itself
    for seed in range(3):
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer._grad_sq, trainer._recording = [], True  # as train_step does around its backward
        fixed_loss(trainer.network, trainer.task.spec, seed).backward()
        trainer._recording = False
        assert len(trainer._grad_sq) == len(trainer._hook_handles)
        norm = trainer._clip(max_norm)
        trainer.optimizer.step()
        opt.zero_grad(set_to_none=True)
        fixed_loss(reference, trainer.task.spec, seed).backward()
        ref_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
        opt.step()
        assert norm == pytest.approx(float(ref_norm), rel=1e-5)
        if max_norm < 1:
            assert norm > 10 * max_norm  # the clipped case really clips
        for p, q in zip(trainer.network.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)  # updates are ~lr = 1e-2


def test_train_step_reports_the_norm_of_every_gradient(synthetic_h5ad, tmp_path):
    trainer = trainer_for(synthetic_h5ad, tmp_path, grad_clip=1.0)
    logs = trainer.train_step()
    # the CPU's fused AdamW writes the rescaled gradients back: their norm is the clipped one
    grads = [p.grad for p in trainer.network.parameters() if p.grad is not None]
    assert len(grads) == len(list(trainer.network.parameters()))
    assert logs["grad_norm"] > 1.0
    assert float(torch.nn.utils.get_total_norm(grads)) == pytest.approx(1.0, rel=1e-5)


# ------------------------------------------------------------------------------------- micro-batches
@pytest.mark.parametrize("micro", [16, 24])  # 24: a last block of 16 rows, weighted by its share
def test_micro_batches_give_the_whole_batch_step(synthetic_h5ad, tmp_path, micro):
    def trained(micro_batch_size: int | None) -> tuple[FlowTrainer, list[dict]]:
        raw = experiment_dict(synthetic_h5ad, tmp_path, optim={"micro_batch_size": micro_batch_size})
        raw["optim"]["batch_size"] = 64
        cfg = experiment_from_dict(raw)
        task = build_task(cfg)
        torch.manual_seed(0)
        network = build_network(cfg.network.name, cfg.network.knobs(), task.spec)
        trainer = FlowTrainer(cfg, task, network, device="cpu")
        return trainer, [trainer.train_step() for _ in range(4)]

    whole, whole_logs = trained(None)
    split, split_logs = trained(micro)
    for a, b in zip(whole_logs, split_logs, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    for p, q in zip(whole.network.parameters(), split.network.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert whole_logs[-1]["loss"] != pytest.approx(whole_logs[0]["loss"], rel=1e-3)  # the steps did move


def test_auto_micro_batch_leaves_the_training_as_it_was(synthetic_h5ad, tmp_path):
    """``auto`` times blocks on a batch of its own: the training draws, weights and steps are those of a run
    given the chosen block size directly."""

    def trainer_for(micro: int | str | None) -> FlowTrainer:
        raw = experiment_dict(synthetic_h5ad, tmp_path, optim={"micro_batch_size": micro, "batch_size": 64})
        cfg = experiment_from_dict(raw)
        task = build_task(cfg)
        torch.manual_seed(0)
        return FlowTrainer(cfg, task, build_network(cfg.network.name, cfg.network.knobs(), task.spec), device="cpu")

    auto = trainer_for("auto")
    assert auto.micro_batch_size is None or auto.micro_batch_size in (8, 16, 32)
    assert all(p.grad is None for p in auto.network.parameters())
    fixed = trainer_for(auto.micro_batch_size)
    for _ in range(3):
        a, b = auto.train_step(), fixed.train_step()
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    for p, q in zip(auto.network.parameters(), fixed.network.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_micro_batch_nan_loss_stops_before_the_weights_change(synthetic_h5ad, tmp_path):
    raw = experiment_dict(synthetic_h5ad, tmp_path, optim={"micro_batch_size": 16})
    cfg = experiment_from_dict(raw)
    task = build_task(cfg)
    network = build_network(cfg.network.name, cfg.network.knobs(), task.spec)
    trainer = FlowTrainer(cfg, task, network, device="cpu")
    with torch.no_grad():
        next(trainer.network.parameters()).fill_(float("nan"))
    before = [p.detach().clone() for p in trainer.network.parameters()]
    from arch_lab.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="lower optim.lr"):
        trainer.train_step()
    for p, q in zip(before, trainer.network.parameters(), strict=True):
        torch.testing.assert_close(p, q.detach(), equal_nan=True)


def test_norm_hooks_record_only_the_trainers_own_backward_and_hold_it_weakly(synthetic_h5ad, tmp_path):
    import gc
    import weakref

    trainer = trainer_for(synthetic_h5ad, tmp_path, grad_clip=1.0, width=512)
    network = trainer.network
    assert trainer._hook_handles
    fixed_loss(network, trainer.task.spec, 0).backward()  # a backward pass of the user's own
    assert trainer._grad_sq == []
    logs = trainer.train_step()
    assert math.isfinite(logs["grad_norm"])
    ref = weakref.ref(trainer)
    del trainer
    gc.collect()
    assert ref() is None  # the hooks left on the network do not keep the trainer (and its data) alive
    network.zero_grad()
    fixed_loss(network, network.spec, 1).backward()  # and are harmless once it is gone


def test_close_removes_hooks_and_falls_back_to_a_norm_after_backward(synthetic_h5ad, tmp_path):
    trainer = trainer_for(synthetic_h5ad, tmp_path, grad_clip=1.0, width=512)
    trainer.close()
    assert trainer._hook_handles == []
    logs = trainer.train_step()
    grads = [p.grad for p in trainer.network.parameters()]
    # fused AdamW rescaled the gradients to the clip norm; the reported norm is the one before clipping
    assert logs["grad_norm"] > 1.0
    assert float(torch.nn.utils.get_total_norm(grads)) == pytest.approx(1.0, rel=1e-5)


def test_fit_records_its_step_and_pace_in_the_run_status(synthetic_h5ad, tmp_path, monkeypatch):
    """Sweep workers and ``arch-lab sweep status`` read a running run's progress from its status."""
    from arch_lab.rundir import RunDir
    from arch_lab.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(trainer_module, "ETA_AFTER_STEPS", 4)  # no pace before 4 steps are measured
    cfg = experiment_from_dict(experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 6, "eval_every": 2}))
    task = build_task(cfg)
    run = RunDir.create(tmp_path / "run")
    run.set_status("running")
    seen = []
    net = build_network("mlp", {"width": 16, "depth": 1}, task.spec)
    trainer = FlowTrainer(
        cfg,
        task,
        net,
        validate=lambda model, conditions: {"energy_distance": 1.0},
        run_dir=run,
        callbacks=[lambda step, _: seen.append(run.read_progress())],
    )
    trainer.fit()
    assert seen[0] is None  # after 2 steps the pace would be the first step's warm-up
    assert [(p["step"], p["max_steps"]) for p in seen[1:]] == [(4, 6), (6, 6)]
    assert all(p["seconds_per_step"] > 0 for p in seen[1:])
    assert seen[1]["eta_seconds"] == pytest.approx(2 * seen[1]["seconds_per_step"])
    assert run.read_progress()["step"] == 6


def test_validate_at_start_scores_the_untrained_flow_as_no_change(synthetic_h5ad, tmp_path):
    """With a control source the untrained network (zero-initialised output) leaves every source cell as it is:
    its step-0 validation is exactly the no_change floor on the same requests, and it is a candidate checkpoint."""
    from arch_lab import api

    raw = experiment_dict(synthetic_h5ad, tmp_path, flow={"source": "control", "steps": 3},
                          train={"validate_at_start": True, "max_steps": 10, "eval_every": 5})  # fmt: skip
    result = api.train(experiment_from_dict(raw))
    history = pd.read_csv(result.run_dir / "history.csv")
    assert history["step"].tolist() == [0, 5, 10]
    first = history.iloc[0]
    assert first["val_energy_distance"] == pytest.approx(first["val_floor_energy_distance"], rel=1e-9)
    assert first["val_pearson_delta"] == pytest.approx(first["val_floor_pearson_delta"], abs=1e-9)
    plain = experiment_dict(synthetic_h5ad, tmp_path / "plain", flow={"source": "control", "steps": 3},
                            train={"max_steps": 10, "eval_every": 5})  # fmt: skip
    assert pd.read_csv(api.train(experiment_from_dict(plain)).run_dir / "history.csv")["step"].tolist() == [5, 10]


def test_zero_threshold_auto_is_half_the_smallest_training_value(synthetic_h5ad, tmp_path):
    """``flow.zero_threshold: auto``: half the smallest non-zero value of the training cells, and no generated
    value lies strictly between 0 and it; a number is taken as given, null keeps every value."""
    from arch_lab import api
    from arch_lab.data.task import build_task
    from arch_lab.methods.flow import zero_threshold

    raw = experiment_dict(synthetic_h5ad, tmp_path, flow={"zero_threshold": "auto", "steps": 3},
                          train={"max_steps": 5, "eval_every": 5})  # fmt: skip
    cfg = experiment_from_dict(raw)
    task = build_task(cfg)
    train = np.asarray(task.data.X[task.cells("train")], dtype=np.float64)
    expected = 0.5 * train[train > 0].min()
    assert zero_threshold(task, cfg.flow) == pytest.approx(expected)
    assert zero_threshold(task, cfg.flow.model_copy(update={"zero_threshold": 0.3})) == 0.3
    assert zero_threshold(task, cfg.flow.model_copy(update={"zero_threshold": None})) == 0.0
    result = api.train(cfg)
    import anndata as ad

    values = np.asarray(ad.read_h5ad(result.run_dir / "predictions.h5ad").X)
    assert not ((values > 0) & (values < expected)).any()
    assert (values > 0).any()


# ------------------------------------------------------------------------------------------ source centre
def test_gaussian_source_centred_on_the_training_means(synthetic_h5ad, tmp_path):
    """``flow.source_mean: train``: the Gaussian source is N(m, I), m each gene's mean over the training cells (in
    the network's gene order), in training and in generation; ``zero`` and control sources are untouched."""
    from scipy import stats as sps

    from arch_lab.methods.base import PredictionRequest
    from arch_lab.methods.flow import predict_cells
    from arch_lab.training.sampling import source_center

    raw = experiment_dict(synthetic_h5ad, tmp_path, data={"gene_order": "random"}, flow={"source_mean": "train"})
    cfg = experiment_from_dict(raw)
    task = build_task(cfg)
    means = np.asarray(task.data.X[task.cells("train")], dtype=np.float64).mean(0)  # stored gene order, by hand
    np.testing.assert_allclose(task.gene_means("train"), means, rtol=1e-5)
    center = source_center(task, "gaussian", "train")
    np.testing.assert_allclose(center.numpy(), means[task.order], rtol=1e-5)
    assert source_center(task, "gaussian", "zero") is None
    assert source_center(task, "control", "train") is None
    # training draws: mean over many rows within 5 standard errors of the centre
    network = build_network(cfg.network.name, cfg.network.knobs(), task.spec)
    trainer = FlowTrainer(cfg, task, network, device="cpu")
    draws = trainer._noise(torch.zeros(4000, task.data.n_genes), torch.Generator().manual_seed(0))
    assert (draws.mean(0) - center).abs().max() < 5 / np.sqrt(4000)
    # generation: an untrained MLP has a zero velocity, so its cells are the source clipped at 0, whose mean is
    # m Phi(m) + phi(m) per gene (stored order)
    requests = [PredictionRequest(task.conditions("test")[0], 3000, None)]
    cells = predict_cells(network, task, cfg.flow, requests, np.random.default_rng(0))[0]
    expected = means * sps.norm.cdf(means) + sps.norm.pdf(means)
    assert np.abs(cells.mean(0) - expected).max() < 5 / np.sqrt(3000)
    plain = predict_cells(network, task, cfg.flow.model_copy(update={"source_mean": "zero"}), requests,
                          np.random.default_rng(0))[0]  # fmt: skip
    assert np.abs(plain.mean(0) - sps.norm.pdf(0)).max() < 5 / np.sqrt(3000)
