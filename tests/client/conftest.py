"""Fixtures for the client tests: a seeded dataset on a real moto server, a cloud-like proxy
in front of it that counts requests, and clients pointed at a fresh cache directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from shardcache.client import Client
from shardcache.client.api import close_default_clients
from shardcache.config import Config
from shardcache.retry import Retry
from shardcache.testkit.proxy import CloudProxy, ProxyConfig

#: no added latency or bandwidth cap: the proxy is here to count requests
COUNTING = ProxyConfig(first_byte_delay_s=0, bandwidth_bytes_per_s=0)


def payload(n: int, seed: int) -> bytes:
    return (bytes([seed % 251]) + os.urandom(15)) * (n // 16) + b"x" * (n % 16)


@pytest.fixture
def objects() -> dict[str, bytes]:
    return {
        "ds/a.bin": payload(300_000, 1),
        "ds/sub/b.bin": payload(70_000, 2),
        "ds/sub/c.txt": b"hello shardcache\n",
        "ds/sub/deeper/d.bin": payload(5_000, 3),
        "other/x.bin": payload(1_000, 4),
    }


@pytest.fixture
def bucket(s3_bucket, objects):
    s3_bucket.put(objects)
    return s3_bucket


@pytest.fixture
def proxy(s3_server, s3_bucket, monkeypatch) -> Iterator[CloudProxy]:
    """A counting proxy; the SDK environment points at it for this test (after `s3_bucket`
    has pointed it at moto, hence the dependency)."""
    with CloudProxy(s3_server.endpoint_url, COUNTING) as p:
        monkeypatch.setenv("AWS_ENDPOINT_URL", p.url)
        yield p


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(
        cache_dir=tmp_path / "cache",
        min_free_fraction=0.0,
        fsync=False,
        retry=Retry(max_attempts=2, base_backoff_s=0.01, max_backoff_s=0.05),
    )


@pytest.fixture
def client(config) -> Iterator[Client]:
    with Client(config, env={}) as c:
        yield c


@pytest.fixture
def cache_env(tmp_path, monkeypatch) -> Iterator[str]:
    """The environment of an embedded user: a cache dir, no agent; default clients reset."""
    cache = str(tmp_path / "envcache")
    monkeypatch.setenv("SHARDCACHE_CACHE_DIR", cache)
    monkeypatch.setenv("SHARDCACHE_FSYNC", "0")
    monkeypatch.setenv("SHARDCACHE_MIN_FREE_FRACTION", "0")
    monkeypatch.delenv("SHARDCACHE_AGENT_SOCKET", raising=False)
    monkeypatch.delenv("SHARDCACHE_MAX_BYTES", raising=False)
    close_default_clients()
    yield cache
    close_default_clients()
