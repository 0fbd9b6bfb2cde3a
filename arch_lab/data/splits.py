"""Deterministic PerturBench-style splits over (perturbation, covariate state) pairs.

The split unit is a pair: every cell inherits its pair's label, nothing is split at cell level within a pair
except control cells, which are split train/val/test *per state*. Differences from PerturBench (documented in
``docs/metrics.md``): controls are split per state rather than globally; a state with a single held-out pair
keeps it (assigned to val or test so that the totals stay balanced) instead of silently dropping it; every
held-out perturbation and state is checked to be seen in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from arch_lab.config import TaskConfig
from arch_lab.data.loading import STATE_SEP, PerturbationData
from arch_lab.errors import DataError

SPLITS = ("train", "val", "test")
#: Fewest cells of a held-out condition: its scores compare distributions of cells (energy distance, DEGs).
MIN_CELLS = 2
#: Separators tried when a combination task's delimiter matches no label (for the hint).
_DELIMITERS = ("+", "_", "|", ",", ";", "/", "&", ":", "-", ".", " ")


def _pairs(data: PerturbationData, scorable: bool = True) -> pd.DataFrame:
    """Non-control (perturbation, state) pairs with their cell counts, sorted for determinism.

    ``scorable`` keeps only pairs with at least :data:`MIN_CELLS` cells, the ones that can be held out.
    """
    obs = data.obs[~data.is_control]
    pairs = obs.groupby(["perturbation", "state"], observed=True).size().rename("n_cells").reset_index()
    if scorable:
        pairs = pairs[pairs["n_cells"] >= MIN_CELLS]
    return pairs.sort_values(["state", "perturbation"]).reset_index(drop=True)


def _note_small_conditions(data: PerturbationData) -> None:
    """Say which conditions are too small to hold out (they stay in training)."""
    pairs = _pairs(data, scorable=False)
    small = pairs[pairs["n_cells"] < MIN_CELLS]
    if small.empty:
        return
    names = ", ".join(f"{s}/{p}" for s, p in list(zip(small["state"], small["perturbation"], strict=True))[:5])
    more = f" and {len(small) - 5} more" if len(small) > 5 else ""
    note = (
        f"{len(small)} condition{'s have' if len(small) > 1 else ' has'} a single cell and stay in training, never "
        f"held out (scoring needs at least {MIN_CELLS} cells): {names}{more}"
    )
    if note not in data.notes:
        data.notes.append(note)


def check_delimiter(data: PerturbationData) -> None:
    """Refuse a combination task whose delimiter splits no perturbation label (it would hold out no pair).

    Raises
    ------
    DataError
        Names the delimiter, example labels and the separators they do contain.
    """
    labels = [str(p) for p in data.obs.loc[~data.is_control, "perturbation"].unique()]
    if any(len(data.tokens(p)) > 1 for p in labels):
        return
    found = [d for d in _DELIMITERS if d != data.delimiter and any(d in p.strip(d) for p in labels)]
    hint = f"; the labels contain {found[0]!r}: set data.combination_delimiter: {found[0]!r}?" if found else ""
    examples = ", ".join(repr(p) for p in sorted(labels, key=len, reverse=True)[:3])
    raise DataError(
        f"task.kind combination: no perturbation label contains the combination delimiter {data.delimiter!r} "
        f"(data.combination_delimiter), so there is no combination to hold out; labels look like {examples}{hint}"
    )


def _covariate_transfer(data: PerturbationData, cfg: TaskConfig, rng: np.random.Generator) -> list[tuple[str, str]]:
    pairs = _pairs(data)
    n_conditions = data.obs.groupby("state", observed=True)["perturbation"].nunique()
    budget = {s: min(int(cfg.heldout_fraction * n), cfg.max_heldout_per_state) for s, n in n_conditions.items()}
    states_of = pairs.groupby("perturbation")["state"].apply(sorted)
    perts = list(states_of.index)
    order = rng.permutation(len(perts))
    # Most widely measured first (as PerturBench); ties broken by the seeded permutation.
    ranked = sorted(range(len(perts)), key=lambda i: (-len(states_of.iloc[i]), int(np.where(order == i)[0][0])))
    held: list[tuple[str, str]] = []
    for i in ranked:
        p, states = perts[i], states_of.iloc[i]
        pool = [s for s in states if budget[s] > 0]
        max_k = min(len(pool), len(states) - cfg.min_train_states, cfg.max_heldout_states)
        if max_k <= 0:
            continue
        k = int(rng.integers(1, max_k + 1))
        for s in rng.choice(pool, size=k, replace=False):
            budget[str(s)] -= 1
            held.append((p, str(s)))
    return held


def _combination(data: PerturbationData, cfg: TaskConfig, rng: np.random.Generator) -> list[tuple[str, str]]:
    pairs = _pairs(data)
    held: list[tuple[str, str]] = []
    for state, grp in pairs.groupby("state", sort=True):
        present = set(grp["perturbation"])
        eligible = sorted(
            p
            for p in present
            if len(data.tokens(p)) > 1 and all(t in present for t in data.tokens(p))  # singles measured here
        )
        n = min(int(round(cfg.heldout_fraction * len(eligible))), cfg.max_heldout_per_state)
        if n:
            held += [(str(p), str(state)) for p in rng.choice(eligible, size=n, replace=False)]
    return held


def _transfer_eligible(data: PerturbationData, cfg: TaskConfig) -> dict[str, list[str]]:
    """Covariate transfer under folds: perturbation -> the states it can be held out in.

    A fold's test and val splits take at most ``ceil(m / n_folds)`` of the ``m`` states of a perturbation each,
    so it is eligible when at least ``min_train_states`` states stay in training whatever the fold.
    """
    assert cfg.n_folds is not None
    states_of = _pairs(data).groupby("perturbation")["state"].apply(sorted)
    eligible = {}
    for p, states in states_of.items():
        per_fold = -(-len(states) // cfg.n_folds)
        if len(states) - 2 * per_fold >= cfg.min_train_states:
            eligible[str(p)] = [str(s) for s in states]
    return eligible


def _combination_eligible(data: PerturbationData) -> list[tuple[str, str]]:
    """Combinations whose singles are all measured in the same state, as (perturbation, state) pairs."""
    pairs = _pairs(data)
    out: list[tuple[str, str]] = []
    for state, grp in pairs.groupby("state", sort=True):
        present = set(grp["perturbation"])
        out += [
            (str(p), str(state))
            for p in sorted(present)
            if len(data.tokens(p)) > 1 and all(t in present for t in data.tokens(p))
        ]
    return out


def fold_of_pairs(data: PerturbationData, cfg: TaskConfig) -> dict[tuple[str, str], int]:
    """The fold of every eligible (perturbation, state) pair of a task with ``n_folds``.

    Pairs are dealt round-robin in a seeded order (``task.seed``), a perturbation's states consecutively, so folds
    differ in size by at most one pair and a perturbation's states spread over different folds.

    Raises
    ------
    DataError
        When there are fewer eligible pairs than folds (naming both counts and the fix).
    """
    assert cfg.n_folds is not None
    rng = np.random.default_rng(cfg.seed)
    if cfg.kind == "covariate_transfer":
        eligible = _transfer_eligible(data, cfg)
        names = sorted(eligible)
        ordered = [
            (p, s) for i in rng.permutation(len(names)) for p in [names[i]] for s in rng.permutation(eligible[p])
        ]
        what = f"perturbations measured in at least {cfg.min_train_states + 2} states"
    else:
        pairs = _combination_eligible(data)
        ordered = [pairs[i] for i in rng.permutation(len(pairs))]
        what = "combinations whose singles are measured in the same state"
    if len(ordered) < cfg.n_folds:
        raise DataError(
            f"task.n_folds={cfg.n_folds} but only {len(ordered)} (perturbation, state) pairs can be held out "
            f"({what}); use task.n_folds <= {len(ordered)}"
        )
    return {(str(p), str(s)): i % cfg.n_folds for i, (p, s) in enumerate(ordered)}


def _folds(data: PerturbationData, cfg: TaskConfig) -> tuple[list[tuple[str, str]], dict[tuple[str, str], str]]:
    """Held-out pairs of fold ``cfg.fold``: its own pairs are tested, the next fold's validate."""
    assert cfg.n_folds is not None
    folds = fold_of_pairs(data, cfg)
    val_fold = (cfg.fold + 1) % cfg.n_folds
    fixed = {pair: "test" if f == cfg.fold else "val" for pair, f in folds.items() if f in (cfg.fold, val_fold)}
    return list(fixed), fixed


