"""R1 and R2 and the alternatives: one dataset, every reader, one run.

Per run and endpoint (cloud-like proxy, and moto directly), every remote reader reads the whole
dataset once (sequential s3fs reads a sample: it is slow), in an order that rotates from run
to run so that drift in the emulator hits all readers alike. The ceiling is the fastest of a
sweep of raw aiohttp settings measured in the same run; ratios are taken within the run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shardcache.config import Config
from shardcache.testkit.benchstore import BUCKET, BenchStore, Endpoint
from shardcache.testkit.readers import (
    Measurement,
    best_raw_get,
    drop_page_cache,
    read_files,
    s3fs_concurrent,
    s3fs_filesystem,
    s3fs_sequential,
    shardcache_prefetch,
)

from .alternatives import fsspec_cached_reads, obstore_reads

PART = 8 * 2**20


@dataclass
class RunOutcome:
    """Measurements of one run keyed `endpoint/method`, ratios keyed by goal."""

    rows: dict[str, Measurement] = field(default_factory=dict)
    sweep: dict[str, list[Measurement]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)


def sweep_for(dataset: str, quick: bool) -> list[tuple[int, int | None]]:
    """Raw-GET settings to try: small objects need many requests in flight, large objects
    need ranged parts spread over connections (each capped at ~90 MB/s by the proxy)."""
    if dataset == "images":
        return [(32, None), (64, None)] if quick else [(16, None), (64, None), (128, None)]
    # whole-object GETs too: on moto a ranged GET costs more server CPU than a whole one
    if quick:
        return [(4, None), (16, PART)]
    return [(4, None), (8, PART), (32, PART), (64, PART)]


def one_run(
    store: BenchStore,
    dataset: str,
    objects: dict[str, bytes],
    plain: list[Path],
    work: Path,
    run: int,
    quick: bool,
    log: Callable[[str], None],
) -> RunOutcome:
    out = RunOutcome()
    sized = sorted((k, len(v)) for k, v in objects.items())
    total = sum(s for _, s in sized)
    for endpoint in store.endpoints():
        cloud = endpoint is store.cloud
        steps = _remote_steps(endpoint, dataset, sized, work, cloud, quick, out)
        k = run % len(steps)
        for name, step in steps[k:] + steps[:k]:
            log(f"  run {run + 1} {dataset} via {endpoint.label}: {name}")
            step()
        if cloud:
            _local_steps(out, dataset, plain, work / "cache", sized, total)
        shutil.rmtree(work / "cache", ignore_errors=True)
    _ratios(out)
    return out


Step = tuple[str, Callable[[], None]]


def _remote_steps(
    endpoint: Endpoint,
    dataset: str,
    sized: list[tuple[str, int]],
    work: Path,
    cloud: bool,
    quick: bool,
    out: RunOutcome,
) -> list[Step]:
    tag = "cloud" if cloud else "direct"
    config = Config(
        cache_dir=work / "cache" if cloud else work / "cache-direct",
        backend_options={"s3": endpoint.s3_options()},
    )

    def put(m: Measurement | None, key: str | None = None) -> None:
        if m is not None:
            out.rows[f"{tag}/{key or m.method}"] = m

    def ceiling() -> None:
        best, tried = best_raw_get(endpoint, sized, sweep_for(dataset, quick))
        put(best, "ceiling")
        out.sweep[tag] = tried

    def shardcache() -> None:
        url = f"s3://{BUCKET}/{dataset}/"
        m, _ = shardcache_prefetch(config, url)
        put(m)
        if cloud:
            # the transfer alone: the cold prefetch less an all-local re-run of the same
            # dataset (engine start-up, a fresh listing, the local checks)
            again, _ = shardcache_prefetch(config, url, refresh=True)
            put(
                Measurement("shardcache transfer", m.files, m.nbytes, m.seconds - again.seconds),
                "shardcache transfer",
            )
        else:
            shutil.rmtree(config.cache_dir, ignore_errors=True)

    fs = s3fs_filesystem(endpoint)
    steps: list[Step] = [
        ("raw GET sweep (ceiling)", ceiling),
        ("s3fs concurrent", lambda: put(s3fs_concurrent(fs, sized), "s3fs concurrent")),
        ("shardcache cold prefetch", shardcache),
    ]
    if cloud:
        sample = sized[: (60 if quick else 150)] if dataset == "images" else sized[:1]
        steps += [
            ("s3fs sequential", lambda: put(s3fs_sequential(fs, sample), "s3fs sequential")),
            ("obstore", lambda: put(obstore_reads(endpoint, sized), "obstore")),
        ]
        # fsspec's caches fetch file by file here (about 10 files/s through the proxy), so
        # small files are sampled; their rate does not depend on how many they read
        few = sized[: (100 if quick else 300)] if dataset == "images" else sized
        for kind in ("simplecache", "filecache"):
            steps.append((f"fsspec {kind}", _cached_step(kind, endpoint, few, work, put)))
    return steps


def _cached_step(
    kind: str,
    endpoint: Endpoint,
    sized: Sequence[tuple[str, int]],
    work: Path,
    put: Callable[[Measurement | None, str | None], None],
) -> Callable[[], None]:
    def step() -> None:
        storage = work / f"fsspec-{kind}"
        cold, warm = fsspec_cached_reads(kind, endpoint, sized, storage)
        put(cold, f"{kind} cold")
        put(warm, f"{kind} warm")
        shutil.rmtree(storage, ignore_errors=True)

    return step


def _local_steps(
    out: RunOutcome,
    dataset: str,
    plain: list[Path],
    cache: Path,
    sized: list[tuple[str, int]],
    total: int,
) -> None:
    mirror = [cache / "data" / "s3" / BUCKET / k for k, _ in sized]
    pairs = (("plain", plain), ("shardcache dir", mirror))
    for name, paths in pairs:  # warm: a pass to fill the page cache, then the measured pass
        read_files(name, paths, total)
        out.rows[f"local/{name} warm"] = read_files(f"{name} warm", paths, total)
    for name, paths in pairs:
        if drop_page_cache():
            out.rows[f"local/{name} cold"] = read_files(f"{name} cold", paths, total)


def _ratios(out: RunOutcome) -> None:
    r = out.rows

    def ratio(a: str, b: str) -> float | None:
        return r[a].mb_per_s / r[b].mb_per_s if a in r and b in r and r[b].mb_per_s else None

    pairs = {
        "R1 cloud": ("cloud/shardcache cold (prefetch)", "cloud/ceiling"),
        "R1 cloud transfer": ("cloud/shardcache transfer", "cloud/ceiling"),
        "R1 direct": ("direct/shardcache cold (prefetch)", "direct/ceiling"),
        "R2 warm": ("local/shardcache dir warm", "local/plain warm"),
        "R2 cold": ("local/shardcache dir cold", "local/plain cold"),
        "cold vs s3fs concurrent": ("cloud/shardcache cold (prefetch)", "cloud/s3fs concurrent"),
        "warm vs s3fs concurrent": ("local/shardcache dir warm", "cloud/s3fs concurrent"),
    }
    for name, (a, b) in pairs.items():
        value = ratio(a, b)
        if value is not None:
            out.ratios[name] = value
