"""Exactly the dataset, nothing else: a dataset volume shows its objects only, and the wait
step reads progress from its own `view: status` volume (the dataset's status directory, apart
from the data tree). Real gRPC, real bind mounts, the real agent on moto, and the real
`shardcache wait` console script as the webhook's non-root init container runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from shardcache.store.statusfile import LEGACY_DIR

from .conftest import (
    NAMESPACE,
    POD_UID,
    RPC_TIMEOUT_S,
    Client,
    Env,
    needs_root,
    publish_request,
)

pytestmark = [pytest.mark.mounts, needs_root]

#: an ImageFolder-shaped dataset: one directory per class, images inside
FILES = {
    "cat/0001.jpg": b"\xff\xd8 a cat",
    "cat/0002.jpg": b"\xff\xd8 another cat",
    "dog/0001.jpg": b"\xff\xd8 a dog",
    "dog/deep/0002.png": b"\x89PNG a dog further down",
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
#: the uid the webhook's wait container runs as (WAIT_UID)
WAIT_UID = 65532
CLI = Path(sys.executable).parent / "shardcache"


def image_folder(root: str) -> tuple[list[str], list[tuple[str, int]]]:
    """What torchvision's `ImageFolder(root)` does at construction, step by step: every
    sub-directory of the root is a class, hidden ones included (`find_classes` scans with
    `os.scandir` and keeps `entry.is_dir()`); each class is walked for files with an image
    extension; a class without one fails the whole dataset (`make_dataset`'s "Found no valid
    file for the classes ..."). Returns the classes and the (path, class index) samples."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"Couldn't find any class folder in {root}.")
    samples: list[tuple[str, int]] = []
    found: set[str] = set()
    for index, name in enumerate(classes):
        for dirpath, _, filenames in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    samples.append((os.path.join(dirpath, filename), index))
                    found.add(name)
    empty = sorted(set(classes) - found)
    if empty:
        raise FileNotFoundError(f"Found no valid file for the classes {', '.join(empty)}. ")
    return classes, samples


def test_the_scan_fails_like_image_folder_on_a_stray_directory(tmp_path: Path) -> None:
    """The check below can fail: the layout of older agents broke it exactly like this."""
    for name, data in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    assert image_folder(str(tmp_path))[0] == ["cat", "dog"]
    (tmp_path / LEGACY_DIR).mkdir()
    (tmp_path / LEGACY_DIR / "status.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no valid file for the classes \.shardcache"):
        image_folder(str(tmp_path))


def read_until(path: Path, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The file's document once `done` holds (the agent rewrites it about once a second)."""
    deadline = time.monotonic() + 60.0
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = json.loads(path.read_text())
        if done(doc):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"{path} never got there; last: {doc}")


def publish(client: Client, target: str, env: Env, view: str, volume_id: str) -> None:
    req = publish_request(target, dataset=env.dataset, volume_id=volume_id, view=view)
    client.node.NodePublishVolume(req, timeout=RPC_TIMEOUT_S)


def unpublish(client: Client, target: str, volume_id: str) -> None:
    from shardcache_csi.proto import csi_pb2

    req = csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=target)
    client.node.NodeUnpublishVolume(req, timeout=RPC_TIMEOUT_S)


def run_wait_as_pod(status_dir: str, url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`shardcache wait` as the init container runs it: the status volume and nothing else
    (no socket, no credentials, no writable cache directory). As root here, since this
    machine's interpreter is not reachable by other users; `read_as` checks the uid part."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "SHARDCACHE_STATUS_DIR": status_dir,
        "SHARDCACHE_CACHE_DIR": str(tmp / "never-created"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        [str(CLI), "wait", url, "--fraction", "1", "--timeout", "60", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def read_as(uid: int, path: str) -> bytes:
    """The file's bytes as read by a process of `uid` (a forked child that drops to it)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, read, report, exit without running any cleanup
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with open(path, "rb") as f:
                os.write(w, f.read())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"uid {uid} cannot read {path}"
    return data


def test_dataset_volume_is_exactly_the_dataset_and_status_volume_feeds_wait(
    env: Env, plugin: Client
) -> None:
    env.fill(FILES)
    os.chmod(env.root, 0o755)  # the pod's uid must reach the targets below it
    data, status = env.target(volume="data"), env.target(volume="status")
    # the status volume first, as kubelet may: it registers the dataset itself
    publish(plugin, status, env, "status", "csi-status")
    assert os.listdir(status) == ["status.json"]
    publish(plugin, data, env, "bind", "csi-data")

    waited = run_wait_as_pod(status, env.dataset, env.root)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["reached"] is True
    assert not (env.root / "never-created").exists()
    seen = json.loads(read_as(WAIT_UID, os.path.join(status, "status.json")))
    assert seen["url"] == env.dataset and seen["state"] == "complete"

    # the dataset's root holds its objects and nothing else: ImageFolder takes it as it is
    classes, samples = image_folder(data)
    assert classes == ["cat", "dog"]
    assert {os.path.relpath(p, data): i for p, i in samples} == {
        "cat/0001.jpg": 0,
        "cat/0002.jpg": 0,
        "dog/0001.jpg": 1,
        "dog/deep/0002.png": 1,
    }
    every = {os.path.relpath(os.path.join(d, f), data) for d, _, fs in os.walk(data) for f in fs}
    assert every == set(FILES)
    for name, body in FILES.items():
        assert Path(data, name).read_bytes() == body
    # and the status volume holds the status alone, read-only, none of the data
    assert os.listdir(status) == ["status.json"]
    with pytest.raises(OSError):
        Path(status, "status.json").write_text("{}")

    unpublish(plugin, status, "csi-status")
    assert env.owners() == [POD_UID]  # the data volume still pins it
    unpublish(plugin, data, "csi-data")
    assert env.owners() == []


def test_a_status_volume_sees_later_progress(env: Env, plugin: Client) -> None:
    """The bind mount is of the directory, so each atomic replacement of the file shows."""
    env.fill(FILES)
    status = env.target(volume="status")
    publish(plugin, status, env, "status", "csi-status")
    env.wait_local()
    env.fill({"cat/0003.jpg": b"\xff\xd8 a late cat"})
    # a second registration that lists again (as the pod watcher would, for the pod's namespace,
    # once the saved listing is older than listing_max_age_s; refresh asks for it now)
    env.agent.client.register(env.dataset, "job-late", namespace=NAMESPACE, refresh=True)
    env.wait_local()
    doc = read_until(Path(status, "status.json"), lambda d: d["objects_local"] == len(FILES) + 1)
    assert doc["url"] == env.dataset and doc["objects_total"] == len(FILES) + 1
    env.agent.client.release(env.dataset, "job-late")
    unpublish(plugin, status, "csi-status")
