"""Tests of the flow-matching pieces: paths, time samplers, couplings, solvers, guidance, objective, sampling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from arch_lab.errors import ConfigError
from arch_lab.flow import (
    ExactOTCoupling,
    FlowMatchingObjective,
    IndependentCoupling,
    LogitNormalTime,
    StraightPath,
    UniformTime,
    drop_condition,
    generate,
    guided_velocity,
    make_coupling,
    make_time_sampler,
    odeint,
)
from arch_lab.spec import CondBatch


def make_cond(tokens: list[int] | torch.Tensor, null: list[bool] | None = None) -> CondBatch:
    """One perturbation token per row (0 = control), one covariate column of zeros."""
    tok = torch.as_tensor(tokens, dtype=torch.long).reshape(-1, 1)
    n = tok.shape[0]
    flag = torch.zeros(n, dtype=torch.bool) if null is None else torch.tensor(null, dtype=torch.bool)
    return CondBatch(tok, tok != 0, torch.zeros(n, 1, dtype=torch.long), flag)


class AffineCondField(nn.Module):
    """``v = x W + t u + e[token]`` with a separate vector ``e_null`` on null rows; counts forward calls."""

    def __init__(self, n_genes: int, n_tokens: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(n_genes, n_genes, generator=g) * 0.3)
        self.u = nn.Parameter(torch.randn(n_genes, generator=g))
        self.table = nn.Parameter(torch.randn(n_tokens + 1, n_genes, generator=g))
        self.null_vec = nn.Parameter(torch.randn(n_genes, generator=g))
        self.calls = 0
        self.seen_null: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        self.calls += 1
        self.seen_null.append(cond.null.clone())
        emb = self.table[cond.pert_tokens[:, 0]]
        emb = torch.where(cond.null[:, None], self.null_vec.expand_as(emb), emb)
        return x @ self.w + t[:, None] * self.u + emb


class TinyCondMLP(nn.Module):
    """A small MLP on ``[x, t, embedding(token or null)]``."""

    def __init__(self, n_genes: int, n_tokens: int, width: int = 64) -> None:
        super().__init__()
        self.null_id = n_tokens + 1
        self.embed = nn.Embedding(n_tokens + 2, 8)
        self.net = nn.Sequential(
            nn.Linear(n_genes + 1 + 8, width),
            nn.SiLU(),
            nn.Linear(width, width),
            nn.SiLU(),
            nn.Linear(width, n_genes),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        ids = torch.where(cond.null, torch.full_like(cond.pert_tokens[:, 0], self.null_id), cond.pert_tokens[:, 0])
        return self.net(torch.cat([x, t[:, None], self.embed(ids)], dim=1))


# ----------------------------------------------------------------------------------------------------- paths


def test_straight_path_endpoints_and_target() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    path = StraightPath(sigma=0.0)
    at0 = path.sample(x0, x1, torch.zeros(8))
    at1 = path.sample(x0, x1, torch.ones(8))
    mid = path.sample(x0, x1, torch.full((8,), 0.25))
    assert torch.equal(at0.x_t, x0)
    assert torch.equal(at1.x_t, x1)
    assert torch.allclose(mid.x_t, 0.75 * x0 + 0.25 * x1)
    assert torch.equal(mid.dx_t, x1 - x0)
    assert mid.x_0 is x0
    assert mid.x_1 is x1
    assert mid.t.shape == (8,)


def test_straight_path_per_row_times() -> None:
    x0, x1 = torch.zeros(3, 2), torch.ones(3, 2)
    out = StraightPath().sample(x0, x1, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(out.x_t, torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]))


def test_straight_path_noise_std_and_reproducibility() -> None:
    x = torch.zeros(400, 50)
    t = torch.rand(400)
    path = StraightPath(sigma=0.3)
    a = path.sample(x, x, t, generator=torch.Generator().manual_seed(1))
    b = path.sample(x, x, t, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.x_t, b.x_t)
    assert a.x_t.std().item() == pytest.approx(0.3, rel=0.03)
    assert a.x_t.mean().abs().item() < 0.01
    assert torch.equal(a.dx_t, torch.zeros_like(x))


def test_straight_path_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        StraightPath().sample(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="t must have shape"):
        StraightPath().sample(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        StraightPath(sigma=-1.0)


# ------------------------------------------------------------------------------------------------------ time


@pytest.mark.parametrize("sampler", [UniformTime(), LogitNormalTime(), LogitNormalTime(0.0, 3.0)])
def test_time_samplers_in_open_interval_and_reproducible(sampler) -> None:
    t = sampler.sample(50_000, torch.Generator().manual_seed(3))
    assert t.shape == (50_000,)
    assert t.dtype == torch.float32
    assert bool((t > 0).all())
    assert bool((t < 1).all())
    again = sampler.sample(50_000, torch.Generator().manual_seed(3))
    other = sampler.sample(50_000, torch.Generator().manual_seed(4))
    assert torch.equal(t, again)
    assert not torch.equal(t, other)


def test_time_sampler_moments() -> None:
    g = torch.Generator().manual_seed(0)
    u = UniformTime().sample(100_000, g)
    assert u.mean().item() == pytest.approx(0.5, abs=0.01)
    assert u.var().item() == pytest.approx(1 / 12, abs=0.003)
    ln = LogitNormalTime().sample(100_000, g)
    assert ln.mean().item() == pytest.approx(0.5, abs=0.01)
    assert ln.median().item() == pytest.approx(0.5, abs=0.01)
    assert ln.var().item() < u.var().item()  # mass concentrated mid-path
    shifted = LogitNormalTime(mean=1.0, std=0.5).sample(100_000, g)
    assert shifted.median().item() == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.01)


def test_make_time_sampler() -> None:
    assert isinstance(make_time_sampler("uniform"), UniformTime)
    s = make_time_sampler("logit_normal", mean=0.5, std=2.0)
    assert isinstance(s, LogitNormalTime)
    assert s.mean == 0.5
    assert s.std == 2.0
    with pytest.raises(ConfigError, match="uniform, logit_normal") as err:
        make_time_sampler("beta")
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------------- solvers


def _exp_field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -1.5 * x


def _cos_field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.cos(t)[:, None] * x


_X0 = torch.tensor([[1.0, -0.5], [2.0, 0.3]], dtype=torch.float64)
_PROBLEMS = {
    "linear": (_exp_field, _X0 * math.exp(-1.5)),
    "time_dependent": (_cos_field, _X0 * math.exp(math.sin(1.0))),
}


@pytest.mark.parametrize("problem", sorted(_PROBLEMS))
@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_convergence_order(problem: str, method: str, order: int) -> None:
    field, exact = _PROBLEMS[problem]
    errs = [(odeint(field, _X0, method=method, steps=s).x - exact).abs().max().item() for s in (16, 32, 64)]
    observed = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(o - order) < 0.3 for o in observed), observed


@pytest.mark.parametrize(("method", "per_step"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_nfe_and_time_shape(method: str, per_step: int) -> None:
    seen: list[torch.Tensor] = []

    def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return torch.zeros_like(x)

    res = odeint(field, torch.zeros(7, 3), method=method, steps=5)
    assert res.nfe == 5 * per_step == len(seen)
    assert all(t.shape == (7,) and t.dtype == torch.float32 for t in seen)
    assert seen[0][0].item() == 0.0


@pytest.mark.parametrize("problem", sorted(_PROBLEMS))
def test_dopri5_accuracy_and_efficiency(problem: str) -> None:
    field, exact = _PROBLEMS[problem]
    tol = 1e-8
    res = odeint(field, _X0, method="dopri5", rtol=tol, atol=tol)
    err = (res.x - exact).abs().max().item()
    assert err < 20 * tol
    loose = odeint(field, _X0, method="dopri5", rtol=1e-4, atol=1e-4)
    assert loose.nfe < res.nfe
    assert (loose.x - exact).abs().max().item() > err
    rk4 = (odeint(field, _X0, method="rk4", steps=2**k) for k in range(1, 12))
    rk4_nfe = next(r.nfe for r in rk4 if (r.x - exact).abs().max().item() <= err)
    assert res.nfe < rk4_nfe


def test_dopri5_backwards_and_time_shape() -> None:
    shapes: set[tuple[int, ...]] = set()

    def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        shapes.add(tuple(t.shape))
        return _cos_field(t, x)

    end = _X0 * math.exp(math.sin(1.0))
    back = odeint(field, end, t0=1.0, t1=0.0, method="dopri5", rtol=1e-9, atol=1e-9)
    assert torch.allclose(back.x, _X0, atol=1e-7)
    assert shapes == {(2,)}


def test_dopri5_max_steps() -> None:
    with pytest.raises(RuntimeError, match="max_steps"):
        odeint(_exp_field, _X0, method="dopri5", rtol=1e-12, atol=1e-12, max_steps=3)


def test_euler_one_step_exact_on_constant_field() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    res = odeint(lambda t, x: x1 - x0, x0, method="euler", steps=1)
    assert res.nfe == 1
    assert torch.allclose(res.x, x1, atol=1e-6, rtol=0)


def test_odeint_unknown_method() -> None:
    with pytest.raises(ConfigError, match="euler, midpoint, rk4, dopri5") as err:
        odeint(_exp_field, _X0, method="heun")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        odeint(_exp_field, _X0, method="euler", steps=0)


# ------------------------------------------------------------------------------------------------- couplings


def _source_rows(x0_paired: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Index into ``x0`` of every row of ``x0_paired`` (rows of ``x0`` are distinct)."""
    d = torch.cdist(x0_paired, x0)
    assert bool((d.min(dim=1).values == 0).all())
    return d.argmin(dim=1)


