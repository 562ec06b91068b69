"""The agent's `CACHE/status/DIGEST/status.json`: what an init container with only the status
volume reads, kept apart from the dataset's directory. A real agent process, a real moto
bucket."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from shardcache.partition import Partition
from shardcache.status import DatasetStatus
from shardcache.store.layout import Layout
from shardcache.store.statusfile import parse_status_file, status_record
from shardcache.urls import parse_url

DATA = {f"st/part-{i}.bin": os.urandom(3000 + 17 * i) for i in range(8)}
FIELDS = {
    "url",
    "state",
    "objects_total",
    "objects_local",
    "bytes_total",
    "bytes_local",
    "updated_at",
}


def read_until(path: Path, done: Any, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            doc = {}
        if doc and done(doc):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached the expected state; last: {doc}")


def test_status_record_keeps_only_counts_and_state() -> None:
    doc = {
        "url": "s3://bkt/p/",
        "local_dir": "/x",
        "state": "downloading",
        "objects_total": 3,
        "objects_local": 1,
        "bytes_total": 30,
        "bytes_local": 10,
        "owners": ["pod-of-another-tenant"],
        "errors": [{"key": "k", "kind": "access_denied", "message": "secret detail"}],
        "fraction_local": 0.33,
    }
    record = status_record(DatasetStatus.from_json(doc), 1700000000.12345)
    assert set(record) == FIELDS and record["updated_at"] == 1700000000.123
    assert "pod-of-another-tenant" not in json.dumps(record)


def test_status_file_follows_the_prefetch_and_survives_verify(s3_bucket, make_agent) -> None:
    s3_bucket.put(DATA)
    agent = make_agent()
    agent.start()
    url = s3_bucket.url("st/")
    first = agent.client.register(url, "pod-1", None, "all")
    path = Layout(agent.cache_dir).status_dir(parse_url(url)) / "status.json"
    assert path.exists()  # written at registration, before the prefetch ends
    assert path.parent.parent == agent.cache_dir / "status"  # beside the data tree

    doc = read_until(path, lambda d: d["state"] == "complete")
    total = sum(len(v) for v in DATA.values())
    assert set(doc) == FIELDS
    assert doc["url"] == str(parse_url(url).as_dataset())
    assert (doc["objects_total"], doc["objects_local"]) == (len(DATA), len(DATA))
    assert doc["bytes_total"] == doc["bytes_local"] == total
    assert abs(doc["updated_at"] - time.time()) < 3600  # wall-clock epoch seconds
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o644  # readable by the pod's arbitrary uid, writable by nobody else
    assert not [p for p in path.parent.iterdir() if p.name != "status.json"]  # no temp left
    local = first.local_dir
    entries = sorted(str(p.relative_to(local)) for p in local.rglob("*"))
    assert entries == sorted(k.removeprefix("st/") for k in DATA)  # the objects, nothing else

    for body in ({"url": url}, {"url": None}):  # one dataset, then the whole cache
        report = agent.client._request("POST", "/v1/verify", body)
        assert report["clean"] and report["stray"] == [], report
        assert json.loads(path.read_text())["state"] == "complete"

    agent.client.release(url, "pod-1")
    evicted = agent.client._request("POST", "/v1/evict", {"url": url, "force": False})
    assert evicted["objects_removed"] == len(DATA)
    assert not path.exists()  # no stale "complete" for data that is gone
    assert agent.terminate() == 0


def test_shardcache_keys_are_objects_and_old_status_dirs_are_swept(s3_bucket, make_agent) -> None:
    """No name is reserved any more: a store's `.shardcache/...` keys are objects like any
    other; the status directory an older agent left inside the dataset goes at registration
    (a key of that name inside it stays), and the status survives restarts apart from it."""
    s3_bucket.put({**DATA, "st/.shardcache/mine.json": b'{"owned": "by the dataset"}'})
    url = s3_bucket.url("st/")
    agent = make_agent()
    agent.start()
    agent.client.register(url, "pod-1", None, "all")
    status_dir = Layout(agent.cache_dir).status_dir(parse_url(url))
    doc = read_until(status_dir / "status.json", lambda d: d["state"] == "complete")
    assert doc["objects_total"] == len(DATA) + 1
    local = agent.client.status(url).local_dir
    assert (local / ".shardcache" / "mine.json").read_bytes() == b'{"owned": "by the dataset"}'
    agent.client.release(url, "pod-1")
    assert agent.terminate() == 0

    # what an older agent left: its status file and a temporary one, among the objects
    (local / ".shardcache" / "status.json").write_text('{"state": "complete"}')
    (local / ".shardcache" / ".status.json.0123456789ab.tmp").write_text("{")
    nested = local / "sub" / ".shardcache"
    nested.mkdir(parents=True)
    (nested / "status.json").write_text("{}")
    again = make_agent()
    again.start()
    again.client.register(url, "pod-2", None, "all")
    assert sorted(p.name for p in (local / ".shardcache").iterdir()) == ["mine.json"]
    later = read_until(status_dir / "status.json", lambda d: d["updated_at"] > doc["updated_at"])
    assert later["bytes_local"] == later["bytes_total"] == doc["bytes_total"]
    sub = s3_bucket.url("st/sub/")
    again.client.register(sub, "pod-2", None, "none")
    assert not nested.exists()  # the nested dataset's leftover goes when it is registered
    report = again.client._request("POST", "/v1/verify", {"url": None})
    assert report["clean"], report
    assert again.terminate() == 0


def test_status_record_carries_each_shares_counts_only() -> None:
    share = {
        "partition": "1/4",
        "listed": True,
        "objects_total": 2,
        "objects_local": 1,
        "bytes_total": 20,
        "bytes_local": 10,
        "fraction_local": 0.5,
        "extra": "dropped",
    }
    doc = {
        "url": "s3://bkt/p/",
        "state": "partial",
        "objects_total": 8,
        "objects_local": 1,
        "bytes_total": 80,
        "bytes_local": 10,
        "shares": [share],
    }
    status = DatasetStatus.from_json(doc)
    record = status_record(status, 1700000000.0)
    assert record["shares"] == [
        {k: v for k, v in share.items() if k not in ("fraction_local", "extra")}
    ]
    # what `shardcache wait --partition 1/4` reads back from the file
    seen, _ = parse_status_file(json.dumps(record), status.url)
    assert seen is not None
    mine = seen.for_share(Partition(1, 4))
    assert mine is not None and mine.fraction_local == 0.5 and seen.fraction_local == 0.125
    assert seen.for_share(Partition(0, 4)) is None
