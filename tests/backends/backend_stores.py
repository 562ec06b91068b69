"""The stores the conformance suite runs against, each behind one small `Store` value."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pytest
from shardcache.backends.base import Backend
from shardcache.backends.cloud import open_backend
from shardcache.backends.memory import MemoryBackend
from shardcache.config import Config
from shardcache.testkit.emulators import Bucket
from shardcache.urls import StoreURL, parse_url

#: the adapter-backed stores, all speaking to something real
ADAPTER_STORES = ["memory-fsspec", "file", "s3", "gs", "az"]
ALL_STORES = ["memory", *ADAPTER_STORES]


@dataclass
class Store:
    """One store under test: where its dataset lives, how to seed it, how to open it."""

    name: str
    #: the dataset root; tests put their keys under `url.path`
    url: StoreURL
    put: Callable[[dict[str, bytes]], None]
    open: Callable[[], Awaitable[Backend]]
    #: whether listings carry an md5 that the store vouches for
    has_checksums: bool

    def key(self, relative: str) -> str:
        return self.url.path + relative

    def put_relative(self, objects: dict[str, bytes]) -> None:
        self.put({self.key(k): v for k, v in objects.items()})


def make_config(tmp_path: Path) -> Config:
    # short timeouts keep the unreachable-endpoint tests quick; still far above loopback
    return Config(cache_dir=tmp_path / "cache", connect_timeout_s=5.0, read_timeout_s=30.0)


def _cloud_store(name: str, bucket: Bucket, config: Config) -> Store:
    url = parse_url(bucket.url())
    return Store(name, url, bucket.put, lambda: open_backend(url, config), has_checksums=True)


def _memory_store() -> Store:
    backend = MemoryBackend()

    def put(objects: dict[str, bytes]) -> None:
        for key, data in objects.items():
            backend.put(key, data)

    async def opened() -> Backend:
        return backend

    return Store("memory", StoreURL("memory", "memory", ""), put, opened, has_checksums=True)


def _fsspec_memory_store(config: Config) -> Iterator[Store]:
    fs = fsspec.filesystem("memory")
    url = parse_url(f"memory://t-{uuid.uuid4().hex[:12]}/")

    def put(objects: dict[str, bytes]) -> None:
        for key, data in objects.items():
            fs.pipe_file(f"/{url.bucket}/{key}", data)

    yield Store("memory-fsspec", url, put, lambda: open_backend(url, config), False)
    if fs.exists(f"/{url.bucket}"):
        fs.rm(f"/{url.bucket}", recursive=True)


def _file_store(tmp_path: Path, config: Config) -> Store:
    root = tmp_path / "data"
    root.mkdir()
    url = parse_url(f"file://{root}/")

    def put(objects: dict[str, bytes]) -> None:
        for key, data in objects.items():
            path = Path(url.bucket) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    return Store("file", url, put, lambda: open_backend(url, config), has_checksums=False)


def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    name, config = request.param, make_config(tmp_path)
    if name == "memory":
        yield _memory_store()
    elif name == "memory-fsspec":
        yield from _fsspec_memory_store(config)
    elif name == "file":
        yield _file_store(tmp_path, config)
    else:  # emulators start lazily, only for the tests that use them
        fixture = {"s3": "s3_bucket", "gs": "gcs_bucket", "az": "azure_container"}[name]
        yield _cloud_store(name, request.getfixturevalue(fixture), config)
