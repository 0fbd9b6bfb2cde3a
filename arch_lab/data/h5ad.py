"""Writing ``.h5ad`` files that every supported anndata can write and read, whatever pandas made the strings.

pandas 3 (and pandas 2 with ``future.infer_string``) stores text as its ``str`` dtype. anndata writes those as
nullable-string arrays only when ``anndata.settings.allow_write_nullable_strings`` is on, and refuses otherwise;
the files it then writes cannot be read by anndata before 0.11. :func:`write_h5ad` writes text columns,
categories and indices as plain object strings instead, the encoding every anndata reads, and leaves the
AnnData it was given as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import anndata as ad


def _object_index(index: pd.Index) -> pd.Index | None:
    if isinstance(index.dtype, pd.StringDtype):
        return pd.Index(index.to_numpy(dtype=object), dtype=object, name=index.name)
    return None


def object_strings(frame: pd.DataFrame) -> pd.DataFrame | None:
    """``frame`` with its ``str``-dtype columns, categories and index as object strings (a shallow copy), or None
    when it has none.
    """
    out = frame.copy(deep=False)
    changed = False
    index = _object_index(out.index)
    if index is not None:
        out.index = index
        changed = True
    for col in out.columns:
        values = out[col]
        if isinstance(values.dtype, pd.StringDtype):
            out[col] = pd.Series(values.to_numpy(dtype=object), index=out.index, dtype=object)
            changed = True
        elif isinstance(values.dtype, pd.CategoricalDtype):
            categories = _object_index(values.cat.categories)
            if categories is not None:
                cat = pd.Categorical.from_codes(values.cat.codes.to_numpy(), categories, ordered=values.cat.ordered)
                out[col] = pd.Series(cat, index=out.index)
                changed = True
    return out if changed else None


def write_h5ad(adata: ad.AnnData, path: str | Path) -> None:
    """Write ``adata`` to ``path`` with text in ``obs``, ``var`` and ``raw.var`` (columns, categories, names) as
    object strings.

    Parameters
    ----------
    adata
        Written as it is otherwise; it is left unchanged.
    path
        The ``.h5ad`` file.
    """
    obs, var = object_strings(adata.obs), object_strings(adata.var)
    raw_var = object_strings(adata.raw.var) if adata.raw is not None else None
    if obs is None and var is None and raw_var is None:
        adata.write_h5ad(path)
        return
    import anndata as ad

    raw = adata.raw
    if raw is not None and raw_var is not None:
        raw = ad.AnnData(X=raw.X, var=raw_var, varm=dict(raw.varm))
    plain = ad.AnnData(
        X=adata.X,
        obs=obs if obs is not None else adata.obs,
        var=var if var is not None else adata.var,
        uns=adata.uns,
        obsm=adata.obsm,
        varm=adata.varm,
        layers=adata.layers,
        obsp=adata.obsp,
        varp=adata.varp,
        raw=raw,
    )
    plain.write_h5ad(path)
