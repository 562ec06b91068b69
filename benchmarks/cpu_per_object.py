"""R11 (CPU seconds per object) and the transfer-library comparison, side by side in one run.

Method. One moto server behind the cloud-like proxy (its own process) holds a seeded dataset.
Every reader runs in a child process of its own, so its CPU figure is exactly its own: the
child measures `time.process_time()` (user + sys of every thread of the process) around the
work only (client set-up, listing where the reader lists, every GET, writing where it writes),
and reports the whole-process figure (imports and interpreter start included) beside it.
CPU time hardly depends on how busy the other 7 tenants of this machine keep the cores, so
the ratios are stable where wall-clock rates are not. Readers run in a rotating order, once
per run; ratios are taken within a run, and the summary is the median over runs.

Readers:
- `raw`: a plain aiohttp GET loop, `--concurrency` requests in flight, each request signed
  with botocore's SigV4 header signer (exactly how the shardcache backend signs), one session;
  it neither lists nor writes: the floor a Python client can reach.
- `raw+write`: `raw` that also does what any cache must: a new file per object, its bytes
  (each ranged part at its offset as it arrives), their MD5 in offset order, fsync, a rename.
- `obstore`: obstore `get_async` + `bytes_async` with the same concurrency (Rust signing,
  HTTP and retries); it neither lists nor writes.
- `s3fs`: s3fs `cat` of every path at once, with its own concurrency (one GET per object).
- `prefetch`: the engine in-process (`Engine.open` + `prefetch` of the prefix into a fresh
  cache directory): listing, index, durable writes and checks included.

    python -m benchmarks.cpu_per_object --files 1000 --runs 3
    python -m benchmarks.cpu_per_object --shards 64,128 --runs 3     # large objects
    python -m benchmarks.cpu_per_object --profile prefetch            # py-spy flame data
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the readers, in `cpu_children.py`; with `--base REF` also `prefetch@base`, the prefetch of an
#: earlier commit measured in the same run
READERS = ("raw", "raw+write", "obstore", "s3fs", "prefetch", "rerun")
#: the cache dir of the last `prefetch` child, which a `rerun` child prefetches again
_LAST_PREFETCH: list[str] = []


def _run_child(
    reader: str, spec: dict[str, Any], env: dict[str, str], work: Path, profile: str | None = None
) -> dict[str, Any]:
    cache_dir = str(work / f"cache-{reader}-{time.monotonic_ns()}")
    if reader == "rerun":
        if not _LAST_PREFETCH:
            raise RuntimeError("rerun needs a prefetch before it in the same run")
        cache_dir = _LAST_PREFETCH[-1]
    elif reader == "prefetch":
        _LAST_PREFETCH.append(cache_dir)
    spec = dict(spec, cache_dir=cache_dir)
    spec_path = work / "spec.json"
    if reader == "prefetch@base" and not (work / "base").exists():
        raise RuntimeError("prefetch@base needs --base REF")
    spec_path.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "benchmarks.cpu_children", reader, str(spec_path)]
    if reader == "prefetch@base":  # the same CLI from the `--base` commit's source
        env = {**env, "PYTHONPATH": str(work / "base")}
    if profile and profile.startswith("wrap="):  # e.g. wrap=strace -f -c -o /tmp/s.txt
        cmd = [*profile[5:].split(), *cmd]
    elif profile:
        cmd = [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--rate",
            "250",
            "--format",
            "raw",
            "--gil",
            "-o",
            profile,
            "--",
            *cmd,
        ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{reader} failed ({out.returncode}): {out.stderr[-2000:]}")
    # The cache dir stays until the whole benchmark ends: deleting thousands of files just
    # before the next reader creates its own makes ext4 skip the recently freed inodes one by
    # one (`recently_deleted` in the kernel's inode allocator), a cost of this benchmark's
    # churn that a node filling its cache does not pay.
    line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    if result["bytes"] != spec["expect_bytes"]:
        raise RuntimeError(f"{reader}: {result['bytes']} bytes, expected {spec['expect_bytes']}")
    return result


def summary(runs: list[dict[str, dict[str, Any]]], n_objects: int, nbytes: int) -> list[str]:
    lines = [
        f"{n_objects} objects, {nbytes / 1e6:.0f} MB, {len(runs)} runs (median [min-max])",
        "| reader | CPU ms/object (work) | CPU ms/object (process) | MB/s | "
        "CPU / raw | MB/s / raw |",
        "|---|---|---|---|---|---|",
    ]

    def fmt(vals: Sequence[float], digits: int = 2) -> str:
        return (
            f"{statistics.median(vals):.{digits}f} [{min(vals):.{digits}f}-{max(vals):.{digits}f}]"
        )

    for reader in [r for r in (*READERS, "prefetch@base") if r in runs[0]]:
        cpu = [1000 * r[reader]["cpu_s"] / n_objects for r in runs]
        proc = [1000 * r[reader]["process_cpu_s"] / n_objects for r in runs]
        mbs = [nbytes / r[reader]["wall_s"] / 1e6 for r in runs]
        cratio = [r[reader]["cpu_s"] / r["raw"]["cpu_s"] for r in runs]
        tratio = [r["raw"]["wall_s"] / r[reader]["wall_s"] for r in runs]
        lines.append(
            f"| {reader} | {fmt(cpu)} | {fmt(proc)} | {fmt(mbs, 0)} | "
            f"{fmt(cratio)} | {fmt(tratio)} |"
        )
    return lines


def _export_base(ref: str, dest: Path) -> None:
    """The shardcache package as of commit `ref`, importable from `dest` (PYTHONPATH), so
    that `prefetch@base` measures the code before a change in the same run as after it."""
    src = dest / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", ref, "cache"],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    (dest / "shardcache").symlink_to(src / "cache")


def measure(
    dataset: Any,
    runs: int,
    readers: Sequence[str],
    concurrency: int = 64,
    part_mib: int = 0,
    work_dir: str | None = None,
    direct: bool = False,
    profile: str | None = None,
    log: Any = print,
    base: str | None = None,
) -> dict[str, Any]:
    """Every reader once per run over `dataset` (a `DatasetSpec`); raw always included."""
    from shardcache.testkit.benchstore import BUCKET, BenchStore
    from shardcache.testkit.datasets import generate
    from shardcache.testkit.proxy import ProxyConfig

    objects = generate(dataset)
    keys = sorted(objects)
    readers = list(readers) if "raw" in readers else ["raw", *readers]
    proxy = ProxyConfig(first_byte_delay_s=0.02, bandwidth_bytes_per_s=90e6)
    with (
        BenchStore(proxy) as store,
        tempfile.TemporaryDirectory(prefix="r11-", dir=work_dir) as tmp,
    ):
        store.put(objects)
        endpoint = store.direct if direct else store.cloud
        assert endpoint is not None
        env = {
            **os.environ,
            **endpoint.env,
            "BENCH_BUCKET": BUCKET,
            "BENCH_PREFIX": dataset.name + "/",
            "AWS_ENDPOINT_URL": endpoint.url,
        }
        spec = {
            "keys": keys,
            "sizes": [len(objects[k]) for k in keys],
            "concurrency": concurrency,
            "part_bytes": part_mib * 2**20,
            "expect_bytes": sum(len(v) for v in objects.values()),
        }
        del objects
        work = Path(tmp)
        if base:
            _export_base(base, work / "base")
        if profile:
            out = Path("benchmarks/.profiles")
            out.mkdir(exist_ok=True)
            reader, _, tool = profile.partition(":")
            dest = str(out / f"{reader}-{time.strftime('%H%M%S')}.txt")
            log(f"{_run_child(reader, spec, env, work, tool or dest)} {dest}")
            return {}
        done: list[dict[str, dict[str, Any]]] = []
        for i in range(runs):
            order = readers[i % len(readers) :] + readers[: i % len(readers)]
            if "rerun" in order:  # an all-local re-run of this run's cold prefetch
                order.remove("rerun")
                order.insert(order.index("prefetch") + 1, "rerun")
            done.append({r: _run_child(r, spec, env, work) for r in order})
            log(json.dumps(done[-1]))
    return {
        "endpoint": endpoint.label,
        "concurrency": concurrency,
        "part_mib": part_mib,
        "objects": len(keys),
        "bytes": spec["expect_bytes"],
        "runs": done,
        "dataset": dataset.describe(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=1000, help="image-like objects (90-130 KiB)")
    p.add_argument("--shards", default="", help="large objects instead: sizes in MiB, e.g. 64,128")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--part-mib", type=int, default=0, help="ranged parts for large objects")
    p.add_argument("--readers", default=",".join(READERS))
    p.add_argument(
        "--work-dir",
        help="where cache dirs go (default: the temp dir); the file "
        "system's cost of creating files is part of every figure",
    )
    p.add_argument("--direct", action="store_true", help="moto without the cloud-like proxy")
    p.add_argument("--base", help="a commit whose prefetch runs as reader prefetch@base")
    p.add_argument(
        "--profile",
        help="READER (py-spy raw stacks into benchmarks/.profiles) or "
        "READER:wrap=COMMAND (e.g. prefetch:wrap=strace -f -c -o /tmp/s.txt)",
    )
    a = p.parse_args(argv)
    from shardcache.testkit.datasets import image_like, shard_like

    dataset = (
        shard_like(tuple(int(x) for x in a.shards.split(","))) if a.shards else image_like(a.files)
    )
    res = measure(
        dataset,
        a.runs,
        [r for r in a.readers.split(",") if r],
        a.concurrency,
        a.part_mib,
        a.work_dir,
        a.direct,
        a.profile,
        base=a.base,
    )
    if res:
        print(f"{res['endpoint']}; concurrency {a.concurrency}; part {a.part_mib} MiB")
        print("\n".join(summary(res["runs"], res["objects"], res["bytes"])))


if __name__ == "__main__":
    main()
