"""The node's disk stays healthy: a lowered budget is trimmed at start-up (pinned data
excepted and reported), and the inode reserve holds on a real small file system. The CLI as a
subprocess against moto over HTTP."""

import json
import os
import subprocess
import sys

import pytest

SHARDCACHE = [sys.executable, "-m", "shardcache.cli.main"]
OBJECTS = {f"ds/{i:02d}.bin": bytes([i]) * 10_000 for i in range(10)}


def cli(*args, env=None):
    return subprocess.run(
        [*SHARDCACHE, *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=120,
    )


def published(cache, *extra):
    result = cli("status", "--cache-dir", cache, "--output", "json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["published_bytes"], result.stderr


def test_lowering_max_bytes_trims_the_cache_at_start_up(s3_bucket, tmp_path):
    s3_bucket.put(OBJECTS)
    cache = str(tmp_path / "cache")
    assert cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", cache).returncode == 0
    assert published(cache)[0] == 100_000
    # the operator lowers the budget below what one dataset holds: trimmed, not kept whole
    assert 0 < published(cache, "--max-bytes", "35000")[0] <= 35_000
    again = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", cache, "--max-bytes", "35000")
    assert again.returncode == 0, again.stderr
    assert published(cache, "--max-bytes", "35000")[0] <= 35_000


def test_pinned_data_stays_over_a_lowered_budget_and_is_reported(s3_bucket, tmp_path):
    s3_bucket.put(OBJECTS)
    cache = str(tmp_path / "cache")
    pinned = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", cache, "--owner", "keep")
    assert pinned.returncode == 0, pinned.stderr
    size, stderr = published(cache, "--max-bytes", "35000")
    assert size == 100_000
    assert "stays over its budget by 65000 bytes" in stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_the_inode_reserve_holds_on_a_small_file_system(s3_bucket, tmp_path):
    s3_bucket.put({f"ds/{i:03d}": b"x" for i in range(120)})
    fs = tmp_path / "fs"
    fs.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=200", "tmpfs", str(fs)], check=True
    )
    try:
        env = {**os.environ, "SHARDCACHE_MIN_FREE_INODE_FRACTION": "0.5"}
        result = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", str(fs / "c"), env=env)
        st = os.statvfs(fs)
        files = sum(len(f) for _, _, f in os.walk(fs / "c" / "data"))
    finally:
        subprocess.run(["umount", "-l", str(fs)], check=True)
    assert result.returncode in (0, 1), result.stderr
    assert 0 < files < 120  # some objects cached, the rest left to be read through
    # the reserve holds, give or take the few directories and index files made without asking
    assert st.f_favail >= st.f_files // 2 - 8
