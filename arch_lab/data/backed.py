"""Expression matrices that stay on disk: a backed ``.h5ad`` or a ``.zarr`` store read in chunks of rows.

Only ``obs`` and ``var`` are read into memory (to validate the columns, build the split and the conditions); ``X``
(or a layer), dense or CSR, is read as contiguous row ranges, densified per chunk and restricted to the selected
genes. The stored values must already be log-normalised: :func:`normalize_file` (``arch-lab preprocess``) writes a
normalised copy chunk by chunk. See ``docs/large_data.md``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from arch_lab.config import DataConfig
from arch_lab.data.loading import PerturbationData, check_unique_genes, load_perturbation_data
from arch_lab.data.preprocess import is_raw_counts, rank_by_dispersion
from arch_lab.errors import DataError

try:  # anndata >= 0.11
    from anndata.io import read_elem, write_elem
except ImportError:  # pragma: no cover - anndata 0.10
    from anndata.experimental import read_elem, write_elem

log = logging.getLogger(__name__)

#: Rows between two requested rows above which they are read separately rather than as one window.
MAX_GAP = 8

#: Bytes of float64 working memory a moments pass may use per block.
MOMENT_BLOCK_BYTES = 32 << 20

#: Sparse matrix and array classes (what ``scipy.sparse.issparse`` accepts, as an ``isinstance`` check).
SPARSE = (sp.spmatrix, sp.sparray)


def is_zarr(path: str | Path) -> bool:
    """True for a zarr store (a directory, or a path ending in ``.zarr``)."""
    p = Path(path)
    return p.is_dir() or p.suffix == ".zarr"


def open_store(path: str | Path) -> Any:
    """The root group of an ``.h5ad`` (h5py, read-only) or ``.zarr`` store, with one-line errors."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: data file not found; check data.path")
    try:
        if is_zarr(p):
            import zarr

            return zarr.open_group(str(p), mode="r")
        return h5py.File(p, "r")
    except Exception as exc:
        raise DataError(f"{p}: not a readable .h5ad or .zarr store ({type(exc).__name__}: {exc})") from None


