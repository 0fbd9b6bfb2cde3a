"""Training from data larger than memory: backed h5ad/zarr, chunked sampling, bounded resident memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import experiment_dict, synthetic_adata

from arch_lab import api
from arch_lab.config import DataConfig, experiment_from_dict
from arch_lab.data.backed import BackedMatrix, H5adWriter, normalize_file
from arch_lab.data.preprocess import normalize_log1p
from arch_lab.data.task import build_task, load_data
from arch_lab.errors import ConfigError, DataError
from arch_lab.training.sampling import ChunkedConditionSampler

REPO = Path(__file__).resolve().parents[2]


def write_chunked(
    path: Path,
    *,
    n_cells: int,
    n_genes: int,
    sparse: bool,
    states: int = 4,
    perts: int = 30,
    density: float = 0.5,
    block: int = 2048,
    sort: bool = False,
    seed: int = 0,
) -> Path:
    """A log-normalised-looking perturbation file written block by block (never held whole in memory).

    Rows are in random condition order (``sort=True``: sorted by condition). Perturbation ``P{k}`` raises genes
    ``3k..3k+2``; each state has its own baseline.
    """
    rng = np.random.default_rng(seed)
    labels = ["control"] + [f"P{k}" for k in range(perts)]
    pert = rng.integers(0, len(labels), n_cells)
    state = rng.integers(0, states, n_cells)
    if sort:
        o = np.lexsort((pert, state))
        pert, state = pert[o], state[o]
    obs = pd.DataFrame(
        {"condition": np.array(labels)[pert], "cell_type": np.array([f"s{i}" for i in range(states)])[state]},
        index=[f"c{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"g{i}" for i in range(n_genes)])
    base = 1.0 + 0.3 * np.sin(np.arange(n_genes)[None, :] + np.arange(states)[:, None])
    writer = H5adWriter(path, obs, var, sparse=sparse)
    for lo in range(0, n_cells, block):
        hi = min(lo + block, n_cells)
        mu = base[state[lo:hi]].copy()
        for k in range(1, len(labels)):
            rows = np.flatnonzero(pert[lo:hi] == k)
            g = 3 * (k - 1) % n_genes
            mu[rows, g : g + 3] += 1.5
        x = np.abs(mu + 0.3 * rng.standard_normal(mu.shape)).astype(np.float32) + 1e-3
        if sparse:
            x[rng.random(x.shape) > density] = 0.0
            writer.append(sp.csr_matrix(x))
        else:
            writer.append(x)
    writer.close()
    return path


def backed_experiment(path: Path, tmp_path: Path, **sections: dict) -> dict:
    data = {"path": str(path), "storage": "backed", "chunk_size": 256, "shuffle_buffer": 3}
    return experiment_dict(path, tmp_path, **{**sections, "data": {**data, **sections.get("data", {})}})


# ------------------------------------------------------------------------------------ bounded memory
RSS_SCRIPT = """
import json, sys, resource
from pathlib import Path

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

import numpy, pandas, torch, anndata, h5py, scipy.sparse  # noqa: F401  (imports are not the data)
from arch_lab import api
from arch_lab.config import experiment_from_dict
import arch_lab.harness, arch_lab.methods, arch_lab.training.trainer, arch_lab.training.sampling, arch_lab.metrics  # noqa

