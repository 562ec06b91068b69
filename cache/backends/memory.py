"""An in-memory object store that ships as product code.

Unit tests of the engine and the benchmarks need a store with real semantics (versions that
change on overwrite, ranged reads of exactly one version, not-found errors) but no network;
this is it. It counts what the engine asks of it, so tests can assert "one download" (R6)
without a proxy. Everything happens on the caller's loop; there is no thread and no global.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import NotFoundError, VersionChangedError
from .base import Checksum, ObjectInfo


@dataclass(frozen=True)
class BackendStats:
    """A snapshot of what a backend was asked to do, for tests and benchmarks."""

    list_requests: int = 0
    stat_requests: int = 0
    read_requests: int = 0
    bytes_read: int = 0

    @property
    def requests(self) -> int:
        return self.list_requests + self.stat_requests + self.read_requests


@dataclass(frozen=True)
class _Stored:
    data: bytes
    info: ObjectInfo


def check_range(start: int, end: int) -> None:
    """Refuse a malformed range; every backend shares this so that they fail alike."""
    if start < 0 or end < start:
        raise ValueError(f"invalid byte range [{start}, {end})")


class MemoryBackend:
    """A dict of key -> (bytes, version) behind the `Backend` Protocol.

    Versions are generations that increase with every `put`, like GCS generations, so an
    overwritten object always gets a new version even when the bytes are equal.
    """

    def __init__(self, bucket: str = "memory") -> None:
        self.bucket = bucket
        self._objects: dict[str, _Stored] = {}
        self._generation = 0
        self._stats = BackendStats()
        self.closed = False

    # --- writing (tests and benchmarks only; the engine never writes to a store) ---

    def put(self, key: str, data: bytes) -> ObjectInfo:
        """Store `data` under `key` with a new version and return how it will be listed."""
        self._generation += 1
        info = ObjectInfo(
            key=key,
            size=len(data),
            version=str(self._generation),
            checksum=Checksum("md5", hashlib.md5(data).hexdigest()),
        )
        self._objects[key] = _Stored(bytes(data), info)
        return info

    def delete(self, key: str) -> None:
        if self._objects.pop(key, None) is None:
            raise NotFoundError(self._missing(key))

    def stats(self) -> BackendStats:
        """A frozen snapshot of the request and byte counters."""
        return self._stats

    # --- the Backend Protocol ---

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        self._count(list_requests=1)
        return [s.info for k, s in sorted(self._objects.items()) if k.startswith(prefix)]

    async def stat(self, key: str) -> ObjectInfo:
        self._count(stat_requests=1)
        return self._get(key).info

    async def read(self, info: ObjectInfo, start: int, end: int) -> bytes:
        check_range(start, end)
        self._count(read_requests=1)
        stored = self._get(info.key)
        if stored.info.version != info.version:
            raise VersionChangedError(
                f"memory://{self.bucket}/{info.key} changed: expected version {info.version}, "
                f"found {stored.info.version}; list the dataset again to fetch the new version"
            )
        chunk = stored.data[start:end]
        self._count(bytes_read=len(chunk))
        return chunk

    async def close(self) -> None:
        self.closed = True

    # --- helpers ---

    def _get(self, key: str) -> _Stored:
        stored = self._objects.get(key)
        if stored is None:
            raise NotFoundError(self._missing(key))
        return stored

    def _missing(self, key: str) -> str:
        return f"memory://{self.bucket}/{key} does not exist; check the key and the prefix"

    def _count(self, **deltas: int) -> None:
        s = self._stats
        self._stats = BackendStats(
            list_requests=s.list_requests + deltas.get("list_requests", 0),
            stat_requests=s.stat_requests + deltas.get("stat_requests", 0),
            read_requests=s.read_requests + deltas.get("read_requests", 0),
            bytes_read=s.bytes_read + deltas.get("bytes_read", 0),
        )
