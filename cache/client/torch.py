"""A map-style PyTorch Dataset over the objects under a prefix.

The keys are listed once, when the dataset is built (from the manifest of a known dataset,
else from the store); items are read by index through the process's default client, so each
DataLoader worker, whatever its start method (fork, spawn, forkserver), reads local hits
straight from disk and builds its own loops only on a miss. Only the list of URLs and the
transform are pickled to a spawned worker. Importing `shardcache.client` never imports torch;
importing this module does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from ..urls import parse_url
from .api import client_with, default_client
from .client import Client


class ShardcacheDataset(Dataset[Any]):
    """`ds[i]` is the bytes of the i-th object (in key order), or `transform(bytes)`.

    The client settings (cache dir, agent socket, budget) are captured when the dataset is
    built and travel with it to the workers, so a worker reads through the same cache as the
    process that built the dataset even if its own environment differs (a forkserver started
    earlier, a spawned worker with another environment).
    """

    def __init__(
        self,
        url: str,
        transform: Callable[[bytes], Any] | None = None,
        client: Client | None = None,
    ) -> None:
        ds = parse_url(url).as_dataset()
        client = client or default_client()
        self.settings = client.settings
        self.urls = [f"{ds.scheme}://{name}" for name in client.find(str(ds))]
        self.transform = transform
        self._client: Client | None = client

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None  # a client is per process; the settings rebuild it
        return state

    def __len__(self) -> int:
        return len(self.urls)

    def __getitem__(self, index: int) -> Any:
        if self._client is None:
            self._client = client_with(self.settings)
        data = self._client.cat(self.urls[index])
        return data if self.transform is None else self.transform(data)
