"""No key name is reserved: shardcache keeps nothing of its own inside a dataset's directory
(the agent's progress lives in CACHE/status/), so `.shardcache/...` keys are objects, and a
`.shardcache` entry the index does not know (an older agent's status file) is a stray."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from shardcache.backends.memory import MemoryBackend
from shardcache.config import Config
from shardcache.keys import check_key, plan_paths
from shardcache.store.layout import Layout, status_name
from shardcache.urls import parse_url
from support import open_engine

URL = "memory://bkt/ds/"


@pytest.mark.parametrize("key", [".shardcache", ".shardcache/status.json", "a/.shardcache/b"])
def test_shardcache_is_an_ordinary_name(key: str) -> None:
    assert check_key(key) is None
    assert plan_paths([key]) == ([key], [])


def test_status_dirs_are_flat_per_dataset_and_outside_the_data_tree(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    outer, inner = parse_url("s3://bkt/a"), parse_url("s3://bkt/a/b/")
    assert layout.status_dir(outer) == layout.status_dir(parse_url("s3://bkt/a/"))
    assert layout.status_dir(outer) != layout.status_dir(inner)
    for ds in (outer, inner):
        assert layout.status_dir(ds).parent == tmp_path / "status"
        assert not layout.status_dir(ds).is_relative_to(layout.data_dir)
        assert len(status_name(ds)) == 32
    long = parse_url("s3://bkt/" + "x/" * 1500)  # deeper than any one file name allows
    assert len(layout.status_dir(long).name) == 32


@pytest.mark.parametrize("url", ["s3://bkt/a/b/", "s3://bkt/", "gs://data/data/"])
def test_the_cache_is_found_from_a_dataset_directory(tmp_path: Path, url: str) -> None:
    """How the CSI plugin finds the status directory beside the local_dir the agent names."""
    layout, ds = Layout(tmp_path / "cache"), parse_url(url)
    found = Layout.of_dataset_dir(layout.dataset_dir(ds), ds)
    assert found is not None and found.status_dir(ds) == layout.status_dir(ds)
    assert Layout.of_dataset_dir(tmp_path / "elsewhere" / "b", ds) is None
    assert Layout.of_dataset_dir(layout.dataset_dir(parse_url("s3://bkt/other/")), ds) is None


@pytest.mark.parametrize("url", [URL, None])  # one dataset's walk, and the full scan
def test_shardcache_keys_are_served_and_leftovers_are_strays(
    tmp_path: Path, url: str | None
) -> None:
    store = MemoryBackend("bkt")
    store.put("ds/sub/a.bin", b"a" * 100)
    store.put("ds/.shardcache/data.bin", b"an object like any other")
    config = Config(cache_dir=tmp_path / "cache", min_free_fraction=0.0)

    async def go() -> None:
        async with open_engine(config, store) as engine:
            report = await engine.prefetch(parse_url(URL))
            assert report.refused == []
            local = report.local_dir
            assert (local / ".shardcache" / "data.bin").read_bytes() == b"an object like any other"
            # what an agent before the status/ directory left among the objects
            (local / ".shardcache" / "status.json").write_text("{}")
            (local / "sub" / ".shardcache").mkdir()
            (local / "sub" / ".shardcache" / "status.json").write_text("{}")
            verify = await engine.verify(parse_url(url) if url else None)
            names = sorted(str(s).split("/ds/", 1)[1] for s in verify.stray)  # abs or relative
            assert names == [".shardcache/status.json", "sub/.shardcache/status.json"]
            assert not (local / ".shardcache" / "status.json").exists()
            assert (local / ".shardcache" / "data.bin").exists()
            again = await engine.verify(parse_url(url) if url else None)
            assert again.clean and again.ok == 2

    asyncio.run(go())