def _manual(data: PerturbationData, cfg: TaskConfig) -> tuple[list[tuple[str, str]], dict[tuple[str, str], str]]:
    pairs = _pairs(data, scorable=False)  # named pairs too small to score are refused by check_split
    states = data.obs.drop_duplicates("state").set_index("state")[data.covariate_keys]
    held: list[tuple[str, str]] = []
    fixed: dict[tuple[str, str], str] = {}
    for n, entry in enumerate(cfg.holdout):
        mask = np.ones(len(states), dtype=bool)
        for key, value in entry.covariates.items():
            if key not in data.covariate_keys:
                raise DataError(f"task.holdout[{n}]: {key!r} is not a covariate key; keys are {data.covariate_keys}")
            if value not in set(states[key]):
                raise DataError(
                    f"task.holdout[{n}]: {key}={value!r} not present; values are {sorted(set(states[key]))}"
                )
            mask &= (states[key] == value).to_numpy()
        matched = set(states.index[mask])
        sel = pairs[pairs["state"].isin(matched)]
        if entry.perturbation is not None:
            if entry.perturbation not in set(sel["perturbation"]):
                raise DataError(
                    f"task.holdout[{n}]: perturbation {entry.perturbation!r} not measured in {sorted(matched)}; "
                    f"measured there: {sorted(set(sel['perturbation']))[:12]}"
                )
            sel = sel[sel["perturbation"] == entry.perturbation]
        for p, s in zip(sel["perturbation"], sel["state"], strict=True):
            held.append((str(p), str(s)))
            if entry.split is not None:
                fixed[(str(p), str(s))] = entry.split
    return held, fixed


