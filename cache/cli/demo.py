"""`shardcache demo`: the main job on the embedded default, end to end on one machine.

It starts a local S3 emulator (moto) behind a proxy that behaves like S3 over a network (a
first-byte delay and a per-connection bandwidth cap), writes a sample dataset of many small
files and a few large shards, then reads it four ways and prints what each achieved:

* s3fs reading directly, one file after another (what a naive training loop does);
* s3fs reading directly with its own concurrency (`cat` of many paths at once);
* shardcache cold: `prefetch` from the store into the cache directory;
* shardcache warm: reading the published files from the local dataset directory.

Everything stays on loopback and in a temporary directory unless --cache-dir is given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from .output import Output

BUCKET = "shardcache-demo"


@dataclass(frozen=True)
class Row:
    method: str
    files: int
    nbytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds else 0.0


def sample_dataset(small: int, large: int, large_mib: int, seed: int = 7) -> dict[str, bytes]:
    """Image-like small files (about 100 KiB) and shard-like large files, deterministic."""
    rng = random.Random(seed)
    block = rng.randbytes(1024 * 1024)
    objects: dict[str, bytes] = {}
    for i in range(small):
        size = 90 * 1024 + rng.randrange(20 * 1024)
        start = rng.randrange(len(block) - size)
        objects[f"images/{i // 1000:03d}/img-{i:06d}.jpg"] = block[start:start + size]
    for i in range(large):
        objects[f"shards/shard-{i:04d}.tar"] = (rng.randbytes(256) + block) * large_mib
    return objects


def run_demo(args: argparse.Namespace, config: Config, out: Output) -> int:
    from ..testing.emulators import MotoS3Server
    from ..testing.proxy import CloudProxy, ProxyConfig

    objects = sample_dataset(args.small_files, args.large_files, args.large_mib)
    total = sum(len(v) for v in objects.values())
    out.info(f"starting a local S3 emulator and a cloud-like proxy ({args.first_byte_ms:.0f} ms "
             f"to first byte, {args.bandwidth_mbps:.0f} MB/s per connection)")
    workdir = Path(tempfile.mkdtemp(prefix="shardcache-demo-"))
    cache_dir = Path(args.cache_dir) if args.cache_dir else workdir / "cache"
    try:
        with MotoS3Server() as s3:
            s3.create_bucket(BUCKET)
            out.info(f"writing the sample dataset: {len(objects)} objects, "
                     f"{total / 1e6:.0f} MB")
            s3.put_objects(BUCKET, objects)
            proxy_cfg = ProxyConfig(first_byte_delay_s=args.first_byte_ms / 1000,
                                    bandwidth_bytes_per_s=args.bandwidth_mbps * 1e6)
            with CloudProxy(s3.endpoint_url, proxy_cfg) as proxy:
                env = dict(s3.env(), AWS_ENDPOINT_URL=proxy.url)
                os.environ.update(env)
                rows = _measure(objects, env, config.with_(cache_dir=cache_dir), out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _print(rows, objects, out)
    return 0


def _measure(objects: dict[str, bytes], env: dict[str, str], config: Config,
             out: Output) -> list[Row]:
    small = sorted(k for k in objects if k.startswith("images/"))
    large = sorted(k for k in objects if k.startswith("shards/"))
    fs = _s3fs(env)
    rows = []
    out.info("reading directly with s3fs, one file at a time (a sample) ...")
    sample = small[: max(1, min(len(small), 150))] + large[:1]
    rows.append(_timed("s3fs direct, sequential", sample, objects,
                       lambda: [fs.cat_file(f"{BUCKET}/{k}") for k in sample]))
    out.info("reading directly with s3fs, concurrently (fs.cat of every path) ...")
    everything = small + large
    rows.append(_timed("s3fs direct, concurrent", everything, objects,
                       lambda: list(fs.cat([f"{BUCKET}/{k}" for k in everything]).values())))
    out.info("shardcache cold: prefetching the dataset into the cache ...")
    start = time.perf_counter()
    report = asyncio.run(_prefetch(config, f"s3://{BUCKET}/"))
    rows.append(Row("shardcache cold (prefetch)", report.objects_downloaded,
                    report.bytes_downloaded, time.perf_counter() - start))
    local = report.local_dir
    out.info(f"shardcache warm: reading {local} ...")
    rows.append(_timed("shardcache warm (local dir)", everything, objects,
                       lambda: [(local / k).read_bytes() for k in everything]))
    return rows


async def _prefetch(config: Config, url: str) -> Any:
    from ..engine import Engine

    async with Engine(config) as engine:
        report = await engine.prefetch(url)
    if report.failed:
        raise RuntimeError(f"demo prefetch failed: {report.failed[:3]}")
    return report


def _timed(method: str, keys: list[str], objects: dict[str, bytes], read: Any) -> Row:
    start = time.perf_counter()
    got = read()
    seconds = time.perf_counter() - start
    nbytes = sum(len(b) for b in got)
    if nbytes != sum(len(objects[k]) for k in keys):
        raise RuntimeError(f"{method}: read {nbytes} bytes, expected a different amount")
    return Row(method, len(keys), nbytes, seconds)


def _s3fs(env: dict[str, str]) -> Any:
    # What a user would write to read the same bucket without shardcache: fsspec's s3
    # protocol, resolved through fsspec's registry (the backend adapter is the only module
    # that imports s3fs itself).
    import fsspec

    return fsspec.filesystem(
        "s3", key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"], "region_name": "us-east-1"},
        skip_instance_cache=True, use_listings_cache=False)


def _print(rows: list[Row], objects: dict[str, bytes], out: Output) -> None:
    base = rows[0]
    if out.json_mode:
        out.json({"rows": [{"method": r.method, "files": r.files, "bytes": r.nbytes,
                            "seconds": round(r.seconds, 3), "mb_per_s": round(r.mb_per_s, 1),
                            "files_per_s": round(r.files_per_s, 1)} for r in rows]})
        return
    out.table(
        f"shardcache demo: {len(objects)} objects, {sum(map(len, objects.values())) / 1e6:.0f} "
        "MB on a local S3 emulator behind a cloud-like proxy",
        ["method", "files", "MB", "seconds", "MB/s", "files/s", "vs sequential s3fs"],
        [[r.method, str(r.files), f"{r.nbytes / 1e6:.0f}", f"{r.seconds:.2f}",
          f"{r.mb_per_s:.0f}", f"{r.files_per_s:.0f}",
          f"{r.mb_per_s / base.mb_per_s:.1f}x" if base.mb_per_s else "-"] for r in rows])
