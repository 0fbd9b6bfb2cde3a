"""A synthetic perturb-seq benchmark with known ground truth and a gene-order ``locality`` knob.

Generative model (natural-log units; ``docs/tasks.md`` has the full description). Genes are either background or
belong to one of ``n_programs`` co-regulated programs. For cell ``c`` in state ``s`` under perturbation ``k``:

- program activity ``a[c, p] = state_program[s, p] + r[c] * shift[k, s, p] + eps[c, p]`` with a per-cell response
  strength ``r ~ Gamma(mean 1, cv response_cv)`` and noise ``eps ~ N(0, program_noise_sd)``;
- log expression ``eta[c, g] = gene_base[g] + state_gene[s, g] + loading[g] * a[c, program(g)]`` (loading 0 for
  background genes), so the genes of a program move together;
- mean counts ``mu[c, g] = library[c] * softmax(eta[c])[g]`` with a log-normal library size;
- counts ``~ NegativeBinomial(mu, dispersion)`` (gamma-Poisson; Poisson when ``dispersion`` is 0).

A single shifts 1 to ``max_programs_per_perturbation`` programs by a signed magnitude, scaled per state; a pair's
shift is the sum of its singles' shifts, times ``1 + interaction_strength`` (synergy) or
``1 - interaction_strength`` (buffering) for the interacting pairs.

The biology, the cells and the gene order come from three independent random streams of ``seed``: changing
``locality`` permutes the genes of an otherwise identical dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from pydantic import ValidationError

from arch_lab.config import SyntheticConfig, format_validation_error
from arch_lab.data.h5ad import write_h5ad
from arch_lab.data.preprocess import normalize_log1p
from arch_lab.errors import ConfigError

__all__ = [
    "SyntheticConfig",
    "config_from_adata",
    "contiguity_score",
    "locality_order",
    "program_contiguity",
    "simulate",
    "synthetic_config",
    "write_synthetic",
]

_BIOLOGY, _CELLS, _LAYOUT = 0, 1, 2


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def synthetic_config(values: dict[str, Any] | None = None) -> SyntheticConfig:
    """Validate synthetic-benchmark settings into a :class:`SyntheticConfig`.

    Raises
    ------
    ConfigError
        An unknown key or an invalid value (one line naming the key).
    """
    try:
        return SyntheticConfig.model_validate(values or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err)) from None


# ---------------------------------------------------------------------------------------------------- layout
def canonical_programs(config: SyntheticConfig) -> np.ndarray:
    """Program of each gene in the contiguous layout (``-1`` for background).

    Program blocks ``0..n_programs-1`` appear in order, separated (and flanked) by near-equal runs of background
    genes.
    """
    n_background = config.n_genes - config.n_programs * config.program_size
    gaps = [len(chunk) for chunk in np.array_split(np.arange(n_background), config.n_programs + 1)]
    parts: list[np.ndarray] = []
    for p in range(config.n_programs):
        parts += [np.full(gaps[p], -1), np.full(config.program_size, p)]
    parts.append(np.full(gaps[-1], -1))
    return np.concatenate(parts).astype(np.int64)


def locality_order(n_genes: int, locality: float, rng: np.random.Generator) -> np.ndarray:
    """The gene order for a locality: ``order[i]`` is the contiguous-layout index of the gene at position ``i``.

    Each gene is displaced with probability ``1 - locality`` (a uniform draw ``u < 1 - locality``); the displaced
    genes are shuffled uniformly among their own positions and the others stay in place. ``locality=1`` is the
    identity and ``locality=0`` a uniformly random permutation; for one generator the displaced sets are nested
    as locality decreases.
    """
    u = rng.random(n_genes)
    displaced = np.flatnonzero(u < 1.0 - locality)
    order = np.arange(n_genes)
    order[displaced] = displaced[rng.permutation(len(displaced))]
    return order


def contiguity_score(programs: Sequence[int] | np.ndarray) -> float:
    """How contiguous programs are along a gene order: 1 when each program is one block, about 0 by chance.

    With ``m`` the number of adjacent gene pairs in the same program (background, ``-1``, never counts),
    ``m_max = sum_p (n_p - 1)`` its value when every program is one block and
    ``m_chance = sum_p n_p (n_p - 1) / G`` its expectation under a uniformly random order of ``G`` genes, the
    score is ``(m - m_chance) / (m_max - m_chance)``.

    Parameters
    ----------
    programs
        Program id of each gene in order (``-1`` for background).

    Returns
    -------
    float
        The normalised contiguity; ``nan`` when no program has two genes.
    """
    p = np.asarray(programs, dtype=np.int64)
    member = p[p >= 0]
    sizes = np.bincount(member) if member.size else np.zeros(0, dtype=np.int64)
    sizes = sizes[sizes > 0]
    best = float((sizes - 1).sum())
    chance = float((sizes * (sizes - 1)).sum()) / max(len(p), 1)
    if best <= chance:
        return float("nan")
    same = float(((p[:-1] == p[1:]) & (p[:-1] >= 0)).sum())
    return (same - chance) / (best - chance)


def program_contiguity(adata: ad.AnnData) -> float:
    """:func:`contiguity_score` of ``var['program']`` in gene order (``var['position']`` when present)."""
    var = adata.var
    if "program" not in var.columns:
        raise ConfigError("var has no 'program' column; pass an AnnData made by arch_lab.data.synthetic.simulate")
    programs = var["program"].to_numpy()
    if "position" in var.columns:
        programs = programs[np.argsort(var["position"].to_numpy(), kind="stable")]
    return contiguity_score(programs)


# --------------------------------------------------------------------------------------------------- biology
def _single_effects(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    effects = np.zeros((config.n_single, config.n_programs))
    lo, hi = config.effect_range
    for k in range(config.n_single):
        m = int(rng.integers(1, config.max_programs_per_perturbation + 1))
        programs = rng.choice(config.n_programs, size=m, replace=False)
        effects[k, programs] = rng.choice([-1.0, 1.0], size=m) * rng.uniform(lo, hi, size=m)
    return effects


def _combinations(config: SyntheticConfig, rng: np.random.Generator) -> tuple[list[tuple[int, int]], list[str]]:
    pairs = [(i, j) for i in range(config.n_single) for j in range(i + 1, config.n_single)]
    chosen = sorted(pairs[i] for i in rng.choice(len(pairs), size=config.n_combinations, replace=False))
    n_interacting = int(round(config.interaction_fraction * len(chosen)))
    interacting = set(rng.choice(len(chosen), size=n_interacting, replace=False).tolist()) if chosen else set()
    kinds = [str(rng.choice(["synergy", "buffering"])) if i in interacting else "additive" for i in range(len(chosen))]
    return chosen, kinds


def _biology(config: SyntheticConfig) -> dict[str, Any]:
    rng = _rng(config.seed, _BIOLOGY)
    G, P, S = config.n_genes, config.n_programs, config.n_states
    program = canonical_programs(config)
    loading = np.where(program >= 0, rng.uniform(*config.loading_range, size=G), 0.0)
    gene_base = rng.normal(0.0, config.gene_baseline_sd, size=G)
    state_gene = rng.normal(0.0, config.state_gene_sd, size=(S, G))
    state_program = rng.normal(0.0, config.state_program_sd, size=(S, P))
    single_effect = _single_effects(config, rng)
    state_scale = rng.uniform(*config.state_response_range, size=(config.n_single, S))
    pairs, kinds = _combinations(config, rng)

    width = len(str(config.n_single))
    singles = [f"P{k + 1:0{max(width, 2)}d}" for k in range(config.n_single)]
    combos = [f"{singles[i]}+{singles[j]}" for i, j in pairs]
    shift = np.zeros((config.n_single + len(pairs), S, P))
    shift[: config.n_single] = single_effect[:, None, :] * state_scale[:, :, None]
    factor = {"additive": 1.0, "synergy": 1.0 + config.interaction_strength}
    factor["buffering"] = 1.0 - config.interaction_strength
    for n, ((i, j), kind) in enumerate(zip(pairs, kinds, strict=True)):
        shift[config.n_single + n] = factor[kind] * (shift[i] + shift[j])
    return {
        "program": program,
        "loading": loading,
        "gene_base": gene_base,
        "state_gene": state_gene,
        "state_program": state_program,
        "single_effect": single_effect,
        "state_scale": state_scale,
        "perturbations": singles + combos,
        "combinations": combos,
        "interaction": kinds,
        "shift": shift,
        "states": [f"S{s + 1}" for s in range(S)],
    }


def _log_expression(bio: dict[str, Any], state: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """``eta = gene_base + state_gene[state] + loading * activity[:, program]`` (rows of cells)."""
    program = bio["program"]
    padded = np.concatenate([activity, np.zeros((activity.shape[0], 1))], axis=1)  # column -1: background
    return bio["gene_base"] + bio["state_gene"][state] + bio["loading"] * padded[:, program]


def _softmax(eta: np.ndarray) -> np.ndarray:
    e = np.exp(eta - eta.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------------- cells
def _cells(config: SyntheticConfig, bio: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    rng = _rng(config.seed, _CELLS)
    n_perts = len(bio["perturbations"])
    state_idx, pert_idx = [], []
    for s in range(config.n_states):
        state_idx.append(np.full(config.control_cells + n_perts * config.cells_per_condition, s))
        pert_idx += [np.full(config.control_cells, -1), np.repeat(np.arange(n_perts), config.cells_per_condition)]
    state = np.concatenate(state_idx)
    pert = np.concatenate(pert_idx)
    n = len(state)

    if config.response_cv > 0:
        shape = 1.0 / config.response_cv**2
        response = rng.gamma(shape, 1.0 / shape, size=n)
    else:
        response = np.ones(n)
    shift = np.where((pert >= 0)[:, None], bio["shift"][np.maximum(pert, 0), state], 0.0)
    activity = bio["state_program"][state] + response[:, None] * shift
    activity += rng.normal(0.0, config.program_noise_sd, size=activity.shape)
    library = config.library_size * np.exp(rng.normal(0.0, config.library_sd, size=n))
    mu = library[:, None] * _softmax(_log_expression(bio, state, activity))
    if config.dispersion > 0:
        mu = rng.gamma(1.0 / config.dispersion, mu * config.dispersion)
    counts = rng.poisson(mu).astype(np.int32)

    names = np.array(["control", *bio["perturbations"]], dtype=object)
    width = len(str(n - 1))
    obs = pd.DataFrame(
        {
            "condition": names[pert + 1],
            "cell_type": np.array(bio["states"], dtype=object)[state],
            "n_counts": counts.sum(axis=1).astype(np.int64),
            "response_strength": np.where(pert >= 0, response, 0.0),
        },
        index=pd.Index([f"cell{i:0{width}d}" for i in range(n)], name="cell_id"),
    )
    return obs, counts


def _affected(bio: dict[str, Any]) -> np.ndarray:
    """``[perturbation, state, gene]``: the gene belongs to a program the perturbation shifts in that state."""
    shifted = np.abs(bio["shift"]) > 0
    padded = np.concatenate([shifted, np.zeros(shifted.shape[:2] + (1,), dtype=bool)], axis=2)
    return padded[:, :, bio["program"]]


def _ground_truth(bio: dict[str, Any], target: float) -> dict[str, np.ndarray]:
    """Noise-free log-fold-changes of every (perturbation, state) against the state's controls."""
    n_perts, n_states = bio["shift"].shape[:2]
    G = len(bio["program"])
    logfc = np.zeros((n_perts, n_states, G))
    delta = np.zeros((n_perts, n_states, G))
    for s in range(n_states):
        base = bio["state_program"][s][None, :]
        state = np.full(n_perts + 1, s)
        activity = np.concatenate([base, base + bio["shift"][:, s]])
        prop = _softmax(_log_expression(bio, state, activity))
        logfc[:, s] = np.log(prop[1:]) - np.log(prop[:1])
        delta[:, s] = np.log1p(target * prop[1:]) - np.log1p(target * prop[:1])
    return {"logfc": logfc, "delta": delta}


