"""Run every benchmark once, in bounded time, and write dated results (see README.md).

python -m benchmarks.run            # full: ~18 min on 2 cores
python -m benchmarks.run --quick    # quick: ~3-4 min, one run, smaller sets
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shardcache.testkit.benchstore import BenchStore
from shardcache.testkit.datasets import generate, image_like, shard_like
from shardcache.testkit.proxy import ProxyConfig
from shardcache.testkit.readers import drop_page_cache, write_plain_copy

from . import (
    cpu_per_object,
    epochs,
    external,
    hitrate,
    listing,
    machine,
    multireader,
    partition_bench,
    report,
    startup,
    throughput,
    view_epochs,
)

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Plan:
    images: int
    shards_mib: tuple[int, ...]
    runs: int
    r4_images: int
    r4_epochs: int
    r5_objects: int
    r5_engine_objects: int
    r5_epochs: int
    r6_readers: int
    r7_objects: int
    r7_watch_s: float
    r8_runs: int
    r8_seconds: float
    r3_runs: int
    #: R11: small objects, each reader in its own process, `runs` times
    r11_objects: int = 1000
    #: R9: keys of the synthesized prefix, runs, and the parallel concurrencies swept
    r9_keys: int = 1_000_000
    r9_runs: int = 2
    r9_sweep: tuple[int, ...] = (16, 32)


FULL = Plan(
    images=1500,
    shards_mib=(64, 128, 256),
    runs=3,
    r4_images=400,
    r4_epochs=3,
    r5_objects=10_000,
    r5_engine_objects=1000,
    r5_epochs=5,
    r6_readers=4,
    r7_objects=1_000_000,
    r7_watch_s=10.0,
    r8_runs=3,
    r8_seconds=10.0,
    r3_runs=5,
)
QUICK = Plan(
    images=300,
    shards_mib=(64,),
    runs=1,
    r4_images=150,
    r4_epochs=3,
    r5_objects=3000,
    r5_engine_objects=300,
    r5_epochs=4,
    r6_readers=3,
    r7_objects=50_000,
    r7_watch_s=2.0,
    r8_runs=1,
    r8_seconds=3.0,
    r3_runs=2,
    r11_objects=300,
    r9_keys=50_000,
    r9_runs=1,
    r9_sweep=(16,),
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sets, one run (~3-4 min)")
    p.add_argument("--first-byte-ms", type=float, default=20.0)
    p.add_argument("--bandwidth-mbps", type=float, default=90.0, help="per connection, MB/s")
    p.add_argument("--date", default=datetime.date.today().isoformat())
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--only", help="comma-separated parts: throughput,r3,r4,r5,r6,r7,r8,r9,r11,r12")
    p.add_argument("--report-only", type=Path, help="rewrite the report from a results JSON")
    a = p.parse_args(argv)
    if a.report_only:
        res = json.loads(a.report_only.read_text())
        log(str(report.write(res, a.report_only.parent, a.report_only.stem)))
        return 0
    plan = QUICK if a.quick else FULL
    parts = (
        set(a.only.split(","))
        if a.only
        else {"throughput", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r11", "r12"}
    )
    proxy = ProxyConfig(
        first_byte_delay_s=a.first_byte_ms / 1000, bandwidth_bytes_per_s=a.bandwidth_mbps * 1e6
    )
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": "quick" if a.quick else "full",
        "date": a.date,
        "plan": asdict(plan),
        "machine": machine.describe(),
        "proxy": {"first_byte_ms": a.first_byte_ms, "bandwidth_mb_per_s": a.bandwidth_mbps},
        "drop_caches": drop_page_cache(),
    }
    work = Path(tempfile.mkdtemp(prefix="shardcache-bench-"))
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so emulators and temp dirs go too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        _remote(plan, proxy, work, parts, results)
        if "r4" in parts:
            log(f"R4 through the read-through view, {plan.runs} runs (benchmarks/view_epochs.py)")
            results["r4_view"] = _guarded(
                lambda: view_epochs.measure(work / "r4view", proxy, plan.runs, a_quick(plan))
            )
        _local(plan, work, parts, results)
        if "r12" in parts:
            log("R12: partitioned datasets, simulated to 1,000 nodes and run with real agents")
            results["r12"] = _guarded(lambda: partition_bench.measure(real=(work, proxy)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.perf_counter() - started
    stem = f"{a.date}-quick" if a.quick else a.date
    a.out.mkdir(parents=True, exist_ok=True)
    if results.get("r12", {}).get("rows"):
        log(str(partition_bench.write(results["r12"], a.out, stem)))
    (a.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    md = report.write(results, a.out, stem)
    log(f"done in {results['seconds']:.0f} s: {md}")
    return 0


def _remote(
    plan: Plan, proxy: ProxyConfig, work: Path, parts: set[str], results: dict[str, Any]
) -> None:
    specs = [image_like(plan.images), shard_like(plan.shards_mib)]
    results["datasets"] = [s.describe() for s in specs]
    if not parts & {"throughput", "r4", "r6"}:
        return
    with BenchStore(proxy) as store:
        assert store.cloud is not None
        data = {}
        for spec in specs:
            log(f"generating and uploading {spec.describe()}")
            objects = generate(spec)
            store.put(objects)
            data[spec.name] = (objects, write_plain_copy(objects, work / "plain"))
        tp: dict[str, list[Any]] = {name: [] for name in data}
        r4: list[dict[str, list[float]]] = []
        # R4 reads a subset; it gets a prefix of its own so that shardcache prefetches
        # exactly the files the loop reads, no more
        r4_objects = {"r4-" + k: v for k, v in sorted(data["images"][0].items())[: plan.r4_images]}
        if "r4" in parts:
            store.put(r4_objects)
        images = sorted((k, len(v)) for k, v in r4_objects.items())
        for run in range(plan.runs):  # interleaved: every part once per run
            for name, (objects, plain) in data.items():
                if "throughput" in parts:
                    log(f"run {run + 1}/{plan.runs}: throughput, {name}")
                    tp[name].append(
                        throughput.one_run(
                            store, name, objects, plain, work, run, a_quick(plan), log
                        )
                    )
            if "r4" in parts:
                log(f"run {run + 1}/{plan.runs}: R4 training read loop")
                r4.append(
                    epochs.one_run(store.cloud, "r4-images", images, work, plan.r4_epochs, run)
                )
        results["throughput"] = {name: [asdict(o) for o in runs] for name, runs in tp.items()}
        results["r4"] = {
            "runs": r4,
            "files": len(images),
            "workers": epochs.WORKERS,
            "bytes": sum(s for _, s in images),
        }
        if "r6" in parts:
            log(f"R6: {plan.r6_readers} readers of one dataset")
            results["r6"] = {
                "readers": plan.r6_readers,
                "dataset_bytes": sum(map(len, data["images"][0].values())),
                "processes": multireader.processes(store, "images", work, plan.r6_readers),
                "agent": _guarded(
                    lambda: multireader.agent_clients(store, "images", work, plan.r6_readers)
                ),
            }


def a_quick(plan: Plan) -> bool:
    return plan is QUICK


def _local(plan: Plan, work: Path, parts: set[str], results: dict[str, Any]) -> None:
    if "r5" in parts:
        log("R5: hit rate per epoch (policy models and the real engine)")
        results["r5"] = {
            "objects": plan.r5_objects,
            "epochs": plan.r5_epochs,
            "models": hitrate.models(plan.r5_objects, plan.r5_epochs, 11),
            "engine_objects": plan.r5_engine_objects,
            "engine 50%": hitrate.real_engine(work, plan.r5_engine_objects, plan.r5_epochs, 11),
        }
    if "r7" in parts:
        log(f"R7: start-up with {plan.r7_objects} cached objects")
        results["r7"] = _guarded(
            lambda: startup.measure(work, plan.r7_objects, plan.r7_watch_s, log)
        )
    if "r8" in parts:
        log("R8: webhook review latency (benchmarks/webhook_latency.py)")
        results["r8"] = _guarded(lambda: external.webhook_latency(plan.r8_runs, plan.r8_seconds))
    if "r11" in parts:
        log(f"R11: CPU per object, {plan.r11_objects} small objects, {plan.runs} runs")
        results["r11"] = _guarded(
            lambda: cpu_per_object.measure(
                image_like(plan.r11_objects), plan.runs, cpu_per_object.READERS, log=lambda m: None
            )
        )
    if "r9" in parts:
        log(f"R9: listing {plan.r9_keys:,} keys, sequential vs parallel")
        results["r9"] = _guarded(
            lambda: listing.measure(
                plan.r9_keys, plan.r9_runs, plan.r9_sweep, fast_xml=True, log=lambda m: None
            )
        )
    if "r3" in parts:
        log("R3: warm reads through the client (benchmarks/client_read.py)")
        results["r3"] = _guarded(lambda: external.client_read(plan.r3_runs))


def _guarded(fn: Any) -> Any:
    """A part that another engineer is still finishing must not sink the whole run."""
    try:
        return fn()
    except Exception as e:
        log(f"  failed: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"[:1500]}


if __name__ == "__main__":
    sys.exit(main())
