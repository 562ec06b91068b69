"""A tiny, exact kustomize renderer for the deploy tree (CI has no kubectl).

It implements only what daemonset/deploy uses — `resources`, metadata-only `labels`, JSON 6902
`patches` with a kind/name target, a `secretGenerator` of files without hash suffix, and
`replacements` by kind/name and dotted field path — and refuses any other field, so a manifest
change that would need more cannot silently render differently here than in kubectl.
Cross-checked by hand against `kubectl kustomize` (v5.5).
"""

from __future__ import annotations

import base64
import copy
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonpatch
import pytest
import trustme
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "daemonset" / "deploy"
KNOWN = {"apiVersion", "kind", "resources", "labels", "patches", "secretGenerator", "replacements"}


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN
    assert not unknown, f"the test renderer does not implement {unknown}"
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += render(path)
        else:
            objects += [d for d in yaml.safe_load_all(path.read_text()) if d]
    objects += [_secret(directory, g) for g in kustomization.get("secretGenerator", [])]
    for patch in kustomization.get("patches", []):
        ops = yaml.safe_load((directory / patch["path"]).read_text())
        for obj in _select(objects, patch["target"]):
            obj.update(jsonpatch.apply_patch(obj, ops))
    for replacement in kustomization.get("replacements", []):
        _replace(objects, replacement)
    for label_set in kustomization.get("labels", []):
        assert label_set.get("includeSelectors") is False and not label_set.get(
            "includeTemplates"
        ), "only metadata labels are implemented"
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    return objects


def _secret(directory: Path, generator: dict[str, Any]) -> dict[str, Any]:
    assert set(generator) <= {"name", "namespace", "type", "files", "options"}
    options = generator.get("options", {})
    assert options.get("disableNameSuffixHash") is True, "hash suffixes are not implemented"
    data = {name: _b64((directory / name).read_bytes()) for name in generator["files"]}
    metadata = {"name": generator["name"], "namespace": generator["namespace"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": generator.get("type", "Opaque"),
        "data": data,
    }


def _b64(raw: bytes) -> str:
    """Base64 as kustomize writes it: lines of 70 characters when longer than one line."""
    text = base64.b64encode(raw).decode()
    if len(text) <= 70:
        return text
    return "\n".join(text[i : i + 70] for i in range(0, len(text), 70)) + "\n"


def _select(objects: list[dict[str, Any]], target: dict[str, str]) -> list[dict[str, Any]]:
    assert set(target) <= {"kind", "name"}
    found = [
        o
        for o in objects
        if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]
    ]
    assert found, f"nothing matches {target}"
    return found


def _path(field_path: str) -> list[str]:
    return [p.replace("\0", ".") for p in field_path.replace("\\.", "\0").split(".")]


def _replace(objects: list[dict[str, Any]], replacement: dict[str, Any]) -> None:
    source = _select(objects, {k: replacement["source"][k] for k in ("kind", "name")})[0]
    value: Any = source
    for key in _path(replacement["source"]["fieldPath"]):
        value = value[key]
    for target in replacement["targets"]:
        assert set(target.get("options", {})) <= {"create"}
        for obj in _select(objects, target["select"]):
            for field_path in target["fieldPaths"]:
                *parents, last = _path(field_path)
                node: Any = obj
                for key in parents:
                    node = node[int(key)] if isinstance(node, list) else node[key]
                node[last] = copy.deepcopy(value)


def write_self_signed_files(directory: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("shardcache-webhook.shardcache-system.svc")
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))


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
