"""`shardcache demo`: the main job on the embedded default, end to end on one machine.

It starts a local S3 emulator (moto) behind a proxy that behaves like S3 over a network (a
first-byte delay and a per-connection bandwidth cap), writes a sample dataset of many small
files and a few large shards, then reads it six ways and prints what each achieved:

* s3fs reading directly, one file after another (what a naive training loop does);
* s3fs reading directly with its own concurrency (`cat` of many paths at once);
* the ceiling: raw parallel GETs with aiohttp, the best any client can get from this store;
* shardcache cold: `prefetch` from the store into the cache directory;
* a plain local copy of the same files, read from a warm page cache (the local ceiling);
* shardcache warm: reading the published files from the local dataset directory.

This is the quick mode of the benchmark suite (benchmarks/, `make bench`); the measuring pieces
are shared in `shardcache.testkit`, which needs the `bench` extra: this module is the only one of
the product allowed to import it (import-linter), and it says what to install when it is missing.
Everything stays on loopback and in a temporary directory unless --cache-dir is given.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from ..testkit.proxy import ProxyConfig
from ..testkit.quick import QuickPlan, QuickResult, run_quick
from ..testkit.readers import Measurement
from .output import Output

#: what the demo runs besides shardcache: the S3 emulator and the s3fs baseline
_BENCH_EXTRA = ("moto", "s3fs")


def run_demo(args: argparse.Namespace, config: Config, out: Output) -> int:
    missing = [m for m in _BENCH_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"shardcache demo needs {' and '.join(missing)} (the bench extra): "
            "pip install 'shardcache[s3,bench]', or run `make demo`"
        )
    plan = QuickPlan(
        small_files=args.small_files,
        large_files=args.large_files,
        large_mib=args.large_mib,
        proxy=ProxyConfig(
            first_byte_delay_s=args.first_byte_ms / 1000,
            bandwidth_bytes_per_s=args.bandwidth_mbps * 1e6,
        ),
    )
    cache_dir = Path(args.cache_dir) if args.cache_dir else None
    result = run_quick(plan, config, out.info, cache_dir)
    _print(result, out)
    return 0


def _print(result: QuickResult, out: Output) -> None:
    rows = result.rows
    base = rows[0]
    if out.json_mode:
        out.json({"rows": [_json_row(r) for r in rows]})
        return
    out.table(
        f"shardcache demo: {result.objects} objects, {result.nbytes / 1e6:.0f} MB on a local "
        "S3 emulator behind a cloud-like proxy",
        ["method", "files", "MB", "seconds", "MB/s", "files/s", "vs sequential s3fs"],
        [
            [
                r.method,
                str(r.files),
                f"{r.nbytes / 1e6:.0f}",
                f"{r.seconds:.2f}",
                f"{r.mb_per_s:.0f}",
                f"{r.files_per_s:.0f}",
                f"{r.mb_per_s / base.mb_per_s:.1f}x" if base.mb_per_s else "-",
            ]
            for r in rows
        ],
    )


def _json_row(r: Measurement) -> dict[str, object]:
    return {
        "method": r.method,
        "files": r.files,
        "bytes": r.nbytes,
        "seconds": round(r.seconds, 3),
        "mb_per_s": round(r.mb_per_s, 1),
        "files_per_s": round(r.files_per_s, 1),
    }
