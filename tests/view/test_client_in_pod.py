"""The client in a pod over the real read-through view: `SHARDCACHE_MOUNTS` names the FUSE
mount (through real CSI gRPC, the real agent on moto behind the slowed proxy); the pod-like
process has no credentials, no agent socket and no writable directory. Nothing is local when
it starts (`prefetch: none`), so its first open of an object is a miss that blocks in the view
until the node has fetched it, and its second open of it is a hit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shardcache_csi.mounter import bind_read_only

from .conftest import PREFIX, ViewEnv, make_objects, needs_fuse, sha

pytestmark = [pytest.mark.mounts, needs_fuse]

POD_SCRIPT = r"""
import hashlib, json, sys
import fsspec
import shardcache.client as sc
from shardcache.client.api import default_client

url, first, second = sys.argv[1:4]
out = {}
with sc.open(url + first) as f:  # a miss: the open blocks in the view until the node has it
    out["miss"] = hashlib.sha256(f.read()).hexdigest()
with fsspec.open("shardcache::" + url + first, "rb") as f:  # now local: a hit
    out["hit"] = hashlib.sha256(f.read()).hexdigest()
fs = fsspec.filesystem("shardcache", target_protocol="s3")
bucket_path = url.split("://", 1)[1]
out["find"] = {k: v["size"] for k, v in fs.find(bucket_path, detail=True).items()}
out["cat"] = hashlib.sha256(fs.cat_file(bucket_path + second)).hexdigest()
client = default_client()
out["stats"] = client.stats().__dict__
out["engine_or_store_opened"] = [client._engine is not None, client._remote is not None]
print(json.dumps(out))
"""


def test_a_pod_reads_a_miss_and_a_hit_through_the_read_through_view(view_env: ViewEnv) -> None:
    view_env.fill(make_objects(24, seed=11))
    target = view_env.target()
    view_env.publish(target, prefetch="none")
    pod_dir = view_env.root / "pod"
    pod_dir.mkdir()
    bind_read_only(str(pod_dir), str(pod_dir))  # even root cannot write here
    first, second = "class-1/0001.bin", "class-3/0013.bin"
    assert view_env.status().objects_local == 0  # nothing local: the first open is a miss
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SHARDCACHE_MOUNTS": json.dumps({view_env.dataset: target}),
        "HOME": str(pod_dir),
        "XDG_CACHE_HOME": str(pod_dir / ".cache"),
        "SHARDCACHE_CACHE_DIR": str(pod_dir / "cache"),
        "TMPDIR": str(pod_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", POD_SCRIPT, view_env.dataset, first, second],
        env=env,
        cwd=pod_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    objects = view_env.objects
    assert out["miss"] == out["hit"] == sha(objects[first])
    assert out["cat"] == sha(objects[second])
    name = view_env.bucket.name
    assert out["find"] == {f"{name}/{PREFIX}{k}": len(v) for k, v in objects.items()}
    assert out["stats"]["view_opens"] == 3
    assert out["stats"]["hits"] == out["stats"]["misses"] == 0  # the view counts those
    assert out["engine_or_store_opened"] == [False, False]
    assert os.listdir(pod_dir) == []
    # the node fetched what was opened, and only that (the listing fetched nothing)
    assert view_env.status().objects_local == 2
    assert Path(target, first).read_bytes() == objects[first]
    view_env.unpublish(target)
