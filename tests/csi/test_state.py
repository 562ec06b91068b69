"""Publication records: round trip, one file per target, corrupt files skipped, no leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardcache.errors import CacheStateError
from shardcache_csi.state import Record, StateDir
from shardcache_csi.targets import PublishSpec


def spec(target: str) -> PublishSpec:
    return PublishSpec(
        volume_id="csi-1",
        target_path=target,
        dataset="s3://b/p/",
        namespace="ns",
        pod_name="p",
        pod_uid="u1",
        service_account="",
        ephemeral=True,
        readonly=True,
        prefetch="all",
    )


def test_round_trip_and_remove(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path / "state"))
    state.prepare()
    a, b = Record(spec("/k/a"), "/cache/a"), Record(spec("/k/b"), "", release_pending=True)
    state.put(a)
    state.put(b)
    assert state.get("/k/a") == a and state.get("/k/b") == b
    assert state.get("/k/c") is None
    assert sorted(r.spec.target_path for r in state.all()) == ["/k/a", "/k/b"]
    state.put(Record(spec("/k/a"), "/cache/a2"))  # replaced, not duplicated
    assert len(state.all()) == 2 and state.get("/k/a") == Record(spec("/k/a"), "/cache/a2")
    state.remove("/k/a")
    state.remove("/k/a")  # idempotent
    assert [r.spec.target_path for r in state.all()] == ["/k/b"]
    assert not list((tmp_path / "state").glob(".tmp-*"))  # no temporary file left behind


def test_corrupt_record(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    state.put(Record(spec("/k/a"), "/cache/a"))
    (only,) = tmp_path.glob("*.json")
    only.write_text("{not json")
    (tmp_path / "other.json").write_text('{"spec": {"volume_id": "x"}}')
    assert state.all() == []  # skipped at start, logged
    with pytest.raises(CacheStateError, match="corrupt"):
        state.get("/k/a")  # but never mistaken for "not published" on a request
