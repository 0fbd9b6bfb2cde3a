"""Loading, preprocessing, splits and tasks on the shipped real data and on synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import DEVEL, KANG, synthetic_adata

from arch_lab.config import TaskConfig
from arch_lab.data import Condition, Task, load_perturbation_data, load_split, make_split, read_anndata, save_split
from arch_lab.data.gene_order import gene_order
from arch_lab.data.preprocess import highly_variable_genes, is_raw_counts, normalize_log1p
from arch_lab.errors import DataError

GLIO = ["A172", "T98G", "U87MG"]


@pytest.fixture(scope="module")
def devel():
    return read_anndata(DEVEL)


def load(adata, **kw):
    args = {"perturbation_key": "condition", "control_value": "control", "covariate_keys": ["cell_type"]}
    return load_perturbation_data(adata, **{**args, **kw})


# ------------------------------------------------------------------------------------------------ loading
def test_missing_column_lists_available_columns(devel):
    with pytest.raises(DataError, match=r"'cond'.*available columns: .*condition"):
        load(devel, perturbation_key="cond")
    with pytest.raises(DataError, match="covariate_keys column 'donor'"):
        load(devel, covariate_keys=["donor"])


def test_absent_control_lists_most_common_values(devel):
    with pytest.raises(DataError, match=r"'ctrl' not found.*most common values: 'control' \(400\)"):
        load(devel, control_value="ctrl")


def test_non_finite_values_are_refused():
    a = synthetic_adata()
    a.X[3, 2] = np.nan
    with pytest.raises(DataError, match="1 non-finite"):
        load(a)


def test_raw_counts_are_normalised_or_refused():
    rng = np.random.default_rng(0)
    a = synthetic_adata()
    a.X = rng.poisson(3.0, size=a.X.shape).astype(np.float32)
    assert is_raw_counts(a.X)
    with pytest.raises(DataError, match="raw counts"):
        load(a, counts="refuse")
    d = load(a)
    assert any("raw counts detected" in n for n in d.notes)
    expected = normalize_log1p(a.X)
    np.testing.assert_allclose(d.X, expected, rtol=1e-6)
    totals = np.expm1(d.X.astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(totals, np.median(a.X.sum(axis=1)), rtol=1e-4)


def test_log_normalised_data_is_used_as_is(devel):
    d = load(devel)
    assert not is_raw_counts(d.X)
    np.testing.assert_allclose(d.X[:5], devel.X[:5].toarray(), rtol=1e-6)
    assert d.notes == []


def test_gene_selection_keeps_perturbed_genes(devel):
    d = load(devel, max_genes=60)
    perturbed = {t for p in d.obs["perturbation"].unique() for t in d.tokens(p)}
    measured = perturbed & set(devel.var_names)
    assert len(d.genes) == 60
    assert measured
    assert measured <= set(d.genes)
    # the rest are the most variable genes, in stored order
    assert d.genes == sorted(d.genes, key=list(devel.var_names).index)


def test_hvg_ranks_variable_gene_first():
    rng = np.random.default_rng(0)
    X = np.log1p(rng.poisson(2.0, size=(300, 200)).astype(np.float64))
    # same mean, far more variance: zero in half the cells, doubled in the other half
    X[:, 7] = np.log1p(rng.poisson(4.0, size=300) * rng.integers(0, 2, size=300))
    assert highly_variable_genes(X, 1)[0] == 7


def test_subset_and_bad_subset(devel):
    d = load(devel, subset={"cell_type": GLIO})
    assert set(d.obs["cell_type"]) == set(GLIO)
    with pytest.raises(DataError, match="'HeLa'"):
        load(devel, subset={"cell_type": ["HeLa"]})


# ------------------------------------------------------------------------------------------------- splits
def assert_split_guarantees(d, split):
    obs = d.obs.assign(split=split)
    train = obs[obs["split"] == "train"]
    held = obs[(obs["split"] != "train") & (obs["perturbation"] != d.control_value)]
    pairs = set(zip(held["perturbation"], held["state"], strict=True))
    train_pairs = set(zip(train["perturbation"], train["state"], strict=True))
    assert not pairs & train_pairs, "a held-out pair has cells in train"
    train_tokens = {t for p in train["perturbation"] for t in d.tokens(p)}
    for p, s in pairs:
        assert set(d.tokens(p)) <= train_tokens
        assert s in set(train["state"])
    return pairs


def test_covariate_transfer_on_glioblastoma_lines(devel):
    d = load(devel, subset={"cell_type": GLIO})
    cfg = TaskConfig(kind="covariate_transfer", seed=0, heldout_fraction=0.3, max_heldout_states=1)
    split = make_split(d, cfg)
    pairs = assert_split_guarantees(d, split)
    # 10 conditions per line x 0.3 -> 3 held-out pairs per line; each perturbation held out in at most one line
    assert len(pairs) == 9
    assert pd.Series([s for _, s in pairs]).value_counts().to_dict() == dict.fromkeys(GLIO, 3)
    assert len({p for p, _ in pairs}) == 9
    obs = d.obs.assign(split=split)
    for p, s in pairs:  # seen in training in the other two lines, not in its held-out line
        trained = ((obs["perturbation"] == p) & (obs["split"] == "train")).groupby(obs["state"]).any()
        assert trained.sum() == 2
        assert not trained[s]
    # val and test both non-empty and every pair labelled (none silently dropped)
    labels = obs[obs["perturbation"] != "control"].groupby(["perturbation", "state"])["split"].agg(set)
    assert all(len(v) == 1 for v in labels)
    assert {"val", "test"} <= set(split)
    # controls split 50/25/25 within each line
    ctrl = obs[obs["perturbation"] == "control"]
    counts = ctrl.groupby(["state", "split"]).size().unstack()
    assert (counts["train"] == 50).all()
    assert (counts["val"] == 25).all()
    assert (counts["test"] == 25).all()


def test_split_is_deterministic_and_seeded(devel):
    d = load(devel, subset={"cell_type": GLIO})
    a = make_split(d, TaskConfig(kind="covariate_transfer", seed=3))
    b = make_split(d, TaskConfig(kind="covariate_transfer", seed=3))
    c = make_split(d, TaskConfig(kind="covariate_transfer", seed=4))
    pd.testing.assert_series_equal(a, b)
    assert not a.equals(c)


def test_combination_task_on_k562(devel):
    d = load(devel, subset={"cell_type": ["k562"]})
    split = make_split(d, TaskConfig(kind="combination", seed=0, heldout_fraction=0.8))
    pairs = assert_split_guarantees(d, split)
    eligible = {"KLF1+MAP2K6", "KLF1+TGFBR2", "MAP2K3+MAP2K6", "MAP2K3+SLC38A2", "MAPK1+TGFBR2"}
    assert len(pairs) == 4
    assert {p for p, _ in pairs} <= eligible
    obs = d.obs.assign(split=split)
    singles = obs[~obs["perturbation"].str.contains(r"\+") & (obs["perturbation"] != "control")]
    assert (singles["split"] == "train").all()
    assert obs.loc[obs["split"] == "test", "perturbation"].nunique() == 3  # 2 combos + control
    assert obs.loc[obs["split"] == "val", "perturbation"].nunique() == 3


def test_manual_kang_task_and_split_csv_round_trip(tmp_path):
    d = load(read_anndata(KANG))
    cfg = TaskConfig(
        kind="manual",
        holdout=[
            {"perturbation": "stimulated", "covariates": {"cell_type": "CD4T"}, "split": "test"},
            {"perturbation": "stimulated", "covariates": {"cell_type": "B"}},
        ],
    )
    split = make_split(d, cfg)
    obs = d.obs.assign(split=split)
    stim_cd4 = obs[(obs["perturbation"] == "stimulated") & (obs["cell_type"] == "CD4T")]
    assert len(stim_cd4) == 356
    assert (stim_cd4["split"] == "test").all()
    stim_b = obs[(obs["perturbation"] == "stimulated") & (obs["cell_type"] == "B")]
    assert stim_b["split"].nunique() == 1
    assert stim_b["split"].iloc[0] in {"val", "test"}
    other = obs[(obs["perturbation"] == "stimulated") & ~obs["cell_type"].isin(["CD4T", "B"])]
    assert (other["split"] == "train").all()
    ctrl_cd4 = obs[(obs["perturbation"] == "control") & (obs["cell_type"] == "CD4T")]
    # CD4T holds a test condition and no val condition: the val share of its controls stays in training
    assert ctrl_cd4["split"].value_counts().to_dict() == {"train": 208, "test": 70}
    b_split = stim_b["split"].iloc[0]
    ctrl_b = obs[(obs["perturbation"] == "control") & (obs["cell_type"] == "B")]
    assert set(ctrl_b["split"]) == {"train", b_split}
    ctrl_other = obs[(obs["perturbation"] == "control") & ~obs["cell_type"].isin(["CD4T", "B"])]
    assert (ctrl_other["split"] == "train").all()  # states with nothing held out keep every control for training
    save_split(split, tmp_path / "split.csv")
    again = load_split(tmp_path / "split.csv", d)
    pd.testing.assert_series_equal(again, split, check_dtype=False)


def test_manual_task_bad_values_are_named():
    d = load(synthetic_adata())
    with pytest.raises(DataError, match=r"cell_type='s9' not present"):
        make_split(d, TaskConfig(kind="manual", holdout=[{"covariates": {"cell_type": "s9"}}]))
    with pytest.raises(DataError, match="perturbation 'Z' not measured"):
        make_split(d, TaskConfig(kind="manual", holdout=[{"perturbation": "Z", "covariates": {"cell_type": "s0"}}]))
    # holding out a perturbation everywhere leaves nothing to learn it from
    everywhere = [{"perturbation": "C", "covariates": {"cell_type": s}} for s in ("s0", "s1", "s2")]
    with pytest.raises(DataError, match="never seen in training"):
        make_split(d, TaskConfig(kind="manual", holdout=everywhere))


def test_single_heldout_pair_per_state_is_kept():
    d = load(synthetic_adata())
    holdout = [
        {"perturbation": "A", "covariates": {"cell_type": "s0"}},
        {"perturbation": "B", "covariates": {"cell_type": "s1"}},
    ]
    split = make_split(d, TaskConfig(kind="manual", holdout=holdout))
    obs = d.obs.assign(split=split)
    got = obs[obs["perturbation"] != "control"].groupby(["perturbation", "state"])["split"].first()
    assert {got[("A", "s0")], got[("B", "s1")]} == {"val", "test"}


def test_load_split_rejects_foreign_file(tmp_path):
    d = load(synthetic_adata())
    pd.DataFrame({"cell_id": ["x"], "split": ["train"]}).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DataError, match="have no split"):
        load_split(tmp_path / "s.csv", d)


# ------------------------------------------------------------------------------------------- task & order
def test_task_encoding_and_unknown_perturbation():
    d = load(synthetic_adata())
    split = make_split(d, TaskConfig(kind="covariate_transfer", seed=0, heldout_fraction=0.4))
    task = Task(d, split)
    tokens, covs = task.encode(Condition("s1", "A+B"))
    assert len(tokens) == 2
    assert tokens == sorted(task.token_ids[t] for t in ("A", "B"))
    assert covs == [1]
    assert task.encode(Condition("s0", "control"))[0] == []
    with pytest.raises(DataError, match="unknown to the training vocabulary"):
        task.encode(Condition("s0", "A+ZZZ"))


@pytest.mark.parametrize("kind", ["as_stored", "reversed", "random", "clustered"])
def test_gene_orders_are_permutations(kind):
    X = synthetic_adata().X
    order = gene_order(kind, X, seed=1)
    assert sorted(order.tolist()) == list(range(X.shape[1]))
    assert np.array_equal(X[:, order][:, np.argsort(order)], X)


def test_clustered_order_puts_correlated_genes_together(devel):
    d = load(devel, subset={"cell_type": ["k562"]}, max_genes=200)
    corr = np.nan_to_num(np.corrcoef(d.X, rowvar=False))

    def neighbour_corr(order):
        return float(np.mean([corr[a, b] for a, b in zip(order[:-1], order[1:], strict=True)]))

    clustered = neighbour_corr(gene_order("clustered", d.X))
    randoms = [neighbour_corr(gene_order("random", d.X, seed=s)) for s in range(5)]
    assert clustered > max(randoms) + 0.01


def test_gene_order_seed_run_gives_each_replicate_its_own_permutation(synthetic_h5ad, tmp_path):
    from conftest import experiment_dict

    from arch_lab.config import experiment_from_dict
    from arch_lab.data.task import build_task

    raw = experiment_dict(synthetic_h5ad, tmp_path)
    raw["data"]["gene_order"] = "random"

    def order(**overrides) -> list[int]:
        cfg = experiment_from_dict(raw, overrides)
        return build_task(cfg).order.tolist()

    default = order(seed=0)
    assert order(seed=1) == default  # None: the task's seed, whatever the run's seed
    run0, run1 = (
        order(**{"seed": 0, "data.gene_order_seed": "run"}),
        order(**{"seed": 1, "data.gene_order_seed": "run"}),
    )
    assert run0 != run1
    assert sorted(run0) == sorted(run1) == sorted(default)
    assert order(**{"seed": 5, "data.gene_order_seed": 1}) == run1


def test_gene_order_shift_rolls_the_order_cyclically(synthetic_h5ad, tmp_path):
    from conftest import experiment_dict

    from arch_lab.config import experiment_from_dict
    from arch_lab.data.task import build_task

    raw = experiment_dict(synthetic_h5ad, tmp_path)
    for kind in ("as_stored", "random"):
        raw["data"]["gene_order"] = kind
        base = build_task(experiment_from_dict(raw)).order.tolist()
        n = len(base)
        for shift in (1, 3, n - 1, n + 2, -2):
            rolled = build_task(experiment_from_dict(raw, {"data.gene_order_shift": shift})).order.tolist()
            # the gene at position i is now at (i + shift) mod n, written out by hand
            assert all(rolled[(i + shift) % n] == base[i] for i in range(n))
    raw["data"]["gene_order"] = "as_stored"
    assert build_task(experiment_from_dict(raw, {"data.gene_order_shift": 2})).order[:3].tolist() == [n - 2, n - 1, 0]


def test_a_gene_order_file_orders_the_kept_genes_and_skips_the_others(synthetic_h5ad, tmp_path):
    from conftest import experiment_dict

    from arch_lab.config import experiment_from_dict
    from arch_lab.data.task import build_task

    raw = experiment_dict(synthetic_h5ad, tmp_path)
    genes = list(build_task(experiment_from_dict(raw)).data.genes)
    wanted = genes[::-1][1::2] + genes[::-1][0::2]  # odd positions from the end, then even ones: by hand
    listing = tmp_path / "order.txt"
    # comments, blank lines, padding and genes the data does not hold are all allowed
    listing.write_text("# by hand\n\nNOT_A_GENE\n" + "".join(f"  {g}\n" for g in wanted[:5]) + "\n".join(wanted[5:]))
    raw["data"] |= {"gene_order": "file", "gene_order_file": str(listing)}
    task = build_task(experiment_from_dict(raw))
    assert list(task.spec.gene_names) == wanted
    assert [genes[i] for i in task.order] == wanted
    shifted = build_task(experiment_from_dict(raw, {"data.gene_order_shift": 1}))
    assert list(shifted.spec.gene_names) == [wanted[-1], *wanted[:-1]]
    # relative to the YAML's folder
    rel = experiment_from_dict(raw | {"base_dir": str(tmp_path)}, {"data.gene_order_file": "order.txt"})
    assert list(build_task(rel).spec.gene_names) == wanted


def test_a_gene_order_file_that_cannot_order_the_genes_says_why(synthetic_h5ad, tmp_path):
    from conftest import experiment_dict

    from arch_lab.config import experiment_from_dict
    from arch_lab.data.task import build_task
    from arch_lab.errors import ConfigError, DataError

    raw = experiment_dict(synthetic_h5ad, tmp_path)
    genes = list(build_task(experiment_from_dict(raw)).data.genes)
    listing = tmp_path / "order.txt"
    raw["data"] |= {"gene_order": "file", "gene_order_file": str(listing)}
    cfg = experiment_from_dict(raw)
    with pytest.raises(ConfigError, match=r"order\.txt not found; give a text file with one gene name per line"):
        build_task(cfg)
    listing.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="lists no gene"):
        build_task(cfg)
    listing.write_text("\n".join([*genes, genes[3]]))
    with pytest.raises(ConfigError, match=rf"lists 1 gene\(s\) more than once \(e\.g\. '{genes[3]}'\)"):
        build_task(cfg)
    listing.write_text("\n".join(genes[2:]))
    with pytest.raises(DataError, match=rf"does not list 2 of the data's {len(genes)} genes \(e\.g\. '{genes[0]}', "):
        build_task(cfg)
    for data in ({"gene_order": "file"}, {"gene_order_file": str(listing)}):
        with pytest.raises(ConfigError, match="gene_order: file reads data.gene_order_file"):
            experiment_from_dict(raw | {"data": {**raw["data"], "gene_order": "as_stored", "gene_order_file": None}
                                                  | data})  # fmt: skip