def assign_heldout(
    held: list[tuple[str, str]], fixed: dict[tuple[str, str], str], rng: np.random.Generator
) -> dict[tuple[str, str], str]:
    """Split held-out pairs into val/test within each state, alternating across states to stay balanced."""
    out = dict(fixed)
    free = sorted({pair for pair in held if pair not in fixed}, key=lambda x: (x[1], x[0]))
    by_state: dict[str, list[tuple[str, str]]] = {}
    for pair in free:
        by_state.setdefault(pair[1], []).append(pair)
    turn = 0
    for state in sorted(by_state):
        group = by_state[state]
        for j in rng.permutation(len(group)):
            out[group[j]] = ("test", "val")[turn % 2]
            turn += 1
    return out


def state_control_fractions(
    fractions: tuple[float, float, float], heldout: set[str] | None
) -> tuple[float, float, float]:
    """The control fractions of one state: a val or test share whose split holds no condition of the state goes to
    training (``heldout`` lists the splits that do; None keeps ``fractions`` as they are).
    """
    if heldout is None:
        return fractions
    train, val, test = fractions
    if "val" not in heldout:
        train, val = train + val, 0.0
    if "test" not in heldout:
        train, test = train + test, 0.0
    return train, val, test


def split_controls(
    data: PerturbationData,
    fractions: tuple[float, float, float],
    rng: np.random.Generator,
    heldout_splits: dict[str, set[str]] | None = None,
) -> pd.Series:
    """Per state, shuffle control cells and cut them train/val/test by ``fractions``.

    Parameters
    ----------
    data
        The prepared cells.
    fractions
        Train/val/test fractions of each state's controls.
    rng
        Shuffles the controls.
    heldout_splits
        For each state, the held-out splits (``val``, ``test``) that hold conditions of it. Controls are scored
        against only there, so a split without conditions in a state takes none of its controls: its share stays
        in training (see :func:`state_control_fractions`). None cuts every state by ``fractions``.

    Returns
    -------
    pandas.Series
        The split label of every control cell.
    """
    labels = pd.Series(index=data.obs.index[data.is_control], dtype=object)
    ctrl = data.obs[data.is_control]
    for state in sorted(ctrl["state"].unique()):
        cells = ctrl.index[ctrl["state"] == state].to_numpy()
        cells = cells[rng.permutation(len(cells))]
        state_fractions = state_control_fractions(
            fractions, None if heldout_splits is None else heldout_splits.get(str(state), set())
        )
        n_train = int(round(state_fractions[0] * len(cells)))
        n_val = int(round(state_fractions[1] * len(cells)))
        labels[cells[:n_train]] = "train"
        labels[cells[n_train : n_train + n_val]] = "val"
        labels[cells[n_train + n_val :]] = "test"
    return labels


