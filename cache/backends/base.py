"""The backend seam: what the engine needs from an object store, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: what a read returns: `bytes`, or a read-only `memoryview` over the buffer a transfer library
#: already holds (obstore's response body), which is written and hashed from where it lies:
#: copying a 16 MiB part into a `bytes` holds the GIL while it runs, and on the benchmark
#: machine those copies came to ~40 ms per part, the event loop stalled all the while
#: (results/2026-11-30-coldfill.md, "Large objects (session 2)")
Data = bytes | memoryview


@dataclass(frozen=True)
class Checksum:
    """A whole-object checksum the store vouches for.

    `algorithm` is "md5" (S3 single-part ETag, GCS md5Hash, Azure Content-MD5); `value` is the
    lowercase hex digest.
    """

    algorithm: str
    value: str


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed: its full key in the bucket, size, and version.

    `version` identifies the bytes: an S3 VersionId or ETag, a GCS generation, an Azure ETag.
    Two listings with the same key and version describe the same bytes.
    """

    key: str
    size: int
    version: str
    checksum: Checksum | None = None


class Backend(Protocol):
    """An object store namespace (one bucket or container), used from one event loop.

    Errors are raised as shardcache errors (`NotFoundError`, `AccessDeniedError`,
    `UnavailableError`, `VersionChangedError`…), already translated and redacted.
    """

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, recursively, in key order."""
        ...

    async def stat(self, key: str) -> ObjectInfo:
        """The current size and version of one object."""
        ...

    async def read(self, info: ObjectInfo, start: int, end: int) -> Data:
        """Bytes [start, end) of exactly the version in `info`.

        Raises VersionChangedError when the object no longer has that version, so a download
        never mixes bytes of two versions.
        """
        ...

    async def close(self) -> None: ...
