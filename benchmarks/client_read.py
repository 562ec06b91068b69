"""R3: warm reads through the Python client and the fsspec protocol vs raw local reads.

Method: a moto S3 server on loopback holds two sets of objects (8 MiB files and 100 KiB
files); the in-process engine prefetches them into a fresh cache directory, and one raw pass
warms the page cache. Then, for several runs, each method reads every file of a set once,
whole, in the same order, the methods interleaved within a run so that drift hits them alike:

- raw:    `open(local_path, "rb").read()` on the published files (the baseline)
- api:    `shardcache.client.open("s3://bucket/key").read()`
- fsspec: `fsspec.open("shardcache::s3://bucket/key", "rb")` then `.read()` (fsspec parses
  the chained URL and builds a file system instance on every call)
- fsspec_fs: one `fsspec.filesystem("shardcache", target_protocol="s3")`, then
  `fs.open("bucket/key").read()` per file (how a data loader holding a file system reads)

The order of the methods rotates from run to run. Throughput is bytes / wall seconds per run;
the table gives medians and the ratio of each method's median to raw's median. The goals
(DESIGN.md R3) are >= 0.8 for 8 MiB and >= 0.5 for 100 KiB.

Run: `.venv/bin/python benchmarks/client_read.py [--runs 7] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SETS = {"8MiB": (8 * 1024 * 1024, 24), "100KiB": (100 * 1024, 1500)}


def seed(server: object, bucket: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for name, (size, count) in SETS.items():
        block = os.urandom(size)
        objects = {f"{name}/f{i:05d}": block[i % size :] + block[: i % size] for i in range(count)}
        server.put_objects(bucket, objects)  # type: ignore[attr-defined]
        keys[name] = sorted(objects)
    return keys


def time_pass(read_one: Callable[[str], int], items: list[str]) -> float:
    start = time.perf_counter()
    total = 0
    for item in items:
        total += read_one(item)
    return total / (time.perf_counter() - start)


def raw_read(path: str) -> int:
    with open(path, "rb") as f:
        return len(f.read())


def api_read(url: str) -> int:
    import shardcache.client as sc

    with sc.open(url) as f:
        return len(f.read())


def fsspec_read(url: str) -> int:
    import fsspec

    with fsspec.open("shardcache::" + url, "rb") as f:
        return len(f.read())


def fsspec_file_read(path: str) -> int:
    """fsspec's own local protocol on the same files: the per-call cost of `fsspec.open`
    itself (un-chaining the URL, building a file system), which no protocol can avoid."""
    import fsspec

    with fsspec.open("file://" + path, "rb") as f:
        return len(f.read())


def fs_reader() -> Callable[[str], int]:
    import fsspec

    fs = fsspec.filesystem("shardcache", target_protocol="s3")

    def read(path: str) -> int:
        with fs.open(path, "rb") as f:
            return len(f.read())

    return read


def measure(bucket: str, keys: list[str], runs: int) -> dict[str, dict[str, float]]:
    import shardcache.client as sc

    urls = [f"s3://{bucket}/{k}" for k in keys]
    paths = [str(sc.local_path(u)) for u in urls]
    methods: dict[str, tuple[Callable[[str], int], list[str]]] = {
        "raw": (raw_read, paths),
        "api": (api_read, urls),
        "fsspec": (fsspec_read, urls),
        "fsspec_fs": (fs_reader(), [f"{bucket}/{k}" for k in keys]),
        "fsspec_file": (fsspec_file_read, paths),
    }
    for fn, items in methods.values():  # warm page cache, imports and the client's caches
        time_pass(fn, items)
    rates: dict[str, list[float]] = {m: [] for m in methods}
    order = list(methods)
    for run in range(runs):
        for name in order[run % len(order) :] + order[: run % len(order)]:
            fn, items = methods[name]
            rates[name].append(time_pass(fn, items))
    base = statistics.median(rates["raw"])
    return {
        m: {"median_bytes_per_s": statistics.median(r), "ratio_to_raw": statistics.median(r) / base}
        for m, r in rates.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    from shardcache.client import api
    from shardcache.testkit.emulators import MotoS3Server

    with MotoS3Server() as server, tempfile.TemporaryDirectory() as cache:
        os.environ.update(server.env())
        os.environ.update(
            {
                "SHARDCACHE_CACHE_DIR": cache,
                "SHARDCACHE_FSYNC": "0",
                "SHARDCACHE_MIN_FREE_FRACTION": "0",
            }
        )
        os.environ.pop("SHARDCACHE_AGENT_SOCKET", None)
        bucket = server.new_bucket("bench").name
        keys = seed(server, bucket)
        for name in SETS:
            api.prefetch(f"s3://{bucket}/{name}/")
        results = {name: measure(bucket, keys[name], args.runs) for name in SETS}
        stats = api.default_client().stats()
        api.close_default_clients()
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "python": sys.version.split()[0],
        "runs": args.runs,
        "sets": {n: {"bytes": s, "files": c} for n, (s, c) in SETS.items()},
        "results": results,
        "client_stats": {"hits": stats.hits, "misses": stats.misses},
    }
    for name, methods in results.items():
        for m, r in methods.items():
            print(
                f"{name:>7} {m:>9}: {r['median_bytes_per_s'] / 1e6:9.1f} MB/s  "
                f"ratio {r['ratio_to_raw']:.3f}"
            )
    print(f"client: {stats.hits} hits, {stats.misses} misses during the reads")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
