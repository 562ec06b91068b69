"""R4 through the read-through view: a training read loop on a view whose prefetch is running,
against s3fs reading the same objects directly through the same proxy, in the same run.

Part of `python -m benchmarks.view` (`--only r4`) and of `make bench` (`measure`, the R4 rows
of the goals table); in its own module because `view.py` is at the house size limit.

Per run, a fresh dataset prefix (so the view is cold every run) of `SMALL` objects of 100 KiB
and `LARGE` objects of 4 MiB, behind the cloud-like proxy (20 ms first byte, 90 MB/s per
connection) on moto:
- **view epoch 1**: the clock starts before the dataset is registered with `prefetch: all` and
  mounted (what the CSI plugin does at pod start); the read loop of `benchmarks/epochs.py`
  (4 worker threads, a fresh random order, whole files) then reads every object through the
  view while the prefetch runs: local files are served from disk, misses are fetched on open.
- **s3fs direct**: the same loop, `cat_file` per object through the proxy; only once the
  view's prefetch has finished, so the two never share the store.
- **view epoch 2**: the same loop through the view once everything is local.
- **ceiling**: raw aiohttp GETs of the same objects, 32 connections busy all the time, through
  the same proxy (the testkit's raw client): the most any reader that has to fetch every byte
  once can get out of this store on this machine, so ceiling / s3fs bounds epoch 1's speed-up.
The order of view epoch 1 and s3fs alternates between runs. Every epoch checks its byte count.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path
from typing import Any

from shardcache.testkit.benchstore import Endpoint
from shardcache.testkit.proxy_rules import ProxyConfig
from shardcache.testkit.readers import get_urls, plan_requests, s3fs_filesystem

from .epochs import read_loop
from .view import Stack, all_local, unmount_under, wait_until

SMALL, LARGE = 300, 4
SMALL_BYTES, LARGE_BYTES = 100 * 1024, 4 << 20


def _dataset(run: int, quick: bool) -> dict[str, bytes]:
    rng = random.Random(100 + run)
    small = SMALL // 3 if quick else SMALL
    objects = {f"r4run{run}/s{i:04d}.bin": rng.randbytes(SMALL_BYTES) for i in range(small)}
    objects.update(
        {
            f"r4run{run}/large{i}.bin": rng.randbytes(LARGE_BYTES)
            for i in range(LARGE // 2 if quick else LARGE)
        }
    )
    return objects


def measure(work: Path, proxy: ProxyConfig, runs: int, quick: bool) -> dict[str, Any]:
    """R4 through the view on a stack of its own (moto, proxy, agent, view keeper and server)
    under `work`; every mount it made is gone when it returns, whatever happened."""
    work.mkdir(parents=True, exist_ok=True)
    try:
        with Stack(work, proxy).run() as stack:
            return bench_r4(stack, runs, quick)
    finally:
        unmount_under(work)


def bench_r4(stack: Stack, runs: int, quick: bool) -> dict[str, Any]:
    fs = s3fs_filesystem(Endpoint("proxy", stack.endpoint, stack.moto.env()))
    out: dict[str, Any] = {
        "view_epoch1_s": [],
        "view_epoch2_s": [],
        "s3fs_s": [],
        "mount_s": [],
        "ceiling_s": [],
        "local_at_end_of_epoch1": [],
        "epoch1_miss_opens": [],
    }
    for run in range(runs):
        _one_run(stack, fs, run, quick, out)
    return out


def _one_run(stack: Stack, fs: Any, run: int, quick: bool, out: dict[str, Any]) -> None:
    objects = _dataset(run, quick)
    stack.bucket.put(objects)
    keys = sorted(objects)
    total = sum(map(len, objects.values()))
    out.update(objects=len(keys), bytes=total)
    prefix = f"r4run{run}/"
    bucket = stack.bucket.name
    holder: dict[str, str] = {}

    def view_read(key: str) -> int:
        with open(os.path.join(holder["view"], key.removeprefix(prefix)), "rb") as f:
            return len(f.read())

    def s3fs_epoch() -> None:
        seconds, got = read_loop(lambda k: len(fs.cat_file(f"{bucket}/{k}")), keys, run * 100 + 1)
        _check(got, total)
        out["s3fs_s"].append(seconds)

    def view_epoch1() -> None:
        t0 = time.perf_counter()
        holder["view"], holder["local"] = stack.mount(prefix, f"r4-{run}")
        out["mount_s"].append(time.perf_counter() - t0)
        _, got = read_loop(view_read, keys, run * 100)
        out["view_epoch1_s"].append(time.perf_counter() - t0)
        _check(got, total)
        out["local_at_end_of_epoch1"].append(_local_count(holder["local"], objects))
        wait_until(lambda: all_local(holder["local"], objects), "prefetch", timeout_s=600)

    for step in (view_epoch1, s3fs_epoch) if run % 2 == 0 else (s3fs_epoch, view_epoch1):
        step()
    seconds, got = read_loop(view_read, keys, run * 100 + 2)
    _check(got, total)
    out["view_epoch2_s"].append(seconds)
    out["epoch1_miss_opens"].append(_miss_opens(stack, prefix, 2 * len(keys)))
    out["ceiling_s"].append(_ceiling(stack, [(k, len(objects[k])) for k in keys], total))


def _miss_opens(stack: Stack, prefix: str, opens: int) -> int:
    """Opens that were misses, from the agent's status once the view server has reported all
    `opens` (it reports every 2 s); epoch 2 is all hits, so these are epoch 1's misses."""
    url = stack.bucket.url(prefix)

    def reported() -> bool:
        view = stack.agent.status(url).view
        return view is not None and view.opens >= opens

    wait_until(reported, "view open counts", timeout_s=30)
    view = stack.agent.status(url).view
    assert view is not None
    return view.miss_opens


