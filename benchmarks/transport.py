"""The transfer library for GCS and Azure: the backend's SDK path against obstore, CPU per object.

    python -m benchmarks.transport --scheme az [--objects 300] [--runs 3] [--concurrency 16]
    python -m benchmarks.transport --scheme gs

Method. One emulator (Azurite for `az`, gcp-storage-emulator for `gs`, the test suite's own
launchers in `tests/emulators.py`) holds a seeded set of small objects (110 KiB each). Two
readers fetch every object with the same number of requests in flight, in one process, in an
order that alternates from run to run:
- `sdk`: the shardcache backend's read path without obstore (Azure: the SDK's `download_blob`
  over aiohttp with If-Match; GCS: JSON-API media GETs over gcsfs's session);
- `obstore`: obstore `get_range_async` of the same byte ranges with the same If-Match, the
  way `objstore.ObjectReader` reads.
Each reader's figure is `time.process_time()` (user + sys of every thread, obstore's tokio
threads included) around its reads only, after one warm-up read; the emulator runs in a
process of its own and is not counted. Ratios are taken within a run; the summary is the
median over runs [min-max]. A reader that cannot read from the emulator at all reports why.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .stats import spread

SIZE = 110 * 1024


async def _timed(
    reads: list[Callable[[], Awaitable[bytes]]], concurrency: int
) -> tuple[float, float, int]:
    gate = asyncio.Semaphore(concurrency)

    async def one(read: Callable[[], Awaitable[bytes]]) -> int:
        async with gate:
            return len(await read())

    await one(reads[0])  # a connection is open before the clock starts
    cpu, wall = time.process_time(), time.perf_counter()
    got = sum(await asyncio.gather(*map(one, reads)))
    return time.process_time() - cpu, time.perf_counter() - wall, got


async def _measure(scheme: str, emu: Any, runs: int, concurrency: int, objects: int) -> None:
    from shardcache.backends.cloud import objstore, open_backend
    from shardcache.config import Config
    from shardcache.urls import parse_url

    config = Config(cache_dir=Path(tempfile.mkdtemp(prefix="sc-transport-")))
    backend = await open_backend(parse_url(f"{scheme}://bench1/d/"), config)
    infos = await backend.list_objects("d/")
    reader = getattr(backend, "_reader", None) or _obstore_reader(scheme, emu, objstore)
    backend._reader = None  # type: ignore[attr-defined]  # the SDK path, for the `sdk` reader
    readers: dict[str, list[Callable[[], Awaitable[bytes]]]] = {
        "sdk": [lambda i=i: backend.read(i, 0, i.size) for i in infos],
        "obstore": [lambda i=i: reader.read(i.key, 0, i.size, i.version) for i in infos],
    }
    cpu: dict[str, list[float]] = {name: [] for name in readers}
    rate: dict[str, list[float]] = {name: [] for name in readers}
    failed: dict[str, str] = {}
    for run in range(runs):
        for name in list(readers)[:: 1 if run % 2 == 0 else -1]:
            if name in failed:
                continue
            try:
                seconds, wall, got = await _timed(readers[name], concurrency)
            except Exception as e:
                failed[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
                continue
            if got != objects * SIZE:
                raise RuntimeError(f"{name} read {got} bytes, expected {objects * SIZE}")
            cpu[name].append(seconds / objects * 1000)
            rate[name].append(got / wall / 1e6)
    await backend.close()
    print(
        f"{scheme}: {objects} objects of {SIZE // 1024} KiB, {concurrency} in flight, {runs} runs"
    )
    print("| reader | CPU ms/object | MB/s | CPU / sdk |")
    print("|---|---|---|---|")
    for name in readers:
        if name in failed:
            print(f"| {name} | could not read: {failed[name]} | | |")
            continue
        ratios = [a / b for a, b in zip(cpu[name], cpu["sdk"], strict=False)]
        cells = [spread(cpu[name]), spread(rate[name]), spread(ratios)]
        print(f"| {name} | " + " | ".join(s.fmt(2) if s else "-" for s in cells) + " |")


def _obstore_reader(scheme: str, emu: Any, objstore: Any) -> Any:
    """What the backend would build, for a scheme whose backend does not read through obstore
    (GCS): the emulator's endpoint, unsigned, as gcsfs talks to it."""
    from obstore.store import GCSStore

    if scheme != "gs":
        raise RuntimeError(f"the {scheme} backend did not build an obstore reader")
    store = GCSStore(
        "bench1",
        base_url=emu.endpoint_url,
        skip_signature=True,
        client_options={"allow_http": True},
    )
    return objstore.ObjectReader(store)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.transport")
    p.add_argument("--scheme", choices=("az", "gs"), default="az")
    p.add_argument("--objects", type=int, default=300)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=16)
    a = p.parse_args(argv)
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' emulator launchers
    from tests.emulators import AzuriteServer, GcsEmulator

    rng = random.Random(7)
    blobs = {f"d/o{i:05d}": rng.randbytes(SIZE) for i in range(a.objects)}
    with AzuriteServer() if a.scheme == "az" else GcsEmulator() as emu:
        os.environ.update(emu.env())
        emu.create_bucket("bench1")
        emu.put_objects("bench1", blobs)
        asyncio.run(_measure(a.scheme, emu, a.runs, a.concurrency, a.objects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
