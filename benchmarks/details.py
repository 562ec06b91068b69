"""Detail sections of the results file, one per goal beyond the throughput tables."""

from __future__ import annotations

import statistics
from typing import Any

from .report import table


def sections(res: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for fn in (_r3, _r4, _r5, _r6, _r7, _r8):
        out += fn(res)
    return out


def _r3(res: dict[str, Any]) -> list[str]:
    r3 = res.get("r3")
    if r3 is None:
        return []
    head = ["## R3: warm reads through the client (benchmarks/client_read.py)", ""]
    if "results" not in r3:
        return [*head, "Did not run: " + str(r3.get("error", ""))[-600:].replace("\n", " "), ""]
    rows = [
        [ds, m, f"{v['median_bytes_per_s'] / 1e6:.0f}", f"{v['ratio_to_raw']:.3f}"]
        for ds, ms in r3["results"].items()
        for m, v in ms.items()
    ]
    return [
        *head,
        f"{r3['runs']} runs, medians; sets: {r3.get('sets')}. Client stats: "
        f"{r3.get('client_stats')}.",
        "",
        table(["set", "method", "MB/s", "/ raw"], rows),
        "",
    ]


def _r4(res: dict[str, Any]) -> list[str]:
    r4 = res.get("r4")
    if not r4 or not r4.get("runs"):
        return []
    rows = []
    for i, r in enumerate(r4["runs"]):
        rows.append(
            [str(i + 1), *(f"{t:.2f}" for t in r["s3fs"]), *(f"{t:.3f}" for t in r["shardcache"])]
        )
    n = len(r4["runs"][0]["shardcache"])
    return [
        "## R4: training read loop (seconds per epoch)",
        "",
        f"{r4['files']} image-like files ({r4['bytes'] / 1e6:.0f} MB), {r4['workers']} "
        "worker threads, a new random order each epoch, through the cloud-like proxy. "
        "shardcache epoch 1 = cold prefetch + the read loop over the local directory.",
        "",
        table(
            [
                "run",
                "s3fs epoch 1",
                "s3fs epoch 2",
                *(f"shardcache epoch {e + 1}" for e in range(n)),
            ],
            rows,
        ),
        "",
    ]


def _r5(res: dict[str, Any]) -> list[str]:
    r5 = res.get("r5")
    if not r5:
        return []
    rows = [[name, *(f"{h:.3f}" for h in hits)] for name, hits in r5["models"].items()]
    rows.append(["real engine 50%", *(f"{h:.3f}" for h in r5["engine 50%"])])
    return [
        "## R5: byte hit rate per epoch under random shuffling",
        "",
        f"Models: {r5['objects']} objects of 90-130 KiB. Real engine: "
        f"{r5['engine_objects']} objects on a MemoryBackend, `max_bytes` = half the "
        "dataset. The bound is cache/dataset.",
        "",
        table(["policy, cache share", *(f"epoch {e + 1}" for e in range(r5["epochs"]))], rows),
        "",
    ]


def _r6(res: dict[str, Any]) -> list[str]:
    r6 = res.get("r6")
    if not r6:
        return []
    rows = [
        [
            "processes, one cache dir",
            f"{r6['processes']['bytes']:,}",
            f"{r6['processes']['seconds']:.1f}",
        ]
    ]
    agent = r6.get("agent")
    if agent and "bytes" in agent:
        rows.append(["clients of one agent", f"{agent['bytes']:,}", f"{agent['seconds']:.1f}"])
    elif agent:
        rows.append(["clients of one agent", "error: " + str(agent.get("error"))[:300], ""])
    else:
        rows.append(["clients of one agent", "agent not installed", ""])
    return [
        "## R6: cloud bytes for several readers on one node",
        "",
        f"{r6['readers']} readers at once, dataset {r6['dataset_bytes']:,} bytes; bytes "
        "are response bodies that left the proxy.",
        "",
        table(["set-up", "bytes through the proxy", "seconds"], rows),
        "",
    ]


def _r7(res: dict[str, Any]) -> list[str]:
    r7 = res.get("r7")
    if not r7:
        return []
    if "objects" not in r7:
        return ["## R7", "", "Error: " + str(r7.get("error")), ""]
    n = r7["objects"]
    ef, ee = r7["engine_full"], r7["engine_empty"]
    lines = [
        "## R7: start-up and index memory",
        "",
        f"{n:,} synthesized cached objects (tiny files, real index rows and manifest; "
        f"synthesis {r7['synth_s']:.0f} s, index files {r7['index_file_bytes'] / 1e6:.0f} "
        "MB on disk).",
        "",
        f"- engine open {ef['open_s']:.3f} s (empty cache {ee['open_s']:.3f} s); RSS "
        f"after open and a lookup +{ef['rss_delta'] / 1e6:.1f} MB (empty cache "
        f"+{ee['rss_delta'] / 1e6:.1f} MB).",
    ]
    a, e = r7.get("agent_full"), r7.get("agent_empty")
    if a and e and "ready_s" in a:
        lines.append(
            f"- agent ready in {a['ready_s']:.2f} s (empty cache {e['ready_s']:.2f} "
            f"s); RSS at readiness {a['rss_at_ready'] / 1e6:.0f} MB (empty "
            f"{e['rss_at_ready'] / 1e6:.0f} MB), peak in the next "
            f"{r7.get('watch_s', '?')} s {a['rss_peak'] / 1e6:.0f} MB (empty "
            f"{e['rss_peak'] / 1e6:.0f} MB)."
        )
    return [*lines, ""]


def _r8(res: dict[str, Any]) -> list[str]:
    r8 = res.get("r8")
    if not r8:
        return []
    body = r8.get("output") or r8.get("error", "")
    return [
        "## R8: webhook review latency (benchmarks/webhook_latency.py)",
        "",
        "```",
        str(body)[-2500:],
        "```",
        "",
    ]


def median(values: list[float]) -> float:
    return statistics.median(values)
