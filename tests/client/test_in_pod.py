"""The client in a pod: `SHARDCACHE_MOUNTS` names a real read-only bind mount of a prefetched
dataset; the process has no credentials, no agent socket and no writable cache directory. The
client, the module API and the fsspec protocol read and list through the mount, write nothing
anywhere, and never reach for the store. (A miss through the read-through FUSE view takes the
same code path: an `open()` under the mount; it is tested with the view itself.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from shardcache.client.waiting import prefetch

pytestmark = [
    pytest.mark.mounts,
    pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root (CAP_SYS_ADMIN)"),
]

#: what runs in the pod: every way in, each answer reported as JSON
POD_SCRIPT = r"""
import hashlib, json, sys
import fsspec
import shardcache.client as sc
from shardcache.client.api import default_client

url = sys.argv[1]                      # s3://BUCKET/ds/
bucket_path = url.split("://", 1)[1]   # BUCKET/ds/
out = {}
with fsspec.open("shardcache::" + url + "a.bin", "rb") as f:
    out["fsspec_open"] = hashlib.sha256(f.read()).hexdigest()
with sc.open(url + "sub/b.bin") as f:
    out["api_open"] = hashlib.sha256(f.read()).hexdigest()
fs = fsspec.filesystem("shardcache", target_protocol="s3")
out["cat_file"] = fs.cat_file(bucket_path + "sub/c.txt").decode()
out["cat_range"] = fs.cat_file(bucket_path + "sub/c.txt", start=6, end=16).decode()
out["ls"] = fs.ls(bucket_path, detail=False)
out["ls_sub"] = fs.ls(bucket_path + "sub", detail=True)
out["find"] = fs.find(bucket_path)
out["info_file"] = fs.info(bucket_path + "sub/deeper/d.bin")
out["info_dir"] = fs.info(bucket_path + "sub")
out["local_path"] = str(sc.local_path(url))
out["prefetch"] = str(sc.prefetch(url))
try:
    sc.open(url + "late.bin")
except FileNotFoundError as e:
    out["missing"] = [type(e).__name__, str(e)]
try:
    sc.wait_until_local(url, 0.5, 1)
except ValueError as e:
    out["wait"] = str(e)
client = default_client()
out["stats"] = client.stats().__dict__
out["engine_or_store_opened"] = [client._engine is not None, client._remote is not None]
# fsspec's chained URL loads the s3 class itself; shardcache's own store access never loads
adapter = "shardcache.backends.fsspec_adapter"
out["store_modules"] = sorted(m for m in sys.modules if m.startswith(adapter))
print(json.dumps(out))
"""


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty directory that even root cannot write: a read-only bind mount of itself."""
    from shardcache_csi.mounter import bind_read_only, unmount

    path = tmp_path / "ro"
    path.mkdir()
    bind_read_only(str(path), str(path))
    try:
        yield path
    finally:
        unmount(str(path), lazy=True)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path below `root` with its size and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def test_a_pod_reads_and_lists_through_its_mount_and_writes_nothing(
    bucket, objects, client, tmp_path: Path, read_only_dir: Path
) -> None:
    import hashlib

    from shardcache_csi.mounter import bind_read_only, unmount

    url = bucket.url("ds/")
    local = prefetch(client, url)
    bucket.put({"ds/late.bin": b"listed in the store, never fetched to this node"})
    view = tmp_path / "view"
    view.mkdir()
    bind_read_only(str(local), str(view))  # what the CSI plugin's `view: bind` does
    try:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SHARDCACHE_MOUNTS": json.dumps({url: str(view)}),
            "HOME": str(read_only_dir),
            "XDG_CACHE_HOME": str(read_only_dir / ".cache"),
            "SHARDCACHE_CACHE_DIR": str(read_only_dir / "cache"),
            "TMPDIR": str(read_only_dir),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        assert not [k for k in env if k.startswith(("AWS_", "SHARDCACHE_AGENT"))]
        before = snapshot(tmp_path)
        done = subprocess.run(
            [sys.executable, "-c", POD_SCRIPT, url],
            env=env,
            cwd=read_only_dir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert snapshot(tmp_path) == before  # nothing written: not the view, not the cache
    finally:
        unmount(str(view), lazy=True)
    out = json.loads(done.stdout)

    def sha(key: str) -> str:
        return hashlib.sha256(objects[key]).hexdigest()

    name = bucket.name
    assert out["fsspec_open"] == sha("ds/a.bin")
    assert out["api_open"] == sha("ds/sub/b.bin")
    assert out["cat_file"] == "hello shardcache\n"
    assert out["cat_range"] == "hello shardcache\n"[6:16]
    assert out["ls"] == [f"{name}/ds/a.bin", f"{name}/ds/sub"]
    assert out["ls_sub"] == [
        {"name": f"{name}/ds/sub/b.bin", "size": len(objects["ds/sub/b.bin"]), "type": "file"},
        {"name": f"{name}/ds/sub/c.txt", "size": len(objects["ds/sub/c.txt"]), "type": "file"},
        {"name": f"{name}/ds/sub/deeper", "size": 0, "type": "directory"},
    ]
    assert out["find"] == sorted(f"{name}/{k}" for k in objects if k.startswith("ds/"))
    assert out["info_file"] == {
        "name": f"{name}/ds/sub/deeper/d.bin",
        "size": len(objects["ds/sub/deeper/d.bin"]),
        "type": "file",
    }
    assert out["info_dir"]["type"] == "directory"
    assert out["local_path"] == out["prefetch"] == str(view)
    # not in the view: an error, never a read from the store (there are no credentials)
    assert out["missing"][0] == "NotFoundError" and str(view) in out["missing"][1]
    assert "shardcache.io/wait" in out["wait"]
    assert out["stats"]["view_opens"] == 4
    assert out["stats"]["hits"] == out["stats"]["misses"] == out["stats"]["fallbacks"] == 0
    assert out["engine_or_store_opened"] == [False, False]
    assert out["store_modules"] == []
