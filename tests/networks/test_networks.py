"""Contract tests for every registered network, plus backbone-specific behaviour."""

from __future__ import annotations

import math

import pytest
import torch

from arch_lab.errors import ConfigError
from arch_lab.networks import (
    attention,
    build_network,
    count_parameters,
    force_backend,
    get_network_class,
    last_backend,
    list_networks,
    network_config,
    normalize_time,
    register_network,
)
from arch_lab.networks.layers.attention import FEW_KEYS_MAX, MultiHeadAttention, xformers_available
from arch_lab.spec import PAD_TOKEN, CondBatch, DataSpec

N_GENES = 37
SPEC = DataSpec.synthetic(n_genes=N_GENES, n_perturbations=5, covariate_sizes=(3, 2))
NETWORKS = list_networks()


def make_cond() -> CondBatch:
    """Eight rows: control, singles, combinations in both orders, and null rows with and without tokens."""
    tokens = torch.tensor(
        [
            [PAD_TOKEN, PAD_TOKEN],  # control
            [1, PAD_TOKEN],  # A
            [1, 2],  # A+B
            [2, 1],  # B+A
            [3, PAD_TOKEN],  # C
            [4, 5],  # D+E
            [2, PAD_TOKEN],  # null row with a token
            [PAD_TOKEN, PAD_TOKEN],  # null control
        ]
    )
    covariates = torch.tensor([[0, 1], [1, 0], [2, 1], [2, 1], [0, 0], [1, 1], [2, 0], [1, 1]])
    null = torch.tensor([False, False, False, False, False, False, True, True])
    return CondBatch(tokens, tokens != PAD_TOKEN, covariates, null)


def make_inputs(batch: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, N_GENES, generator=gen), torch.rand(batch, generator=gen)


def build(name: str, seed: int = 0, spec: DataSpec = SPEC, **overrides) -> torch.nn.Module:
    """Tiny network with every parameter nudged by seeded noise, so zero-initialised layers are live."""
    torch.manual_seed(seed)
    net = build_network(name, {**get_network_class(name).tiny_config(), **overrides}, spec)
    perturb(net, seed + 1000)
    return net.eval()


def perturb(net: torch.nn.Module, seed: int, scale: float = 0.1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def with_rows(cond: CondBatch, rows: list[int], tokens: list[int], covariates: list[int]) -> CondBatch:
    tok, cov = cond.pert_tokens.clone(), cond.covariates.clone()
    for row in rows:
        tok[row] = torch.tensor(tokens)
        cov[row] = torch.tensor(covariates)
    return CondBatch(tok, tok != PAD_TOKEN, cov, cond.null.clone())


# ---------------------------------------------------------------------------------------------------------------
# Contract shared by every registered network
# ---------------------------------------------------------------------------------------------------------------


def test_registry_lists_the_backbones() -> None:
    assert NETWORKS == sorted(NETWORKS)
    assert {"gene_transformer", "mlp", "unet1d"} <= set(NETWORKS)


@pytest.mark.parametrize("name", NETWORKS)
def test_output_shape_dtype_and_time_forms(name: str) -> None:
    net = build(name)
    x, _ = make_inputs()
    cond = make_cond()
    with torch.no_grad():
        out = net(x, 0.3, cond)
        assert out.shape == (8, N_GENES)
        assert out.dtype == x.dtype
        assert torch.isfinite(out).all()
        assert out.abs().sum() > 0
        for t in (torch.tensor(0.3), torch.tensor([0.3]), torch.full((8,), 0.3)):
            torch.testing.assert_close(net(x, t, cond), out)


@pytest.mark.parametrize("name", NETWORKS)
def test_bfloat16_autocast(name: str) -> None:
    net = build(name)
    x, t = make_inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, t, make_cond())
    assert out.shape == (8, N_GENES)
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NETWORKS)
def test_config_round_trip(name: str) -> None:
    net = build(name)
    config = network_config(net)
    assert config == get_network_class(name).Config.model_validate(config).model_dump(mode="json")
    rebuilt = build_network(name, config, SPEC).eval()
    assert count_parameters(rebuilt) == count_parameters(net)
    rebuilt.load_state_dict(net.state_dict())
    x, t = make_inputs()
    cond = make_cond()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x, t, cond), net(x, t, cond))


