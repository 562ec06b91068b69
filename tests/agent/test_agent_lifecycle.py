"""Single flight, restart and shutdown, observed from outside: proxy counters, metrics, files.

The agent runs as a child process; S3 is moto behind `CloudProxy`, which adds a first-byte
delay and a per-connection bandwidth cap so that downloads overlap (and last long enough to be
interrupted), and counts every response byte the store sent.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from shardcache.testkit.proxy import CloudProxy, ProxyConfig

HITS, MISSES = 'shardcache_hits_total{path="client"}', 'shardcache_misses_total{path="client"}'
N_OBJECTS = 16
OBJECT_BYTES = 256 * 1024


def dataset(stem: str) -> dict[str, bytes]:
    return {f"{stem}/shard-{i:03d}.bin": os.urandom(OBJECT_BYTES) for i in range(N_OBJECTS)}


def agent_env(proxy: CloudProxy, **extra: str) -> dict[str, str]:
    env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url, **extra)
    env.pop("SHARDCACHE_AGENT_SOCKET", None)
    return env


def interesting(m: dict[str, float]) -> dict[str, float]:
    keep = (
        "shardcache_downloaded",
        "shardcache_hits",
        "shardcache_misses",
        "shardcache_prefetch_queue",
        "shardcache_cache_used",
        "shardcache_dataset_",
        "shardcache_download_duration_seconds_count",
        "shardcache_evictions",
        "shardcache_errors",
    )
    return {k: v for k, v in sorted(m.items()) if k.startswith(keep)}


@pytest.mark.slow
def test_metrics_before_and_after_prefetch(s3_bucket, make_agent):
    data = dataset("m")
    s3_bucket.put(data)
    with CloudProxy(os.environ["AWS_ENDPOINT_URL"], ProxyConfig(first_byte_delay_s=0.02)) as p:
        agent = make_agent(env=agent_env(p))
        agent.start()
        before = agent.metrics()
        url = s3_bucket.url("m/")
        agent.client.register(url, "pod-a")
        agent.wait_status(url)
        after = agent.metrics()
    print("\nmetrics before prefetch:", interesting(before))
    print("metrics after prefetch: ", interesting(after))
    size = N_OBJECTS * OBJECT_BYTES
    assert before["shardcache_downloaded_objects_total"] == 0
    assert after["shardcache_downloaded_objects_total"] == N_OBJECTS
    assert after["shardcache_downloaded_bytes_total"] == size
    assert after["shardcache_download_duration_seconds_count"] == N_OBJECTS
    assert after[f'shardcache_dataset_bytes_local{{dataset="{url}"}}'] == size
    assert after[f'shardcache_dataset_objects_total{{dataset="{url}"}}'] == N_OBJECTS
    assert after["shardcache_cache_used_bytes"] == size
    assert after["shardcache_prefetch_queue_depth"] == 0
    assert agent.terminate() == 0


@pytest.mark.slow
def test_concurrent_fetches_of_a_cold_dataset_download_each_object_once(s3_bucket, make_agent):
    data = dataset("c")
    s3_bucket.put(data)
    readers = 8
    config = ProxyConfig(first_byte_delay_s=0.05, bandwidth_bytes_per_s=4e6)
    with CloudProxy(os.environ["AWS_ENDPOINT_URL"], config) as proxy:
        agent = make_agent(env=agent_env(proxy))
        agent.start()
        base = proxy.stats().response_body_bytes_total

        def read_all(reader: int) -> list[bytes]:
            keys = sorted(data)
            keys = keys[reader:] + keys[:reader]  # every reader in its own order
            out = []
            for key in keys:
                path = agent.client.fetch(s3_bucket.url(key))
                assert path is not None
                with open(path, "rb") as f:
                    out.append(f.read())
            return out

        with ThreadPoolExecutor(readers) as pool:
            results = list(pool.map(read_all, range(readers)))
        sent = proxy.stats().response_body_bytes_total - base
    m = agent.metrics()
    size = N_OBJECTS * OBJECT_BYTES
    print(
        f"\n{readers} readers x {N_OBJECTS} objects: store sent {sent} body bytes for a "
        f"{size}-byte dataset ({sent / size:.3f}x); downloaded_objects_total="
        f"{m['shardcache_downloaded_objects_total']:.0f}, client misses="
        f"{m[MISSES]:.0f}, hits={m[HITS]:.0f}"
    )
    assert all(sorted(r) == sorted(data.values()) for r in results)
    assert m["shardcache_downloaded_objects_total"] == N_OBJECTS
    # each object's bytes crossed the proxy once; the rest is HEAD/XML overhead (< 1 %)
    assert size <= sent < size * 1.01
    assert agent.terminate() == 0


@pytest.mark.slow
def test_kill_9_and_restart_keeps_the_cache(s3_bucket, make_agent, tmp_path):
    data = dataset("k")
    s3_bucket.put(data)
    url = s3_bucket.url("k/")
    with CloudProxy(os.environ["AWS_ENDPOINT_URL"], ProxyConfig(first_byte_delay_s=0.02)) as p:
        first = make_agent(env=agent_env(p))
        first.start()
        first.client.register(url, "pod-a")
        first.wait_status(url)
        assert first.kill() == -9
        sent_before = p.stats().response_body_bytes_total

        second = make_agent(env=agent_env(p), cache_dir=first.cache_dir)
        seconds = second.start()  # replaces the stale socket file, adopts the cache
        doc = second.client.status(url)
        assert doc.state == "complete" and doc.owners == ("pod-a",)  # pins survive
        second.client.register(url, "pod-b")  # re-lists; nothing to download
        doc = second.wait_status(url)
        sent = p.stats().response_body_bytes_total - sent_before
    m = second.metrics()
    print(
        f"\nrestart after kill -9: ready in {seconds:.3f} s (process start included); "
        f"downloaded_objects_total={m['shardcache_downloaded_objects_total']:.0f}, "
        f"store sent {sent} bytes (a listing) for a {N_OBJECTS * OBJECT_BYTES}-byte dataset"
    )
    assert doc.objects_local == N_OBJECTS and doc.bytes_local == N_OBJECTS * OBJECT_BYTES
    assert m["shardcache_downloaded_objects_total"] == 0
    assert sent < OBJECT_BYTES  # not even one object came again
    assert second.client._request("POST", "/v1/verify", {"url": url})["clean"]
    assert second.terminate() == 0


@pytest.mark.slow
def test_sigterm_mid_prefetch_exits_cleanly(s3_bucket, make_agent):
    data = {f"t/big-{i:02d}.bin": os.urandom(1024 * 1024) for i in range(12)}
    s3_bucket.put(data)
    url = s3_bucket.url("t/")
    # ~1 MB/s per connection and 4 connections: the prefetch takes ~3 s, so SIGTERM lands
    # while objects are half-written in staging
    config = ProxyConfig(first_byte_delay_s=0.02, bandwidth_bytes_per_s=1e6)
    with CloudProxy(os.environ["AWS_ENDPOINT_URL"], config) as proxy:
        agent = make_agent(env=agent_env(proxy, SHARDCACHE_MAX_CONCURRENCY="4"))
        agent.start()
        agent.client.register(url, "pod-a")
        deadline = time.monotonic() + 30
        while agent.client.status(url).objects_local < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        staging = agent.cache_dir / "staging"
        in_flight = len(os.listdir(staging))
        t0 = time.monotonic()
        code = agent.terminate(timeout_s=15)
        stop_s = time.monotonic() - t0
        local_dir = agent.cache_dir / "data" / "s3" / s3_bucket.name / "t"
        published = sorted(os.listdir(local_dir))  # objects only: the status lives apart
    print(
        f"\nSIGTERM with {in_flight} staging files in flight: exit {code} after {stop_s:.2f} s, "
        f"{len(published)}/{len(data)} objects published, staging now "
        f"{os.listdir(staging)}"
    )
    assert code == 0
    assert os.listdir(staging) == []
    assert 0 < len(published) < len(data)
    for name in published:  # whatever is published is whole
        with open(local_dir / name, "rb") as f:
            assert f.read() == data[f"t/{name}"]
