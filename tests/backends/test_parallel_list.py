"""Parallel listing against real moto: exactly the keys of one sequential LIST stream, also
when the store answers LIST requests with 503 SlowDown (through the fault proxy)."""

from __future__ import annotations

import asyncio

import boto3
import pytest
from backend_stores import make_config
from shardcache.backends.cloud import open_backend
from shardcache.backends.parallel_list import ListingStats, list_parallel
from shardcache.retry import Retry
from shardcache.testkit.proxy import CloudProxy, FaultConfig, FaultRule, ProxyConfig
from shardcache.urls import parse_url

#: small pages so a few hundred keys make many pages and many ranges
PAGE = 40


def sequential(endpoint: str, bucket: str, prefix: str) -> list[tuple[str, int, str]]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": PAGE}
    ):
        out += [(o["Key"], o["Size"], o["ETag"].strip('"')) for o in page.get("Contents", [])]
    return out


def parallel(
    bucket: str, prefix: str, tmp_path, stats: ListingStats, concurrency: int = 8
) -> list[tuple[str, int, str]]:
    config = make_config(tmp_path).with_(retry=Retry(max_attempts=8, base_backoff_s=0.01))

    async def go() -> list[tuple[str, int, str]]:
        backend = await open_backend(parse_url(f"s3://{bucket}/"), config)
        try:
            infos = await list_parallel(
                backend, prefix, concurrency, config.retry, stats, page_keys=PAGE
            )  # type: ignore[arg-type]
        finally:
            await backend.close()
        return [(i.key, i.size, i.version) for i in infos]

    return asyncio.run(go())


@pytest.fixture
def keyset(s3_bucket):
    # nested directories of uneven sizes, a flat run, odd characters, a placeholder, and keys
    # just outside the prefix on both sides
    keys = [f"ds/{d:02}/f{i:03}" for d in range(6) for i in range(d * 25)]
    keys += [f"ds/flat-{i:04}.bin" for i in range(150)]
    keys += ["ds/ä-umlaut", "ds/space here", "ds/~tilde", "ds/sub/", "dr/before", "ds0/after"]
    s3_bucket.put({k: (b"" if k.endswith("/") else k.encode()) for k in keys})
    return s3_bucket


def test_parallel_listing_equals_one_sequential_stream(keyset, s3_server, tmp_path):
    stats = ListingStats()
    got = parallel(keyset.name, "ds/", tmp_path, stats)
    want = [
        k for k in sequential(s3_server.endpoint_url, keyset.name, "ds/") if k[0] != "ds/sub/"
    ]  # the placeholder is a folder marker, never data
    assert got == want
    assert stats.steals > 0 and stats.ranges[0] > 2


def test_a_prefix_of_a_few_pages_costs_its_pages_and_a_larger_one_fans_out(keyset, tmp_path):
    stats = ListingStats()
    assert len(parallel(keyset.name, "ds/01/", tmp_path, stats)) == 25
    assert stats.requests == 1
    # 100 keys, 3 pages of 40: listed in series, no seed listing, no range running past its
    # end (what a parallel listing of a small prefix reads again)
    stats = ListingStats()
    keys = [k for k, _, _ in parallel(keyset.name, "ds/04/", tmp_path, stats)]
    assert keys == [f"ds/04/f{i:03}" for i in range(100)]
    assert stats.requests == 3 and stats.ranges == []
    # 125 keys, 4 pages: the rest after 3 pages in series is listed in ranges
    stats = ListingStats()
    keys = [k for k, _, _ in parallel(keyset.name, "ds/05/", tmp_path, stats)]
    assert keys == [f"ds/05/f{i:03}" for i in range(125)]
    assert stats.ranges and stats.requests > 4


def test_every_page_is_retried_under_503s(keyset, s3_server, tmp_path, monkeypatch):
    slow = ProxyConfig(
        first_byte_delay_s=0.0,
        bandwidth_bytes_per_s=None,
        faults=FaultConfig(
            slowdown_probability=0.3, seed=3, rule=FaultRule(frozenset({"GET"}), r"^/[^/]+/?$")
        ),
    )
    want = [k for k in sequential(s3_server.endpoint_url, keyset.name, "ds/") if k[0] != "ds/sub/"]
    with CloudProxy(s3_server.endpoint_url, slow) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        stats = ListingStats()
        got = parallel(keyset.name, "ds/", tmp_path, stats)
        slowdowns = proxy.stats().slowdowns_total
    assert got == want
    assert slowdowns > 0 and stats.retries == slowdowns