@pytest.mark.parametrize("name", NETWORKS)
def test_seeded_builds_are_identical(name: str) -> None:
    config = get_network_class(name).tiny_config()
    torch.manual_seed(7)
    a = build_network(name, config, SPEC).eval()
    torch.manual_seed(7)
    b = build_network(name, config, SPEC).eval()
    for (key, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), key
    perturb(a, 1)
    perturb(b, 1)
    x, t = make_inputs()
    cond = make_cond()
    with torch.no_grad():
        assert torch.equal(a(x, t, cond), b(x, t, cond))


@pytest.mark.parametrize("name", NETWORKS)
def test_gradients_reach_every_parameter(name: str) -> None:
    net = build(name).train()
    x, t = make_inputs()
    net(x, t, make_cond()).square().sum().backward()
    for key, p in net.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{key} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{key} has a non-finite gradient"
        # A bias directly followed by a normalisation legitimately has a (numerically) zero gradient.
        if not key.endswith("bias"):
            assert p.grad.abs().sum() > 0, f"{key} has an all-zero gradient"


@pytest.mark.parametrize("name", NETWORKS)
def test_padding_columns_do_not_change_the_output(name: str) -> None:
    net = build(name)
    x, t = make_inputs()
    cond = make_cond()
    extra = torch.full((8, 3), PAD_TOKEN)
    padded = CondBatch(
        torch.cat([cond.pert_tokens, extra], dim=1),
        torch.cat([cond.pert_mask, torch.zeros(8, 3, dtype=torch.bool)], dim=1),
        cond.covariates,
        cond.null,
    )
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, padded), net(x, t, cond), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
def test_null_rows_ignore_perturbation_and_covariates(name: str) -> None:
    net = build(name)
    x, t = make_inputs()
    cond = make_cond()
    changed = with_rows(cond, [6, 7], tokens=[5, 3], covariates=[0, 1])
    with torch.no_grad():
        before, after = net(x, t, cond), net(x, t, changed)
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
def test_condition_changes_the_output(name: str) -> None:
    net = build(name)
    x, t = make_inputs()
    cond = make_cond()
    other_pert = with_rows(cond, [1], tokens=[5, PAD_TOKEN], covariates=cond.covariates[1].tolist())
    other_cov = with_rows(cond, [1], tokens=cond.pert_tokens[1].tolist(), covariates=[2, 1])
    as_null = cond.with_null(torch.tensor([False, True, False, False, False, False, True, True]))
    with torch.no_grad():
        base = net(x, t, cond)
        for variant in (other_pert, other_cov, as_null):
            out = net(x, t, variant)
            assert (out[1] - base[1]).abs().max() > 1e-4
            torch.testing.assert_close(out[2:6], base[2:6])


@pytest.mark.parametrize("name", NETWORKS)
def test_time_changes_the_output(name: str) -> None:
    net = build(name)
    x, _ = make_inputs()
    cond = make_cond()
    with torch.no_grad():
        assert (net(x, 0.1, cond) - net(x, 0.9, cond)).abs().max() > 1e-4


@pytest.mark.parametrize("name", NETWORKS)
def test_combination_order_does_not_matter(name: str) -> None:
    net = build(name)
    x, t = make_inputs()
    x[3], t[3] = x[2], t[2]  # rows 2 (A+B) and 3 (B+A) now differ only in token order
    with torch.no_grad():
        out = net(x, t, make_cond())
    torch.testing.assert_close(out[3], out[2], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NETWORKS)
