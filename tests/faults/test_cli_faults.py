"""The CLI end to end under faults: moto S3 behind the fault-injecting proxy, the real
`shardcache` process, and what its user sees (exit status, messages, status, the files)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shardcache.testkit.proxy import CloudProxy, FaultConfig, FaultRule, ProxyConfig
from support import tree

SHARDCACHE = [sys.executable, "-m", "shardcache.cli.main"]
MiB = 1024 * 1024
FAST = ProxyConfig(first_byte_delay_s=0.0, bandwidth_bytes_per_s=None)


def cli(*args, env, timeout=120):
    return subprocess.run(
        [*SHARDCACHE, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def via(proxy, **extra):
    return dict(os.environ, AWS_ENDPOINT_URL=proxy.url, SHARDCACHE_FSYNC="0", **extra)


def local_dir(cache, bucket):
    return Path(cache) / "data" / "s3" / bucket.name / "ds"


def wait_for(predicate, what, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def faults(**kw):
    # object GETs only: listings (`/bucket?list-type=2`) have no key after the bucket
    return ProxyConfig(
        first_byte_delay_s=0.0,
        bandwidth_bytes_per_s=None,
        faults=FaultConfig(
            rule=FaultRule(frozenset({"GET"}), kw.pop("path", r"^/[^/]+/ds/.")), **kw
        ),
    )


def test_exact_mirror_under_503s_and_resets_mid_body(s3_server, s3_bucket, tmp_path):
    objects = {f"ds/f{i:02}": os.urandom(20_000 + i) for i in range(30)}
    objects["ds/big"] = os.urandom(20 * MiB + 1)  # three ranged parts
    s3_bucket.put(objects)
    cache = str(tmp_path / "c")
    config = faults(slowdown_probability=0.3, reset_probability=0.1, seed=11)
    with CloudProxy(s3_server.endpoint_url, config) as proxy:
        result = cli(
            "prefetch",
            s3_bucket.url("ds/"),
            "--cache-dir",
            cache,
            "--output",
            "json",
            env=via(proxy),
        )
        stats = proxy.stats()
    assert result.returncode == 0, result.stderr
    assert stats.slowdowns_total > 0 and stats.resets_total > 0
    report = json.loads(result.stdout)
    assert report["counters"]["retries"] >= stats.slowdowns_total
    assert tree(local_dir(cache, s3_bucket)) == {k[3:]: v for k, v in objects.items()}
    assert list((Path(cache) / "staging").iterdir()) == []


def test_persistent_failures_name_the_keys_and_show_in_status(s3_server, s3_bucket, tmp_path):
    objects = {f"ds/ok{i}": os.urandom(3000) for i in range(8)}
    objects.update({"ds/bad/one": b"1" * 100, "ds/bad/two": b"2" * 100})
    s3_bucket.put(objects)
    cache = str(tmp_path / "c")
    with CloudProxy(
        s3_server.endpoint_url, faults(slowdown_probability=1.0, path=r"/ds/bad/")
    ) as proxy:
        env = via(proxy)
        result = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", cache, env=env)
        status = cli("status", "--cache-dir", cache, "--output", "json", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    for key in ("ds/bad/one", "ds/bad/two"):
        assert f"error: {key}: " in result.stderr
    assert "SlowDown" in result.stderr and "could not be reached" in result.stderr
    [ds] = json.loads(status.stdout)["datasets"]
    assert ds["state"] == "failed" and ds["objects_local"] == 8
    assert {e["key"] for e in ds["errors"]} == {"ds/bad/one", "ds/bad/two"}
    assert tree(local_dir(cache, s3_bucket)) == {
        k[3:]: v for k, v in objects.items() if "bad" not in k
    }


def test_flipped_bytes_are_caught_by_the_etag(s3_server, s3_bucket, tmp_path):
    objects = {f"ds/f{i}": os.urandom(50_000) for i in range(10)}
    s3_bucket.put(objects)
    cache = str(tmp_path / "c")
    with CloudProxy(s3_server.endpoint_url, faults(corrupt_probability=0.4, seed=5)) as proxy:
        result = cli(
            "prefetch",
            s3_bucket.url("ds/"),
            "--cache-dir",
            cache,
            "--output",
            "json",
            env=via(proxy),
        )
        corrupted = proxy.stats().corruptions_total
    assert result.returncode == 0, result.stderr
    assert corrupted > 0
    assert json.loads(result.stdout)["counters"]["integrity_failures"] == corrupted
    assert tree(local_dir(cache, s3_bucket)) == {k[3:]: v for k, v in objects.items()}

    with CloudProxy(
        s3_server.endpoint_url, faults(corrupt_probability=1.0, path=r"/ds/f3$")
    ) as proxy:
        cache2 = str(tmp_path / "c2")
        result = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", cache2, env=via(proxy))
    assert result.returncode == 1
    # the MD5 of the single-part ETag refuses the damaged body, which is counted, retried and
    # finally reported
    assert "ds/f3: " in result.stderr and "checksum" in result.stderr
    assert "f3" not in tree(local_dir(cache2, s3_bucket))


def test_a_stalled_backend_is_a_clear_error_not_a_hang(s3_server, s3_bucket, tmp_path):
    s3_bucket.put({"ds/stuck": b"s" * 1000, "ds/fine": b"f" * 1000})
    cache = str(tmp_path / "c")
    with CloudProxy(
        s3_server.endpoint_url, faults(stall_probability=1.0, path=r"/ds/stuck", stall_s=60)
    ) as proxy:
        env = via(proxy, SHARDCACHE_READ_TIMEOUT_S="1", SHARDCACHE_CONNECT_TIMEOUT_S="1")
        result = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", cache, env=env, timeout=60)
    assert result.returncode == 1
    assert "ds/stuck: " in result.stderr and "Traceback" not in result.stderr
    assert "timed out" in result.stderr.lower() or "no complete answer" in result.stderr
    assert tree(local_dir(cache, s3_bucket)) == {"fine": b"f" * 1000}


def test_object_replaced_during_download_restarts_on_the_new_version(
    s3_server, s3_bucket, tmp_path
):
    old, new = os.urandom(20 * MiB), os.urandom(20 * MiB + 7)
    s3_bucket.put({"ds/big": old})
    cache = str(tmp_path / "c")
    slow = ProxyConfig(first_byte_delay_s=0.0, bandwidth_bytes_per_s=8e6)
    with CloudProxy(s3_server.endpoint_url, slow) as proxy:
        # one request at a time: the second part is asked for after the replacement, and only
        # once moto has finished storing it (moto computes an ETag lazily from a shared
        # buffer: two requests racing to compute it can make it advertise an ETag that does
        # not match its bytes, which the engine then rightly refuses), hence 8 MB/s: the
        # rest of the first part takes about a second to arrive after the put starts
        proc = subprocess.Popen(
            [
                *SHARDCACHE,
                "prefetch",
                s3_bucket.url("ds/"),
                "--cache-dir",
                cache,
                "--output",
                "json",
                "--concurrency",
                "1",
            ],
            env=via(proxy),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: proxy.stats().response_body_bytes_total > MiB, "the first part")
        s3_bucket.put({"ds/big": new})
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    report = json.loads(out)
    assert report["counters"]["version_restarts"] == 1
    assert tree(local_dir(cache, s3_bucket)) == {"big": new}


@pytest.mark.parametrize(
    "command",
    [["prefetch"], ["wait", "--prefetch", "--fraction", "1", "--timeout", "60"]],
    ids=["prefetch", "wait-prefetch"],
)
def test_sigterm_stops_within_seconds_and_cleans_up(s3_server, s3_bucket, tmp_path, command):
    objects = {"ds/huge": os.urandom(24 * MiB)}
    objects.update({f"ds/s{i}": os.urandom(5000) for i in range(5)})
    s3_bucket.put(objects)
    cache = Path(tmp_path / "c")
    staging = cache / "staging"
    slow = ProxyConfig(first_byte_delay_s=0.0, bandwidth_bytes_per_s=2e6)
    with CloudProxy(s3_server.endpoint_url, slow) as proxy:
        env = via(proxy)
        proc = subprocess.Popen(
            [
                *SHARDCACHE,
                command[0],
                s3_bucket.url("ds/"),
                *command[1:],
                "--cache-dir",
                str(cache),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        wait_for(lambda: staging.exists() and any(staging.iterdir()), "a download to start")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 143, err
        assert "terminated" in err and "Traceback" not in err
        with pytest.raises(ProcessLookupError):  # no orphan left in its process group
            os.killpg(proc.pid, 0)
        assert list(staging.iterdir()) == []
        assert "huge" not in tree(local_dir(cache, s3_bucket))
        status = json.loads(
            cli("status", "--cache-dir", str(cache), "--output", "json", env=env).stdout
        )
        assert status["datasets"][0]["state"] == "interrupted"
        rerun = cli(
            "prefetch",
            s3_bucket.url("ds/"),
            "--cache-dir",
            str(cache),
            env=dict(env, AWS_ENDPOINT_URL=s3_server.endpoint_url),
        )
    assert rerun.returncode == 0, rerun.stderr
    assert tree(local_dir(cache, s3_bucket)) == {k[3:]: v for k, v in objects.items()}
