"""The packaging people expect: a version, a licence matching pyproject.toml, a light ``import arch_lab`` and a
wheel that builds with every module and the ``arch-lab`` command."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from conftest import REPO

import arch_lab

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_license_file_matches_pyproject():
    project = PYPROJECT["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, the arch_lab authors" in text
    assert "Neither the name of the copyright holder nor the names of its" in text


def test_version_has_one_source():
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "arch_lab.__version__"}
    assert arch_lab.__version__.count(".") == 2


def test_import_arch_lab_is_light():
    code = "import sys, arch_lab; print('torch' in sys.modules, arch_lab.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.split() == ["False", arch_lab.__version__]


def test_extras_name_what_optional_features_import():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(d.startswith("scanpy") for d in extras["scverse"])
    assert any(d.startswith("scikit-misc") for d in extras["scverse"])
    assert "arch-lab[scverse]" in extras["dev"]  # the tests select genes with seurat_v3
    assert any(d.startswith("build") for d in extras["dev"])
    assert extras["wandb"] == ["wandb>=0.16"]
    assert extras["mlflow"] == ["mlflow>=2.10"]
    assert any(d.startswith("tensorboard") for d in PYPROJECT["project"]["dependencies"])


@pytest.mark.slow
def test_wheel_builds_with_every_module_the_command_and_the_license(tmp_path):
    pytest.importorskip("build")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "arch_lab", src / "arch_lab", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"),
                           str(src)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name == f"arch_lab-{arch_lab.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(REPO)) for p in (REPO / "arch_lab").rglob("*.py")}
    assert modules <= names
    info = f"arch_lab-{arch_lab.__version__}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    wheel_zip = zipfile.ZipFile(wheel)
    metadata = wheel_zip.read(f"{info}/METADATA").decode()
    assert f"Version: {arch_lab.__version__}" in metadata
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "arch-lab = arch_lab.cli:main" in wheel_zip.read(f"{info}/entry_points.txt").decode()