class RowReader:
    """Contiguous row ranges of a dense array or CSR matrix inside an h5py or zarr store.

    Parameters
    ----------
    elem
        The stored matrix: an array (dense) or a group with ``data``/``indices``/``indptr`` (``csr_matrix``).
    where
        Its name in error messages (e.g. ``data.h5ad:X``).

    Attributes
    ----------
    bytes_read, seconds
        Bytes read from the store and seconds spent reading and densifying (for throughput reports).
    """

    def __init__(self, elem: Any, where: str) -> None:
        enc = str(elem.attrs.get("encoding-type", "array"))
        self.where = where
        self.bytes_read = 0
        self.seconds = 0.0
        if enc == "array" and hasattr(elem, "dtype"):
            self.kind = "dense"
            self.dense = elem
            self.shape = (int(elem.shape[0]), int(elem.shape[1]))
        elif enc == "csr_matrix":
            self.kind = "csr"
            self.data, self.indices = elem["data"], elem["indices"]
            self.indptr = np.asarray(elem["indptr"][:], dtype=np.int64)  # 8 bytes per cell, kept in memory
            shape = elem.attrs["shape"]
            self.shape = (int(shape[0]), int(shape[1]))
        elif enc == "csc_matrix":
            raise DataError(
                f"{where} is stored column-major (CSC), so rows cannot be read in chunks; rewrite it as CSR"
            )
        else:
            raise DataError(f"{where}: unsupported encoding {enc!r}; expected a dense array or a CSR matrix")

    def read_raw(self, lo: int, hi: int) -> np.ndarray | sp.csr_matrix:
        """Rows ``lo:hi`` as stored (a dense array or a CSR matrix), one contiguous read."""
        t = time.perf_counter()
        if self.kind == "dense":
            out: np.ndarray | sp.csr_matrix = np.asarray(self.dense[lo:hi])
            self.bytes_read += out.nbytes
        else:
            a, b = int(self.indptr[lo]), int(self.indptr[hi])
            data, indices = np.asarray(self.data[a:b]), np.asarray(self.indices[a:b])
            out = sp.csr_matrix((data, indices, self.indptr[lo : hi + 1] - a), shape=(hi - lo, self.shape[1]))
            self.bytes_read += data.nbytes + indices.nbytes
        self.seconds += time.perf_counter() - t
        return out

    def read(self, lo: int, hi: int, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
        """Dense float32 rows ``lo:hi``, then ``rows`` of them (relative to ``lo``) and columns ``cols``."""
        block = self.read_raw(lo, hi)
        t = time.perf_counter()
        if rows is not None:
            block = block[rows]
        if cols is not None:
            block = block[:, cols]
        out = block.toarray() if isinstance(block, SPARSE) else block
        out = np.ascontiguousarray(out, dtype=np.float32)
        self.seconds += time.perf_counter() - t
        return out


class BackedMatrix:
    """A ``[cells, genes]`` float32 matrix read from disk on demand, indexed like the in-memory ``X``.

    ``X[rows]`` (an index array, boolean mask, slice or integer) returns a dense array in stored gene order,
    read as sorted, contiguous windows of at most ``block_rows`` file rows; repeated requests of the same rows
    (the controls of a state, asked for once per condition) are served from a small cache.

    Parameters
    ----------
    reader
        The stored matrix.
    rows
        File row of each logical row (sorted; the rows kept by ``data.subset``).
    cols
        Stored gene indices kept (sorted), or None for all.
    block_rows
        Largest contiguous read.
    cache_bytes
        Size of the result cache.
    """

    backed = True
    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(
        self,
        reader: RowReader,
        rows: np.ndarray,
        cols: np.ndarray | None = None,
        block_rows: int = 2048,
        cache_bytes: int = 64 << 20,
    ) -> None:
        self.reader = reader
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cols = None if cols is None or len(cols) == reader.shape[1] else np.asarray(cols, dtype=np.int64)
        n_cols = reader.shape[1] if self.cols is None else len(self.cols)
        self.shape = (len(self.rows), n_cols)
        self.block_rows = int(block_rows)
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._cached = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"BackedMatrix({self.reader.where}, shape={self.shape}, {self.reader.kind})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise DataError(
            "this step needs the whole expression matrix in memory, which data.storage: backed never loads; "
            "use data.storage: memory or a method that trains from chunks (flow_matching)"
        )

    def block(self, start: int, stop: int) -> np.ndarray:
        """Logical rows ``start:stop`` with one contiguous read of the file rows they span."""
        f = self.rows[start:stop]
        if len(f) == 0:
            return np.zeros((0, self.shape[1]), np.float32)
        lo, hi = int(f[0]), int(f[-1]) + 1
        return self.reader.read(lo, hi, None if hi - lo == len(f) else f - lo, self.cols)

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Logical rows ``idx`` (any order, repeats allowed), read as sorted contiguous windows."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self!r}")
        uniq, inverse = np.unique(idx, return_inverse=True)
        f = self.rows[uniq]
        # windows of nearby rows: cut at a gap wider than MAX_GAP rows (reading it would cost more than a new
        # read) or when the window would span more than block_rows rows
        cuts = np.flatnonzero(np.diff(f) > MAX_GAP) + 1
        bounds = np.concatenate([[0], cuts, [len(f)]])
        parts = []
        for a, z in zip(bounds[:-1], bounds[1:], strict=True):
            i = int(a)
            while i < z:
                j = int(min(np.searchsorted(f, f[i] + self.block_rows, "left"), z))
                parts.append(self._window(f, i, j))
                i = j
        out = np.concatenate(parts) if parts else np.zeros((0, self.shape[1]), np.float32)
        return out[inverse.reshape(-1)]

    def _window(self, f: np.ndarray, i: int, j: int) -> np.ndarray:
        lo, hi = int(f[i]), int(f[j - 1]) + 1
        return self.reader.read(lo, hi, None if hi - lo == j - i else f[i:j] - lo, self.cols)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            rows, cols = key
            return self[rows][:, cols]
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        if isinstance(key, slice):
            idx = np.arange(self.shape[0])[key]
        else:
            idx = np.asarray(key)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        digest = hashlib.blake2b(idx.tobytes(), digest_size=16).digest()
        hit = self._cache.get(digest)
        if hit is not None:
            self._cache.move_to_end(digest)
            return hit.copy()
        out = self.take(idx)
        if out.nbytes <= self.cache_bytes // 4:
            self._cache[digest] = out
            self._cached += out.nbytes
            while self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes
            return out.copy()
        return out


def is_backed(data: PerturbationData) -> bool:
    """True when ``data.X`` stays on disk (:class:`BackedMatrix`)."""
    return bool(getattr(data.X, "backed", False))


