"""The read-outs of arch_lab.methods.readouts against hand computations, an independent projection and autograd."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from arch_lab.config import experiment_from_dict
from arch_lab.data.task import build_task
from arch_lab.flow import generate
from arch_lab.methods.readouts import (
    hidden_source_share,
    output_span,
    source_outside_span,
    source_sensitivity,
    source_velocity_gain,
)
from arch_lab.networks import build_network, get_network_class, list_networks
from arch_lab.spec import CondBatch
from tests.conftest import experiment_dict


def _task(synthetic_h5ad: Path, tmp_path: Path, **data: object):
    cfg = experiment_from_dict(experiment_dict(synthetic_h5ad, tmp_path, data=dict(data)))
    return build_task(cfg)


def _mlp(task, width: int, **knobs: object) -> torch.nn.Module:
    net = build_network("mlp", {"width": width, "depth": 1, "cond_dim": 8, **knobs}, task.spec)
    with torch.no_grad():  # the output layer starts at zero; give it a generic (full-rank) value
        net.output.weight.normal_(generator=torch.Generator().manual_seed(0))
        net.output.bias.normal_(generator=torch.Generator().manual_seed(1))
    return net


def test_mlp_narrower_than_genes_leaves_gaussian_noise_in_g_minus_rank_directions(synthetic_h5ad, tmp_path):
    task = _task(synthetic_h5ad, tmp_path)
    genes = task.data.n_genes  # 24
    net = _mlp(task, width=5)
    basis = output_span(net)
    assert isinstance(basis, np.ndarray)
    assert basis.shape == (genes, 6)
    np.testing.assert_allclose(basis.T @ basis, np.eye(6), atol=1e-10)
    out = source_outside_span(net, task, "gaussian", "test")
    assert out["output_rank"] == 6
    # By hand: trace(P I) = G - 6 over each condition's observed total variance, averaged over conditions.
    X = task.data.X
    expected = [
        (genes - 6) / X[task.cells("test", c)].astype(np.float64).var(0, ddof=1).sum() for c in task.conditions("test")
    ]
    assert out["source_outside_span"] == pytest.approx(float(np.mean(expected)))


def test_control_source_left_over_matches_an_independent_projection(synthetic_h5ad, tmp_path):
    task = _task(synthetic_h5ad, tmp_path, gene_order="random")
    net = _mlp(task, width=3)
    out = source_outside_span(net, task, "control", "test")
    # Independent: least-squares residual of the (stored-order) controls against the span of the columns put
    # back in stored gene order.
    cols = torch.cat([net.output.weight, net.output.bias[:, None]], 1).detach().double().numpy()
    stored_cols = np.empty_like(cols)
    stored_cols[task.order] = cols  # network gene i is stored gene order[i]
    X = task.data.X
    values = []
    for c in task.conditions("test"):
        ctrl = X[task.controls(c.state, "train")].astype(np.float64)
        centred = ctrl - ctrl.mean(0)
        coef, *_ = np.linalg.lstsq(stored_cols, centred.T, rcond=None)
        resid = centred.T - stored_cols @ coef
        left = (resid**2).sum() / (ctrl.shape[0] - 1)
        values.append(left / X[task.cells("test", c)].astype(np.float64).var(0, ddof=1).sum())
    assert out["source_outside_span"] == pytest.approx(float(np.mean(values)), rel=1e-8)
    assert out["source_outside_span"] > 0


def test_full_rank_outputs_leave_nothing(synthetic_h5ad, tmp_path):
    task = _task(synthetic_h5ad, tmp_path)
    wide = _mlp(task, width=64)  # width + 1 >= G: the columns span every gene
    assert source_outside_span(wide, task, "gaussian", "test")["source_outside_span"] == pytest.approx(0, abs=1e-9)
    skip = _mlp(task, width=5, linear_skip=True)
    assert output_span(skip) is None
    assert source_outside_span(skip, task, "gaussian", "test") == {
        "source_outside_span": 0.0,
        "output_rank": float(task.data.n_genes),
    }


@pytest.mark.parametrize("name", [n for n in list_networks() if n != "mlp"])
def test_networks_without_a_declared_span_get_nan(synthetic_h5ad, tmp_path, name):
    task = _task(synthetic_h5ad, tmp_path)
    net = build_network(name, get_network_class(name).tiny_config(), task.spec)
    out = source_outside_span(net, task, "gaussian", "test")
    if hasattr(net, "output_span"):
        assert out["output_rank"] >= 1
    else:
        assert math.isnan(out["source_outside_span"])
        assert math.isnan(out["output_rank"])


def test_a_run_records_its_readouts_and_gene_count(synthetic_h5ad, tmp_path):
    from arch_lab.analysis.tidy import load_runs
    from arch_lab.api import train

    raw = experiment_dict(synthetic_h5ad, tmp_path, network={"name": "mlp", "width": 8, "depth": 1})
    result = train(experiment_from_dict(raw))
    row = load_runs([result.run_dir]).iloc[0]
    assert row["n_genes"] == 24
    assert row["readout_output_rank"] == 9  # width 8 + the bias
    assert row["readout_source_outside_span"] > 0  # Gaussian source, rank 9 < 24 genes
    assert row["readout_source_sensitivity"] > 0
    assert np.isfinite(row["readout_source_velocity_gain"])
    assert row["readout_hidden_source_share"] > 0
    assert 0 < row["gene_spread_ratio"] < 10


class _Linear(torch.nn.Module):
    """``v(x, t) = -rate * x``: Euler with n steps maps ``x0`` to ``(1 - rate / n)^n x0``."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = torch.nn.Parameter(torch.tensor(rate))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        return -self.rate * x


