"""The client without an agent: the engine runs in-process on the cache directory, against a
real moto server (through a counting proxy where the number of requests matters)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import fsspec
import pytest
import shardcache.client as sc
from shardcache.client import Client, WaitTimeoutError, waiting
from shardcache.testkit.proxy import CloudProxy, ProxyConfig
from shardcache.urls import parse_url

pytestmark = pytest.mark.timeout(120)


def test_chained_protocol_reads_and_then_hits(bucket, objects, cache_env):
    url = f"shardcache::s3://{bucket.name}/ds/a.bin"
    with fsspec.open(url, "rb") as f:
        assert f.read() == objects["ds/a.bin"]
    with fsspec.open(url, "rb") as f:
        assert f.read() == objects["ds/a.bin"]
    with fsspec.open(f"shardcache://s3://{bucket.name}/ds/a.bin", "rb") as f:  # one layer
        assert f.read() == objects["ds/a.bin"]
    fs, path = fsspec.core.url_to_fs(url)
    assert path == f"{bucket.name}/ds/a.bin"
    stats = fs.stats()
    assert (stats.misses, stats.hits, stats.fallbacks) == (1, 2, 0)
    assert os.path.isfile(os.path.join(cache_env, "data", "s3", bucket.name, "ds", "a.bin"))


def test_chained_text_mode_and_cat(bucket, objects, cache_env):
    with fsspec.open(f"shardcache::s3://{bucket.name}/ds/sub/c.txt", "rt") as f:
        assert f.read() == "hello shardcache\n"
    fs = fsspec.filesystem("shardcache", target_protocol="s3")
    assert fs.cat(f"{bucket.name}/ds/sub/b.bin") == objects["ds/sub/b.bin"]


def test_direct_filesystem_cat_open_ls_info_find(bucket, objects, cache_env):
    fs = fsspec.filesystem("shardcache", target_protocol="s3")
    b = bucket.name
    assert fs.cat_file(f"{b}/ds/a.bin", start=10, end=20) == objects["ds/a.bin"][10:20]
    with fs.open(f"s3://{b}/ds/sub/b.bin") as f:  # a full URL works as a path too
        assert f.read() == objects["ds/sub/b.bin"]
    assert fs.ls(f"{b}/ds", detail=False) == [f"{b}/ds/a.bin", f"{b}/ds/sub"]
    assert fs.ls(f"{b}/ds/sub") == [
        {"name": f"{b}/ds/sub/b.bin", "size": 70_000, "type": "file"},
        {"name": f"{b}/ds/sub/c.txt", "size": 17, "type": "file"},
        {"name": f"{b}/ds/sub/deeper", "size": 0, "type": "directory"},
    ]
    assert fs.info(f"{b}/ds/sub") == {"name": f"{b}/ds/sub", "size": 0, "type": "directory"}
    assert fs.info(f"{b}/ds/sub/c.txt")["size"] == 17
    assert fs.find(f"{b}/ds") == sorted(f"{b}/{k}" for k in objects if k.startswith("ds/"))
    assert f"{b}/ds/sub/deeper" in fs.find(f"{b}/ds", withdirs=True)
    assert fs.find(f"{b}/ds", maxdepth=1) == [f"{b}/ds/a.bin"]
    assert fs.exists(f"{b}/ds/a.bin") and not fs.exists(f"{b}/ds/nope")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{b}/ds/nope")
    with pytest.raises(PermissionError):
        fs.open(f"{b}/ds/new.bin", "wb")


def test_local_hit_never_touches_the_network(bucket, objects, client, proxy):
    report_dir = client.engine.prefetch(parse_url(bucket.url("ds/"))).local_dir
    assert sorted(os.listdir(report_dir)) == ["a.bin", "sub"]
    fs = fsspec.filesystem("shardcache", target_protocol="s3", client=client)
    before = proxy.stats().requests_total
    assert before > 0  # the prefetch went through the proxy
    b = bucket.name
    for key in ("ds/a.bin", "ds/sub/b.bin", "ds/sub/deeper/d.bin"):
        assert fs.cat(f"{b}/{key}") == objects[key]
        assert fs.info(f"{b}/{key}")["size"] == len(objects[key])
    # listings of a known dataset come from its manifest
    assert len(fs.find(f"{b}/ds")) == 4
    assert fs.ls(f"{b}/ds/sub", detail=False)[0] == f"{b}/ds/sub/b.bin"
    assert proxy.stats().requests_total == before
    assert client.stats().hits == 3 and client.stats().misses == 0


def test_listing_an_unknown_dataset_asks_the_store(bucket, client, proxy):
    before = proxy.stats().requests_total
    assert client.ls(bucket.url("ds/sub/"))[0]["name"] == f"{bucket.name}/ds/sub/b.bin"
    assert proxy.stats().requests_total > before


def test_a_miss_in_process_is_fetched_exactly_once(bucket, objects, client, proxy):
    url = bucket.url("ds/a.bin")
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(client.cat(url))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [objects["ds/a.bin"]] * 4
    body = proxy.stats().response_body_bytes_total
    assert len(objects["ds/a.bin"]) <= body < 2 * len(objects["ds/a.bin"])
    assert client.cat(url) == objects["ds/a.bin"]
    assert proxy.stats().response_body_bytes_total == body
    assert client.stats().hits >= 1 and client.stats().fallbacks == 0


def test_over_budget_reads_through_without_caching(bucket, objects, config, proxy):
    with Client(config.with_(max_bytes=10_000), env={}) as small:
        big = bucket.url("ds/a.bin")
        assert small.cat(big) == objects["ds/a.bin"]
        assert small.cat(big) == objects["ds/a.bin"]
        assert small.cat(bucket.url("ds/sub/deeper/d.bin")) == objects["ds/sub/deeper/d.bin"]
        stats = small.stats()
        assert (stats.misses, stats.read_through, stats.hits) == (3, 2, 0)
        assert not os.path.exists(small.local_file(big) or "")
        assert small.cat(bucket.url("ds/sub/deeper/d.bin")) == objects["ds/sub/deeper/d.bin"]
        assert small.stats().hits == 1


def test_public_api_paths_prefetch_wait_and_open(bucket, objects, cache_env):
    ds = bucket.url("ds/")
    assert sc.local_path(ds) == sc.local_path(bucket.url("ds"))
    assert str(sc.local_path(ds)).startswith(cache_env)
    assert sc.wait_until_local(ds, 1.0, timeout_s=60) == 1.0
    local = sc.local_path(bucket.url("ds/sub/b.bin"))
    assert local.read_bytes() == objects["ds/sub/b.bin"]
    assert sc.prefetch(ds) == sc.local_path(ds)
    with sc.open(bucket.url("ds/a.bin")) as f:
        assert f.read() == objects["ds/a.bin"]
    with pytest.raises(ValueError):
        sc.open(bucket.url("ds/a.bin"), "wb")


def test_wait_until_local_times_out_with_a_timeout_error(s3_server, bucket, client, monkeypatch):
    slow = ProxyConfig(first_byte_delay_s=0.5, bandwidth_bytes_per_s=0)
    with CloudProxy(s3_server.endpoint_url, slow) as p:
        monkeypatch.setenv("AWS_ENDPOINT_URL", p.url)
        with pytest.raises(WaitTimeoutError) as caught:
            waiting.wait_until_local(client, bucket.url("ds/"), 1.0, timeout_s=0.0)
        assert isinstance(caught.value, TimeoutError)
        assert "0.0% local" in str(caught.value)
        client.close()  # cancels the prefetch while the proxy still answers


def test_unsafe_keys_are_refused_before_any_path_is_built(client):
    with pytest.raises(ValueError, match="path segment"):
        client.local_file("s3://some-bucket/ds/../../etc/passwd")


def test_missing_object_is_not_found(bucket, client):
    with pytest.raises(FileNotFoundError):
        client.cat(bucket.url("ds/absent.bin"))


def test_exit_with_a_prefetch_running_leaves_no_traceback(tmp_path):
    """The default client is closed at exit while its in-process prefetch still runs: the
    close must find the engine's threads still working (it once found them stopped, and
    printed "cannot schedule new futures after shutdown")."""
    src = tmp_path / "src" / "ds"
    src.mkdir(parents=True)
    for i in range(100):
        (src / f"f{i:03d}").write_bytes(os.urandom(100_000))
    script = (
        "import shardcache.client as sc\n"
        "try:\n"
        f"    sc.wait_until_local('file://{src}/', 1.0, timeout_s=0.0)\n"
        "except TimeoutError:\n"
        "    print('timed out')\n"
    )
    env = {**os.environ, "SHARDCACHE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("SHARDCACHE_AGENT_SOCKET", None)
    env.pop("SHARDCACHE_MOUNTS", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "timed out", done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert list((tmp_path / "cache" / "staging").iterdir()) == []  # cancelled cleanly
