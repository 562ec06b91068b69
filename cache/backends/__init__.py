"""Object-store backends: a small async Protocol and its implementations.

`base` defines the seam; `cloud` holds the real stores and is the only package that imports
the cloud SDKs; `memory` (an in-memory store) and `faults` (a fault-injecting wrapper) ship as
product code for tests, benchmarks and users' own tests.
"""

from __future__ import annotations

from .base import Backend, Checksum, ObjectInfo

__all__ = ["Backend", "Checksum", "ObjectInfo"]