def moment_rows(n_genes: int, chunk_size: int) -> int:
    """Rows per block of a float64 pass over ``n_genes`` genes within :data:`MOMENT_BLOCK_BYTES`."""
    return int(max(16, min(chunk_size, MOMENT_BLOCK_BYTES // (8 * max(n_genes, 1)))))


def gene_moments(X: BackedMatrix, block_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and variance (ddof=1) of ``expm1(X)``, one chunk-wise pass (Chan's merge, float64)."""
    step = block_rows or moment_rows(X.shape[1], X.block_rows)
    n = 0
    mean = np.zeros(X.shape[1])
    m2 = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], step):
        E = np.expm1(X.block(start, start + step).astype(np.float64))
        nb = E.shape[0]
        mb = E.mean(axis=0)
        m2b = ((E - mb) ** 2).sum(axis=0)
        delta = mb - mean
        total = n + nb
        mean += delta * nb / total
        m2 += m2b + delta**2 * n * nb / total
        n = total
    return mean, (m2 / (n - 1) if n > 1 else np.zeros_like(m2))


def _check_sample(X: BackedMatrix, path: Path, n_blocks: int = 4) -> None:
    """Refuse raw counts, negative or non-finite values, judged on a few evenly spaced chunks."""
    size = min(X.block_rows, 1024)
    starts = np.unique(np.linspace(0, max(X.shape[0] - size, 0), n_blocks).astype(np.int64))
    sample = np.concatenate([X.block(int(s), int(s) + size) for s in starts])
    if not np.isfinite(sample).all():
        raise DataError(f"{path}: expression matrix holds non-finite values (NaN/inf); clean or impute them first")
    if (sample < 0).any():
        raise DataError(f"{path}: expression matrix holds negative values; expected log-normalised expression")
    if is_raw_counts(sample):
        raise DataError(
            f"{path} holds raw counts, and data.storage: backed trains on stored values; normalise it first "
            f"with: arch-lab preprocess {path} normalised.h5ad"
        )


def load_backed_data(path: str | Path, cfg: DataConfig) -> PerturbationData:
    """Prepare a perturbation dataset whose expression stays on disk.

    obs and var are read (and validated exactly as in memory: columns, control value, subset, states); ``X``
    becomes a :class:`BackedMatrix`. Genes are the ``cfg.gene_key`` var column when given, then the
    ``cfg.max_genes`` most variable (moments of ``expm1(X)`` accumulated chunk by chunk, one pass over the file,
    same ranking as in memory) plus every measured perturbed gene.

    Raises
    ------
    DataError
        Everything :func:`arch_lab.data.loading.load_perturbation_data` refuses, raw counts (normalise first), a
        CSC matrix, or a missing or non-boolean ``gene_key`` column.
    """
    path = Path(path)
    root = open_store(path)
    for key in ("obs", "var"):
        if key not in root:
            raise DataError(f"{path}: no {key!r} in the store; not an AnnData file")
    obs, var = read_elem(root["obs"]), read_elem(root["var"])
    if cfg.layer is not None:
        layers = list(root["layers"]) if "layers" in root else []
        if cfg.layer not in layers:
            raise DataError(f"layer {cfg.layer!r} not in the AnnData; available layers: {layers or 'none'}")
        elem, where = root["layers"][cfg.layer], f"{path}:layers/{cfg.layer}"
    else:
        if "X" not in root:
            raise DataError(f"{path}: the AnnData has no expression matrix in X; set data.layer")
        elem, where = root["X"], f"{path}:X"
    reader = RowReader(elem, where)
    if reader.shape != (len(obs), len(var)):
        raise DataError(f"{where}: shape {reader.shape} does not match obs x var ({len(obs)}, {len(var)})")

    # obs validation, subset and states exactly as in memory, on an AnnData with no genes (nothing is loaded)
    skeleton = ad.AnnData(X=sp.csr_matrix((len(obs), 0), dtype=np.float32), obs=obs)
    data = load_perturbation_data(
        skeleton,
        perturbation_key=cfg.perturbation_key,
        control_value=cfg.control_value,
        covariate_keys=list(cfg.covariate_keys),
        delimiter=cfg.combination_delimiter,
        subset=cfg.subset,
    )
    rows = data.rows if data.rows is not None else np.arange(len(obs))

    genes = np.array([str(g) for g in var.index], dtype=object)
    check_unique_genes(genes)
    cols = np.arange(len(genes))
    notes = [f"backed: {where} ({reader.kind}) stays on disk, read in chunks of {cfg.chunk_size} rows"]
    if cfg.gene_key is not None:
        if cfg.gene_key not in var.columns:
            raise DataError(f"gene_key {cfg.gene_key!r} not in var; available columns: {', '.join(var.columns)}")
        mask = var[cfg.gene_key].to_numpy()
        if mask.dtype != bool:
            raise DataError(f"var[{cfg.gene_key!r}] must be boolean (True = keep the gene); got {mask.dtype}")
        cols = np.flatnonzero(mask)
        if len(cols) == 0:
            raise DataError(f"var[{cfg.gene_key!r}] selects no gene")
        notes.append(f"kept the {len(cols)} genes marked in var[{cfg.gene_key!r}]")
        data.preprocessing["gene_selection"] = f"genes marked in var[{cfg.gene_key!r}]"
    X = BackedMatrix(reader, rows, cols, block_rows=cfg.chunk_size)
    _check_sample(X, path)
    if cfg.max_genes is not None and cfg.max_genes < len(cols):
        t = time.perf_counter()
        mean, variance = gene_moments(X)
        perturbed = {t for p in data.obs["perturbation"].unique() for t in data.tokens(p)}
        keep_idx = {i for i, g in enumerate(genes[cols]) if g in perturbed}
        for i in rank_by_dispersion(mean, variance):
            if len(keep_idx) >= cfg.max_genes:
                break
            keep_idx.add(int(i))
        cols = cols[np.array(sorted(keep_idx), dtype=np.int64)]
        X = BackedMatrix(reader, rows, cols, block_rows=cfg.chunk_size)
        kept = len(perturbed & set(genes[cols]))
        data.preprocessing["gene_selection"] = (
            f"top {cfg.max_genes} by normalised dispersion (one chunk-wise pass) plus measured perturbed genes"
        )
        notes.append(
            f"kept {len(cols)} genes: top highly variable genes (moments of one chunk-wise pass, "
            f"{time.perf_counter() - t:.1f} s) plus {kept} measured perturbed genes"
        )
    data.X = X
    data.content_hash = None  # the skeleton's hash covers no expression; hashing the file would read all of it
    data.genes = [str(g) for g in genes[cols]]
    data.var = var.iloc[cols].set_axis(pd.Index(data.genes))
    data.notes = [*data.notes, *notes]
    for note in notes:
        log.info(note)
    return data


def gene_order_rows(data: PerturbationData, rows: np.ndarray, kind: str, seed: int, cap: int = 20_000) -> Any:
    """What :func:`arch_lab.data.gene_order.gene_order` needs: training rows for ``clustered``, else the shape.

    Backed data reads at most ``cap`` evenly drawn training rows for the clustered order.
    """
    if kind != "clustered":
        return data.X  # only its number of genes is read
    if is_backed(data) and len(rows) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=cap, replace=False))
    return data.X[rows]


# ------------------------------------------------------------------------------------------------ writing
class H5adWriter:
    """Write an ``.h5ad`` file block of rows by block of rows, so no step holds the whole matrix.

    Parameters
    ----------
    path
        The file to create.
    obs, var
        Cell and gene annotations (var may be replaced at :meth:`close`, e.g. to add a column).
    sparse
        Store ``X`` as CSR (else a dense, row-contiguous dataset).
    """

    def __init__(self, path: str | Path, obs: pd.DataFrame, var: pd.DataFrame, *, sparse: bool) -> None:
        self.path = Path(path)
        self.n, self.g = len(obs), len(var)
        self.sparse = sparse
        self.var = var
        self.pos = 0
        self.f = h5py.File(self.path, "w")
        self.f.attrs["encoding-type"] = "anndata"
        self.f.attrs["encoding-version"] = "0.1.0"
        write_elem(self.f, "obs", obs)
        if sparse:
            grp = self.f.create_group("X")
            grp.attrs["encoding-type"] = "csr_matrix"
            grp.attrs["encoding-version"] = "0.1.0"
            grp.attrs["shape"] = (self.n, self.g)
            self.data = grp.create_dataset("data", shape=(0,), maxshape=(None,), dtype="f4", chunks=(1 << 16,))
            self.indices = grp.create_dataset("indices", shape=(0,), maxshape=(None,), dtype="i4", chunks=(1 << 16,))
            self.indptr = np.zeros(self.n + 1, dtype=np.int64)
        else:
            self.X = self.f.create_dataset("X", shape=(self.n, self.g), dtype="f4")
            self.X.attrs["encoding-type"] = "array"
            self.X.attrs["encoding-version"] = "0.2.0"

    def append(self, block: np.ndarray | sp.spmatrix) -> None:
        """Write the next rows (dense or sparse, ``[rows, genes]``)."""
        r = block.shape[0]
        if self.pos + r > self.n or block.shape[1] != self.g:
            raise ValueError(f"block of shape {block.shape} does not fit at row {self.pos} of ({self.n}, {self.g})")
        if self.sparse:
            m = sp.csr_matrix(block, dtype=np.float32)
            m.sort_indices()
            off = int(self.indptr[self.pos])
            nnz = int(m.nnz)
            self.data.resize((off + nnz,))
            self.indices.resize((off + nnz,))
            self.data[off:] = m.data
            self.indices[off:] = m.indices
            self.indptr[self.pos + 1 : self.pos + r + 1] = off + m.indptr[1:]
        else:
            self.X[self.pos : self.pos + r] = block.toarray() if isinstance(block, SPARSE) else np.asarray(block)
        self.pos += r

    def close(self, var: pd.DataFrame | None = None) -> Path:
        """Finish the file (all rows must have been written)."""
        if self.pos != self.n:
            self.f.close()
            raise ValueError(f"only {self.pos} of {self.n} rows were written")
        if self.sparse:
            self.f["X"].create_dataset("indptr", data=self.indptr)
        write_elem(self.f, "var", self.var if var is None else var)
        self.f.close()
        return self.path


def normalize_file(
    src: str | Path,
    dst: str | Path,
    *,
    layer: str | None = None,
    chunk_size: int = 2048,
    max_genes: int | None = None,
) -> dict[str, Any]:
    """Write a log-normalised copy of a raw-count AnnData, chunk by chunk (``arch-lab preprocess``).

    Same recipe as in memory (:func:`arch_lab.data.preprocess.normalize_log1p`): each cell is scaled to the
    median total count, then ``log1p``. Two passes: per-cell totals, then the normalised rows (CSR stays CSR).
    With ``max_genes``, the second pass also accumulates gene moments and marks the most variable genes in
    ``var['highly_variable']`` (use it with ``data.gene_key: highly_variable``).

    Returns
    -------
    dict
        ``cells``, ``genes``, ``target`` (the median total) and ``seconds``.
    """
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise DataError(f"{dst}: the output must be a new file, not the input")
    root = open_store(src)
    obs, var = read_elem(root["obs"]), read_elem(root["var"])
    elem = root["X"] if layer is None else root["layers"][layer]
    reader = RowReader(elem, f"{src}:{'X' if layer is None else 'layers/' + layer}")
    n, g = reader.shape
    first = reader.read(0, min(n, 1024))
    if not is_raw_counts(first):
        raise DataError(f"{src}: does not hold raw counts (already normalised?); train on it directly")
    totals = np.zeros(n)
    for lo in range(0, n, chunk_size):
        block = reader.read_raw(lo, min(lo + chunk_size, n))
        totals[lo : lo + block.shape[0]] = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
    target = float(np.median(totals[totals > 0])) if (totals > 0).any() else 1.0
    scale = np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0)
    writer = H5adWriter(dst, obs, var, sparse=reader.kind == "csr")
    s1, s2 = np.zeros(g), np.zeros(g)
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        block = reader.read_raw(lo, hi)
        if sp.issparse(block):
            scaled = sp.diags(scale[lo:hi]) @ block.astype(np.float64)
            if max_genes:
                s1 += np.asarray(scaled.sum(axis=0)).ravel()
                s2 += np.asarray(scaled.multiply(scaled).sum(axis=0)).ravel()
            out = sp.csr_matrix(scaled)
            out.data = np.log1p(out.data)
        else:
            scaled = np.asarray(block, dtype=np.float64) * scale[lo:hi, None]
            if max_genes:
                s1 += scaled.sum(axis=0)
                s2 += (scaled**2).sum(axis=0)
            out = np.log1p(scaled)
        writer.append(out.astype(np.float32))
    var_out = var.copy()
    if max_genes:
        mean = s1 / n
        variance = (s2 - n * mean**2) / max(n - 1, 1)
        hv = np.zeros(g, dtype=bool)
        hv[rank_by_dispersion(mean, np.maximum(variance, 0))[:max_genes]] = True
        var_out["highly_variable"] = hv
    writer.close(var_out)
    return {"cells": n, "genes": g, "target": target, "seconds": time.perf_counter() - t0}
