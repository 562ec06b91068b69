"""The backend seam: what the engine needs from an object store, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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

    async def read(self, info: ObjectInfo, start: int, end: int) -> bytes:
        """Bytes [start, end) of exactly the version in `info`.

        Raises VersionChangedError when the object no longer has that version, so a download
        never mixes bytes of two versions.
        """
        ...

    async def close(self) -> None: ...
