"""A dataset's listing is reused by later prefetches while it is fresh: the real `shardcache`
CLI against moto behind the counting proxy. Within the bound a prefetch makes no LIST request
(and sees nothing of a change made since); once the listing is older than the bound, or with
`--refresh`, it lists again and notices the change."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from shardcache.config import Config
from shardcache.errors import ConfigError
from shardcache.store.index import Index
from shardcache.testkit.proxy import CloudProxy, ProxyConfig

SHARDCACHE = [sys.executable, "-m", "shardcache.cli.main"]
FAST = ProxyConfig(first_byte_delay_s=0.0, bandwidth_bytes_per_s=None)


def prefetch(url, cache, proxy, *extra):
    env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url, SHARDCACHE_FSYNC="0")
    before = proxy.stats().requests_total
    done = subprocess.run(
        [*SHARDCACHE, "prefetch", url, "--cache-dir", str(cache), "--output", "json", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), proxy.stats().requests_total - before


def age_listing(cache: Path, seconds: float) -> None:
    """Make the saved listing `seconds` older, as time passing would."""
    with sqlite3.connect(cache / "index.sqlite3") as db:
        db.execute("UPDATE datasets SET listed_at = listed_at - ?", (seconds,))


def test_a_fresh_listing_is_reused_and_a_stale_one_is_not(s3_server, s3_bucket, tmp_path):
    s3_bucket.put({"ds/a": b"one", "ds/b": b"two", "ds/bad/../x": b"refused"})
    cache, url = tmp_path / "cache", s3_bucket.url("ds/")
    with CloudProxy(s3_server.endpoint_url, FAST) as proxy:
        first, requests = prefetch(url, cache, proxy)
        assert not first["listing_reused"] and first["objects_downloaded"] == 2
        assert requests == 1 + 2  # one LIST page, two GETs
        s3_bucket.put({"ds/a": b"changed", "ds/new": b"added"})

        # within the bound (the default, 600 s): no request at all, the change unseen
        again, requests = prefetch(url, cache, proxy)
        assert requests == 0
        assert again["listing_reused"] and again["objects_total"] == 2
        assert again["refused"] == first["refused"] != []  # kept with the listing
        assert (cache / "data/s3" / s3_bucket.name / "ds/a").read_bytes() == b"one"

        # older than the bound: listed again; the new key and the new version are fetched
        age_listing(cache, 601)
        later, requests = prefetch(url, cache, proxy)
        assert not later["listing_reused"] and later["objects_total"] == 3
        assert later["objects_downloaded"] == 2 and requests == 1 + 2
        assert (cache / "data/s3" / s3_bucket.name / "ds/a").read_bytes() == b"changed"

        # --refresh lists at once, fresh listing or not
        s3_bucket.delete("ds/new")
        refreshed, requests = prefetch(url, cache, proxy, "--refresh")
        assert not refreshed["listing_reused"] and refreshed["objects_total"] == 2
        assert requests == 1
        assert not (cache / "data/s3" / s3_bucket.name / "ds/new").exists()


def test_a_zero_bound_lists_every_time(s3_server, s3_bucket, tmp_path, monkeypatch):
    s3_bucket.put({"ds/a": b"one"})
    monkeypatch.setenv("SHARDCACHE_LISTING_MAX_AGE_S", "0")
    cache, url = tmp_path / "cache", s3_bucket.url("ds/")
    with CloudProxy(s3_server.endpoint_url, FAST) as proxy:
        prefetch(url, cache, proxy)
        again, requests = prefetch(url, cache, proxy)
    assert not again["listing_reused"] and requests == 1


def test_an_index_from_before_the_column_is_migrated_and_lists_again(tmp_path):
    """An index written before listings kept their refused keys gains the column, and its
    saved listings are not reused (their refused keys are unknown)."""
    path = tmp_path / "index.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE datasets(url TEXT PRIMARY KEY, store TEXT NOT NULL, prefix TEXT NOT "
            "NULL, listed_at REAL, objects_total INTEGER NOT NULL DEFAULT 0, bytes_total "
            "INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'idle', errors TEXT NOT "
            "NULL DEFAULT '[]', last_used REAL NOT NULL DEFAULT 0)"
        )
        db.execute("INSERT INTO datasets VALUES ('s3://b/ds/','s3://b','ds/',1e9,1,1,'x','[]',0)")
    index = Index(path)
    try:
        row = index.dataset("s3://b/ds/")
        assert row is not None and row.listed_at == 1e9 and row.refused is None
        index.save_manifest("s3://b/ds/", "s3://b", "ds/", [], 2e9, [("ds/..", "dots")])
        row = index.dataset("s3://b/ds/")
        assert row is not None and row.refused == [["ds/..", "dots"]]
    finally:
        index.close()
    Index(path).close()  # a second open finds the column there


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_the_bound_is_checked(value):
    with pytest.raises(ConfigError):
        Config.from_env({"SHARDCACHE_LISTING_MAX_AGE_S": value})


def test_freshness_is_a_bound_on_the_age():
    from shardcache.engine.prefetch import listing_is_fresh

    assert listing_is_fresh(100.0, 100.0, 600.0)
    assert listing_is_fresh(100.0, 699.9, 600.0)
    assert not listing_is_fresh(100.0, 700.0, 600.0)
    assert not listing_is_fresh(100.0, 100.0, 0.0)  # 0: list every time
    assert not listing_is_fresh(None, 100.0, 600.0)  # never listed
    assert not listing_is_fresh(200.0, 100.0, 600.0)  # the clock went back: not trusted
