"""The `shardcache` CLI end to end, as subprocesses, against real emulators over HTTP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shardcache.testkit.proxy import CloudProxy, ProxyConfig
from support import tree

SHARDCACHE = [sys.executable, "-m", "shardcache.cli.main"]


def cli(*args, env=None, timeout=120):
    return subprocess.run(
        [*SHARDCACHE, *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        timeout=timeout,
    )


def sample(prefix="ds/"):
    return {
        f"{prefix}plain.bin": os.urandom(1000),
        f"{prefix}ünïcödé/名前.txt": "héllo".encode(),
        f"{prefix}with space/two  spaces.txt": b"spaces",
        f"{prefix}empty": b"",
        f"{prefix}big.bin": os.urandom(20 * 1024 * 1024 + 3),  # 3 ranged parts of 8 MiB
    }


@pytest.fixture(params=["s3", "gcs", "azure"])
def any_bucket(request):
    return request.getfixturevalue(
        {"s3": "s3_bucket", "gcs": "gcs_bucket", "azure": "azure_container"}[request.param]
    )


def test_prefetch_round_trip_and_rerun(any_bucket, tmp_path):
    objects = sample()
    any_bucket.put(objects)
    cache = str(tmp_path / "cache")
    first = cli("prefetch", any_bucket.url("ds/"), "--cache-dir", cache, "--output", "json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["objects_downloaded"] == len(objects)
    assert tree(report["local_dir"]) == {k.removeprefix("ds/"): v for k, v in objects.items()}

    second = json.loads(
        cli("prefetch", any_bucket.url("ds/"), "--cache-dir", cache, "--output", "json").stdout
    )
    assert second["objects_downloaded"] == 0 and second["listing_reused"]
    assert second["objects_already_local"] == len(objects)

    any_bucket.put({"ds/plain.bin": b"changed"})
    third = json.loads(
        cli(
            "prefetch", any_bucket.url("ds/"), "--cache-dir", cache, "--output", "json", "--refresh"
        ).stdout
    )
    assert third["objects_downloaded"] == 1
    assert Path(report["local_dir"], "plain.bin").read_bytes() == b"changed"

    status = json.loads(cli("status", "--cache-dir", cache, "--output", "json").stdout)
    [ds] = status["datasets"]
    assert ds["state"] == "complete" and ds["fraction_local"] == 1.0
    verify = cli("verify", any_bucket.url("ds/"), "--cache-dir", cache)
    assert verify.returncode == 0 and "0 damaged" in verify.stdout


def test_traversal_keys_are_refused_and_reported(s3_bucket, tmp_path):
    s3_bucket.put({"ds/ok": b"fine", "ds/../outside": b"evil", "ds/a//b": b"x"})
    result = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 0
    assert "refused key 'ds/../outside'" in result.stderr
    assert "refused key 'ds/a//b'" in result.stderr
    assert not any("outside" in p.name for p in tmp_path.rglob("*"))


def test_path_status_evict(s3_bucket, tmp_path):
    s3_bucket.put({"ds/x": b"1", "ds/y/z": b"2"})
    cache = str(tmp_path / "c")
    assert cli("prefetch", s3_bucket.url("ds"), "--cache-dir", cache).returncode == 0
    path = cli("path", s3_bucket.url("ds/y/z"), "--cache-dir", cache).stdout.strip()
    assert Path(path).read_bytes() == b"2"
    evict = cli("evict", s3_bucket.url("ds/"), "--cache-dir", cache)
    assert evict.returncode == 0 and "removed 2 objects" in evict.stdout
    assert not Path(path).exists()
    missing = cli("status", s3_bucket.url("ds/"), "--cache-dir", cache)
    assert missing.returncode == 1


def test_usage_errors_exit_2(tmp_path):
    assert cli("prefetch").returncode == 2
    assert cli("prefetch", "ftp://x/y", "--cache-dir", str(tmp_path)).returncode == 2
    assert cli("prefetch", "s3://b/x", "--max-bytes", "lots").returncode == 2
    result = cli("wait", "s3://b/x", "--fraction", "1.5", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "--fraction" in result.stderr


def test_clear_errors_for_wrong_bucket_bad_credentials_and_dead_endpoint(s3_server, tmp_path):
    env = dict(os.environ, **s3_server.env())
    cache = str(tmp_path / "c")
    wrong = cli("prefetch", "s3://no-such-bucket-here/ds/", "--cache-dir", cache, env=env)
    assert wrong.returncode == 1
    assert "no-such-bucket-here" in wrong.stderr and "Traceback" not in wrong.stderr

    dead = dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_SECRET_ACCESS_KEY="s3cr3tKEY")
    unreachable = cli("prefetch", "s3://bucket/ds/", "--cache-dir", cache, env=dead, timeout=180)
    assert unreachable.returncode == 1
    assert "reach" in unreachable.stderr.lower() and "AWS_ENDPOINT_URL" in unreachable.stderr
    assert "s3cr3tKEY" not in unreachable.stderr + unreachable.stdout

    nocreds = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    nocreds.update(
        AWS_ENDPOINT_URL=s3_server.endpoint_url,
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        AWS_CONFIG_FILE="/dev/null",
        AWS_EC2_METADATA_DISABLED="true",
    )
    anonymous = cli("prefetch", "s3://bucket/ds/", "--cache-dir", cache, env=nocreds)
    assert anonymous.returncode == 1
    assert "credential" in anonymous.stderr.lower()


def test_several_processes_download_each_object_once(s3_server, s3_bucket, tmp_path):
    objects = {f"ds/f{i:03d}": os.urandom(20_000) for i in range(60)}
    objects["ds/big"] = os.urandom(17 * 1024 * 1024)
    s3_bucket.put(objects)
    cache = str(tmp_path / "c")
    config = ProxyConfig(first_byte_delay_s=0.05, bandwidth_bytes_per_s=40e6)
    with CloudProxy(s3_server.endpoint_url, config) as proxy:
        env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url)
        procs = [
            subprocess.Popen(
                [
                    *SHARDCACHE,
                    "prefetch",
                    s3_bucket.url("ds/"),
                    "--cache-dir",
                    cache,
                    "--output",
                    "json",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        reports = []
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
            reports.append(json.loads(out))
        body_bytes = proxy.stats().response_body_bytes_total
    assert sum(r["objects_downloaded"] for r in reports) == len(objects)
    dataset_bytes = sum(map(len, objects.values()))
    # four processes, one download: object bytes crossed the proxy once (plus 4 listings)
    assert dataset_bytes <= body_bytes < dataset_bytes + 200_000
    assert tree(reports[0]["local_dir"]) == {k[3:]: v for k, v in objects.items()}


def test_kill_9_mid_download_then_rerun(s3_server, s3_bucket, tmp_path):
    objects = {"ds/huge": os.urandom(24 * 1024 * 1024)}
    objects.update({f"ds/s{i}": os.urandom(5000) for i in range(10)})
    s3_bucket.put(objects)
    cache = tmp_path / "c"
    slow = ProxyConfig(first_byte_delay_s=0.0, bandwidth_bytes_per_s=3e6)
    with CloudProxy(s3_server.endpoint_url, slow) as proxy:
        env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url)
        proc = subprocess.Popen(
            [*SHARDCACHE, "prefetch", s3_bucket.url("ds/"), "--cache-dir", str(cache)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        staging = cache / "staging"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _a_large_staging_file(staging):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the download never got going")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    local = cache / "data" / "s3" / s3_bucket.name / "ds"
    # no incomplete file is visible: whatever is published is whole and exact
    for rel, data in tree(local).items():
        assert data == objects["ds/" + rel]
    assert "huge" not in tree(local)
    rerun = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", str(cache), "--output", "json")
    assert rerun.returncode == 0, rerun.stderr
    assert tree(local) == {k[3:]: v for k, v in objects.items()}
    assert list(staging.iterdir()) == []


def _a_large_staging_file(staging: Path) -> bool:
    """Whether a download has written more than 1 MB; a file published (renamed away) between
    the listing and its stat is simply not counted."""
    for p in staging.iterdir() if staging.exists() else ():
        try:
            if p.stat().st_size > 1_000_000:
                return True
        except FileNotFoundError:
            continue
    return False