def _cost(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().sum())


def test_independent_coupling_is_identity() -> None:
    x0, x1 = torch.randn(10, 3), torch.randn(10, 3)
    a, b = IndependentCoupling().pair(x0, x1, torch.zeros(10, dtype=torch.long))
    assert torch.equal(a, x0)
    assert torch.equal(b, x1)


def test_exact_ot_stays_within_groups_and_permutes() -> None:
    g = torch.Generator().manual_seed(0)
    groups = torch.tensor([0] * 5 + [1] * 7 + [2] * 4)[torch.randperm(16, generator=g)]
    x0, x1 = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g)
    a, b = ExactOTCoupling().pair(x0, x1, groups, g)
    assert torch.equal(b, x1)
    src = _source_rows(a, x0)
    assert torch.equal(groups[src], groups)
    assert sorted(src.tolist()) == list(range(16))


def test_exact_ot_does_not_cross_groups_even_when_cheaper() -> None:
    # Group 0 sources sit where group 1 targets are, and vice versa: unrestricted OT would swap them.
    n = 6
    g = torch.Generator().manual_seed(1)
    near_a = torch.randn(n, 2, generator=g) * 0.1
    near_b = torch.randn(n, 2, generator=g) * 0.1 + 10.0
    x0 = torch.cat([near_b + 0.01, near_a + 0.01])
    x1 = torch.cat([near_a, near_b])
    groups = torch.tensor([0] * n + [1] * n)
    free, _ = ExactOTCoupling().pair(x0, x1, None)
    assert not torch.equal(groups[_source_rows(free, x0)], groups)
    held, _ = ExactOTCoupling().pair(x0, x1, groups)
    assert torch.equal(groups[_source_rows(held, x0)], groups)


