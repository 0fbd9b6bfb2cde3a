"""``analysis/gene_order_stats.py``: each order statistic on hand-made profiles, its invariance to reading the axis
backwards, the interval and detectable-rho formulas against their definitions, and the correlation table against
scipy and the project's Holm.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from scipy import stats

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analysis import gene_order_stats as gos
from arch_lab.analysis.multiplicity import holm

G = 16


def test_high_frequency_share_of_slow_fast_and_flat_profiles():
    slow = np.cos(np.pi * (np.arange(G) + 0.5) * 1 / G)  # the first DCT-II basis vector: all energy at k = 1
    fast = np.cos(np.pi * (np.arange(G) + 0.5) * (G - 1) / G)  # the last one: near gene-to-gene alternation
    assert gos.high_frequency_share(slow + 3.0) == pytest.approx(0.0, abs=1e-12)  # the mean is removed
    assert gos.high_frequency_share(fast) == pytest.approx(1.0)
    assert math.isnan(gos.high_frequency_share(np.full(G, 2.0)))
    # orthogonal basis vectors add their energies: 1 part slow, 4 parts fast
    assert gos.high_frequency_share(slow + 2 * fast) == pytest.approx(4 / 5)
    # white noise spreads evenly over the G - 1 frequencies left once the mean is removed, G / 2 of them on top
    noise = np.random.default_rng(0).normal(size=(400, G))
    assert np.mean([gos.high_frequency_share(row) for row in noise]) == pytest.approx((G / 2) / (G - 1), abs=0.02)


def test_edge_share_and_lag1_autocorrelation_by_hand():
    shifts = np.zeros((2, 20))
    shifts[0, 0] = 3.0  # 9 on the left edge
    shifts[1, 19] = 1.0  # 1 on the right edge
    shifts[1, 10] = 4.0  # 16 in the middle
    assert gos.edge_share(shifts, edge=2) == pytest.approx(10 / 26)
    assert gos.edge_share(shifts, edge=10) == pytest.approx(1.0)
    assert gos.lag1_autocorrelation((-1.0) ** np.arange(G)) == pytest.approx(-1.0)
    assert gos.lag1_autocorrelation(np.arange(G, dtype=float)) == pytest.approx(1.0)


def test_statistics_read_the_order_and_ignore_its_direction():
    rng = np.random.default_rng(0)
    means, shifts = rng.normal(size=G), rng.normal(size=(3, G))
    identity = gos.order_statistics(means, shifts, np.arange(G))
    backwards = gos.order_statistics(means, shifts, np.arange(G)[::-1])
    assert set(identity) == set(gos.STATISTICS)
    for name in gos.STATISTICS:  # a convolution with zero padding on both ends cannot tell the two apart either
        assert backwards[name] == pytest.approx(identity[name]), name
    # sorting the genes by their mean makes the mean profile smooth: its high-frequency share drops
    smooth = gos.order_statistics(means, shifts, np.argsort(means))
    assert smooth["hf_mean"] < 0.1 < identity["hf_mean"]


def test_percentile_counts_ties_half():
    null = np.array([1.0, 2.0, 2.0, 3.0])
    assert gos.percentile(2.0, null) == pytest.approx(0.5)
    assert gos.percentile(0.0, null) == 0.0
    assert gos.percentile(9.0, null) == 1.0


def test_spearman_interval_and_detectable_rho_follow_their_definitions():
    low, high = gos.spearman_interval(0.0, 20, 0.95)
    half = math.tanh(1.959963984540054 * math.sqrt(1 / 17))
    assert (low, high) == pytest.approx((-half, half))
    low, high = gos.spearman_interval(0.5, 20, 0.95)
    z, se = math.atanh(0.5), math.sqrt((1 + 0.125) / 17)
    assert (low, high) == pytest.approx((math.tanh(z - 1.959963984540054 * se), math.tanh(z + 1.959963984540054 * se)))
    rho = gos.smallest_detectable_rho(20, 0.0125)
    t = rho * math.sqrt(18 / (1 - rho**2))
    assert 2 * stats.t.sf(t, 18) == pytest.approx(0.0125)


def test_lottery_correlations_match_scipy_and_holm():
    rng = np.random.default_rng(1)
    n = 20
    table = pd.DataFrame({name: rng.normal(size=n) for name in gos.STATISTICS})
    table["study"] = gos.LOTTERY
    table[f"{gos.UNET}_energy"] = table["hf_mean"] * 2 + rng.normal(scale=0.1, size=n)  # strongly related
    table[f"{gos.CONTROL}_energy"] = rng.normal(size=n)
    stored = table.iloc[:1].assign(study=gos.STORED[0], hf_mean=99.0)  # not in the lottery: left out
    corr = gos.lottery_correlations(pd.concat([table, stored], ignore_index=True))
    assert len(corr) == 2 * len(gos.STATISTICS)
    assert set(corr["n_orders"]) == {n}
    primary = corr[corr["arm"] == gos.UNET]
    for row in corr.itertuples():
        expected = stats.spearmanr(table[row.statistic], table[f"{row.arm}_energy"])
        assert row.rho == pytest.approx(expected.statistic)
        assert row.p == pytest.approx(expected.pvalue)
        assert row.low < row.rho < row.high
    np.testing.assert_allclose(primary["p_holm"], holm(primary["p"].to_numpy()))
    assert corr.loc[corr["arm"] == gos.CONTROL, "p_holm"].isna().all()  # the control is not in the family
    assert primary.set_index("statistic").loc["hf_mean", "p_holm"] < 0.01


def test_readout_correlations_match_scipy_and_report_the_gap_to_the_lottery(tmp_path):
    assert gos.readout_correlations(tmp_path) is None  # no re-run table: no section
    rng = np.random.default_rng(2)
    n = 20
    energy = rng.uniform(0.8, 2.2, size=n)
    lottery = pd.DataFrame({"arm": gos.UNET, "seed": np.arange(n), "energy_distance": energy})
    mlp = lottery.assign(arm=gos.MLP, energy_distance=3.0)  # other arms are left out
    pd.concat([lottery, mlp]).to_csv(tmp_path / f"{gos.LOTTERY}.csv", index=False)
    shift = np.zeros(n)
    shift[7] = 0.004  # the re-run's energy differs for one seed
    rerun = pd.DataFrame(
        {
            "arm": gos.UNET,
            "seed": np.arange(n)[::-1],  # row order does not matter: matched by seed
            "energy_distance": (energy + shift)[::-1],
            "readout_source_sensitivity": (3 * energy + rng.normal(scale=0.05, size=n))[::-1],
            "gene_spread_ratio": rng.normal(1.0, 0.1, size=n),
            "readout_source_velocity_gain": rng.normal(0.9, 0.02, size=n),
        }
    )
    rerun.to_csv(tmp_path / f"{gos.READOUT_STUDY}.csv", index=False)
    df, summary = gos.readout_correlations(tmp_path)
    assert summary["max_gap"] == pytest.approx(0.004)
    assert summary["sd_gap"] == pytest.approx(np.std(shift, ddof=1))
    assert summary["rho_runs"] == pytest.approx(stats.spearmanr(energy + shift, energy).statistic)
    assert summary["sd_lottery"] == pytest.approx(np.std(energy, ddof=1))
    assert math.isnan(summary["rho_cosine"])  # no cosine column in this table
    assert list(df["readout"]) == list(gos.READOUTS)
    for row in df.itertuples():
        expected = stats.spearmanr(rerun[row.readout], rerun["energy_distance"])
        assert row.rho == pytest.approx(expected.statistic)
        assert row.p == pytest.approx(expected.pvalue)
        assert row.low < row.rho < row.high
        assert row.min <= row.median <= row.max
    np.testing.assert_allclose(df["p_holm"], holm(df["p"].to_numpy()))
    assert df.set_index("readout").loc["readout_source_sensitivity", "rho"] > 0.9
    text = "\n".join(gos.readout_report((df, summary)))
    assert "differ from the lottery's by up to 0.00 (standard deviation of the differences 0.00" in text
    assert text.count("\n| readout_") + text.count("\n| gene_") == len(gos.READOUTS)


def test_shifted_rows_read_each_arms_rolled_order_and_average_its_runs(tmp_path):
    assert gos.shifted_rows(tmp_path, 10) is None  # no study table: no section
    sweep = gos.load_sweep(gos.PROBES / f"{gos.SHIFTED}.yaml")
    arms = [v["arm"] for v in sweep.grid()]
    rows = [{"arm": arm, "seed": s, "energy_distance": 1.0 + i + 0.1 * s, "readout_source_sensitivity": 2.0 * i + s,
             "floor_energy_distance": 3.5} for i, arm in enumerate(arms) for s in range(2)]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / f"{gos.SHIFTED}.csv", index=False)
    table = gos.shifted_rows(tmp_path, 50).set_index("arm")
    assert gos.MLP not in table.index  # the MLP reads no order: it is the reference column
    assert table.loc["unet1d_shift_32", "shift"] == 32
    assert table.loc["unet1d_reversed", "gene_order"] == "reversed"
    i = arms.index("unet1d_shift_4")
    assert table.loc["unet1d_shift_4", "unet1d_energy"] == pytest.approx(1.0 + i + 0.05)
    assert table.loc["unet1d_shift_4", "source_sensitivity"] == pytest.approx(2.0 * i + 0.5)
    assert table["mlp_matched_energy"].iloc[0] == pytest.approx(1.0 + arms.index(gos.MLP) + 0.05)
    # the statistics of the rolled order, by hand: the stored order's profiles rolled by 4
    task = gos.build_task(sweep.experiment({"arm": "unet1d"}, 0))
    means, shifts = gos.profiles(task)
    by_hand = gos.edge_share(shifts[:, np.roll(np.arange(means.size), 4)])
    assert table.loc["unet1d_shift_4", "edge_share"] == pytest.approx(by_hand)
    assert table.loc["unet1d_reversed", "edge_share"] == pytest.approx(table.loc["unet1d", "edge_share"])
    assert table.loc["unet1d_shift_4", "edge_share"] != pytest.approx(table.loc["unet1d", "edge_share"])
    text = "\n".join(gos.shifted_report(table.reset_index()))
    assert "| as_stored | 32 |" in text


def test_shifted_rows_join_the_more_rolls_when_their_table_is_there(tmp_path):
    base = gos.load_sweep(gos.PROBES / f"{gos.SHIFTED}.yaml")
    pd.DataFrame([{"arm": v["arm"], "seed": 0, "energy_distance": 2.0, "floor_energy_distance": 3.5}
                  for v in base.grid()]).to_csv(tmp_path / f"{gos.SHIFTED}.csv", index=False)  # fmt: skip
    alone = gos.shifted_rows(tmp_path, 20)
    more = gos.SHIFTED_MORE[0]
    arms = [v["arm"] for v in gos.load_sweep(gos.PROBES / f"{more}.yaml").grid()]
    pd.DataFrame([{"arm": arm, "seed": s, "energy_distance": 1.0 + s} for arm in arms for s in range(2)]).to_csv(
        tmp_path / f"{more}.csv", index=False
    )
    joined = gos.shifted_rows(tmp_path, 20)
    assert len(joined) == len(alone) + len(arms)
    added = joined[joined["study"] == more].set_index("shift")
    assert sorted(added.index) == [8, 16, 48, 96]
    assert (added["unet1d_energy"] == 1.5).all()
    assert added["source_sensitivity"].isna().all()  # that table has no read-out column
    assert list(joined["shift"][joined["gene_order"] == "as_stored"]) == sorted(
        joined["shift"][joined["gene_order"] == "as_stored"]
    )