def _ceiling(stack: Stack, objects: list[tuple[str, int]], total: int) -> float:
    import asyncio

    import botocore.session

    env = stack.moto.env()
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=stack.endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    t0 = time.perf_counter()  # signing is inside the clock, as in the testkit's raw_get
    urls = [
        client.generate_presigned_url(
            "get_object", Params={"Bucket": stack.bucket.name, "Key": k}, ExpiresIn=3600
        )
        for k, _ in objects
    ]
    got = asyncio.run(get_urls(urls, plan_requests(objects, None), 32, False))
    seconds = time.perf_counter() - t0
    _check(got, total)
    return seconds


def _local_count(local: str, objects: dict[str, bytes]) -> int:
    n = 0
    for k, v in objects.items():
        with contextlib.suppress(OSError):
            n += os.path.getsize(os.path.join(local, k.split("/", 1)[1])) == len(v)
    return n


def _check(got: int, total: int) -> None:
    if got != total:
        raise RuntimeError(f"epoch read {got} bytes, expected {total}")


def report_lines(r4: dict[str, Any], fmt: Any) -> list[str]:
    """The R4 section of the view report; `fmt(values, digits)` renders median [min-max]."""
    e1, e2, s3 = r4["view_epoch1_s"], r4["view_epoch2_s"], r4["s3fs_s"]
    return [
        "",
        "## R4: training read loop through the view vs s3fs direct "
        "(goal: epoch 1 >= 5x, later epochs >= 20x)",
        "",
        f"{r4['objects']} objects, {r4['bytes'] / 1e6:.1f} MB ({SMALL} x 100 KiB + "
        f"{LARGE} x 4 MiB unless --quick); 4 reader threads; cloud-like proxy on moto. "
        "Objects local when view epoch 1 ended: "
        + ", ".join(str(n) for n in r4["local_at_end_of_epoch1"])
        + "; opens in epoch 1 "
        "that were misses (fetched on open): "
        + ", ".join(str(n) for n in r4["epoch1_miss_opens"])
        + ".",
        "",
        "| | seconds | s3fs / this (speed-up) |",
        "|---|---|---|",
        f"| s3fs direct (every epoch) | {fmt(s3, 3)} | 1 |",
        f"| view epoch 1 (register + mount + reads while prefetching) | {fmt(e1, 3)} | "
        f"{fmt([a / b for a, b in zip(s3, e1, strict=True)], 2)} |",
        f"| &nbsp; of which register + mount | {fmt(r4['mount_s'], 3)} | |",
        f"| view epoch 2 (all local) | {fmt(e2, 3)} | "
        f"{fmt([a / b for a, b in zip(s3, e2, strict=True)], 1)} |",
        f"| ceiling: raw aiohttp GET x32, same objects | {fmt(r4['ceiling_s'], 3)} | "
        f"{fmt([a / b for a, b in zip(s3, r4['ceiling_s'], strict=True)], 2)} |",
        f"| view epoch 1 / ceiling (time) | "
        f"{fmt([a / b for a, b in zip(e1, r4['ceiling_s'], strict=True)], 2)} | |",
    ]