def test_exact_ot_is_optimal_and_beats_independent() -> None:
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    a, _ = ExactOTCoupling().pair(x0, x1)
    best = min(_cost(x0[list(p)], x1) for p in itertools.permutations(range(6)))
    assert _cost(a, x1) == pytest.approx(best, rel=1e-6)

    x0, x1 = torch.randn(128, 8, generator=g), torch.randn(128, 8, generator=g)
    groups = torch.randint(0, 3, (128,), generator=g)
    a, _ = make_coupling("exact_ot").pair(x0, x1, groups)
    b, _ = make_coupling("independent").pair(x0, x1, groups)
    assert _cost(a, x1) < 0.8 * _cost(b, x1)


def test_exact_ot_draws_from_a_non_permutation_plan(monkeypatch) -> None:
    import ot  # imported by the coupling when it solves, so patching the module reaches it

    monkeypatch.setattr(ot, "emd", lambda a, b, m, **kw: np.full(m.shape, 1.0 / m.size))
    x0, x1 = torch.randn(20, 2), torch.randn(20, 2)
    groups = torch.tensor([0] * 10 + [1] * 10)
    a1, _ = ExactOTCoupling().pair(x0, x1, groups, torch.Generator().manual_seed(5))
    a2, _ = ExactOTCoupling().pair(x0, x1, groups, torch.Generator().manual_seed(5))
    assert torch.equal(a1, a2)
    assert torch.equal(groups[_source_rows(a1, x0)], groups)