def _observed_traces(task) -> list[float]:
    X = task.data.X
    return [X[task.cells("test", c)].astype(np.float64).var(0, ddof=1).sum() for c in task.conditions("test")]


@pytest.mark.parametrize("source", ["gaussian", "control"])
def test_a_network_that_moves_nothing_passes_the_whole_source_through(synthetic_h5ad, tmp_path, source):
    task = _task(synthetic_h5ad, tmp_path)
    genes = task.data.n_genes
    net = build_network("mlp", {"width": 8, "depth": 1, "cond_dim": 8}, task.spec)  # zero output layer: v = 0
    out = source_sensitivity(net, task, source, "test", steps=4)
    # J = I: trace(J J^T) = G, over each condition's observed total variance.
    assert out["source_sensitivity"] == pytest.approx(float(np.mean([genes / v for v in _observed_traces(task)])))


def test_a_contracting_flow_scales_the_sensitivity_by_its_squared_gain(synthetic_h5ad, tmp_path):
    task = _task(synthetic_h5ad, tmp_path)
    genes = task.data.n_genes
    steps, rate = 5, 0.8
    gain = (1 - rate / steps) ** steps
    out = source_sensitivity(_Linear(rate), task, "gaussian", "test", steps=steps)
    expected = float(np.mean([genes * gain**2 / v for v in _observed_traces(task)]))
    assert out["source_sensitivity"] == pytest.approx(expected, rel=1e-6)


def test_sensitivity_matches_the_exact_jacobian_of_a_nonlinear_flow(synthetic_h5ad, tmp_path):
    # Independent: the Frobenius norm of the autograd Jacobian of the Euler map, averaged over many source samples,
    # against the finite-difference Hutchinson estimate on as many samples.
    task = _task(synthetic_h5ad, tmp_path)
    genes = task.data.n_genes
    net = _mlp(task, width=16, norm=False)
    with torch.no_grad():
        net.output.weight.mul_(0.2)
    condition = task.conditions("test")[0]
    tokens, covs = task.encode(condition)
    one = CondBatch.repeat(tokens, covs, 1, width=task.spec.max_perturbations)
    gen = torch.Generator().manual_seed(5)
    frob = []
    for _ in range(300):
        x0 = torch.randn(1, genes, generator=gen)
        with torch.enable_grad():
            jac = torch.autograd.functional.jacobian(lambda x: _euler(net, one, x, steps=3), x0)
        frob.append(float((jac.reshape(genes, genes) ** 2).sum()))
    observed = float(task.data.X[task.cells("test", condition)].astype(np.float64).var(0, ddof=1).sum())
    exact = float(np.mean(frob)) / observed

    class _OneCondition:  # the same task, read through its first test condition only
        def __getattr__(self, name):
            return getattr(task, name)

        def conditions(self, split):
            return [condition]

    estimate = source_sensitivity(net, _OneCondition(), "gaussian", "test", steps=3, cells=3000, eps=1e-3)
    assert estimate["source_sensitivity"] == pytest.approx(exact, rel=0.03)
    assert abs(exact - genes / observed) > 0.05 * exact  # the network moves the source: not the trivial value


def _euler(net, cond, x0, steps):
    x = x0
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps)
        x = x + net(x, t, cond) / steps
    return x