def make_split(data: PerturbationData, cfg: TaskConfig) -> pd.Series:
    """Compute the split of every cell (``train``/``val``/``test``) for a task.

    Parameters
    ----------
    data
        The prepared cells.
    cfg
        The task section of the experiment config.

    Returns
    -------
    pandas.Series
        Indexed by cell id, named ``split``.
    """
    rng = np.random.default_rng(cfg.seed)
    fixed: dict[tuple[str, str], str] = {}
    if cfg.kind == "combination":
        check_delimiter(data)
    if cfg.kind != "manual":
        _note_small_conditions(data)
    if cfg.n_folds is not None:
        held, fixed = _folds(data, cfg)
    elif cfg.kind == "covariate_transfer":
        held = _covariate_transfer(data, cfg, rng)
    elif cfg.kind == "combination":
        held = _combination(data, cfg, rng)
    else:
        held, fixed = _manual(data, cfg)
    if not held:
        why = {
            "combination": f"no combination ({data.delimiter!r}-joined label) has all its singles measured in its "
            "state, or task.heldout_fraction rounds to 0",
            "covariate_transfer": f"no perturbation is measured in more than task.min_train_states "
            f"({cfg.min_train_states}) states, or task.heldout_fraction rounds to 0",
        }.get(cfg.kind, "check task options")
        raise DataError(f"task {cfg.kind!r} holds out no (perturbation, state) pair on this data: {why}")
    assignment = assign_heldout(held, fixed, rng)
    split = pd.Series("train", index=data.obs.index, name="split", dtype=object)
    key = data.obs["perturbation"] + STATE_SEP + STATE_SEP + data.obs["state"]
    lookup = {p + STATE_SEP + STATE_SEP + s: v for (p, s), v in assignment.items()}
    mapped = key.map(lookup)
    split[mapped.notna()] = mapped[mapped.notna()]
    heldout_splits: dict[str, set[str]] = {}
    for (_, state), part in assignment.items():
        heldout_splits.setdefault(state, set()).add(part)
    ctrl = split_controls(data, cfg.control_fractions, rng, heldout_splits)
    split[ctrl.index] = ctrl
    check_split(data, split)
    return split