def test_make_coupling_unknown() -> None:
    with pytest.raises(ConfigError, match="independent, exact_ot"):
        make_coupling("sinkhorn")


# -------------------------------------------------------------------------------------------------- guidance


def _guidance_inputs() -> tuple[AffineCondField, torch.Tensor, torch.Tensor, CondBatch]:
    net = AffineCondField(n_genes=3, n_tokens=4)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(5, 3, generator=g), torch.rand(5, generator=g)
    return net, x, t, make_cond([1, 2, 3, 4, 0])


def test_guidance_scale_one_is_conditional_in_one_pass() -> None:
    net, x, t, cond = _guidance_inputs()
    expected = net(x, t, cond)
    net.calls = 0
    out = guided_velocity(net, x, t, cond, 1.0)
    assert net.calls == 1
    assert torch.equal(out, expected)


def test_guidance_scale_zero_is_unconditional_in_one_pass() -> None:
    net, x, t, cond = _guidance_inputs()
    expected = net(x, t, cond.with_null(True))
    assert not torch.allclose(expected, net(x, t, cond))
    net.calls = 0
    out = guided_velocity(net, x, t, cond, 0.0)
    assert net.calls == 1
    assert torch.equal(out, expected)
    assert bool(net.seen_null[-1].all())


def test_guidance_scale_two_extrapolates() -> None:
    net, x, t, cond = _guidance_inputs()
    v_cond, v_uncond = net(x, t, cond), net(x, t, cond.with_null(True))
    net.calls = 0
    out = guided_velocity(net, x, t, cond, 2.0)
    assert net.calls == 1
    assert torch.allclose(out, 2 * v_cond - v_uncond, atol=1e-5)
    assert not bool(cond.null.any())  # the caller's batch is left alone


# ------------------------------------------------------------------------------------------------- objective


@pytest.mark.parametrize(("p", "expected"), [(0.0, 0.0), (1.0, 1.0), (0.3, 0.3)])
def test_condition_dropout_fraction(p: float, expected: float) -> None:
    net = AffineCondField(n_genes=2, n_tokens=2)
    n = 4000
    obj = FlowMatchingObjective(StraightPath(), UniformTime(), IndependentCoupling(), cond_dropout=p)
    out = obj.loss(
        net, torch.randn(n, 2), make_cond([1] * n), torch.randn(n, 2), None, torch.Generator().manual_seed(0)
    )
    frac = net.seen_null[-1].float().mean().item()
    assert frac == pytest.approx(expected, abs=0.03)
    assert out.logs["null_fraction"] == pytest.approx(frac)


