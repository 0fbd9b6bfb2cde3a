"""The command-line package: entry points, one-line errors, and an import graph without cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import REPO
from typer.testing import CliRunner

from arch_lab.cli import app, main
from arch_lab.cli.errors import friendly, friendly_with
from arch_lab.errors import ArchLabError

runner = CliRunner()


def test_console_script_and_module_entry_points():
    assert callable(main)
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "sweep" in result.stdout and "train" in result.stdout
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0 and "export" in result.stdout
    done = subprocess.run(
        [sys.executable, "-m", "arch_lab.cli", "sweep", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0 and "worker" in done.stdout


def _raises(exc: BaseException):
    def command() -> None:
        raise exc

    return command


@pytest.mark.parametrize(
    ("decorate", "exc", "code", "message"),
    [
        (friendly, ArchLabError("bad key\nsecond line"), 2, "error: bad key"),
        (friendly, KeyboardInterrupt(), 130, "error: interrupted; resume with: arch-lab train --resume RUN_DIR"),
        (friendly_with("stopped: rerun"), KeyboardInterrupt(), 130, "error: stopped: rerun"),
    ],
)
def test_user_errors_are_one_line_and_a_non_zero_exit(decorate, exc, code, message, capsys):
    with pytest.raises(typer.Exit) as stop:
        decorate(_raises(exc))()
    assert stop.value.exit_code == code
    assert capsys.readouterr().err.strip() == message


def _imports(root: Path) -> dict[str, set[str]]:
    """Module -> the arch_lab modules it imports anywhere (lazy imports in functions included; imports under
    ``if TYPE_CHECKING:`` left out, they never run)."""
    modules: dict[str, Path] = {}
    for f in (root / "arch_lab").rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, f in modules.items():
        tree = ast.parse(f.read_text())
        typing_only = {
            id(sub)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for sub in ast.walk(node)
        }
        package = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                edges.update(filter(None, (resolve(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                edges.update(filter(None, (resolve(f"{base}.{a.name}") or resolve(base) for a in node.names)))
        graph[mod] = edges - {mod}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(mod: str, path: list[str]) -> list[str] | None:
        state[mod] = 1
        for nxt in sorted(graph[mod]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state and (found := visit(mod, [mod])):
            return found
    return None


def test_no_import_cycle_in_the_library():
    graph = _imports(REPO)
    assert {"arch_lab.cli.main", "arch_lab.cli.sweep", "arch_lab.cli.errors"} <= set(graph)
    assert "arch_lab.cli.main" not in graph["arch_lab.cli.sweep"] | graph["arch_lab.cli.errors"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
