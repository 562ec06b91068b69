"""The emulator launchers: lifecycle, readiness, and behaviour under concurrency."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from backend_stores import make_config
from shardcache.backends.cloud import open_backend
from shardcache.testkit.emulators import Bucket, MotoS3Server, answers_http
from shardcache.urls import parse_url


def test_lifecycle_starts_on_a_free_port_and_stop_kills_the_group() -> None:
    server = MotoS3Server()
    with server:
        port, pid = server.port, server._proc.pid if server._proc else 0
        assert answers_http(port, "/moto-api/", timeout_s=5)
        assert server.env()["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
    assert not answers_http(port, "/", timeout_s=1)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone


def test_seeding_thousands_of_small_objects(s3_bucket: Bucket, tmp_path: Path) -> None:
    objects = {f"many/{i:05d}.bin": i.to_bytes(4, "big") for i in range(1200)}
    s3_bucket.put(objects)

    async def listed() -> int:
        backend = await open_backend(parse_url(s3_bucket.url()), make_config(tmp_path))
        try:
            return len(await backend.list_objects("many/"))  # pages of 1000
        finally:
            await backend.close()

    assert asyncio.run(listed()) == 1200


def test_gcs_emulator_serves_many_concurrent_connections(
    gcs_bucket: Bucket, tmp_path: Path
) -> None:
    gcs_bucket.put({f"c/{i}": bytes([i]) * 100 for i in range(64)})
    config = make_config(tmp_path).with_(max_concurrency=128)

    async def read_all() -> list[bytes]:
        backend = await open_backend(parse_url(gcs_bucket.url()), config)
        try:
            infos = await backend.list_objects("c/")
            reads = [backend.read(i, 0, i.size) for i in infos for _ in range(2)]
            return await asyncio.gather(*reads)
        finally:
            await backend.close()

    assert sorted(set(asyncio.run(read_all()))) == sorted(bytes([i]) * 100 for i in range(64))