def test_drop_condition_keeps_existing_nulls() -> None:
    cond = make_cond([1, 2, 3], null=[False, True, False])
    assert torch.equal(drop_condition(cond, 0.0).null, cond.null)
    assert bool(drop_condition(cond, 1.0).null.all())
    for seed in range(10):
        assert bool(drop_condition(cond, 0.5, torch.Generator().manual_seed(seed)).null[1])
    with pytest.raises(ValueError, match=r"condition dropout must be in \[0, 1\]"):
        drop_condition(cond, 1.5)


class ConstantVelocity(nn.Module):
    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        return self.c.expand_as(x)


@pytest.mark.parametrize("coupling", ["independent", "exact_ot"])
def test_loss_zero_for_exact_velocity(coupling: str) -> None:
    g = torch.Generator().manual_seed(0)
    c = torch.tensor([1.0, -2.0, 0.5])
    x0 = torch.randn(64, 3, generator=g)
    x1 = x0 + c
    obj = FlowMatchingObjective(StraightPath(0.0), LogitNormalTime(), make_coupling(coupling), cond_dropout=0.2)
    cond = make_cond([1] * 64)
    groups = torch.zeros(64, dtype=torch.long)
    out = obj.loss(ConstantVelocity(c), x1, cond, x0, groups, g)
    assert out.loss.ndim == 0
    assert out.loss.item() < 1e-10
    wrong = obj.loss(ConstantVelocity(torch.zeros(3)), x1, cond, x0, groups, g)
    assert wrong.loss.item() == pytest.approx(float(c.square().mean()), rel=1e-5)
    assert set(out.logs) >= {"loss", "null_fraction"}
    assert all(isinstance(v, float) for v in out.logs.values())


