"""R12 in `make bench`: the partition simulation's tables and chart, dated, in results/.

    python -m benchmarks.partition_bench            # the simulation alone, ~20 s
    python -m benchmarks.partition_bench --real     # and the real two-agent run, ~1 min
    python -m benchmarks.run --only r12             # the same through the benchmark driver

Writes `results/DATE-partitions.md` (tables), `results/DATE-partitions.png` (chart) and
returns the numbers for `results/DATE.json`. The method and the models are in
`partition_sim.py`'s docstring; the real two-agent run it is checked against is
`partition_real.py`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shardcache.config import Config, format_size
from shardcache.testkit.proxy import ProxyConfig

from .partition_sim import ClassResult, EngineModel, Job, JobResult, StoreModel, run_job

RESULTS = Path(__file__).resolve().parent / "results"
NODES = (1, 10, 100, 1000)
FAULTS = ("healthy", "slow", "failed")
#: S3's documented request rate per prefix before it repartitions
S3_PREFIX_GET_PER_S = 5500.0


def engine_model() -> EngineModel:
    # Config's defaults are the engine's; cache_dir is required but never touched here
    return EngineModel.from_config(Config(cache_dir=Path("/nonexistent")))


def measure(
    nodes: tuple[int, ...] = NODES,
    share_objects: int = 32,
    real: tuple[Path, ProxyConfig] | None = None,
) -> dict[str, Any]:
    """Every (nodes, partitioned, fault) case on an elastic store, and healthy jobs on a
    store capped at one S3 prefix's request rate; with `real` (a work dir and the cloud-like
    proxy's settings), the real two-agent run and the simulator at its size."""
    started = time.perf_counter()
    engine = engine_model()
    elastic, capped = StoreModel(), StoreModel(max_requests_per_s=S3_PREFIX_GET_PER_S)
    memo: dict[tuple[object, ...], ClassResult] = {}
    rows = []
    for n in nodes:
        for partitioned in (True, False):
            for fault in FAULTS:
                job = Job(n, share_objects=share_objects, partitioned=partitioned, fault=fault)
                rows.append(_row(run_job(job, elastic, engine, memo=memo), "elastic"))
            job = Job(n, share_objects=share_objects, partitioned=partitioned)
            rows.append(_row(run_job(job, capped, engine), "one prefix"))
    out = {
        "engine": asdict(engine),
        "store": asdict(elastic),
        "capped_requests_per_s": S3_PREFIX_GET_PER_S,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }
    if real is not None:
        from . import partition_real

        out["validation"] = _guarded_real(lambda: partition_real.measure(*real))
    return out


def _guarded_real(fn: Any) -> Any:
    """The simulation stands on its own; a failed real run is reported, not fatal."""
    try:
        return fn()
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"[:1500]}


def _row(r: JobResult, store: str) -> dict[str, Any]:
    return {
        "nodes": r.job.nodes,
        "partitioned": r.job.partitioned,
        "fault": r.job.fault,
        "store": store,
        "share_bytes": r.job.share_objects * r.job.shard_bytes,
        "dataset_bytes": r.dataset_bytes,
        "cloud_bytes": r.cloud_bytes,
        "cloud_ratio": r.cloud_ratio,
        "all_local_s": r.all_local_s,
        "healthy_local_s": r.healthy_local_s,
        "list_requests": r.list_requests,
        "get_requests": r.get_requests,
    }


def _find(
    rows: list[dict[str, Any]],
    n: int,
    partitioned: bool,
    fault: str = "healthy",
    store: str = "elastic",
) -> dict[str, Any]:
    return next(
        r
        for r in rows
        if (r["nodes"], r["partitioned"], r["fault"], r["store"]) == (n, partitioned, fault, store)
    )


def _s(seconds: float) -> str:
    return f"{seconds:,.1f}" if seconds < 100 else f"{seconds:,.0f}"