def test_rows_are_independent(name: str) -> None:
    net = build(name)
    x, t = make_inputs()
    cond = make_cond()
    with torch.no_grad():
        full = net(x, t, cond)
        part = net(x[2:5], t[2:5], cond.index(slice(2, 5)))
    torch.testing.assert_close(part, full[2:5], atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------


def test_unknown_network_lists_registered_names() -> None:
    with pytest.raises(ConfigError) as info:
        build_network("unet", {}, SPEC)
    message = str(info.value)
    assert "'unet'" in message
    assert ", ".join(NETWORKS) in message
    assert "\n" not in message


def test_unknown_config_key_names_the_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        build_network("mlp", {"widht": 8}, SPEC)
    message = str(info.value)
    assert "network.widht" in message
    assert "width" in message
    assert "depth" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "config", "key"),
    [
        ("mlp", {"width": "wide"}, "network.width"),
        ("mlp", {"conditioning": "add"}, "network.conditioning"),
        ("unet1d", {"channel_mult": "big"}, "network.channel_mult"),
        ("unet1d", {"attention_levels": [5]}, "network.attention_levels"),
        ("gene_transformer", {"dim": 10, "heads": 4}, "network.heads"),
        ("gene_transformer", {"self_attention": True}, "network.self_attention"),
    ],
)
def test_invalid_values_are_rejected(name: str, config: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_network(name, config, SPEC)
    assert key in str(info.value)
    assert "\n" not in str(info.value)


def test_config_forms_and_none_values() -> None:
    cls = get_network_class("mlp")
    from_dict = build_network("mlp", {"width": 8, "depth": None}, SPEC)
    assert from_dict.config.depth == cls.Config().depth
    from_model = build_network("mlp", cls.Config(width=8), SPEC)
    assert count_parameters(from_model) == count_parameters(from_dict)
    assert build_network("mlp", None, SPEC).config == cls.Config()


def test_duplicate_registration_raises() -> None:
    class Impostor(torch.nn.Module):
        class Config(get_network_class("mlp").Config):
            pass

        @classmethod
        def tiny_config(cls) -> dict:
            return {}

    with pytest.raises(ConfigError, match="already registered"):
        register_network("mlp")(Impostor)
    assert get_network_class("mlp").__name__ != "Impostor"


def test_normalize_time_forms() -> None:
    expected = torch.full((4,), 0.5)
    for t in (0.5, torch.tensor(0.5), torch.tensor([0.5]), torch.full((4,), 0.5), torch.full((4, 1), 0.5)):
        torch.testing.assert_close(normalize_time(t, 4, "cpu", torch.float32), expected)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \[1\] or \[4\]"):
        normalize_time(torch.zeros(3), 4, "cpu", torch.float32)


# ---------------------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------------------


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0) @ v


def test_sdpa_matches_naive_attention() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, 5, 4, generator=gen)
    k = torch.randn(3, 2, 6, 4, generator=gen)
    v = torch.randn(3, 2, 6, 4, generator=gen)
    keep = torch.tensor([[True] * 6, [True, False, True, False, False, True], [False] * 6])
    with force_backend("sdpa"):
        out = attention(q, k, v, keep)
    assert last_backend() == "sdpa"
    torch.testing.assert_close(out, naive_attention(q, k, v, keep))
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    torch.testing.assert_close(attention(q, k, v), naive_attention(q, k, v, torch.ones(3, 6, dtype=torch.bool)))
    assert last_backend() == "sdpa"


def test_unknown_or_unavailable_backend() -> None:
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(ValueError, match="unknown attention backend 'flash'"):
        attention(q, q, q, backend="flash")
    with pytest.raises(RuntimeError):
        attention(q, q, q, backend="xformers")


@pytest.mark.parametrize("n_keys", [1, 3, 16])
@pytest.mark.parametrize("modulated", [False, True])
def test_few_key_cross_attention_matches_sdpa(n_keys: int, modulated: bool) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3, kv_dim=8)
    perturb(mha, 1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 29, 12, generator=gen, requires_grad=True)
    context = torch.randn(4, n_keys, 8, generator=gen, requires_grad=True)
    keep = torch.rand(4, n_keys, generator=gen) < 0.6
    keep[0] = True
    keep[1] = False  # a row with no key yields the output bias
    modulation = (1 + torch.randn(4, 12, generator=gen), torch.randn(4, 12, generator=gen)) if modulated else None
    results = []
    for backend in ("auto", "sdpa"):
        with force_backend(backend):
            out = mha(x, context, keep, modulation)
        results.append((out, *torch.autograd.grad(out.square().sum(), [x, context, *mha.parameters()])))
        assert last_backend() == ("few_keys" if backend == "auto" else "sdpa")
    for fast, reference in zip(*results, strict=True):
        torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[0][0][1], mha.to_out.bias.expand(29, 12))


