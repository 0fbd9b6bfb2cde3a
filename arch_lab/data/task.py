"""A task: prepared cells plus their split, vocabularies and the conditions to predict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from arch_lab.config import DataConfig, ExperimentConfig, TaskConfig, resolve_path
from arch_lab.data.backed import gene_order_rows
from arch_lab.data.gene_order import gene_order, order_from_names, read_gene_order_file
from arch_lab.data.loading import PerturbationData, check_gene_count, load_perturbation_data, read_anndata
from arch_lab.data.splits import hold_out_training_cells, load_split, make_split
from arch_lab.errors import ConfigError, DataError
from arch_lab.spec import DataSpec


@dataclass(frozen=True)
class Condition:
    """One (covariate state, perturbation) condition."""

    state: str
    perturbation: str

    @property
    def label(self) -> str:
        """``state/perturbation``."""
        return f"{self.state}/{self.perturbation}"


class Task:
    """Cells, split and vocabularies for one experiment.

    Parameters
    ----------
    data
        The prepared cells.
    split
        ``train``/``val``/``test`` per cell id.
    order
        ``order[i]`` is the stored index of the gene at network position ``i`` (a permutation).
    """

    def __init__(self, data: PerturbationData, split: pd.Series, order: np.ndarray | None = None) -> None:
        self.data = data
        self.split = split.reindex(data.obs.index)
        self.obs = data.obs.assign(split=self.split.to_numpy())
        self.order = np.arange(data.n_genes) if order is None else np.asarray(order, dtype=np.int64)
        if sorted(self.order.tolist()) != list(range(data.n_genes)):
            raise ValueError("gene order must be a permutation of the genes")
        self.inverse_order = np.argsort(self.order)
        train = self.obs[self.obs["split"] == "train"]
        tokens = sorted({t for p in train["perturbation"].unique() for t in data.tokens(p)})
        self.token_ids = {t: i + 1 for i, t in enumerate(tokens)}
        self.covariate_vocabs = {k: tuple(sorted(self.obs[k].unique())) for k in data.covariate_keys}
        max_tokens = max((len(data.tokens(p)) for p in self.obs["perturbation"].unique()), default=1)
        self.spec = DataSpec(
            n_genes=data.n_genes,
            gene_names=tuple(data.genes[i] for i in self.order),
            perturbation_vocab=tuple(tokens),
            covariate_vocabs=self.covariate_vocabs,
            max_perturbations=max(max_tokens, 1),
        )
        self._state_covs = self.obs.drop_duplicates("state").set_index("state")[data.covariate_keys]

    # ----------------------------------------------------------------------------------------- queries
    def cells(self, split: str | None = None, condition: Condition | None = None) -> np.ndarray:
        """Row indices of cells in ``split`` (all when None) and of ``condition`` (all when None)."""
        m = np.ones(len(self.obs), dtype=bool)
        if split is not None:
            m &= (self.obs["split"] == split).to_numpy()
        if condition is not None:
            m &= (self.obs["state"] == condition.state).to_numpy()
            m &= (self.obs["perturbation"] == condition.perturbation).to_numpy()
        return np.flatnonzero(m)

    def controls(self, state: str, split: str) -> np.ndarray:
        """Row indices of the control cells of ``state`` in ``split``."""
        return self.cells(split, Condition(state, self.data.control_value))

    def conditions(self, split: str, include_control: bool = False) -> list[Condition]:
        """Conditions with cells in ``split``, sorted by state then perturbation."""
        part = self.obs[self.obs["split"] == split]
        if not include_control:
            part = part[part["perturbation"] != self.data.control_value]
        pairs = part[["state", "perturbation"]].drop_duplicates().sort_values(["state", "perturbation"])
        return [Condition(s, p) for s, p in zip(pairs["state"], pairs["perturbation"], strict=True)]

    def encode(self, condition: Condition) -> tuple[list[int], list[int]]:
        """Token ids and covariate ids of a condition.

        Raises
        ------
        DataError
            A perturbation token or covariate value unknown to the training vocabulary.
        """
        unknown = [t for t in self.data.tokens(condition.perturbation) if t not in self.token_ids]
        if unknown:
            raise DataError(
                f"perturbation {condition.perturbation!r} has tokens unknown to the training vocabulary: {unknown}"
            )
        if condition.state not in self._state_covs.index:
            raise DataError(f"covariate state {condition.state!r} unknown; states are {sorted(self._state_covs.index)}")
        tokens = [self.token_ids[t] for t in self.data.tokens(condition.perturbation)]
        covs = [self.covariate_vocabs[k].index(v) for k, v in self._state_covs.loc[condition.state].items()]
        return tokens, covs

    def gene_means(self, split: str = "train", max_rows: int = 20_000) -> np.ndarray:
        """``[G]`` float32: each gene's mean over the cells of ``split`` (stored gene order), from at most
        ``max_rows`` of them, evenly spaced; computed once per split and kept.

        Raises
        ------
        DataError
            ``split`` has no cells.
        """
        cache = self.__dict__.setdefault("_gene_means", {})
        if split not in cache:
            rows = self.cells(split)
            if not len(rows):
                raise DataError(f"no {split} cells to take gene means from; check the task's split")
            rows = rows[:: max(1, len(rows) // max_rows)][:max_rows]
            cache[split] = np.asarray(self.data.X[np.sort(rows)], dtype=np.float64).mean(0).astype(np.float32)
        return cache[split]

    def covariate_values(self, state: str) -> dict[str, str]:
        """Covariate values of a state label."""
        return dict(self._state_covs.loc[state].items())

    def summary(self) -> dict:
        """Cell and condition counts per split, for the run record."""
        out: dict = {"n_cells": len(self.obs), "n_genes": self.data.n_genes}
        for name in ("train", "val", "test"):
            part = self.obs[self.obs["split"] == name]
            ctrl = part["perturbation"] == self.data.control_value
            out[name] = {
                "cells": int(len(part)),
                "control_cells": int(ctrl.sum()),
                "conditions": int(part.loc[~ctrl, ["state", "perturbation"]].drop_duplicates().shape[0]),
            }
        return out


def data_path(cfg: DataConfig, base: ExperimentConfig | None = None) -> Path:
    """The resolved ``data.path`` of an experiment."""
    if cfg.path is None:
        raise ConfigError("data.path: not set; give an .h5ad file (or data.synthetic to generate the cells)")
    return resolve_path(base, cfg.path) if base is not None else Path(cfg.path)


def read_data(cfg: DataConfig, base: ExperimentConfig | None = None) -> ad.AnnData:
    """The AnnData of an experiment: generated from ``data.synthetic``, or read from ``data.path``."""
    if cfg.synthetic is not None:
        from arch_lab.data.synthetic import simulate

        return simulate(cfg.synthetic)
    return read_anndata(data_path(cfg, base))


def load_data(cfg: DataConfig, base: ExperimentConfig | None = None) -> PerturbationData:
    """Read (or generate) and prepare the data of an experiment."""
    if cfg.storage == "backed":
        from arch_lab.data.backed import load_backed_data

        return load_backed_data(data_path(cfg, base), cfg)
    return prepare_data(read_data(cfg, base), cfg)


def prepare_data(adata: ad.AnnData, cfg: DataConfig) -> PerturbationData:
    """Prepare an AnnData (read from a file or already in memory) as the ``data`` section says.

    Parameters
    ----------
    adata
        Cells x genes, with the obs columns the section names.
    cfg
        The ``data`` section (its ``path`` and ``synthetic`` are not read).

    Returns
    -------
    PerturbationData
    """
    return load_perturbation_data(
        adata,
        perturbation_key=cfg.perturbation_key,
        control_value=cfg.control_value,
        covariate_keys=list(cfg.covariate_keys),
        delimiter=cfg.combination_delimiter,
        layer=cfg.layer,
        counts=cfg.counts,
        max_genes=cfg.max_genes,
        subset=cfg.subset,
        hvg=cfg.hvg,
        counts_layer=cfg.counts_layer,
    )


def build_task(cfg: ExperimentConfig, data: PerturbationData | None = None) -> Task:
    """Load data, compute (or reload) the split and the gene order of an experiment.

    With ``train.val_train_fraction`` the val split also takes that share of every training condition's cells
    (:func:`~arch_lab.data.splits.hold_out_training_cells`), from a computed split or a split file alike; a run's
    own recorded split already holds them (:func:`arch_lab.api.load_run_task` reads it with the fraction at 0).

    Raises
    ------
    DataError
        Data the experiment cannot use (see :func:`load_data`), too few genes for the metrics
        (:func:`~arch_lab.data.loading.check_gene_count`), or a split that breaks the task's guarantees.
    """
    data = data if data is not None else load_data(cfg.data, cfg)
    check_gene_count(data.n_genes, cfg.eval.deg_top_k)
    tcfg: TaskConfig = cfg.task
    split = load_split(resolve_path(cfg, tcfg.split_file), data) if tcfg.split_file else make_split(data, tcfg)
    split = hold_out_training_cells(data, split, cfg.train.val_train_fraction, tcfg.seed)
    train_rows = np.flatnonzero((split.reindex(data.obs.index) == "train").to_numpy())
    return Task(data, split, network_gene_order(cfg, data, train_rows))


def network_gene_order(cfg: ExperimentConfig, data: PerturbationData, train_rows: np.ndarray) -> np.ndarray:
    """The gene order an experiment's network reads (``data.gene_order``, then ``data.gene_order_shift``).

    Returns
    -------
    numpy.ndarray
        ``order[i]`` is the stored index of the gene at network position ``i``.

    Raises
    ------
    ConfigError
        ``gene_order: file`` with a missing, empty or repetitive file.
    DataError
        That file does not list every kept gene.
    """
    dcfg = cfg.data
    if dcfg.gene_order == "file":
        assert dcfg.gene_order_file is not None  # the config's validator pairs them
        path = resolve_path(cfg, dcfg.gene_order_file)
        order = order_from_names(data.genes, read_gene_order_file(path), source=f"data.gene_order_file {path}")
    else:
        seed = dcfg.gene_order_seed
        seed = cfg.seed if seed == "run" else cfg.task.seed if seed is None else seed
        order = gene_order(dcfg.gene_order, gene_order_rows(data, train_rows, dcfg.gene_order, seed), seed=seed)
    return np.roll(order, dcfg.gene_order_shift)
