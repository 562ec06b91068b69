"""The Python client: agent access, path helpers and the `shardcache` fsspec protocol.

Importing this package starts nothing and imports neither fsspec backends nor torch. The
public names below are loaded on first use (PEP 562), so that the CSI plugin and the CLI,
which only need `shardcache.client.agent_client`, do not pay for the engine's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import local_path, open, prefetch, wait_until_local
    from .client import Client, ClientSettings, ClientStats
    from .shares import Partition, list_share, partition, partition_from_env
    from .waiting import WaitTimeoutError

_WHERE = {
    "local_path": "api",
    "open": "api",
    "prefetch": "api",
    "wait_until_local": "api",
    "Client": "client",
    "ClientSettings": "client",
    "ClientStats": "client",
    "WaitTimeoutError": "waiting",
    "Partition": "shares",
    "list_share": "shares",
    "partition": "shares",
    "partition_from_env": "shares",
}

__all__ = [
    "Client",
    "ClientSettings",
    "ClientStats",
    "Partition",
    "WaitTimeoutError",
    "list_share",
    "local_path",
    "open",
    "partition",
    "partition_from_env",
    "prefetch",
    "wait_until_local",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