def test_more_keys_than_few_keys_max_use_the_generic_path() -> None:
    mha = MultiHeadAttention(8, 2)
    mha(torch.randn(2, 5, 8), torch.randn(2, FEW_KEYS_MAX + 1, 8))
    assert last_backend() == "sdpa"
    mha(torch.randn(2, 5, 8), torch.randn(2, FEW_KEYS_MAX, 8))
    assert last_backend() == "few_keys"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_xformers_matches_sdpa_on_cuda() -> None:
    if not xformers_available():
        pytest.skip("xformers is not importable")
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(2, 4, 33, 16, device="cuda", generator=gen)
    k = torch.randn(2, 4, 7, 16, device="cuda", generator=gen)
    v = torch.randn(2, 4, 7, 16, device="cuda", generator=gen)
    keep = torch.ones(2, 7, dtype=torch.bool, device="cuda")
    keep[1, 3:] = False
    with force_backend("xformers"):
        fast = attention(q, k, v, keep)
    assert last_backend() == "xformers"
    reference = attention(q, k, v, keep, backend="sdpa")
    assert last_backend() == "sdpa"
    torch.testing.assert_close(fast, reference, atol=2e-3, rtol=2e-3)
    attention(q, k, v, keep)
    assert last_backend() == "xformers"


# ---------------------------------------------------------------------------------------------------------------
# unet1d
# ---------------------------------------------------------------------------------------------------------------