# torch's lazy start-up (allocator, optimiser kernels, threads: ~70 MB whatever the data) is paid on a tiny
# in-memory run first, so the measured growth is what the backed data costs
import numpy as np, pandas as pd
rng = np.random.default_rng(0)
tiny = anndata.AnnData(
    X=(rng.random((200, 20)) + 0.5).astype("f4"),
    obs=pd.DataFrame({"condition": np.repeat(["control", "A", "B", "C"], 50), "cell_type": "s"},
                     index=[f"t{i}" for i in range(200)]),
)
tiny.obs["cell_type"] = np.tile(["s0", "s1"], 100)
tiny.write_h5ad(Path(sys.argv[2] + "-tiny.h5ad"))
warm = json.loads(sys.argv[1])
warm["data"] = {"path": sys.argv[2] + "-tiny.h5ad", "covariate_keys": ["cell_type"]}
warm["train"] = {**warm["train"], "max_steps": 3, "eval_every": 3}
api.train(experiment_from_dict(warm), run_dir=Path(sys.argv[2] + "-tiny"))
cfg = experiment_from_dict(json.loads(sys.argv[1]))
before = hwm()
result = api.train(cfg, run_dir=Path(sys.argv[2]))
history = [r["train_loss"] for r in result.fit_summary["history"]]
print(json.dumps({"before": before, "after": hwm(), "history": history, "summary": result.summary}))
"""


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_training_memory_stays_far_below_file_size(tmp_path, sparse):
    # many cells, few genes, many small conditions: the file is large, the held-out cells scored at the end few
    path = write_chunked(tmp_path / "big.h5ad", n_cells=100_000, n_genes=800, perts=120, sparse=sparse, density=0.6)
    size = path.stat().st_size
    assert size > 250e6
    raw = backed_experiment(
        path,
        tmp_path,
        data={"chunk_size": 512, "shuffle_buffer": 4},
        task={"max_heldout_per_state": 1},
        optim={"lr": 3e-3, "batch_size": 128, "conditions_per_batch": 8, "warmup_steps": 5},
        train={"max_steps": 40, "eval_every": 20, "checkpoint_every": 40, "val_conditions": 2, "val_cells": 16},
        flow={"steps": 3},
        eval={"energy_max_cells": 100},
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, json.dumps(raw), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = out["after"] - out["before"]
    print(f"file {size / 1e6:.0f} MB, peak RSS growth {growth / 1e6:.0f} MB")
    # an in-memory run holds at least 2x the file (X plus its gene-ordered copy); the fixed costs here (obs of
    # 100k cells, the shuffle buffer, the evaluation working set) do not grow with the number of cells read
    assert growth < 0.4 * size, f"peak RSS grew {growth / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    history = out["history"]
    assert all(np.isfinite(history))
    assert history[-1] < history[0]
    assert np.isfinite(out["summary"]["energy_distance"])
    assert (tmp_path / "run" / "metrics.json").is_file()
    path.unlink()


# ------------------------------------------------------------------------------------------- sampler
@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("backed")
    return {
        "random": write_chunked(d / "random.h5ad", n_cells=3000, n_genes=40, sparse=True, perts=6),
        "sorted": write_chunked(d / "sorted.h5ad", n_cells=3000, n_genes=40, sparse=False, perts=6, sort=True),
    }


def small_task(path: Path, tmp_path: Path, **data):
    raw = backed_experiment(path, tmp_path, data={"chunk_size": 97, "gene_order": "random", **data})
    return build_task(experiment_from_dict(raw))


@pytest.mark.parametrize("layout", ["random", "sorted"])
def test_one_pass_of_chunks_loads_every_training_row_once(small, tmp_path, layout):
    task = small_task(small[layout], tmp_path)
    sampler = ChunkedConditionSampler(task, torch.device("cpu"), chunk_size=97, shuffle_buffer=3, controls=False)
    g = torch.Generator().manual_seed(0)
    while sampler.stats.refreshes + sampler.n_slots < sampler.chunks_per_epoch:
        sampler.sample(64, 4, g)
    train = (task.obs["split"] == "train").to_numpy()
    assert (sampler.loaded[train] == 1).all()
    assert (sampler.loaded[~train] == 0).all()
    sampler.close()


@pytest.mark.parametrize("layout", ["random", "sorted"])
def test_batches_respect_conditions_and_control_states(small, tmp_path, layout):
    task = small_task(small[layout], tmp_path)
    mem = load_data(DataConfig(path=str(small[layout]), covariate_keys=["cell_type"]))
    X = mem.X[:, task.order]
    sampler = ChunkedConditionSampler(task, torch.device("cpu"), chunk_size=97, shuffle_buffer=3, seed=1)
    g = torch.Generator().manual_seed(0)
    obs = task.obs
    for _ in range(40):
        x, cond, cid = sampler.sample(64, 4, g)
        rows = sampler.last_rows.numpy()
        assert x.shape == (64, task.data.n_genes)
        np.testing.assert_array_equal(x.numpy(), X[rows])
        assert (obs["split"].to_numpy()[rows] == "train").all()
        got = list(zip(obs["state"].to_numpy()[rows], obs["perturbation"].to_numpy()[rows], strict=True))
        want = [(sampler.conditions[i].state, sampler.conditions[i].perturbation) for i in cid.tolist()]
        assert got == want
        assert len(set(cid.tolist())) <= 4
        assert all((cid == c).sum() % 16 == 0 for c in cid.unique())
        x0 = sampler.control_source(cid, g).numpy()
        for j in (0, 31, 63):
            state = sampler.conditions[int(cid[j])].state
            pool = X[task.controls(state, "train")]
            assert np.abs(pool - x0[j]).sum(axis=1).min() == 0.0
    sampler.close()


def test_backed_reads_match_memory_including_chunkwise_gene_selection(small):
    for path in small.values():
        kw = {"path": str(path), "covariate_keys": ["cell_type"], "max_genes": 12}
        mem = load_data(DataConfig(**kw))
        bk = load_data(DataConfig(**kw, storage="backed", chunk_size=50))
        assert isinstance(bk.X, BackedMatrix)
        assert bk.X.shape == mem.X.shape
        assert bk.genes == mem.genes
        pd.testing.assert_frame_equal(bk.obs, mem.obs)
        idx = np.random.default_rng(0).integers(0, mem.n_cells, 500)
        np.testing.assert_array_equal(bk.X[idx], mem.X[idx])
        np.testing.assert_array_equal(bk.X[idx[:7]], mem.X[idx[:7]])  # served from the cache the second time
        with pytest.raises(DataError, match="whole expression matrix"):
            np.asarray(bk.X)


def test_backed_training_matches_memory_statistically(tmp_path):
    a = synthetic_adata(n_genes=24, cells=120, seed=3)
    a = a[np.random.default_rng(0).permutation(a.n_obs)].copy()
    a.write_h5ad(tmp_path / "d.h5ad")
    common = {
        "optim": {"lr": 3e-3, "batch_size": 64, "conditions_per_batch": 4, "warmup_steps": 10},
        "train": {"max_steps": 250, "eval_every": 250, "checkpoint_every": 250},
        "flow": {"steps": 8, "source": "control"},
    }
    results = {}
    for storage in ("memory", "backed"):
        raw = experiment_dict(
            tmp_path / "d.h5ad", tmp_path, **common, data={"storage": storage, "chunk_size": 64}, name=storage
        )
        results[storage] = api.train(experiment_from_dict(raw))
    m, b = results["memory"].summary, results["backed"].summary
    floor = results["memory"].reference["no_change"]
    for key in ("rmse_mean", "energy_distance"):  # same task, split and source cells
        assert floor[key] == pytest.approx(results["backed"].reference["no_change"][key])
    # seed-to-seed spread of either at 250 steps is about 0.2 x floor in rmse_mean, so compare on that scale
    for key in ("rmse_mean", "energy_distance"):
        assert m[key] < 0.5 * floor[key], (key, floor[key], m[key], b[key])
        assert b[key] < 0.5 * floor[key], (key, floor[key], m[key], b[key])
        assert abs(b[key] - m[key]) < 0.35 * floor[key], (key, floor[key], m[key], b[key])
    assert b["pearson_delta"] > 0.8
    assert m["pearson_delta"] > 0.8


# ------------------------------------------------------------------------------------ raw counts, zarr
def test_raw_counts_are_refused_until_preprocessed(tmp_path):
    a = synthetic_adata(n_genes=30, cells=30)
    counts = np.random.default_rng(0).poisson(3.0, size=a.X.shape).astype(np.float32)
    w = H5adWriter(tmp_path / "raw.h5ad", a.obs, a.var, sparse=True)
    for lo in range(0, a.n_obs, 100):
        w.append(sp.csr_matrix(counts[lo : lo + 100]))
    w.close()
    cfg = {"covariate_keys": ["cell_type"], "storage": "backed"}
    with pytest.raises(DataError, match="raw counts.*arch-lab preprocess"):
        load_data(DataConfig(path=str(tmp_path / "raw.h5ad"), **cfg))

    from typer.testing import CliRunner

    from arch_lab.cli import app

    res = CliRunner().invoke(
        app, ["preprocess", str(tmp_path / "raw.h5ad"), str(tmp_path / "norm.h5ad"), "--chunk-size", "70",
              "--max-genes", "10"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    d = load_data(DataConfig(path=str(tmp_path / "norm.h5ad"), **cfg))
    np.testing.assert_allclose(d.X[np.arange(d.n_cells)], normalize_log1p(counts), rtol=1e-5, atol=1e-6)
    hv = load_data(DataConfig(path=str(tmp_path / "norm.h5ad"), gene_key="highly_variable", **cfg))
    assert hv.n_genes == 10
    with pytest.raises(DataError, match="does not hold raw counts"):
        normalize_file(tmp_path / "norm.h5ad", tmp_path / "again.h5ad")
    with pytest.raises(DataError, match="gene_key 'nope' not in var"):
        load_data(DataConfig(path=str(tmp_path / "norm.h5ad"), gene_key="nope", **cfg))
    with pytest.raises(ConfigError, match="gene_key needs storage: backed"):
        experiment_from_dict(experiment_dict(tmp_path / "norm.h5ad", tmp_path, data={"gene_key": "highly_variable"}))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_zarr_store_trains_and_matches_memory(tmp_path, sparse):
    pytest.importorskip("zarr")
    a = synthetic_adata(n_genes=24, cells=40)
    if sparse:
        a.X = sp.csr_matrix(a.X)
    a.write_h5ad(tmp_path / "d.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.write_zarr(tmp_path / "d.zarr")
    kw = {"covariate_keys": ["cell_type"]}
    mem = load_data(DataConfig(path=str(tmp_path / "d.h5ad"), **kw))
    bk = load_data(DataConfig(path=str(tmp_path / "d.zarr"), storage="backed", chunk_size=33, **kw))
    idx = np.arange(mem.n_cells)[::-1]
    np.testing.assert_array_equal(bk.X[idx], mem.X[idx])
    result = api.train(experiment_from_dict(backed_experiment(tmp_path / "d.zarr", tmp_path)))
    assert np.isfinite(result.summary["energy_distance"])
