"""One conformance suite for every backend: the in-memory fake, file://, memory://, and the
three clouds through their emulators (moto, gcp-storage-emulator, Azurite).

What the engine relies on is checked here once, the same way for all of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from backend_stores import Store, make_config
from emulators import AZURITE_ACCOUNT
from shardcache.backends.base import Backend, ObjectInfo
from shardcache.backends.cloud import open_backend
from shardcache.errors import (
    AccessDeniedError,
    NotFoundError,
    UnavailableError,
    VersionChangedError,
)
from shardcache.testkit.emulators import free_port
from shardcache.urls import parse_url

T = TypeVar("T")


def with_backend(store: Store, fn: Callable[[Backend], Awaitable[T]]) -> T:
    async def go() -> T:
        backend = await store.open()
        try:
            return await fn(backend)
        finally:
            await backend.close()

    return asyncio.run(go())


def listed(store: Store, prefix: str = "") -> dict[str, ObjectInfo]:
    infos = with_backend(store, lambda b: b.list_objects(store.key(prefix)))
    assert [i.key for i in infos] == sorted(i.key for i in infos), "listing not in key order"
    return {i.key[len(store.url.path) :]: i for i in infos}


def test_list_reports_sizes_versions_and_checksums(store: Store) -> None:
    objects = {"a.bin": b"alpha", "b/c.bin": os.urandom(3000), "d.txt": b"\x00" * 17}
    store.put_relative(objects)
    infos = listed(store)
    assert set(infos) == set(objects)
    for key, data in objects.items():
        info = infos[key]
        assert info.size == len(data)
        assert info.version
        if store.has_checksums:
            assert info.checksum is not None
            assert (info.checksum.algorithm, info.checksum.value) == (
                "md5",
                hashlib.md5(data).hexdigest(),
            )
        else:
            assert info.checksum is None


def test_nested_prefixes_are_directories(store: Store) -> None:
    store.put_relative({k: k.encode() for k in ["p/a", "p/b/c", "p/b/d/e", "pp/x", "q"]})
    assert set(listed(store, "p/")) == {"p/a", "p/b/c", "p/b/d/e"}
    assert set(listed(store, "p/b/")) == {"p/b/c", "p/b/d/e"}
    assert set(listed(store, "p/b/d/")) == {"p/b/d/e"}
    assert listed(store, "nothing/") == {}
    assert set(listed(store)) == {"p/a", "p/b/c", "p/b/d/e", "pp/x", "q"}


def test_unicode_and_space_keys_round_trip(store: Store) -> None:
    objects = {
        "dir with space/file name.bin": b"spaces",
        "ünïcødé/日本語/データ.bin": b"unicode",
        "symbols/a+b=c&d,e;f@g!.txt": b"symbols",
        "emoji/🙂.txt": b"emoji",
    }
    store.put_relative(objects)
    infos = listed(store)
    assert set(infos) == set(objects)

    async def read_all(b: Backend) -> dict[str, bytes]:
        return {k: await b.read(i, 0, i.size) for k, i in infos.items()}

    assert with_backend(store, read_all) == objects


def test_zero_byte_object(store: Store) -> None:
    store.put_relative({"empty": b""})
    info = listed(store)["empty"]
    assert info.size == 0

    async def check(b: Backend) -> None:
        assert await b.read(info, 0, 0) == b""
        assert (await b.stat(info.key)).size == 0

    with_backend(store, check)


def test_ranged_reads_are_byte_exact(store: Store) -> None:
    data = bytes(range(256)) * 40 + b"tail"
    store.put_relative({"r.bin": data})
    info = listed(store)["r.bin"]
    n = len(data)
    ranges = [(0, 1), (0, n), (n - 1, n), (100, 5000), (255, 257), (n - 4, n), (7, 7)]

    async def read(b: Backend) -> list[bytes]:
        return [await b.read(info, s, e) for s, e in ranges]

    assert with_backend(store, read) == [data[s:e] for s, e in ranges]


def test_range_past_the_end_is_clipped(store: Store) -> None:
    store.put_relative({"short": b"0123456789"})
    info = listed(store)["short"]
    assert with_backend(store, lambda b: b.read(info, 6, 100)) == b"6789"


def test_multi_mib_object_read_in_parts(store: Store) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    store.put_relative({"big.bin": data})
    info = listed(store)["big.bin"]
    part = 1024 * 1024

    async def read_parts(b: Backend) -> bytes:
        parts = [b.read(info, s, min(s + part, info.size)) for s in range(0, info.size, part)]
        return b"".join(await asyncio.gather(*parts))

    assert with_backend(store, read_parts) == data


def test_stat_agrees_with_list(store: Store) -> None:
    store.put_relative({"s/one": b"one", "s/two": b"two!"})
    infos = listed(store, "s/")

    async def stats(b: Backend) -> dict[str, ObjectInfo]:
        return {k: await b.stat(i.key) for k, i in infos.items()}

    assert with_backend(store, stats) == infos


def test_missing_key_is_not_found(store: Store) -> None:
    store.put_relative({"present": b"x"})
    ghost = ObjectInfo(key=store.key("absent"), size=3, version="1")

    with pytest.raises(NotFoundError, match="absent"):
        with_backend(store, lambda b: b.stat(ghost.key))
    with pytest.raises(NotFoundError, match="absent"):
        with_backend(store, lambda b: b.read(ghost, 0, 3))


def test_overwrite_changes_version_and_old_version_is_refused(
    store: Store, request: pytest.FixtureRequest
) -> None:
    if store.name == "gs":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="gcp-storage-emulator ignores ifGenerationMatch (and generation) on media "
                "downloads: the stale read returns the new generation's bytes",
            )
        )
    store.put_relative({"v": b"first"})
    old = listed(store)["v"]
    store.put_relative({"v": b"FIRST"})  # same size: only the version tells them apart
    new = listed(store)["v"]
    assert new.version != old.version
    assert with_backend(store, lambda b: b.read(new, 0, 5)) == b"FIRST"
    with pytest.raises(VersionChangedError):
        with_backend(store, lambda b: b.read(old, 0, 5))


def test_missing_bucket_is_not_found(adapter_store: Store, tmp_path: Path) -> None:
    url = adapter_store.url
    bucket = "/nonexistent-dir-shardcache" if url.scheme == "file" else "no-such-bucket-xyz"
    missing = parse_url(f"{url.scheme}://{bucket}/")
    config = make_config(tmp_path)

    async def go() -> None:
        backend = await open_backend(missing, config)
        try:
            await backend.list_objects("")
        finally:
            await backend.close()

    with pytest.raises(NotFoundError, match=bucket):
        asyncio.run(go())


SECRET = "Zm9vYmFyc2VjcmV0c2hhcmRjYWNoZQ=="  # a distinctive fake secret, valid base64

UNREACHABLE_ENV = {
    "s3": lambda port: {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    },
    "gs": lambda port: {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"},
    "az": lambda port: {
        "AZURE_STORAGE_CONNECTION_STRING": (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={SECRET};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )
    },
}


@pytest.mark.parametrize("scheme", ["s3", "gs", "az"])
def test_unreachable_endpoint_is_unavailable_and_quiet_about_secrets(
    scheme: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in UNREACHABLE_ENV[scheme](free_port()).items():  # nothing listens there
        monkeypatch.setenv(name, value)
    config = make_config(tmp_path)

    async def go() -> None:
        backend = await open_backend(parse_url(f"{scheme}://bucket-x/"), config)
        try:  # the outer bound turns a hang into a TimeoutError, which fails the test
            await asyncio.wait_for(backend.list_objects("p/"), timeout=60)
        finally:
            await backend.close()

    with pytest.raises(UnavailableError) as caught:
        asyncio.run(go())
    assert f"{scheme}://bucket-x/p/" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_wrong_azure_key_is_access_denied_without_the_key(
    azure_server: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulators import AzuriteServer

    assert isinstance(azure_server, AzuriteServer)
    container = azure_server.new_bucket()
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        azure_server.connection_string.replace(
            azure_server.connection_string.split("AccountKey=")[1].split(";")[0], SECRET
        ),
    )
    config = make_config(tmp_path)

    async def go() -> None:
        backend = await open_backend(parse_url(container.url()), config)
        try:
            await backend.list_objects("")
        finally:
            await backend.close()

    with pytest.raises(AccessDeniedError) as caught:
        asyncio.run(go())
    message = str(caught.value)
    assert SECRET not in message
    assert "AZURE_STORAGE_CONNECTION_STRING" in message