def tables(res: dict[str, Any]) -> str:
    rows = res["rows"]
    nodes = sorted({r["nodes"] for r in rows})
    share = format_size(rows[0]["share_bytes"])
    e = res["engine"]
    out = [
        "## R12: each node fetches its share (simulated)",
        "",
        f"Weak scaling: each member's share is {share} (shards of 256 MiB), one pod per node; "
        f"the dataset is N shares. Engine: {e['max_concurrency']} requests in flight, "
        f"{format_size(e['part_size_bytes'])} parts. Store: "
        f"{res['store']['first_byte_s'] * 1000:g} ms to first byte, "
        f"{res['store']['conn_bytes_per_s'] / 1e6:g} MB/s per connection; node: 25 Gbit/s "
        "NIC, 3 GB/s disk. p = `shardcache.io/partition`, all = every node fetches the "
        f"dataset. Simulated in {res['seconds']:.1f} s.",
        "",
        "| nodes | dataset | cloud bytes / dataset, p | all | every share local (s), p | all "
        "| LIST requests per job | GET requests, p | all |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in nodes:
        p, a = _find(rows, n, True), _find(rows, n, False)
        out.append(
            f"| {n:,} | {format_size(p['dataset_bytes'])} | {p['cloud_ratio']:.3f} | "
            f"{a['cloud_ratio']:,.0f} | {_s(p['all_local_s'])} | {_s(a['all_local_s'])} | "
            f"{p['list_requests']:,} | {p['get_requests']:,} | {a['get_requests']:,} |"
        )
    top, one = _find(rows, nodes[-1], True), _find(rows, nodes[0], True)
    out += [
        "",
        f"Reading it: with partitions the job pulls one dataset from the cloud at any size, and "
        f"the time until every share is local goes from {_s(one['all_local_s'])} s to "
        f"{_s(top['all_local_s'])} s; what grows is the LIST of the whole manifest on every "
        "node (each needs it to compute its share and to list the dataset in its view: "
        f"{top['list_requests']:,} LIST requests per job at {nodes[-1]:,} nodes). Without, "
        "every node fetches all N shares, so bytes and time grow with N. A slow node holds "
        "the job back by its own share only; a failed one costs its share again, not the "
        "dataset. A store that caps the request rate of one prefix is the one limit "
        "partitions do not remove (last table): S3 documents its rate per partitioned prefix, "
        "so a dataset meant for 1,000 nodes is best keyed over sub-prefixes (`train/00/`, "
        "`train/01/`, ...), each of which gets that rate.",
    ]
    out += [
        "",
        "### One slow node (1/10 of the bandwidth) or one failed node (dies half-way, "
        "its pod rescheduled onto an empty node)",
        "",
        "| nodes | slow: every share local (s), p | all | failed: cloud bytes / dataset, p "
        "| all | failed: every share local (s), p | all |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in nodes:
        sp, sa = _find(rows, n, True, "slow"), _find(rows, n, False, "slow")
        fp, fa = _find(rows, n, True, "failed"), _find(rows, n, False, "failed")
        out.append(
            f"| {n:,} | {_s(sp['all_local_s'])} | {_s(sa['all_local_s'])} | "
            f"{fp['cloud_ratio']:.3f} | {fa['cloud_ratio']:,.1f} | "
            f"{_s(fp['all_local_s'])} | {_s(fa['all_local_s'])} |"
        )
    out += [
        "",
        f"### A store that serves one prefix at {res['capped_requests_per_s']:,.0f} "
        "requests/s (S3 before it repartitions)",
        "",
        "| nodes | every share local (s), p | all |",
        "|---|---|---|",
    ]
    for n in nodes:
        p, a = _find(rows, n, True, store="one prefix"), _find(rows, n, False, store="one prefix")
        out.append(f"| {n:,} | {_s(p['all_local_s'])} | {_s(a['all_local_s'])} |")
    return "\n".join(out + validation(res.get("validation"))) + "\n"


def validation(v: Any) -> list[str]:
    """The real run on this machine beside the simulator at the same size."""
    if not v or "real" not in v:
        return [] if not v else ["", f"Real two-agent run: {v.get('error', 'not run')}"]
    real, sim = v["real"], v["simulated"]
    p = real["partitioned"]
    out = [
        "",
        f"### Validation: {p['agents']} real agents on this machine vs the simulator",
        "",
        f"{p['objects']} shards, {format_size(p['dataset_bytes'])}, through the cloud-like "
        "proxy on moto; each agent has its own cache dir and registers one pod (after a "
        "one-object warm-up that opens its S3 client). Requests are counted at the proxy: "
        "exact, and the same in every run. Times: median of "
        f"{v.get('runs', 1)} interleaved runs. The simulated nodes get the bandwidth one agent "
        f"alone got here ({real['node_bytes_per_s_alone'] / 1e6:.0f} MB/s): each its own "
        "(a cluster) – half each (the agents here share 2 cores).",
        "",
        "| job | cloud bytes / dataset, real | simulated | objects fetched once / more / never "
        "(real) | LIST requests, real | simulated | GET requests, real | simulated | every "
        "share local (s), real | simulated |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label in (("partitioned", "partitioned"), ("whole", "every node fetches all")):
        r, s = real[name], sim[name]
        out.append(
            f"| {label} | {r['cloud_ratio']:.3f} | {s['cloud_ratio']:.3f} | "
            f"{r['objects_fetched_once']} / {r['objects_fetched_more']} / "
            f"{r['objects_never']} | {r['list_requests']} | {s['list_requests']} | "
            f"{r['get_requests']} | {s['get_requests']} | {r['seconds']:.2f} | "
            f"{s['seconds']:.2f} – {s.get('seconds_shared_machine', s['seconds']):.2f} |"
        )
    return out


def chart(res: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    nodes = sorted({r["nodes"] for r in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    for partitioned, label, color in (
        (True, "partitioned", "#54a24b"),
        (False, "every node fetches all", "#e45756"),
    ):
        left.plot(
            nodes,
            [_find(rows, n, partitioned)["cloud_ratio"] for n in nodes],
            "o-",
            color=color,
            label=label,
        )
        for fault, style in (("healthy", "o-"), ("slow", "x--")):
            right.plot(
                nodes,
                [_find(rows, n, partitioned, fault)["all_local_s"] for n in nodes],
                style,
                color=color,
                label=f"{label}, {fault}",
            )
    for ax, title in (
        (left, "cloud bytes / dataset size"),
        (right, "seconds until every pod's share is local"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes (one share each)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("R12: partitioned datasets, simulated (benchmarks/partition_sim.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(res: dict[str, Any], out: Path, stem: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    png = chart(res, out / f"{stem}-partitions.png")
    md = out / f"{stem}-partitions.md"
    md.write_text(
        f"# Partitioned datasets, {stem}\n\n" + tables(res) + f"\n![{png.stem}]({png.name})\n"
    )
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--date", default=datetime.date.today().isoformat())
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--real", action="store_true", help="also run real agents (~1 min)")
    p.add_argument("--report-only", type=Path, help="rewrite the tables and chart from a JSON")
    a = p.parse_args(argv)
    if a.report_only:
        print(write(json.loads(a.report_only.read_text()), a.report_only.parent, a.date))
        return 0
    work = Path(tempfile.mkdtemp(prefix="shardcache-r12-"))
    try:
        proxy = ProxyConfig(first_byte_delay_s=0.02, bandwidth_bytes_per_s=90e6)
        res = measure(real=(work, proxy) if a.real else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.date}-partitions.json").write_text(json.dumps(res, indent=1) + "\n")
    print(write(res, a.out, a.date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
