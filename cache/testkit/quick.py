"""The quick throughput comparison that `shardcache demo` prints and the benchmark's quick mode
shares: one dataset on a moto emulator behind the cloud-like proxy, read six ways."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config
from .benchstore import BUCKET, BenchStore
from .datasets import generate, image_like, shard_like
from .proxy import ProxyConfig
from .readers import (
    Measurement,
    best_raw_get,
    read_files,
    s3fs_concurrent,
    s3fs_filesystem,
    s3fs_sequential,
    shardcache_prefetch,
    write_plain_copy,
)

#: (concurrency, ranged part size) settings for the ceiling; 8 MiB parts as the S3 SDKs use
CEILING_SWEEP: tuple[tuple[int, int | None], ...] = ((16, 8 * 2**20), (64, 8 * 2**20))


@dataclass(frozen=True)
class QuickPlan:
    small_files: int = 2000
    large_files: int = 4
    large_mib: int = 64
    #: small files read one at a time by sequential s3fs (it is slow; a sample is enough)
    sequential_sample: int = 150
    proxy: ProxyConfig = field(default_factory=ProxyConfig)


@dataclass(frozen=True)
class QuickResult:
    rows: list[Measurement]
    objects: int
    nbytes: int


def run_quick(
    plan: QuickPlan, config: Config, info: Callable[[str], None], cache_dir: Path | None = None
) -> QuickResult:
    """Measure; the cache goes to `cache_dir`, or to a temporary directory when None."""
    objects = generate(image_like(plan.small_files))
    objects.update(generate(shard_like((plan.large_mib,) * plan.large_files)))
    total = sum(map(len, objects.values()))
    info(
        f"starting a local S3 emulator and a cloud-like proxy "
        f"({(plan.proxy.first_byte_delay_s or 0) * 1e3:.0f} ms to first byte, "
        f"{(plan.proxy.bandwidth_bytes_per_s or 0) / 1e6:.0f} MB/s per connection)"
    )
    work = Path(tempfile.mkdtemp(prefix="shardcache-bench-"))
    try:
        with BenchStore(plan.proxy) as store:
            info(f"writing the sample dataset: {len(objects)} objects, {total / 1e6:.0f} MB")
            store.put(objects)
            assert store.cloud is not None
            config = config.with_(
                cache_dir=cache_dir or work / "cache",
                backend_options={"s3": store.cloud.s3_options()},
            )
            rows = _measure(plan, store, objects, config, work, info)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return QuickResult(rows, len(objects), total)


def _measure(
    plan: QuickPlan,
    store: BenchStore,
    objects: dict[str, bytes],
    config: Config,
    work: Path,
    info: Callable[[str], None],
) -> list[Measurement]:
    assert store.cloud is not None
    sized = [(k, len(v)) for k, v in sorted(objects.items())]
    small = [o for o in sized if o[1] < 2**20]
    large = [o for o in sized if o[1] >= 2**20]
    total = sum(s for _, s in sized)
    fs = s3fs_filesystem(store.cloud)
    info("reading directly with s3fs, one file at a time (a sample) ...")
    rows = [s3fs_sequential(fs, small[: plan.sequential_sample] + large[:1])]
    info("reading directly with s3fs, concurrently (fs.cat of every path) ...")
    rows.append(s3fs_concurrent(fs, sized))
    info("the ceiling: raw parallel GETs with aiohttp ...")
    best, _ = best_raw_get(store.cloud, sized, CEILING_SWEEP)
    rows.append(best)
    info("shardcache cold: prefetching the dataset into the cache ...")
    cold, local = shardcache_prefetch(config, f"s3://{BUCKET}/")
    rows.append(cold)
    plain = write_plain_copy(objects, work / "plain")
    read_files("plain local copy (warm page cache)", plain, total)  # warms the page cache
    rows.append(read_files("plain local copy (warm page cache)", plain, total))
    info(f"shardcache warm: reading {local} ...")
    mirrored = [local / k for k, _ in sized]
    read_files("shardcache warm (dataset directory)", mirrored, total)
    rows.append(read_files("shardcache warm (dataset directory)", mirrored, total))
    return rows
