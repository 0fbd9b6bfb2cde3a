"""Training, sampling and scoring on a CUDA device: every registered network, in fp32 and in bf16 autocast.

The rest of the suite pins ``device="cpu"``; these tests take the default device, as ``arch-lab train`` does, so
they exercise the device placement of the whole run (condition sampler, source noise, guidance, ODE sampling,
checkpoints, metrics) on the GPU. They skip without CUDA.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from conftest import experiment_dict

from arch_lab import api
from arch_lab.config import experiment_from_dict
from arch_lab.data.task import build_task
from arch_lab.networks import build_network, get_network_class, list_networks
from arch_lab.training import FlowTrainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def tiny_experiment(name: str, synthetic_h5ad, tmp_path, **sections: dict):
    """The suite's small synthetic experiment with the registered network ``name`` at its tiny size."""
    raw = experiment_dict(synthetic_h5ad, tmp_path, **sections)
    raw["network"] = {"name": name, **get_network_class(name).tiny_config()}
    return experiment_from_dict(raw)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list_networks())
def test_every_network_trains_and_scores_on_the_gpu(name: str, precision: str, synthetic_h5ad, tmp_path) -> None:
    train = {"precision": precision, "max_steps": 12, "eval_every": 6, "checkpoint_every": 6}
    cfg = tiny_experiment(name, synthetic_h5ad, tmp_path, train=train)
    result = api.train(cfg)
    meta = json.loads((result.run_dir / "meta.json").read_text())
    assert meta["device"]["cuda"] is True
    assert meta["device"]["gpu"] == torch.cuda.get_device_name(0)
    log = pd.read_csv(result.run_dir / "train_log.csv")
    losses = log.loc[log["name"] == "train/loss", "value"]
    assert len(losses) == 12
    assert losses.map(math.isfinite).all()
    assert math.isfinite(result.summary["energy_distance"])
    recorded = json.loads((result.run_dir / "metrics.json").read_text())
    assert recorded["out_of_range_cells"] == {}
    weights = torch.load(result.run_dir / "model.pt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in _tensors(weights))


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() else []
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    return []


@pytest.mark.parametrize("name", list_networks())
def test_bf16_autocast_stays_close_to_fp32_on_the_gpu(name: str, synthetic_h5ad, tmp_path) -> None:
    cfg = tiny_experiment(name, synthetic_h5ad, tmp_path)
    task = build_task(cfg)
    torch.manual_seed(0)
    trainer = FlowTrainer(cfg, task, build_network(cfg.network.name, cfg.network.knobs(), task.spec))
    assert trainer.device.type == "cuda"
    net = trainer.network.eval()
    for p in net.parameters():  # live weights everywhere (zero-initialised output layers would hide errors)
        with torch.no_grad():
            p.add_(0.05 * torch.randn_like(p))
    gen = torch.Generator(device="cuda").manual_seed(0)
    x1, cond, _ = trainer.sampler.sample(32, 4, gen)
    x = torch.randn(x1.shape, device="cuda", generator=gen)
    t = torch.rand(len(x1), device="cuda", generator=gen)
    with torch.no_grad():
        reference = net(x, t, cond).float()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = net(x, t, cond).float()
    assert torch.isfinite(low).all()
    rel = (low - reference).norm() / reference.norm().clamp_min(1e-12)
    assert rel < 5e-2, f"{name}: bf16 autocast output differs from fp32 by {rel:.3g} (relative L2)"
