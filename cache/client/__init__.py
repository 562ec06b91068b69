"""The Python client: agent access, path helpers and the `shardcache` fsspec protocol.

Importing this package starts nothing and imports neither fsspec backends nor torch.
"""

from .api import local_path, open, prefetch, wait_until_local
from .client import Client, ClientStats
from .waiting import WaitTimeoutError

__all__ = [
    "Client",
    "ClientStats",
    "WaitTimeoutError",
    "local_path",
    "open",
    "prefetch",
    "wait_until_local",
]
