"""`shardcache prefetch URL --partition I/N` and `wait --partition` on one machine (in-process
engine, a real moto S3 server over HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from shardcache.partition import partition
from support import tree

SHARDCACHE = [sys.executable, "-m", "shardcache.cli.main"]
DATA = {f"ds/part-{i:02d}.bin": os.urandom(3000 + i) for i in range(10)}
KEYS = sorted(DATA)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SHARDCACHE, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )


def test_prefetch_a_share_then_wait_for_it(s3_bucket, tmp_path):
    s3_bucket.put(DATA)
    cache, url = str(tmp_path / "c"), s3_bucket.url("ds/")
    done = cli("prefetch", url, "--partition", "1/3", "--cache-dir", cache, "--output", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    mine = partition(KEYS, 1, 3)
    assert report["objects_downloaded"] == len(mine) and report["objects_total"] == len(KEYS)
    files = tree(report["local_dir"])
    assert {f"ds/{k}": v for k, v in files.items() if not k.startswith(".")} == {
        k: DATA[k] for k in mine
    }

    def wait(*extra: str) -> dict[str, object]:
        done = cli(
            "wait",
            url,
            "--fraction",
            "1",
            "--timeout",
            "1",
            "--cache-dir",
            cache,
            "--output",
            "json",
            *extra,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    assert wait("--partition", "1/3")["reached"] is True
    assert wait("--partition", "0/3")["reached"] is False  # another member's share
    whole = wait()
    assert whole["reached"] is False
    assert whole["fraction_local"] == pytest.approx(
        sum(len(DATA[k]) for k in mine) / sum(map(len, DATA.values())), abs=1e-6
    )

    status = json.loads(cli("status", url, "--cache-dir", cache, "--output", "json").stdout)
    [ds] = status["datasets"]
    assert ds["objects_local"] == len(mine) and ds["objects_total"] == len(KEYS)

    again = cli("prefetch", url, "--cache-dir", cache, "--output", "json")  # the rest
    assert json.loads(again.stdout)["objects_downloaded"] == len(KEYS) - len(mine)


@pytest.mark.parametrize("bad", ["3/3", "0/0", "x/3", "index/3"])
def test_a_bad_partition_is_a_usage_error(s3_bucket, tmp_path, bad):
    result = cli(
        "prefetch", s3_bucket.url("ds/"), "--partition", bad, "--cache-dir", str(tmp_path / "c")
    )
    assert result.returncode == 2
    assert "--partition" in result.stderr and "Traceback" not in result.stderr
