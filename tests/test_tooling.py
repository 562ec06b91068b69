"""The project's static checks, run as tests so that CI holds them like any other."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: import package -> source folder (pyproject's package-dir)
PACKAGES = {
    "shardcache": "cache",
    "shardcache_cluster": "daemonset",
    "shardcache_csi": "csi_shim",
}


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["lint-imports"],
        ["mypy"],
    ],
    ids=["ruff", "import-linter", "mypy"],
)
def test_static_check(command):
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_mypy_checks_every_package_under_its_import_name():
    """`mypy` with no argument checks all three packages, each found through its symlink in
    scripts/mypy-path (so imports between them are resolved, not typed Any)."""
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert sorted(mypy["packages"]) == sorted(PACKAGES)
    for package, folder in PACKAGES.items():
        link = ROOT / mypy["mypy_path"] / package
        assert link.resolve() == ROOT / folder, link


def _contracts():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_module_has_a_layer(package):
    """A module left out of a `layers` contract may import anything: each one is placed."""
    (contract,) = [
        c for c in _contracts() if c["type"] == "layers" and c.get("containers") == [package]
    ]
    placed = {name for line in contract["layers"] for name in re.split(r"\s*[|:]\s*", line)}
    folder = ROOT / PACKAGES[package]
    children = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    children |= {p.parent.name for p in folder.glob("*/__init__.py")}
    assert children == placed


def test_formatted():
    """`ruff format` is the formatter (settings in pyproject); the tree stays formatted
    (`.venv/bin/ruff format .` before committing)."""
    result = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
