"""Azure object reads through obstore, and the SDK's path beside it, on Azurite.

The backend reads through obstore whenever it can name the key; these tests read keys down
both paths and check what the conformance suite checks for one: exact bytes, a rewritten
blob refused by version, a deleted one reported as gone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from shardcache.backends.base import Backend
from shardcache.backends.cloud import open_backend
from shardcache.backends.cloud.objstore import AzureAccess, azure_access, nameable
from shardcache.config import Config
from shardcache.errors import NotFoundError, VersionChangedError
from shardcache.testkit.emulators import Bucket
from shardcache.urls import parse_url

#: one key each path takes: obstore names the first, only the SDK the second
KEYS = ("d/plain.bin", "d//empty-segment.bin")


def test_connection_strings_name_the_account_its_endpoint_and_its_secret() -> None:
    azurite = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5PQ==;"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    )
    assert azure_access(azurite) == AzureAccess(
        "devstoreaccount1", "http://127.0.0.1:10000/devstoreaccount1", key="a2V5PQ=="
    )
    cloud = (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=k==;"
        "EndpointSuffix=core.chinacloudapi.cn"
    )
    assert azure_access(cloud) == AzureAccess(
        "acct", "https://acct.blob.core.chinacloudapi.cn", key="k=="
    )
    sas = (
        "BlobEndpoint=https://acct.blob.core.windows.net/;AccountName=acct;"
        "SharedAccessSignature=sv=2024&sig=a%3D"
    )
    assert azure_access(sas) == AzureAccess(
        "acct", "https://acct.blob.core.windows.net", sas="sv=2024&sig=a%3D"
    )
    # the SDK's shorthand, and a string without an account, stay with the SDK
    assert azure_access("UseDevelopmentStorage=true") is None
    assert azure_access("BlobEndpoint=https://x.example/") is None


def test_only_keys_obstore_can_name_take_its_path() -> None:
    assert [nameable(k) for k in KEYS] == [True, False]
    assert not nameable("d/./x") and not nameable("d/../x") and not nameable("d/")


def _with_backend(bucket: Bucket, tmp_path: Path, fn: Callable[[Backend], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        backend = await open_backend(parse_url(bucket.url("d/")), Config(cache_dir=tmp_path))
        try:
            return await fn(backend)
        finally:
            await backend.close()

    return asyncio.run(go())


def test_reads_through_obstore_and_the_sdk_are_byte_exact(
    azure_container: Bucket, tmp_path: Path
) -> None:
    blobs = {k: os.urandom(300_000) for k in KEYS}
    azure_container.put(blobs)

    async def read_all(b: Backend) -> dict[str, bytes]:
        assert getattr(b, "_reader", None) is not None  # obstore is installed with the extra
        infos = {i.key: i for i in await b.list_objects("d/")}
        return {k: await b.read(infos[k], 1000, 250_000) for k in KEYS}

    got = _with_backend(azure_container, tmp_path, read_all)
    assert got == {k: v[1000:250_000] for k, v in blobs.items()}


@pytest.mark.parametrize("key", KEYS)
def test_a_rewritten_blob_is_refused_and_a_deleted_one_is_gone(
    azure_container: Bucket, tmp_path: Path, key: str
) -> None:
    azure_container.put({key: b"first"})

    async def listed(b: Backend) -> Any:
        return {i.key: i for i in await b.list_objects("d/")}[key]

    old = _with_backend(azure_container, tmp_path, listed)
    azure_container.put({key: b"FIRST"})
    with pytest.raises(VersionChangedError):
        _with_backend(azure_container, tmp_path, lambda b: b.read(old, 0, 5))
    new = _with_backend(azure_container, tmp_path, listed)
    assert _with_backend(azure_container, tmp_path, lambda b: b.read(new, 0, 5)) == b"FIRST"
    azure_container.delete(key)
    with pytest.raises(NotFoundError):
        _with_backend(azure_container, tmp_path, lambda b: b.read(new, 0, 5))
