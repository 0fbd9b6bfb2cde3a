"""Orders of the gene axis seen by networks (the locality probe).

Metrics are always computed in the stored order: networks read ``X[:, order]`` and their outputs are put
back with the inverse permutation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from arch_lab.errors import ConfigError, DataError

GENE_ORDERS = ("as_stored", "reversed", "random", "clustered", "file")


def read_gene_order_file(path: Path) -> list[str]:
    """The gene names listed in a gene-order file, in the file's order.

    The format: one gene name per line; surrounding whitespace, blank lines and lines starting with ``#`` are
    ignored.

    Raises
    ------
    ConfigError
        The file is missing, lists no gene, or lists a gene twice.
    """
    if not path.is_file():
        raise ConfigError(f"data.gene_order_file: {path} not found; give a text file with one gene name per line")
    names = [line.strip() for line in path.read_text().splitlines()]
    names = [name for name in names if name and not name.startswith("#")]
    if not names:
        raise ConfigError(f"data.gene_order_file: {path} lists no gene; write one gene name per line")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise ConfigError(
            f"data.gene_order_file: {path} lists {len(repeated)} gene(s) more than once (e.g. "
            f"{', '.join(repr(n) for n in repeated[:3])}); list each gene once"
        )
    return names


def order_from_names(genes: Sequence[str], listed: Sequence[str], source: str = "the gene-order file") -> np.ndarray:
    """The permutation that puts the data's ``genes`` in the order of ``listed``.

    Genes listed but not in the data (e.g. dropped by the gene selection) are skipped, so one file ordering every
    gene of a genome serves any subset of it.

    Parameters
    ----------
    genes
        The data's gene names, in stored order.
    listed
        Gene names in the wanted order (each once).
    source
        What ``listed`` came from, for the error message.

    Returns
    -------
    numpy.ndarray
        ``order[i]`` is the stored index of the gene placed at position ``i``.

    Raises
    ------
    DataError
        Some of the data's genes are not listed.
    """
    position = {name: i for i, name in enumerate(genes)}
    order = np.fromiter((position[name] for name in listed if name in position), dtype=np.int64)
    if order.size < len(genes):
        found = set(listed)
        missing = [name for name in genes if name not in found]
        raise DataError(
            f"{source} does not list {len(missing)} of the data's {len(genes)} genes (e.g. "
            f"{', '.join(repr(n) for n in missing[:3])}); add them where the network should read them"
        )
    return order


def gene_order(kind: str, X_train: np.ndarray, seed: int = 0) -> np.ndarray:
    """A permutation of the genes.

    Parameters
    ----------
    kind
        ``as_stored`` (identity), ``reversed``, ``random`` (seeded) or ``clustered`` (average-linkage
        hierarchical clustering on 1 − correlation of training cells, leaves in dendrogram order, so
        co-expressed genes sit next to each other). ``file`` orders come from :func:`order_from_names`.
    X_train
        Training cells × genes (only used by ``clustered``).
    seed
        Seed of the ``random`` order.

    Returns
    -------
    numpy.ndarray
        ``order[i]`` is the stored index of the gene placed at position ``i``.
    """
    n = X_train.shape[1]
    if kind == "as_stored":
        return np.arange(n)
    if kind == "reversed":
        return np.arange(n)[::-1].copy()
    if kind == "random":
        return np.random.default_rng(seed).permutation(n)
    if kind == "clustered":
        X = X_train.astype(np.float64)
        sd = X.std(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(X, rowvar=False)
        corr = np.where(np.isfinite(corr), corr, 0.0)
        corr[sd == 0, :] = 0.0
        corr[:, sd == 0] = 0.0
        np.fill_diagonal(corr, 1.0)
        dist = np.clip(1.0 - corr, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        return leaves_list(linkage(squareform(dist, checks=False), method="average")).astype(np.int64)
    if kind == "file":
        raise ValueError("a 'file' gene order is read by order_from_names(genes, read_gene_order_file(path))")
    raise ValueError(f"unknown gene order {kind!r}; choose one of {', '.join(GENE_ORDERS)}")
