"""`.shardcache` is reserved inside dataset directories: keys using it are refused, and the
engine's stray detection leaves such a directory alone (but not a link or a file of that name)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from shardcache.backends.memory import MemoryBackend
from shardcache.config import Config
from shardcache.keys import check_key, plan_paths
from shardcache.urls import parse_url
from support import open_engine

URL = "memory://bkt/ds/"


@pytest.mark.parametrize("key", [".shardcache", ".shardcache/status.json", "a/.shardcache/b"])
def test_reserved_segment_is_refused(key: str) -> None:
    assert check_key(key) == "reserved name `.shardcache`"


@pytest.mark.parametrize("key", [".shardcache2", "x.shardcache", "a/.shardcaches/b", ".cache"])
def test_similar_names_are_fine(key: str) -> None:
    assert check_key(key) is None


def test_plan_paths_reports_the_reserved_key() -> None:
    accepted, refused = plan_paths(["a", ".shardcache/status.json"])
    assert accepted == ["a"]
    assert [(r.key, r.reason) for r in refused] == [
        (".shardcache/status.json", "reserved name `.shardcache`")
    ]


def _status_dirs(local: Path) -> list[Path]:
    made = [local / ".shardcache", local / "sub" / ".shardcache"]
    for d in made:
        d.mkdir(parents=True)
        (d / "status.json").write_text("{}")
    return made


@pytest.mark.parametrize("url", [URL, None])  # one dataset's walk, and the full scan
def test_verify_keeps_status_dirs_and_removes_look_alikes(tmp_path: Path, url: str | None) -> None:
    store = MemoryBackend("bkt")
    store.put("ds/sub/a.bin", b"a" * 100)
    store.put("ds/.shardcache/evil", b"refused")
    config = Config(cache_dir=tmp_path / "cache", min_free_fraction=0.0)

    async def go() -> None:
        async with open_engine(config, store) as engine:
            report = await engine.prefetch(parse_url(URL))
            assert [r.key for r in report.refused] == ["ds/.shardcache/evil"]
            local = report.local_dir
            kept = _status_dirs(local)
            os.symlink("/etc", local / "sub" / "lnk")
            (local / "deep").mkdir()
            os.symlink("/etc", local / "deep" / ".shardcache")  # a link is never ours
            (local / "sub" / "x").mkdir()
            (local / "sub" / "x" / ".shardcache").write_text("a file is not ours either")
            verify = await engine.verify(parse_url(url) if url else None)
            names = sorted(os.path.basename(s) for s in verify.stray)
            assert names == [".shardcache", ".shardcache", "lnk"]
            for d in kept:
                assert (d / "status.json").read_text() == "{}"
            assert not os.path.lexists(local / "deep" / ".shardcache")
            assert not os.path.lexists(local / "sub" / "x" / ".shardcache")
            again = await engine.verify(parse_url(url) if url else None)
            assert again.clean and again.ok == 1

    asyncio.run(go())
