"""``arch-lab compare``: rows reused only for the same resolved config, --fresh, and generated tables written between
markers so that hand-written text (``docs/results.md``'s header) survives a regeneration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, experiment_dict
from typer.testing import CliRunner

from arch_lab.cli import app
from arch_lab.errors import ArchLabError
from arch_lab.scoreboard import BEGIN, END, FLOOR, config_key, job_config, run_scoreboard, write_generated

HEADER = "# My results\n\nHand-written notes that a regeneration must keep.\n"


@pytest.fixture
def bench(synthetic_h5ad: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 6, "eval_every": 6, "checkpoint_every": 6})
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "results.md").write_text(HEADER)
    return tmp_path


def test_compare_reuses_only_rows_with_the_same_resolved_config(bench: Path):
    exp, out = [bench / "exp.yaml"], bench / "results.md"
    said: list[str] = []
    first = run_scoreboard(exp, ["no_change", "mlp"], out=out, progress=False, say=said.append)
    assert (first.reused, first.trained, first.source) == (0, 2, None)
    table = pd.read_csv(bench / "results.csv")
    assert list(table["entry"]) == ["no_change", FLOOR, "ceiling (split-half)", "mlp"]
    assert set(table["split"]) == {"test"}
    assert table["config_key"].notna().all()
    assert (bench / "runs" / "scoreboard").is_dir()
    text = out.read_text()
    assert text.startswith(HEADER)
    assert text.count(BEGIN) == text.count(END) == 1
    assert "### synthetic (test split)" in text

    again = run_scoreboard(exp, ["no_change", "mlp"], out=out, progress=False, say=said.append)
    assert (again.reused, again.trained, again.source, again.ignored) == (2, 0, bench / "results.csv", 0)
    assert said[-1].startswith(f"reusing 2 of 2 results from {bench / 'results.csv'}")
    pd.testing.assert_frame_equal(pd.read_csv(bench / "results.csv"), table)

    # another budget is another resolved config: nothing is reused, the stale rows are said and dropped
    longer = run_scoreboard(
        exp, ["no_change", "mlp"], out=out, overrides={"train.max_steps": 8}, progress=False, say=said.append
    )
    assert (longer.reused, longer.trained, longer.ignored) == (0, 2, 2)
    assert "2 rows there have another config" in said[-1]
    rows = pd.read_csv(bench / "results.csv")
    assert len(rows) == 4
    entries = rows["entry"].isin(["no_change", "mlp"])
    assert not set(rows.loc[entries, "config_key"]) & set(table["config_key"])
    # the floor and ceiling do not depend on the training budget: those rows are kept
    assert (
        rows.loc[~entries, "config_key"].tolist()
        == table.loc[~table["entry"].isin(["no_change", "mlp"]), "config_key"].tolist()
    )
    assert out.read_text().startswith(HEADER)

    fresh = run_scoreboard(
        exp, ["no_change"], out=out, overrides={"train.max_steps": 8}, fresh=True, progress=False, say=said.append
    )
    assert (fresh.reused, fresh.trained) == (0, 1)
    assert said[-1] == "--fresh: training all 1 jobs"


def test_compare_keeps_the_rows_of_tasks_it_does_not_run(bench: Path):
    raw = yaml.safe_load((bench / "exp.yaml").read_text())
    (bench / "other.yaml").write_text(yaml.safe_dump({**raw, "name": "other_task"}))
    out, said = bench / "results.md", []
    run_scoreboard([bench / "exp.yaml", bench / "other.yaml"], ["no_change"], out=out, progress=False)
    one = run_scoreboard([bench / "exp.yaml"], ["no_change"], out=out, overrides={"eval.n_cells": 20}, say=said.append)
    assert (one.reused, one.trained, one.ignored, one.kept) == (0, 1, 1, 1)
    assert "1 rows there have another config (or none recorded) and are replaced" in said[-1]
    assert "1 rows of other tasks are kept as they are" in said[-1]
    rows = pd.read_csv(bench / "results.csv")
    assert rows.groupby("task")["entry"].apply(list).to_dict() == {
        "synthetic": ["no_change", FLOOR, "ceiling (split-half)"],
        "other_task": ["no_change", FLOOR, "ceiling (split-half)"],
    }
    assert "### other_task (test split)" in out.read_text()


def test_config_key_ignores_only_where_files_go(bench: Path):
    exp = bench / "exp.yaml"
    base = job_config(exp, "mlp", 0)
    assert config_key(base) == config_key(base.model_copy(update={"output_dir": "elsewhere", "base_dir": "/x"}))
    assert config_key(base) != config_key(job_config(exp, "mlp", 1))
    assert config_key(base) != config_key(job_config(exp, "unet1d", 0))
    assert config_key(base) != config_key(job_config(exp, "mlp", 0, {"optim.lr": 1e-4}))


def test_regenerating_keeps_the_hand_written_text_of_docs_results(tmp_path: Path):
    """``docs/results.md`` holds one generated block (the recipe check's markers); rewriting it keeps the rest."""
    begin, end = "<!-- recipe check: begin -->", "<!-- recipe check: end -->"
    shipped = (REPO / "docs" / "results.md").read_text()
    assert shipped.count(begin) == shipped.count(end) == 1
    copy = tmp_path / "results.md"
    copy.write_text(shipped)
    write_generated(copy, "### new table\n", begin, end)
    text = copy.read_text()
    before, after = shipped.split(begin)[0], shipped.split(end)[1]
    assert text == f"{before}{begin}\n### new table\n{end}{after}"
    assert "## The recommended recipe against the baselines" in text
    write_generated(copy, "| compare |\n")  # the default markers (arch-lab compare) are a separate block
    assert copy.read_text().startswith(f"{before}{begin}\n### new table\n{end}")
    assert copy.read_text().endswith(f"{BEGIN}\n| compare |\n{END}\n")

    bare = tmp_path / "notes.md"
    bare.write_text("# Notes\n")
    write_generated(bare, "| a |\n")
    assert bare.read_text() == f"# Notes\n\n{BEGIN}\n| a |\n{END}\n"
    broken = tmp_path / "broken.md"
    broken.write_text(f"# Notes\n{END}\n{BEGIN}\n")
    with pytest.raises(ArchLabError, match="incomplete or out of order"):
        write_generated(broken, "x")
    assert broken.read_text() == f"# Notes\n{END}\n{BEGIN}\n"


def test_compare_command_says_what_it_reused(bench: Path):
    args = ["compare", str(bench / "exp.yaml"), "-m", "no_change", "--out", str(bench / "results.md")]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "no earlier results to reuse; training all 1 jobs" in first.stderr
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert f"reusing 1 of 1 results from {bench / 'results.csv'}" in second.stderr
    assert "1 reused, 0 trained" in second.stdout
    fresh = CliRunner().invoke(app, [*args, "--fresh"])
    assert "--fresh: training all 1 jobs" in fresh.stderr
    assert (bench / "results.md").read_text().startswith(HEADER)
