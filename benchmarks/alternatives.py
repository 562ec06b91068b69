"""What a user would pick instead of shardcache, each read the way its documentation suggests.

- fsspec `simplecache::` and `filecache::` over s3fs: whole-file local caches in front of s3fs,
  read with `fs.cat(paths)` (their own concurrency), cold then warm;
- obstore (Rust object_store bindings, on PyPI): `get_async` with 64 requests in flight.

benchmarks/ sits outside the shardcache packages, so it may use s3fs through fsspec directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shardcache.testkit.benchstore import BUCKET, Endpoint
from shardcache.testkit.readers import Measurement, timed

#: requests in flight for obstore; the same as shardcache's default `max_concurrency`
OBSTORE_CONCURRENCY = 64


def fsspec_cached(kind: str, endpoint: Endpoint, storage: Path) -> Any:
    import fsspec

    env = endpoint.env
    return fsspec.filesystem(
        kind,
        target_protocol="s3",
        cache_storage=str(storage),
        target_options={
            "key": env["AWS_ACCESS_KEY_ID"],
            "secret": env["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": endpoint.url, "region_name": "us-east-1"},
            "skip_instance_cache": True,
            "use_listings_cache": False,
        },
        skip_instance_cache=True,
    )


def fsspec_cached_reads(
    kind: str, endpoint: Endpoint, objects: Sequence[tuple[str, int]], storage: Path
) -> list[Measurement]:
    """Cold (first) and warm (second) `fs.cat` of every path through `kind::s3`."""
    fs = fsspec_cached(kind, endpoint, storage)
    paths = [f"{BUCKET}/{k}" for k, _ in objects]
    total = sum(s for _, s in objects)

    def read() -> int:
        return sum(len(b) for b in fs.cat(paths).values())

    return [
        timed(f"fsspec {kind}::s3 cold (fs.cat)", len(paths), total, read),
        timed(f"fsspec {kind}::s3 warm (fs.cat)", len(paths), total, read),
    ]


def obstore_reads(endpoint: Endpoint, objects: Sequence[tuple[str, int]]) -> Measurement | None:
    """None when obstore is not installed (it is optional: the `bench` extra lists it)."""
    try:
        import obstore
        from obstore.store import S3Store
    except ImportError:
        return None
    env = endpoint.env
    store = S3Store(
        BUCKET,
        endpoint=endpoint.url,
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region="us-east-1",
        client_options={"allow_http": True, "timeout": "300s"},
    )

    async def run() -> int:
        todo = iter([k for k, _ in objects])
        total = 0

        async def worker() -> None:
            nonlocal total
            for key in todo:
                result = await obstore.get_async(store, key)
                data = await result.bytes_async()
                total += len(data)

        await asyncio.gather(*(worker() for _ in range(OBSTORE_CONCURRENCY)))
        return total

    return timed(
        f"obstore get_async x{OBSTORE_CONCURRENCY}",
        len(objects),
        sum(s for _, s in objects),
        lambda: asyncio.run(run()),
    )
