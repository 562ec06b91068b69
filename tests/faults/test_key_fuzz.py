"""Fuzzing key -> path through the real engine and file system: whatever the store's keys
(unicode, separators, `..`, NUL, very long names), every file lands under the dataset's
directory, no two keys share a file, and every accepted key is a file."""

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shardcache import keys as keymap
from shardcache.backends.memory import MemoryBackend
from shardcache.config import Config
from shardcache.urls import parse_url
from support import open_engine

segment = st.one_of(
    st.text(min_size=0, max_size=12),
    st.sampled_from(
        ["..", ".", "", "\x00", "\\", "..\\..", "~", " ", "\n", "x" * 255, "é" * 128, "a" * 300]
    ),
)
key = st.lists(segment, min_size=1, max_size=5).map("/".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(key, max_size=25, unique=True))
def test_keys_from_the_store_never_escape_or_collide(raw_keys):
    tmp = Path(tempfile.mkdtemp())
    try:
        store = MemoryBackend("bkt")
        for i, k in enumerate(raw_keys):
            store.put("ds/" + k, f"{i}".encode())
        config = Config(cache_dir=tmp / "cache", min_free_fraction=0.0, fsync=False)

        async def go():
            async with open_engine(config, store) as engine:
                return await engine.prefetch(parse_url("memory://bkt/ds/"))

        report = asyncio.run(go())
        accepted, refused = keymap.plan_paths("ds/" + k for k in raw_keys)
        assert report.ok, report.failed
        assert len(report.refused) == len(refused)
        root = os.path.realpath(report.local_dir)
        files = {}
        for dirpath, dirnames, names in os.walk(tmp, followlinks=False):
            assert not any(os.path.islink(os.path.join(dirpath, d)) for d in dirnames)
            for name in names:
                full = os.path.realpath(os.path.join(dirpath, name))
                if full.startswith(str(tmp / "cache" / "data")):
                    assert full.startswith(root + os.sep)
                    files[os.path.relpath(full, root)] = Path(full).read_bytes()
        # every accepted key is exactly one file, holding that key's bytes
        assert len(files) == len(accepted)
        for k in accepted:
            assert files[k.removeprefix("ds/")] == f"{raw_keys.index(k[3:])}".encode()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
