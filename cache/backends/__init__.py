"""Object-store backends: a small async Protocol and its implementations.

`base` defines the seam; `fsspec_adapter` is the only module that imports the cloud SDKs
(through fsspec's async filesystems); `memory` is an in-memory store that ships as product
code for tests and benchmarks.
"""

from __future__ import annotations

from .base import Backend, Checksum, ObjectInfo

__all__ = ["Backend", "Checksum", "ObjectInfo"]