class RecordingVelocity(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        self.inputs.append((x, t))
        return torch.zeros_like(x)


def test_loss_feeds_the_network_the_path_point_and_time() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(32, 4, generator=g), torch.randn(32, 4, generator=g)
    net = RecordingVelocity()
    obj = FlowMatchingObjective(StraightPath(0.0), UniformTime(), IndependentCoupling())
    out = obj.loss(net, x1, make_cond([1] * 32), x0, None, g)
    x_t, t = net.inputs[-1]
    assert t.shape == (32,)
    assert float(t.std()) > 0.1
    assert torch.allclose(x_t, (1 - t[:, None]) * x0 + t[:, None] * x1, atol=1e-6)
    assert out.loss.item() == pytest.approx(float((x1 - x0).square().mean()), rel=1e-5)


def test_loss_rejects_mismatched_rows() -> None:
    obj = FlowMatchingObjective(StraightPath(), UniformTime(), IndependentCoupling())
    with pytest.raises(ValueError, match="rows"):
        obj.loss(ConstantVelocity(torch.zeros(2)), torch.zeros(4, 2), make_cond([1, 1, 1]), torch.zeros(4, 2))


_MEANS = {1: torch.tensor([2.0, 0.0]), 2: torch.tensor([-1.0, 2.0])}


def _toy_batch(n_per: int, g: torch.Generator) -> tuple[torch.Tensor, CondBatch, torch.Tensor]:
    tokens = torch.tensor([1] * n_per + [2] * n_per)
    x1 = torch.stack([_MEANS[int(k)] for k in tokens]) + 0.1 * torch.randn(2 * n_per, 2, generator=g)
    return x1, make_cond(tokens), tokens


@pytest.fixture
def one_thread():
    """Tiny networks run fastest single-threaded; intra-op threads only contend with other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_toy_conditional_problem_and_generate(one_thread) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = TinyCondMLP(n_genes=2, n_tokens=2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    obj = FlowMatchingObjective(StraightPath(0.0), UniformTime(), ExactOTCoupling(), cond_dropout=0.1)
    losses = []
    for _ in range(300):
        x1, cond, groups = _toy_batch(64, g)
        out = obj.loss(net, x1, cond, torch.randn(128, 2, generator=g), groups, g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert np.mean(losses[-50:]) < 0.3 * np.mean(losses[:10])

    n = 400
    net.train()
    for token, mean in _MEANS.items():
        cond = make_cond([token] * n)
        x0 = torch.randn(n, 2, generator=g)
        for solver in ("euler", "dopri5"):
            samples = generate(net, cond, x0, solver=solver, steps=20, rtol=1e-4, atol=1e-4)
            assert samples.shape == (n, 2)
            assert not samples.requires_grad
            assert torch.linalg.norm(samples.mean(0) - mean).item() < 0.25, (token, solver)
            assert samples.std(0).max().item() < 0.5
    assert net.training  # mode restored


def test_generate_chunking_and_guidance() -> None:
    net = AffineCondField(n_genes=3, n_tokens=3)
    cond = make_cond([1, 2, 3, 0, 1, 2, 3])
    x0 = torch.randn(7, 3)
    whole = generate(net, cond, x0, solver="rk4", steps=8, guidance=1.5)
    net.calls = 0
    chunked = generate(net, cond, x0, solver="rk4", steps=8, guidance=1.5, chunk_size=3)
    assert net.calls == 3 * 8 * 4  # three chunks, 8 RK4 steps, one batched pass per stage
    assert torch.allclose(whole, chunked, atol=1e-5)
    assert not torch.allclose(whole, generate(net, cond, x0, solver="rk4", steps=8, guidance=1.0))
    with pytest.raises(ValueError, match="rows"):
        generate(net, cond.index(slice(0, 3)), x0)


# ------------------------------------------------------------------------------------ distribution-level loss
def _numpy_mmd(x: np.ndarray, y: np.ndarray, scales=(0.25, 0.5, 1.0, 2.0, 4.0)) -> float:
    """Unbiased squared MMD with the same kernel mixture, written out with numpy loops over pairs."""
    n, m = len(x), len(y)
    h = np.mean([np.sum((a - b) ** 2) for a in x for b in y])

    def k(a, b):
        return np.mean([np.exp(-np.sum((a - b) ** 2) / (s * h)) for s in scales])

    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def test_mmd_matches_an_independent_computation_and_separates_distributions():
    from arch_lab.flow.objective import mmd_rbf

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(6, 5)) + 0.8
    assert float(mmd_rbf(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(_numpy_mmd(x, y), rel=1e-9)
    same = torch.from_numpy(rng.normal(size=(400, 5)))
    other = torch.from_numpy(rng.normal(size=(400, 5)))
    shifted = other + 1.0
    assert abs(float(mmd_rbf(same, other))) < 0.01
    assert float(mmd_rbf(same, shifted)) > 0.1
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd_rbf(same[:1], other)


def _numpy_paired_mmd(x: np.ndarray, y: np.ndarray, scales=(0.25, 0.5, 1.0, 2.0, 4.0)) -> float:
    """Paired MMD written out: pairs whose targets are the same cell (same row values) are left out."""
    n = len(x)
    h = np.mean([np.sum((a - b) ** 2) for a in x for b in y])

    def k(a, b):
        return np.mean([np.exp(-np.sum((a - b) ** 2) / (s * h)) for s in scales])

    pairs = [(i, j) for i in range(n) for j in range(n) if not np.array_equal(y[i], y[j])]
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i, j in pairs) / len(pairs)
    xy = sum(k(x[i], y[j]) for i, j in pairs) / len(pairs)
    return xx + yy - 2 * xy


def test_paired_mmd_leaves_out_each_rows_own_target():
    """Reproducing each coupled target exactly scores about 0 (not below it), repeats of a target cell count as
    the same cell, and a sample of the target distribution made independently scores about 0 too."""
    from arch_lab.flow.objective import mmd_rbf

    rng = np.random.default_rng(3)
    y = rng.normal(size=(6, 4))
    y[5] = y[1]  # a cell drawn twice
    x = y + rng.normal(scale=0.3, size=y.shape)
    got = float(mmd_rbf(torch.from_numpy(x), torch.from_numpy(y), paired=True))
    assert got == pytest.approx(_numpy_paired_mmd(x, y), rel=1e-9)
    copies = torch.from_numpy(y.copy())
    unpaired = float(mmd_rbf(copies, torch.from_numpy(y)))
    paired = float(mmd_rbf(copies, torch.from_numpy(y), paired=True))
    assert unpaired < -0.05  # the diagonal rewards copying each target
    assert abs(paired) < abs(unpaired) / 4
    big = torch.from_numpy(rng.normal(size=(300, 4)))
    assert abs(float(mmd_rbf(torch.from_numpy(rng.normal(size=(300, 4))), big, paired=True))) < 0.01
    with pytest.raises(ValueError, match="as many rows"):
        mmd_rbf(big[:5], big[:6], paired=True)


def test_objective_adds_the_grouped_mmd_of_endpoint_estimates():
    from arch_lab.flow.objective import FlowBatch, grouped_mmd

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 4).double()
    model = lambda x_t, t, cond: net(x_t)  # noqa: E731 - a velocity field ignoring time and condition
    x_t, x1 = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 4, dtype=torch.float64)
    t = torch.tensor([0.1, 0.6, 0.7, 0.9, 0.2, 0.55, 0.8, 0.95], dtype=torch.float64)
    dx = torch.randn(8, 4, dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    cond = CondBatch.repeat([1], [], 8, width=1)
    objective = FlowMatchingObjective(StraightPath(), make_time_sampler("uniform"), make_coupling("independent"),
                                      mmd_weight=0.5, mmd_min_t=0.5, mmd_pairs="distinct")  # fmt: skip
    loss = objective.regress(model, FlowBatch(x_t, t, cond, dx, x1, groups))
    every = FlowMatchingObjective(StraightPath(), make_time_sampler("uniform"), make_coupling("independent"),
                                  mmd_weight=0.5, mmd_min_t=0.5)  # fmt: skip
    assert every.mmd_pairs == "all"
    pred = net(x_t)
    late = t >= 0.5
    endpoint = x_t[late] + (1 - t[late]).unsqueeze(1) * pred[late]
    expected = torch.nn.functional.mse_loss(pred, dx) + 0.5 * grouped_mmd(endpoint, x1[late], groups[late], paired=True)
    assert float(loss) == pytest.approx(float(expected), rel=1e-7)  # the objective takes the MMD in float32
    pred_all = net(x_t)
    endpoint_all = x_t[late] + (1 - t[late]).unsqueeze(1) * pred_all[late]
    expected_all = torch.nn.functional.mse_loss(pred_all, dx) + 0.5 * grouped_mmd(endpoint_all, x1[late], groups[late])
    got_all = every.regress(model, FlowBatch(x_t, t, cond, dx, x1, groups))
    assert float(got_all) == pytest.approx(float(expected_all), rel=1e-7)
    with pytest.raises(ValueError, match="mmd_pairs"):
        FlowMatchingObjective(StraightPath(), make_time_sampler("uniform"), make_coupling("independent"), mmd_pairs="x")
    plain = FlowMatchingObjective(StraightPath(), make_time_sampler("uniform"), make_coupling("independent"))
    assert float(plain.regress(model, FlowBatch(x_t, t, cond, dx))) == pytest.approx(
        float(torch.nn.functional.mse_loss(pred, dx)), rel=1e-12
    )
    loss.backward()
    assert net.weight.grad is not None
    assert torch.isfinite(net.weight.grad).all()


def test_training_with_the_mmd_loss_runs_and_learns(synthetic_h5ad, tmp_path):
    from conftest import experiment_dict

    from arch_lab import api
    from arch_lab.config import experiment_from_dict

    cfg = experiment_from_dict(
        experiment_dict(
            synthetic_h5ad,
            tmp_path,
            flow={"steps": 5, "mmd_weight": 1.0, "source": "control"},
            train={"max_steps": 40, "eval_every": 20, "checkpoint_every": 40},
        )  # fmt: skip
    )
    res = api.train(cfg)
    history = res.fit_summary["history"]
    assert np.isfinite(res.summary["energy_distance"])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
