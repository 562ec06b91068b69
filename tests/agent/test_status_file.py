"""The agent's `DATASET_DIR/.shardcache/status.json`: what an init container with only the
dataset mount reads. A real agent process, a real moto bucket."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from shardcache.status import DatasetStatus
from shardcache.store.statusfile import status_record
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
    path = first.local_dir / ".shardcache" / "status.json"
    assert path.exists()  # written at registration, before the prefetch ends

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

    for body in ({"url": url}, {"url": None}):  # one dataset, then the whole cache
        report = agent.client._request("POST", "/v1/verify", body)
        assert report["clean"] and report["stray"] == [], report
        assert json.loads(path.read_text())["state"] == "complete"

    agent.client.release(url, "pod-1")
    evicted = agent.client._request("POST", "/v1/evict", {"url": url, "force": False})
    assert evicted["objects_removed"] == len(DATA)
    assert not path.exists()  # no stale "complete" for data that is gone
    assert agent.terminate() == 0


def test_status_file_is_rewritten_after_a_restart_and_keys_are_refused(
    s3_bucket, make_agent
) -> None:
    s3_bucket.put({**DATA, "st/.shardcache/status.json": b'{"state": "complete"}'})
    agent = make_agent()
    agent.start()
    url = s3_bucket.url("st/")
    local = agent.client.register(url, "pod-1", None, "all").local_dir
    path = local / ".shardcache" / "status.json"
    doc = read_until(path, lambda d: d["state"] in ("complete", "partial", "failed"))
    # the store's own `.shardcache/status.json` is refused, never served as ours
    assert doc["objects_total"] == len(DATA)
    assert agent.terminate() == 0

    again = make_agent()
    again.start()  # the full scan at start must not delete the status directory
    again.client.register(url, "pod-2", None, "all")
    later = read_until(path, lambda d: d["updated_at"] > doc["updated_at"])
    assert later["bytes_local"] == later["bytes_total"] == doc["bytes_total"]
    report = again.client._request("POST", "/v1/verify", {"url": None})
    assert report["clean"], report
    assert path.exists()
    assert again.terminate() == 0
