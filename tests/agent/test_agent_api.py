"""The agent over its real unix socket, against a real moto S3 server."""

from __future__ import annotations

import os
import stat

import pytest
from shardcache.errors import ConfigError, NotFoundError

DATA = {f"ds/part-{i:02d}.bin": os.urandom(1000 + i) for i in range(12)}
DATA["ds/sub/nested.txt"] = b"nested"


def test_register_status_release_fetch_path(s3_bucket, make_agent):
    s3_bucket.put({**DATA, "other/x.bin": b"x" * 10})
    agent = make_agent()
    agent.start()
    client = agent.client
    url = s3_bucket.url("ds/")

    assert stat.S_IMODE(os.stat(agent.socket).st_mode) == 0o660  # root and its group
    doc = client.register(url, "pod-a", prefetch="all")
    assert str(doc.url) == url and "pod-a" in doc.owners
    assert os.path.isdir(doc.local_dir)  # a bind mount can be made at once
    done = agent.wait_status(url)
    assert done.objects_local == done.objects_total == len(DATA)
    assert done.bytes_local == done.bytes_total == sum(map(len, DATA.values()))
    assert done.fraction_local == 1.0 and done.eta_s == 0.0
    assert done.rate_bytes_per_s == 0.0 and done.errors == ()
    for key, data in DATA.items():
        assert _read(os.path.join(done.local_dir, key.removeprefix("ds/"))) == data

    assert client.path(url) == str(done.local_dir)
    assert client.path(s3_bucket.url("ds/sub/nested.txt")).endswith("ds/sub/nested.txt")
    # an object outside the dataset: fetched on demand, a miss; again, a hit
    path = client.fetch(s3_bucket.url("other/x.bin"))
    assert path is not None and _read(path) == b"x" * 10
    assert client.fetch(s3_bucket.url("other/x.bin")) == path
    m = agent.metrics()
    assert m['shardcache_misses_total{path="client"}'] == 1
    assert m['shardcache_hits_total{path="client"}'] == 1

    # a second owner joins; release of one keeps the other
    client.register(url, "pod-b")
    client.release(url, "pod-a")
    assert client.status(url).owners == ("pod-b",)
    client.release(url, "pod-b")
    after = agent.wait_status(url)  # pod-b's registration re-listed: nothing to download
    assert after.owners == () and after.objects_local == len(DATA)  # still cached
    assert [str(d.url) for d in client.datasets()] == [url]
    assert agent.terminate() == 0


def test_errors_are_typed(s3_bucket, make_agent):
    agent = make_agent()
    agent.start()
    client = agent.client
    with pytest.raises(NotFoundError):
        client.status(s3_bucket.url("never-registered/"))
    with pytest.raises(ConfigError):
        client.register("file:///etc/", "pod-a")  # only cloud schemes
    with pytest.raises(ConfigError):
        client.register(s3_bucket.url("a/../b/"), "pod-a")
    with pytest.raises(NotFoundError):
        client.fetch(s3_bucket.url("missing/object.bin"))
    assert agent.metrics()['shardcache_errors_total{kind="not_found"}'] == 1
    assert agent.terminate() == 0


def test_missing_bucket_shows_failed_status(s3_server, s3_bucket, make_agent):
    agent = make_agent()
    agent.start()
    url = "s3://no-such-bucket-shardcache/ds/"
    agent.client.register(url, "pod-a")
    doc = agent.wait_status(url, states=("failed",))
    assert doc.errors and doc.errors[0].kind in ("not_found", "access_denied")
    assert "testing" not in str(doc)  # the secret key never shows (it is "testing" on moto)
    assert agent.terminate() == 0


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_manifest_is_paged_and_view_reports_are_counted(s3_bucket, make_agent):
    objects = {f"ds/d{i % 3}/{i:03d}": b"y" * i for i in range(25)}
    s3_bucket.put({**objects, "ds-other/z": b"z"})
    agent = make_agent()
    agent.start()
    client = agent.client
    url = s3_bucket.url("ds/")
    with pytest.raises(NotFoundError):
        list(client.manifest(url))
    client.register(url, "pod-a", prefetch="none")
    agent.wait_status(url, ("listed", "partial", "complete", "idle"))
    got = list(client.manifest(url, page=7))  # four pages: 7 + 7 + 7 + 4
    assert got == sorted((k.removeprefix("ds/"), len(v)) for k, v in objects.items())
    client.report_view(
        url,
        {"hit_opens": 2, "hit_bytes": 20, "miss_opens": 1, "miss_bytes": 5, "failed_opens": 1},
        [{"key": "d0/000", "kind": "not_found", "message": "gone"}],
    )
    doc = client.status(url)
    assert doc.view is not None and doc.view.hit_opens == 2
    assert doc.open_failures[0].key == "d0/000"
    m = agent.metrics()
    assert m[f'shardcache_view_opens_total{{dataset="{url}",result="hit"}}'] == 2
    assert m[f'shardcache_view_bytes_total{{dataset="{url}",result="miss"}}'] == 5
    assert m['shardcache_hits_total{path="directory"}'] == 2
    with pytest.raises(ConfigError):
        client._request("GET", "/v1/datasets/manifest?url=" + url + "&limit=0")
