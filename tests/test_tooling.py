"""The project's static checks, run as tests so that CI holds them like any other."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", [
    ["ruff", "check", "."],
    ["lint-imports"],
    ["mypy", "cache"],
], ids=["ruff", "import-linter", "mypy"])
def test_static_check(command):
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