# ---------------------------------------------------------------------------------------------------- public
def simulate(config: SyntheticConfig | None = None) -> ad.AnnData:
    """Generate the synthetic benchmark.

    Parameters
    ----------
    config
        The settings (defaults when None).

    Returns
    -------
    anndata.AnnData
        Cells × genes in gene order. ``X``: log-normalised expression (each cell scaled to the median total count,
        then log1p); ``layers['counts']``: the integer counts. ``obs``: ``condition`` (``control``, ``P01``,
        ``P01+P05``), ``cell_type`` (``S1``...), ``n_counts``, ``response_strength``. ``var`` (indexed by gene
        name ``g000``...): ``program`` (-1 for background), ``position`` (index in the gene order), ``loading``.
        ``uns['ground_truth']``: ``perturbations`` and ``states`` (the axes below); ``program_shift``
        ``[perturbation, state, program]`` (true mean shift of program activity); ``logfc`` and ``delta``
        ``[perturbation, state, gene]`` (noise-free log ratio of mean normalised expression to the state's
        controls, and the same on the log1p scale of ``X``, i.e. the expected shift of the mean of ``X``);
        ``affected`` ``[perturbation, state, gene]`` (the gene is in a shifted program);
        ``gene_program`` and ``loading`` per gene; ``single_effect`` ``[single, program]`` and ``state_scale``
        ``[single, state]``; ``combinations`` with ``interaction`` (``additive``, ``synergy``, ``buffering``) and
        ``interacting``; ``contiguity`` (:func:`program_contiguity`); ``config`` (a plain dict).
    """
    config = config or SyntheticConfig()
    bio = _biology(config)
    obs, counts = _cells(config, bio)
    X = normalize_log1p(counts.astype(np.float32))
    totals = counts.sum(axis=1)
    target = float(np.median(totals[totals > 0]))
    truth = _ground_truth(bio, target)

    layout_seed = config.seed if config.layout_seed is None else config.layout_seed
    order = locality_order(config.n_genes, config.locality, _rng(layout_seed, _LAYOUT))
    width = len(str(config.n_genes - 1))
    names = np.array([f"g{i:0{width}d}" for i in range(config.n_genes)])[order]
    var = pd.DataFrame(
        {
            "program": bio["program"][order],
            "position": np.arange(config.n_genes, dtype=np.int64),
            "loading": bio["loading"][order],
        },
        index=pd.Index(names, name="gene"),
    )
    adata = ad.AnnData(X=np.ascontiguousarray(X[:, order]), obs=obs, var=var)
    adata.layers["counts"] = np.ascontiguousarray(counts[:, order])
    adata.uns["ground_truth"] = {
        "perturbations": np.array(bio["perturbations"], dtype=str),
        "states": np.array(bio["states"], dtype=str),
        "program_shift": bio["shift"],
        "logfc": truth["logfc"][:, :, order],
        "delta": truth["delta"][:, :, order],
        "affected": _affected(bio)[:, :, order],
        "gene_program": bio["program"][order],
        "loading": bio["loading"][order],
        "single_effect": bio["single_effect"],
        "state_scale": bio["state_scale"],
        "combinations": np.array(bio["combinations"], dtype=str),
        "interaction": np.array(bio["interaction"], dtype=str),
        "interacting": np.array([k != "additive" for k in bio["interaction"]], dtype=bool),
        "contiguity": contiguity_score(bio["program"][order]),
        "config": config.model_dump(mode="json"),
    }
    return adata


def config_from_adata(adata: ad.AnnData) -> SyntheticConfig:
    """The :class:`SyntheticConfig` recorded in ``uns['ground_truth']['config']`` (also after an h5ad round trip)."""
    try:
        raw = adata.uns["ground_truth"]["config"]
    except KeyError:
        raise ConfigError("uns['ground_truth']['config'] missing; not an AnnData made by simulate") from None
    plain = {k: v.tolist() if isinstance(v, np.ndarray | np.generic) else v for k, v in raw.items()}
    return synthetic_config(plain)


def write_synthetic(config: SyntheticConfig, out: str | Path) -> ad.AnnData:
    """Simulate and write the benchmark to an ``.h5ad`` file; returns the AnnData."""
    adata = simulate(config)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_h5ad(adata, out)
    return adata
