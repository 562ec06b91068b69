"""The read-through view end to end: real FUSE mounts made through the CSI plugin's real gRPC,
the real agent prefetching from moto behind the slowed cloud-like proxy, the view server and
its keeper as real processes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shardcache.status import ViewCounts

from .conftest import ViewEnv, make_objects, needs_fuse, sha

pytestmark = [pytest.mark.mounts, needs_fuse]

NOBODY = 65534

#: a reader in a child process, as uid NOBODY: opens every file in random order, prints
#: "relpath sha256" per file
READER = r"""
import hashlib, os, random, sys
os.setgid(65534); os.setuid(65534)
root = sys.argv[1]
paths = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
random.Random(int(sys.argv[2])).shuffle(paths)
for p in paths:
    with open(p, "rb") as f:
        print(os.path.relpath(p, root), hashlib.sha256(f.read()).hexdigest(), flush=True)
"""


def scan(root: str) -> dict[str, int]:
    return {
        os.path.relpath(os.path.join(d, f), root): os.stat(os.path.join(d, f)).st_size
        for d, _, files in os.walk(root)
        for f in files
    }


def mount_flags(target: str) -> set[str]:
    with open("/proc/mounts") as f:
        rows = [line.split() for line in f if line.split()[1] == target]
    assert rows, f"{target} is not mounted"
    assert rows[-1][2] == "fuse.shardcache"
    return set(rows[-1][3].split(","))


def test_scan_lists_all_and_a_non_root_reader_gets_exact_bytes(view_env: ViewEnv) -> None:
    view_env.fill(make_objects(120, seed=1))
    target = view_env.target()
    view_env.publish(target)
    local_at_scan = view_env.status().objects_local
    listed = scan(target)
    assert listed == {k: len(v) for k, v in view_env.objects.items()}
    assert local_at_scan < len(view_env.objects) / 2, "the prefetch was not slow enough"
    assert {"ro", "nosuid", "nodev", "noexec", "allow_other"} <= mount_flags(target)
    for write in (
        lambda: os.open(os.path.join(target, "new"), os.O_CREAT | os.O_WRONLY),
        lambda: os.mkdir(os.path.join(target, "d")),
        lambda: os.unlink(os.path.join(target, "class-0/0000.bin")),
    ):
        with pytest.raises(OSError) as info:
            write()
        assert info.value.errno == errno.EROFS
    out = subprocess.run(
        [sys.executable, "-c", READER, target, "7"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = dict(line.split() for line in out.stdout.splitlines())
    assert got == {k: sha(v) for k, v in view_env.objects.items()}
    view_env.unpublish(target)
    assert not os.path.exists(target)


def test_a_deleted_object_fails_the_open_with_eio_and_is_named_in_status(
    view_env: ViewEnv,
) -> None:
    view_env.fill(make_objects(6, seed=2))
    target = view_env.target()
    view_env.publish(target, prefetch="none")
    gone = "class-3/0003.bin"
    view_env.bucket.delete("ds/" + gone)
    with pytest.raises(OSError) as info:
        os.open(os.path.join(target, gone), os.O_RDONLY)
    assert info.value.errno == errno.EIO
    for _ in range(2):  # a miss, then a hit
        with open(os.path.join(target, "class-1/0001.bin"), "rb") as f:
            assert f.read() == view_env.objects["class-1/0001.bin"]
    deadline = time.monotonic() + 15
    while (view_env.status().view or ViewCounts()).opens < 3:  # reported every 2 s
        assert time.monotonic() < deadline, view_env.status()
        time.sleep(0.1)
    assert [f.key for f in view_env.status().open_failures] == [gone]
    counts = view_env.status().view
    assert counts is not None
    assert (counts.hit_opens, counts.miss_opens, counts.failed_opens) == (1, 1, 1)
    assert counts.miss_bytes == counts.hit_bytes == len(view_env.objects["class-1/0001.bin"])
    cli = subprocess.run(
        [
            str(Path(sys.executable).parent / "shardcache"),
            "status",
            "--agent",
            str(view_env.agent.socket),
            view_env.dataset,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert gone in cli.stdout + cli.stderr and "1/3 (33%)" in cli.stdout, cli.stdout
    metrics = view_env.agent.metrics_text()
    assert (
        'shardcache_view_opens_total{dataset="' + view_env.dataset + '",result="failed"} 1'
        in metrics
    )
    view_env.unpublish(target)


def test_without_passthrough_reads_are_served_by_the_view(tmp_path: Path) -> None:
    """An old kernel (no FUSE passthrough): the same view answers READ itself."""
    import threading

    from shardcache_csi import mounter
    from shardcache_csi.view.device import FuseDevice, open_device
    from shardcache_csi.view.fs import MountState, OpenStats, ViewFs
    from shardcache_csi.view.source import CacheSource, SourceConfig
    from shardcache_csi.view.tree import Tree

    data = {f"d/{i}.bin": os.urandom(1000 + 70_000 * i) for i in range(4)}
    (tmp_path / "cache" / "d").mkdir(parents=True)
    for key, value in data.items():
        (tmp_path / "cache" / key).write_bytes(value)
    target = tmp_path / "mnt"
    target.mkdir()
    source = CacheSource(SourceConfig(str(tmp_path / "cache"), "s3://b/p/"), agent=None)  # type: ignore[arg-type]
    fd = open_device()
    device = FuseDevice(fd)
    fs = ViewFs(
        Tree((k, len(v)) for k, v in data.items()),
        source,
        device,
        MountState(),
        OpenStats(),
        lambda job: job(),
        passthrough=False,
    )
    mounter.mount_fuse(fd, str(target), 128 * 1024)

    def serve() -> None:
        while (buf := device.read()) is not None:
            fs.handle(buf)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for key, value in data.items():
            with open(target / key, "rb") as f:
                assert f.read() == value
        assert fs.state.passthrough is False and fs.stats.take()["hit_opens"] == 4
    finally:
        mounter.unmount(str(target), lazy=True)
        thread.join(10)
        os.close(fd)


def test_publish_while_the_view_server_is_down_is_retried_cleanly(view_env: ViewEnv) -> None:
    import grpc

    view_env.fill(make_objects(4, seed=4))
    view_env.server.kill()
    target = view_env.target()
    with pytest.raises(grpc.RpcError) as info:
        view_env.publish(target)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not os.path.exists(target) and view_env.driver.state.all() == []
    assert view_env.status().owners == ()  # the pin was released again
    view_env.restart_server()
    view_env.publish(target)  # kubelet's retry
    view_env.publish(target)  # and once more: idempotent, mounted once
    with open("/proc/mounts") as f:
        assert sum(line.split()[1] == target for line in f) == 1
    assert scan(target) == {k: len(v) for k, v in view_env.objects.items()}
    view_env.unpublish(target)