def test_sensitivity_matches_the_solver_it_reads(synthetic_h5ad, tmp_path):
    # The read-out integrates with arch_lab.flow.generate; _euler above is its independent re-statement.
    task = _task(synthetic_h5ad, tmp_path)
    net = _mlp(task, width=16, norm=False)
    condition = task.conditions("test")[0]
    tokens, covs = task.encode(condition)
    cond = CondBatch.repeat(tokens, covs, 4, width=task.spec.max_perturbations)
    x0 = torch.randn(4, task.data.n_genes, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(generate(net, cond, x0, solver="euler", steps=3), _euler(net, cond, x0, 3))


def test_velocity_gain_is_the_rate_of_a_linear_velocity_and_zero_for_one_that_ignores_its_input(
    synthetic_h5ad, tmp_path
):
    task = _task(synthetic_h5ad, tmp_path)
    out = source_velocity_gain(_Linear(0.7), task, "gaussian", "independent", "test")
    assert out["source_velocity_gain"] == pytest.approx(0.7, rel=1e-5)  # J_v = -0.7 I: exact for any direction
    flat = build_network("mlp", {"width": 8, "depth": 1, "cond_dim": 8}, task.spec)  # zero output layer
    assert source_velocity_gain(flat, task, "gaussian", "independent", "test")["source_velocity_gain"] == 0.0
    for source, coupling in (("control", "independent"), ("gaussian", "exact_ot")):  # no exact reference there
        assert math.isnan(source_velocity_gain(flat, task, source, coupling, "test")["source_velocity_gain"])


class _Matrix(torch.nn.Module):
    """``v(x, t) = -x Aᵀ``: the Jacobian is ``-A`` everywhere."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(a)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        return -x @ self.a.T


def test_velocity_gain_estimates_the_trace_of_a_general_jacobian(synthetic_h5ad, tmp_path):
    # Independent: numpy's trace of a random (non-symmetric, non-scalar) Jacobian, within 5 standard errors of the
    # Hutchinson estimate (the variance of uᵀ A u is at most 2 ||(A + Aᵀ) / 2||_F² for these directions).
    task = _task(synthetic_h5ad, tmp_path)
    genes = task.data.n_genes
    a = torch.randn(genes, genes, generator=torch.Generator().manual_seed(2)) / np.sqrt(genes) + 0.5 * torch.eye(genes)
    exact = float(np.trace(a.numpy())) / genes
    cells = 400
    n = cells * len(task.conditions("test"))
    sym = (a + a.T) / 2
    se = float(torch.sqrt(2 * (sym**2).sum())) / genes / np.sqrt(n)
    out = source_velocity_gain(_Matrix(a), task, "gaussian", "independent", "test", cells=cells)
    assert abs(out["source_velocity_gain"] - exact) < 5 * se
    assert se < 0.1 * exact  # the check is tight enough to tell a wrong trace


class _Shifted(torch.nn.Module):
    """A network whose last hidden vector is ``x + offset``."""

    def __init__(self, offset: torch.Tensor) -> None:
        super().__init__()
        self.offset = torch.nn.Parameter(offset)

    def hidden(self, x: torch.Tensor, t: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        return x + self.offset


@pytest.mark.parametrize("offset", [0.0, 10.0])
def test_hidden_share_is_the_source_varying_part_against_the_constant_part(synthetic_h5ad, tmp_path, offset):
    # By hand: h_i - mean(h) = x_i - mean(x) and mean(h) = mean(x) + offset; with n Gaussian samples in G genes,
    # E||x_i - mean(x)|| is about sqrt(G (n - 1) / n), and ||mean(x) + offset|| about sqrt(G / n + G offset^2).
    task = _task(synthetic_h5ad, tmp_path)
    genes, cells = task.data.n_genes, 64
    share = hidden_source_share(_Shifted(torch.full((genes,), offset)), task, "gaussian", "test", cells=cells)
    expected = np.sqrt(genes * (cells - 1) / cells) / np.sqrt(genes / cells + genes * offset**2)
    assert share["hidden_source_share"] == pytest.approx(expected, rel=0.25)


def test_the_mlp_hidden_vector_is_what_its_output_layer_reads(synthetic_h5ad, tmp_path):
    task = _task(synthetic_h5ad, tmp_path)
    net = _mlp(task, width=16)
    condition = task.conditions("test")[0]
    tokens, covs = task.encode(condition)
    cond = CondBatch.repeat(tokens, covs, 4, width=task.spec.max_perturbations)
    x, t = torch.randn(4, task.data.n_genes), torch.rand(4)
    h = net.hidden(x, t, cond)
    torch.testing.assert_close(net(x, t, cond), net.output(torch.nn.functional.silu(net.output_norm(h))))


@pytest.mark.parametrize("name", [n for n in list_networks() if n != "mlp"])
def test_networks_without_a_hidden_vector_get_nan_share(synthetic_h5ad, tmp_path, name):
    task = _task(synthetic_h5ad, tmp_path)
    net = build_network(name, get_network_class(name).tiny_config(), task.spec)
    share = hidden_source_share(net, task, "gaussian", "test")["hidden_source_share"]
    assert math.isnan(share) != hasattr(net, "hidden")


def test_readouts_read_control_cells_and_a_centred_gaussian_source(synthetic_h5ad, tmp_path):
    # With a control source the samples are the state's training controls: h_i - mean(h) is their spread around
    # their mean, a finite share; a centred Gaussian source moves every sample by the centre.
    task = _task(synthetic_h5ad, tmp_path)
    genes = task.data.n_genes
    net = _Shifted(torch.zeros(genes))
    control = hidden_source_share(net, task, "control", "test")["hidden_source_share"]
    assert 0 < control < 10
    far = hidden_source_share(net, task, "gaussian", "test", center=torch.full((genes,), 100.0))
    near = hidden_source_share(net, task, "gaussian", "test")
    assert far["hidden_source_share"] < 0.05 * near["hidden_source_share"]
