"""Per-gene spread of generated cells against observed cells: a diagnostic of averaging (blur) and excess noise."""

from __future__ import annotations

import numpy as np


def gene_spread_ratio(predicted: np.ndarray, observed: np.ndarray) -> float:
    """Median over genes of the predicted cells' standard deviation divided by the observed cells'.

    1 means the generated cells vary per gene as much as the observed ones; below 1 the prediction averages cells
    towards a mean (blur); above 1 it carries variation the data does not have (for example source noise the
    network cannot remove).

    Parameters
    ----------
    predicted
        ``[n_pred, G]`` generated cells (at least 2).
    observed
        ``[n_obs, G]`` observed cells of the same condition (at least 2).

    Returns
    -------
    float
        The median ratio over genes whose observed standard deviation is positive; NaN when no gene varies or
        either side has fewer than 2 cells.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    if predicted.shape[0] < 2 or observed.shape[0] < 2:
        return float("nan")
    sd_obs = observed.std(axis=0, ddof=1)
    varies = sd_obs > 0
    if not varies.any():
        return float("nan")
    sd_pred = predicted.std(axis=0, ddof=1)
    return float(np.median(sd_pred[varies] / sd_obs[varies]))