def hold_out_training_cells(data: PerturbationData, split: pd.Series, fraction: float, seed: int) -> pd.Series:
    """Move ``fraction`` of the cells of every training condition to the val split.

    Validation then also scores conditions the model trains on, from cells it never saw
    (``train.val_train_fraction``). Per training condition, ``floor(fraction x cells)`` cells move when that is at
    least :data:`MIN_CELLS` and leaves one in training. Scoring them needs val controls of the state: a state that
    has none takes ``fraction`` of its training controls (at least one, leaving one). A state that has test
    conditions but no val controls keeps its cells: its training controls are the test conditions' source pool,
    which stays as the task made it. Test cells are never touched.

    Parameters
    ----------
    data
        The prepared cells.
    split
        ``train``/``val``/``test`` per cell id (indexed like ``data.obs``).
    fraction
        Share of each training condition's cells to move, ``0 <= fraction < 1``.
    seed
        Draws the moved cells.

    Returns
    -------
    pandas.Series
        The new split (a copy); ``split`` itself is not changed.
    """
    out = split.reindex(data.obs.index).copy()
    if fraction <= 0:
        return out
    rng = np.random.default_rng([seed, 0x7A1])
    obs = data.obs
    labels = out.to_numpy(dtype=object, copy=True)
    control = data.is_control
    state = obs["state"].astype(str).to_numpy()
    val_controls = set(state[control & (labels == "val")])
    test_states = set(state[~control & (labels == "test")])
    train_rows = np.flatnonzero(~control & (labels == "train"))
    pairs = obs.iloc[train_rows].groupby(["state", "perturbation"], observed=True).indices
    moved: dict[str, list[np.ndarray]] = {}
    for (s, _), where in sorted(pairs.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        s = str(s)
        if s not in val_controls and s in test_states:
            continue
        rows = train_rows[where]
        k = int(fraction * len(rows))
        if k < MIN_CELLS or len(rows) - k < 1:
            continue
        moved.setdefault(s, []).append(rng.choice(rows, size=k, replace=False))
    for s in sorted(moved):
        if s not in val_controls:
            rows = np.flatnonzero(control & (labels == "train") & (state == s))
            k = max(int(fraction * len(rows)), 1)
            if len(rows) - k < 1:  # no control to spare: the state's conditions stay in training
                continue
            moved[s].append(rng.choice(rows, size=k, replace=False))
        labels[np.concatenate(moved[s])] = "val"
    out = pd.Series(labels, index=out.index, name=split.name)
    check_split(data, out)
    return out


def check_split(data: PerturbationData, split: pd.Series) -> None:
    """Check the guarantees every task gives, raising :class:`DataError` when one fails.

    - every val/test perturbation token and every val/test state appears in training;
    - every state with held-out cells has observed control cells in that split (the scoring reference)
      and control cells in training (the prediction source);
    - every val/test condition has at least :data:`MIN_CELLS` cells (its scores compare cells).
    """
    obs = data.obs.assign(split=split)
    train = obs[obs["split"] == "train"]
    train_tokens = {t for p in train["perturbation"].unique() for t in data.tokens(p)}
    train_states = set(train["state"])
    for name in ("val", "test"):
        part = obs[(obs["split"] == name) & (obs["perturbation"] != data.control_value)]
        for p in part["perturbation"].unique():
            unseen = [t for t in data.tokens(p) if t not in train_tokens]
            if unseen:
                raise DataError(f"{name} perturbation {p!r} has tokens never seen in training: {unseen}")
        for s in set(part["state"]) - train_states:
            raise DataError(f"{name} state {s!r} never appears in training; no model can transfer to it")
        sizes = part.groupby(["state", "perturbation"], observed=True).size()
        for (s, p), n in sizes[sizes < MIN_CELLS].items():
            raise DataError(
                f"{name} condition {s}/{p} has {n} cell; scoring a condition needs at least {MIN_CELLS}: hold out "
                "another one (task.holdout) or keep it in training"
            )
        for s in part["state"].unique():
            ctrl = obs[(obs["state"] == s) & (obs["perturbation"] == data.control_value)]
            if not (ctrl["split"] == name).any():
                raise DataError(f"state {s!r} has {name} conditions but no {name} control cells to score against")
            if not (ctrl["split"] == "train").any():
                raise DataError(f"state {s!r} has no training control cells to predict from")


def save_split(split: pd.Series, path: str | Path) -> None:
    """Write ``split.csv`` (columns ``cell_id,split``)."""
    split.rename("split").rename_axis("cell_id").to_csv(path, header=True)


def load_split(path: str | Path, data: PerturbationData) -> pd.Series:
    """Read a split file and check it covers exactly the cells of ``data``.

    Two layouts are read: arch_lab's ``split.csv`` (header ``cell_id,split``) and PerturBench's split CSV
    (no header, rows ``cell_id,split``). Labels are ``train``/``val``/``test``.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: split file not found")
    df = pd.read_csv(p, dtype=str, header=None, keep_default_na=False)
    if df.shape[1] < 2:
        raise DataError(f"{p}: expected two columns cell_id,split (with or without a header); got {df.shape[1]}")
    if [str(v).strip() for v in df.iloc[0, :2]] == ["cell_id", "split"]:
        df = df.iloc[1:]
    elif df.shape[1] > 2 or str(df.iloc[0, 1]).strip() not in SPLITS:
        raise DataError(f"{p}: expected columns cell_id,split; got {list(df.iloc[0])}")
    df = df.iloc[:, :2].set_axis(["cell_id", "split"], axis=1)
    df["split"] = df["split"].str.strip()
    if df["cell_id"].duplicated().any():
        raise DataError(f"{p}: cell id {df.loc[df['cell_id'].duplicated(), 'cell_id'].iloc[0]!r} appears twice")
    split = df.set_index("cell_id")["split"]
    bad = sorted(set(split) - set(SPLITS))
    if bad:
        raise DataError(f"{p}: unknown split labels {bad}; use train/val/test")
    missing = data.obs.index.difference(split.index)
    if len(missing):
        raise DataError(f"{p}: {len(missing)} cells of the data have no split (e.g. {missing[0]!r}); wrong file?")
    split = split.reindex(data.obs.index).rename("split")
    check_split(data, split)
    return split
