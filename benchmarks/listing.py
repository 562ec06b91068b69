"""R9: listing a large prefix in parallel key ranges vs one sequential LIST stream.

Method. `listing_server` synthesizes N keys (1,000 per directory) in a moto server of its own
process; the cloud-like proxy (its own process, 20 ms to first byte as S3) stands in front.
Both listings use the same S3 backend object (same client, same signing, same parsing of a
page), so the ratio isolates the parallelism: the sequential stream asks for page after page
(`StartAfter` = the last key), the parallel one is `list_parallel` at each concurrency of the
sweep. Each run lists both ways, in alternating order; both must return exactly the N keys.
Reported: seconds, pages requested (the proxy's own count, retries included), CPU seconds of
this process, of the emulator's and of the proxy's process (psutil), the same per page, and
the ratio per run, median over runs.

    python -m benchmarks.listing --keys 1000000 --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PREFIX = "ds/"
#: suffix of the readers that parse pages with ElementTree (`--tree`: the before figures)
TREE = " (tree)"


async def _sequential(backend: Any) -> tuple[int, int]:
    after, pages, keys = PREFIX, 0, 0
    while True:
        page = await backend.list_page(PREFIX, after, "", 1000)
        pages += 1
        keys += len(page.objects)
        if not page.truncated:
            return keys, pages
        after = page.last_key


async def _parallel(backend: Any, concurrency: int) -> tuple[int, int]:
    from shardcache.backends.parallel_list import ListingStats, list_parallel

    stats = ListingStats()
    infos = await list_parallel(backend, PREFIX, concurrency, backend.config.retry, stats)
    keys = [i.key for i in infos]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise RuntimeError("parallel listing out of order or with duplicates")
    return len(keys), stats.depth


def _measure(
    url: str, bucket: str, what: str, server_pid: int, proxy: Any, work: Path
) -> dict[str, Any]:
    import psutil
    from shardcache.backends.cloud import open_backend, s3
    from shardcache.config import Config
    from shardcache.urls import parse_url

    config = Config(
        cache_dir=work,
        backend_options={
            "s3": {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"},
            }
        },
    )
    server, proxy_proc = psutil.Process(server_pid), psutil.Process(proxy.pid)

    async def go() -> dict[str, Any]:
        backend = await open_backend(parse_url(f"s3://{bucket}/"), config)
        parse = s3.parse_list_page
        if what.endswith(TREE):
            s3.parse_list_page = s3.parse_list_page_tree  # the parser before session 2
        try:
            before = proxy.stats()["requests_total"]
            s_cpu = sum(server.cpu_times()[:2])
            p_cpu = sum(proxy_proc.cpu_times()[:2])
            cpu, wall = time.process_time(), time.perf_counter()
            if what.startswith("sequential"):
                keys, pages = await _sequential(backend)
            else:
                keys, pages = await _parallel(backend, int(what.split("x")[1].split()[0]))
            return {
                "what": what,
                "keys": keys,
                "depth": pages,
                "proxy_requests": proxy.stats()["requests_total"] - before,
                "seconds": time.perf_counter() - wall,
                "cpu_s": time.process_time() - cpu,
                "server_cpu_s": sum(server.cpu_times()[:2]) - s_cpu,
                "proxy_cpu_s": sum(proxy_proc.cpu_times()[:2]) - p_cpu,
            }
        finally:
            s3.parse_list_page = parse
            await backend.close()

    return asyncio.run(go())


def measure(
    keys: int,
    runs: int,
    sweep: Sequence[int],
    fast_xml: bool,
    first_byte_ms: float = 20.0,
    log: Any = print,
    tree: bool = False,
) -> dict[str, Any]:
    """Sequential and parallel listings of a synthesized `keys`-key prefix, `runs` times."""
    from shardcache.testkit.proxy import ProxyConfig
    from shardcache.testkit.proxyproc import ProxyProcess

    cmd = [sys.executable, "-m", "benchmarks.listing_server", "--keys", str(keys)]
    server = subprocess.Popen(
        cmd + ["--fast-xml"] * fast_xml,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    info = json.loads(server.stdout.readline())
    log(json.dumps(info))
    readers = ["sequential"] + [f"parallel x{c}" for c in sweep]
    if tree:
        readers += [r + TREE for r in readers]
    results: list[dict[str, dict[str, Any]]] = []
    try:
        cfg = ProxyConfig(first_byte_delay_s=first_byte_ms / 1000, bandwidth_bytes_per_s=None)
        with ProxyProcess(info["url"], cfg) as proxy, tempfile.TemporaryDirectory() as tmp:
            for run in range(runs):
                order = readers if run % 2 == 0 else readers[::-1]
                row = {
                    w: _measure(proxy.url, info["bucket"], w, server.pid, proxy, Path(tmp))
                    for w in order
                }
                for r in row.values():
                    if r["keys"] != keys:
                        raise RuntimeError(f"{r['what']}: {r['keys']} keys, expected {keys}")
                results.append(row)
                log(json.dumps(row))
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # moto's threaded server can be slow to stop
            server.kill()
            server.wait(timeout=30)
    return {
        "keys": keys,
        "first_byte_ms": first_byte_ms,
        "fast_xml": fast_xml,
        "synthesis_s": info["synthesis_s"],
        "readers": readers,
        "runs": results,
    }


def summary(res: dict[str, Any]) -> list[str]:
    out = [
        f"{res['keys']:,} keys, {res['first_byte_ms']:g} ms to first byte, "
        f"{'template' if res['fast_xml'] else 'moto'} XML, {len(res['runs'])} runs "
        "(median [min-max])",
        "",
        "| listing | seconds | pages (proxy) | pages in series | client CPU s | "
        "emulator CPU s | proxy CPU s | CPU ms/page: client, emulator, proxy | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = res["runs"]
    for w in res["readers"]:

        def col(k: str, w: str = w) -> str:
            v = [r[w][k] for r in runs]
            return f"{statistics.median(v):.1f} [{min(v):.1f}-{max(v):.1f}]"

        up = [r["sequential"]["seconds"] / r[w]["seconds"] for r in runs]

        def per_page(k: str, w: str = w) -> str:
            return f"{statistics.median(1000 * r[w][k] / r[w]['proxy_requests'] for r in runs):.1f}"

        cpu = ", ".join(per_page(k) for k in ("cpu_s", "server_cpu_s", "proxy_cpu_s"))
        out.append(
            f"| {w} | {col('seconds')} | {col('proxy_requests')} | {col('depth')} | "
            f"{col('cpu_s')} | {col('server_cpu_s')} | {col('proxy_cpu_s')} | {cpu} | "
            f"{statistics.median(up):.2f} [{min(up):.2f}-{max(up):.2f}] |"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--sweep", default="8,16,32", help="parallel concurrencies")
    p.add_argument("--first-byte-ms", type=float, default=20.0)
    p.add_argument("--fast-xml", action="store_true", help="see listing_server")
    p.add_argument(
        "--tree", action="store_true", help="also each listing with the ElementTree page parser"
    )
    a = p.parse_args()
    sweep = [int(c) for c in a.sweep.split(",")]
    res = measure(a.keys, a.runs, sweep, a.fast_xml, a.first_byte_ms, tree=a.tree)
    print("\n".join(["", *summary(res)]))


if __name__ == "__main__":
    main()
