"""MemoryBackend specifics beyond the conformance suite: versions, deletes, counters."""

from __future__ import annotations

import asyncio

import pytest
from shardcache.backends.memory import BackendStats, MemoryBackend
from shardcache.errors import NotFoundError, VersionChangedError


def test_every_put_is_a_new_generation_even_with_equal_bytes() -> None:
    backend = MemoryBackend()
    first = backend.put("k", b"same")
    second = backend.put("k", b"same")
    assert int(second.version) > int(first.version)
    with pytest.raises(VersionChangedError):
        asyncio.run(backend.read(first, 0, 4))


def test_delete_then_read_is_not_found() -> None:
    backend = MemoryBackend()
    info = backend.put("k", b"data")
    backend.delete("k")
    with pytest.raises(NotFoundError):
        asyncio.run(backend.read(info, 0, 4))
    with pytest.raises(NotFoundError):
        backend.delete("k")


def test_stats_count_requests_and_bytes_as_snapshots() -> None:
    backend = MemoryBackend()
    info = backend.put("a/b", b"0123456789")
    before = backend.stats()

    async def work() -> None:
        await backend.list_objects("a/")
        await backend.stat("a/b")
        await backend.read(info, 2, 6)
        await backend.read(info, 0, 10)

    asyncio.run(work())
    assert before == BackendStats()  # a snapshot does not move
    after = backend.stats()
    assert (after.list_requests, after.stat_requests, after.read_requests) == (1, 1, 2)
    assert after.bytes_read == 14
    assert after.requests == 4


def test_malformed_ranges_are_refused() -> None:
    backend = MemoryBackend()
    info = backend.put("k", b"data")
    with pytest.raises(ValueError, match="invalid byte range"):
        asyncio.run(backend.read(info, 3, 1))
    with pytest.raises(ValueError, match="invalid byte range"):
        asyncio.run(backend.read(info, -1, 2))