def test_unet_without_mixing_is_gene_permutation_equivariant() -> None:
    net = build(
        "unet1d", kernel_size=1, downsample=False, attention_levels=[], mid_attention=False, gene_embedding_dim=0
    )
    x, t = make_inputs()
    cond = make_cond()
    perm = torch.randperm(N_GENES, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = net(x, t, cond)
        permuted = net(x[:, perm], t, cond)
    torch.testing.assert_close(permuted, out[:, perm], atol=1e-5, rtol=1e-5)
    mixing = build("unet1d", downsample=False, attention_levels=[], mid_attention=False, gene_embedding_dim=0)
    with torch.no_grad():
        assert (mixing(x[:, perm], t, cond) - mixing(x, t, cond)[:, perm]).abs().max() > 1e-4


def test_circular_unet_commutes_with_cyclic_shifts_of_its_down_sampling_grid() -> None:
    """With circular padding the U-Net has no ends: rolling the genes by a multiple of 2 ** (levels - 1) rolls its
    output (zero padding does not); a roll off that grid does not, because the stride-2 convolutions sample it."""
    spec = DataSpec.synthetic(n_genes=32, n_perturbations=5, covariate_sizes=(3, 2))
    knobs = {"channel_mult": [1, 2, 2], "attention_levels": [], "mid_attention": False, "gene_embedding_dim": 0}
    circular = build("unet1d", spec=spec, padding_mode="circular", **knobs)
    zeros = build("unet1d", spec=spec, **knobs)
    x = torch.randn(8, 32, generator=torch.Generator().manual_seed(5))
    cond = make_cond()
    with torch.no_grad():
        for shift in (4, 8, 12):
            rolled = circular(torch.roll(x, shift, dims=1), 0.5, cond)
            torch.testing.assert_close(rolled, torch.roll(circular(x, 0.5, cond), shift, dims=1), atol=1e-5, rtol=1e-5)
            gap = zeros(torch.roll(x, shift, dims=1), 0.5, cond) - torch.roll(zeros(x, 0.5, cond), shift, dims=1)
            assert gap.abs().max() > 1e-3
        off_grid = circular(torch.roll(x, 1, dims=1), 0.5, cond) - torch.roll(circular(x, 0.5, cond), 1, dims=1)
        assert off_grid.abs().max() > 1e-3


def convolution_reach(
    channel_mult: list[int], n_genes: int, position: int, monkeypatch, num_res_blocks: int = 1
) -> tuple[int, int]:
    """The first and last gene whose input moves the U-Net's output at ``position``, with the GroupNorms (whose
    statistics span the whole axis but carry no position) replaced by identities: the convolutions' reach."""
    import torch.nn as nn

    from arch_lab.networks import unet1d

    monkeypatch.setattr(unet1d, "group_norm", lambda channels: nn.Identity())
    spec = DataSpec.synthetic(n_genes=n_genes, n_perturbations=5, covariate_sizes=(3, 2))
    net = build("unet1d", spec=spec, channel_mult=channel_mult, attention_levels=[], mid_attention=False,
                gene_embedding_dim=0, num_res_blocks=num_res_blocks, kernel_size=3)  # fmt: skip
    x = torch.randn(1, n_genes, generator=torch.Generator().manual_seed(2), requires_grad=True)
    cond = make_cond()
    cond = CondBatch(cond.pert_tokens[:1], cond.pert_mask[:1], cond.covariates[:1], cond.null[:1])
    (grad,) = torch.autograd.grad(net(x, 0.5, cond)[0, position], x)
    moved = grad[0].abs().gt(0).nonzero().flatten()
    return int(moved.min()), int(moved.max())


def test_the_unet_reaches_an_end_from_every_gene_at_128_genes_and_needs_two_more_levels_at_512(monkeypatch) -> None:
    """What ``sweeps/probes/unet_reach*_512_synthetic.yaml`` state: the default 3 levels reach 66 genes either way,
    so at 128 genes every gene is within reach of an end and at 512 genes the middle is not; 4 levels reach 142 genes
    to the left and 134 to the right, still short of the ends from the middle of 512; 5 levels reach the ends from
    the middle of 512 genes."""
    assert convolution_reach([1, 2, 4], 512, 256, monkeypatch) == (190, 322)
    assert convolution_reach([1, 2, 4], 128, 64, monkeypatch) == (0, 127)
    assert convolution_reach([1, 2, 4], 128, 63, monkeypatch)[0] == 0
    assert convolution_reach([1, 2, 4, 4], 512, 256, monkeypatch) == (114, 390)
    assert convolution_reach([1, 2, 4, 4, 4], 512, 256, monkeypatch) == (0, 511)
    assert convolution_reach([1, 2, 4, 4, 4], 512, 0, monkeypatch) == (0, 270)


def test_at_2048_genes_the_unet_needs_seven_levels_to_reach_an_end_from_every_gene(monkeypatch) -> None:
    """What ``sweeps/probes/unet_reach_2048_synthetic.yaml`` states: 6 levels reach 542 genes from an end and leave
    the middle of 2048 genes out of reach of both ends; 7 levels reach the whole axis from its middle."""
    assert convolution_reach([1, 2, 4, 4, 4, 4], 2048, 0, monkeypatch) == (0, 542)
    assert convolution_reach([1, 2, 4, 4, 4, 4], 2048, 1024, monkeypatch) == (450, 1566)
    assert convolution_reach([1, 2, 4, 4, 4, 4, 4], 2048, 1024, monkeypatch) == (0, 2047)
    assert convolution_reach([1, 2, 4, 4, 4, 4, 4], 2048, 0, monkeypatch) == (0, 1086)


def test_a_four_level_two_block_unet_reaches_196_genes_from_an_end(monkeypatch) -> None:
    """What ``docs/findings.md`` ("What the reach reading predicts for PRiMeFlow") states of a U-Net built like a
    public PRiMeFlow re-implementation (channel_mult 1, 2, 4, 8 with two residual blocks per level)."""
    assert convolution_reach([1, 2, 4, 8], 1024, 0, monkeypatch, num_res_blocks=2) == (0, 196)


@pytest.mark.parametrize("n_genes", range(1, 10))
def test_unet_pads_and_crops_any_gene_count(n_genes: int) -> None:
    spec = DataSpec.synthetic(n_genes=n_genes, n_perturbations=5, covariate_sizes=(3, 2))
    net = build("unet1d", spec=spec, channel_mult=[1, 2, 2], attention_levels=[2])
    x = torch.randn(8, n_genes)
    with torch.no_grad():
        out = net(x, 0.5, make_cond())
    assert out.shape == (8, n_genes)
    assert torch.isfinite(out).all()


def test_unet_without_skip_connections() -> None:
    with_skips = build("unet1d")
    net = build("unet1d", skip_connections=False)
    assert count_parameters(net) < count_parameters(with_skips)
    x, t = make_inputs()
    with torch.no_grad():
        out = net(x, t, make_cond())
    assert out.shape == (8, N_GENES)
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------------------------
# mlp
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditioning", ["film", "concat"])
def test_mlp_conditioning_modes(conditioning: str) -> None:
    net = build("mlp", conditioning=conditioning)
    x, t = make_inputs()
    with torch.no_grad():
        out = net(x, t, make_cond())
    assert out.shape == (8, N_GENES)
    assert torch.isfinite(out).all()


def test_mlp_linear_skip_adds_a_gene_by_gene_matrix() -> None:
    plain = build_network("mlp", get_network_class("mlp").tiny_config(), SPEC)
    skip = build_network("mlp", {**get_network_class("mlp").tiny_config(), "linear_skip": True}, SPEC)
    assert count_parameters(skip) - count_parameters(plain) == N_GENES * N_GENES


def _with_generic_output(net: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # the output layer starts at zero
        net.output.weight.normal_(generator=torch.Generator().manual_seed(0))
    return net


@pytest.mark.parametrize(
    ("knobs", "blocks", "output"),
    [
        ({}, "LayerNorm", "LayerNorm"),
        ({"norm": False}, "Identity", "Identity"),
        ({"output_norm": False}, "LayerNorm", "Identity"),
        ({"norm": False, "output_norm": True}, "Identity", "LayerNorm"),
        ({"norm": False, "block_norm": True}, "LayerNorm", "Identity"),
        ({"norm_kind": "rms"}, "RMSNorm", "RMSNorm"),
    ],
)
def test_mlp_norm_placement(knobs: dict, blocks: str, output: str) -> None:
    net = build("mlp", **knobs)
    assert {type(b.norm).__name__ for b in net.blocks} == {blocks}
    assert type(net.output_norm).__name__ == output


@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_mlp_output_norm_makes_the_output_blind_to_the_scale_of_the_hidden_vector(kind: str) -> None:
    # Without blocks the output is W silu(norm(input(x))): scaling the input layer by c > 0 changes nothing when
    # the output is normalised, and changes the output when it is not.
    x, t = make_inputs()
    for output_norm, invariant in ((True, True), (False, False)):
        net = _with_generic_output(build("mlp", depth=0, norm=False, output_norm=output_norm, norm_kind=kind))
        with torch.no_grad():
            before = net(x, t, make_cond())
            net.input.weight.mul_(7.0)
            net.input.bias.mul_(7.0)
            after = net(x, t, make_cond())
        assert torch.allclose(before, after, atol=1e-4) == invariant


def test_layernorm_centres_and_rmsnorm_does_not() -> None:
    # A constant added to every hidden unit is removed by LayerNorm's centring, not by RMSNorm.
    x, t = make_inputs()
    for kind, invariant in (("layer", True), ("rms", False)):
        net = _with_generic_output(build("mlp", depth=0, norm=True, norm_kind=kind))
        with torch.no_grad():
            before = net(x, t, make_cond())
            net.input.bias.add_(3.0)
            after = net(x, t, make_cond())
        assert torch.allclose(before, after, atol=1e-4) == invariant


# ---------------------------------------------------------------------------------------------------------------
# gene_transformer
# ---------------------------------------------------------------------------------------------------------------


def gene_influence(net: torch.nn.Module, gene: int) -> torch.Tensor:
    """Largest change of every output gene when only input ``gene`` changes."""
    x, t = make_inputs()
    cond = make_cond()
    moved = x.clone()
    moved[:, gene] += 3.0
    with torch.no_grad():
        return (net(moved, t, cond) - net(x, t, cond)).abs().amax(dim=0)


@pytest.mark.parametrize("mode", ["none", "full", "latent"])
def test_gene_transformer_self_attention_modes(mode: str) -> None:
    net = build("gene_transformer", self_attention=mode)
    influence = gene_influence(net, gene=4)
    assert influence[4] > 1e-4
    others = torch.cat([influence[:4], influence[5:]])
    if mode == "none":
        assert others.max() < 1e-6
    else:
        assert (others > 1e-6).all()
