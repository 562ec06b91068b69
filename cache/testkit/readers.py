"""Timed readers: each reads the same objects one way and returns a `Measurement`.

Every reader checks that it received exactly the bytes it should have, so a fast but wrong
reader cannot win. Set-up that is not part of reading (presigning URLs, building clients) is
done before the clock starts, which makes the baselines as fast as they can be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from .benchstore import BUCKET, Endpoint

#: per-request bound for the raw client; far above any healthy request here
_RAW_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Measurement:
    method: str
    files: int
    nbytes: int
    seconds: float
    note: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds else 0.0


def timed(
    method: str, files: int, expect_bytes: int, read: Callable[[], int], note: str = ""
) -> Measurement:
    """Run `read` (which returns the bytes it got) under the clock and check the byte count."""
    start = time.perf_counter()
    got = read()
    seconds = time.perf_counter() - start
    if got != expect_bytes:
        raise RuntimeError(f"{method}: read {got} bytes, expected {expect_bytes}")
    return Measurement(method, files, got, seconds, note)


# -- the ceiling: raw parallel GETs with aiohttp ----------------------------------------------


def presign(endpoint: Endpoint, keys: Sequence[str]) -> list[str]:
    """SigV4 query-signed GET URLs made by botocore's signer (the way boto3 presigns)."""
    import botocore.session

    env = endpoint.env
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    return [
        client.generate_presigned_url(
            "get_object", Params={"Bucket": BUCKET, "Key": k}, ExpiresIn=3600
        )
        for k in keys
    ]


def plan_requests(
    objects: Sequence[tuple[str, int]], part_bytes: int | None
) -> list[tuple[int, int, int]]:
    """(object index, start, end) per request: whole objects, or ranged parts of `part_bytes`."""
    out = []
    for i, (_, size) in enumerate(objects):
        step = part_bytes or max(size, 1)
        out += [(i, s, min(s + step, size)) for s in range(0, max(size, 1), step)]
    return out


async def get_urls(
    urls: list[str], requests: list[tuple[int, int, int]], concurrency: int, ranged: bool
) -> int:
    """Bytes read by `concurrency` aiohttp connections working through `requests` (index
    into `urls`, start, end) on signed `urls`: the raw reader every ceiling is measured with."""
    import aiohttp

    todo = iter(requests)
    total = 0
    timeout = aiohttp.ClientTimeout(total=_RAW_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:

        async def worker() -> None:
            nonlocal total
            for i, start, end in todo:
                headers = {"Range": f"bytes={start}-{end - 1}"} if ranged else {}
                async with session.get(urls[i], headers=headers) as resp:
                    resp.raise_for_status()
                    data = await resp.read()  # not `total += await ...`: that reads total first
                total += len(data)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


def raw_get(
    endpoint: Endpoint,
    objects: Sequence[tuple[str, int]],
    concurrency: int,
    part_bytes: int | None = None,
) -> Measurement:
    """The best a plain client can do: `concurrency` connections busy with GETs all the time."""
    # Signing is part of every GET a real client makes, so it is inside the clock.
    requests = plan_requests(objects, part_bytes)
    what = f"{part_bytes // 2**20} MiB ranges" if part_bytes else "whole objects"

    def read() -> int:
        urls = presign(endpoint, [k for k, _ in objects])
        return asyncio.run(get_urls(urls, requests, concurrency, bool(part_bytes)))

    return timed(
        f"raw aiohttp GET x{concurrency} ({what})", len(objects), sum(s for _, s in objects), read
    )


def best_raw_get(
    endpoint: Endpoint, objects: Sequence[tuple[str, int]], sweep: Sequence[tuple[int, int | None]]
) -> tuple[Measurement, list[Measurement]]:
    """Sweep (concurrency, part size) settings; the fastest is the ceiling."""
    tried = [raw_get(endpoint, objects, c, p) for c, p in sweep]
    return max(tried, key=lambda m: m.mb_per_s), tried


# -- s3fs, what a user would pick -------------------------------------------------------------


def s3fs_filesystem(endpoint: Endpoint) -> Any:
    """fsspec's s3 protocol (s3fs), resolved through fsspec's registry: the backend adapter is
    the only shardcache module that imports s3fs itself."""
    import fsspec

    env = endpoint.env
    return fsspec.filesystem(
        "s3",
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": endpoint.url, "region_name": "us-east-1"},
        skip_instance_cache=True,
        use_listings_cache=False,
    )


def s3fs_sequential(fs: Any, objects: Sequence[tuple[str, int]]) -> Measurement:
    keys = [k for k, _ in objects]
    return timed(
        "s3fs direct, one file at a time",
        len(keys),
        sum(s for _, s in objects),
        lambda: sum(len(fs.cat_file(f"{BUCKET}/{k}")) for k in keys),
    )


def s3fs_concurrent(fs: Any, objects: Sequence[tuple[str, int]]) -> Measurement:
    paths = [f"{BUCKET}/{k}" for k, _ in objects]
    return timed(
        "s3fs direct, fs.cat of all paths (its own concurrency)",
        len(paths),
        sum(s for _, s in objects),
        lambda: sum(len(b) for b in fs.cat(paths).values()),
    )


# -- shardcache -------------------------------------------------------------------------------


def shardcache_prefetch(
    config: Config, url: str, refresh: bool = False
) -> tuple[Measurement, Path]:
    """Prefetch of a dataset URL into `config.cache_dir`, engine start-up included (cold
    into an empty cache; on a complete one, the all-local re-run: start-up, listing with
    `refresh`, and the local checks)."""
    from ..engine import Engine
    from ..urls import parse_url

    async def run() -> Any:
        async with Engine(config) as engine:
            return await engine.prefetch(parse_url(url), refresh=refresh)

    start = time.perf_counter()
    report = asyncio.run(run())
    seconds = time.perf_counter() - start
    if report.failed or report.not_cached:
        raise RuntimeError(f"prefetch of {url} incomplete: {report.failed[:3]}")
    return (
        Measurement(
            "shardcache cold (prefetch)",
            report.objects_downloaded,
            report.bytes_downloaded,
            seconds,
        ),
        report.local_dir,
    )


# -- local files ------------------------------------------------------------------------------


def read_files(
    method: str, paths: Sequence[Path], expect_bytes: int, threads: int = 1
) -> Measurement:
    """Read whole files with plain `open().read()`, as a training loop does."""

    def one(p: Path) -> int:
        with open(p, "rb") as f:
            return len(f.read())

    if threads == 1:
        return timed(method, len(paths), expect_bytes, lambda: sum(map(one, paths)))
    with ThreadPoolExecutor(threads) as pool:
        return timed(method, len(paths), expect_bytes, lambda: sum(pool.map(one, paths)))


def write_plain_copy(objects: dict[str, bytes], root: Path) -> list[Path]:
    """A plain local copy of the dataset, the baseline for warm reads."""
    paths = []
    for key, data in objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def drop_page_cache() -> bool:
    """Ask the kernel to drop clean page cache (root only); False if this machine refuses."""
    import os

    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False
