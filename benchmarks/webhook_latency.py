"""Admission review latency of shardcache-webhook at a fixed rate over real TLS (goal R8).

Method: the webhook runs as its own process (its CLI, as in the cluster) on 127.0.0.1 with a
trustme certificate; an open-loop client sends opted-in pod CREATE reviews (the patching path,
the most work) at a fixed rate (default 500/s) over a pool of kept-alive TLS connections, as
the API server does, and times each from send to full response. Requests are scheduled by the
clock, not by the previous answer, so a slow answer cannot hide queueing (no coordinated
omission). Several runs; each reports p50/p90/p99/max; the verdict uses the median p99.

    .venv/bin/python benchmarks/webhook_latency.py [--rate 500] [--seconds 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import trustme

GOAL_P99_S = 0.005


def review(i: int) -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "train-",
            "labels": {"shardcache.io/enabled": "true"},
            "annotations": {
                "shardcache.io/dataset": "s3://bucket-a/imagenet/",
                "shardcache.io/wait": "0.9",
            },
        },
        "spec": {
            "containers": [
                {
                    "name": "train",
                    "image": "python:3.11",
                    "env": [{"name": f"V{j}", "value": "x"} for j in range(10)],
                }
            ]
        },
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"uid-{i}",
                "operation": "CREATE",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "team-a",
                "object": pod,
            },
        }
    ).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_run(
    url: str, context: ssl.SSLContext, rate: float, seconds: float, connections: int
) -> dict[str, float]:
    bodies = [review(i) for i in range(256)]
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(ssl=context, limit=connections)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(i: int) -> None:
            nonlocal errors
            started = time.perf_counter()
            async with session.post(
                url, data=bodies[i % len(bodies)], headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - started)

        for i in range(connections):  # warm the pool: handshakes are not review latency
            await send(i)
        latencies.clear()
        total = int(rate * seconds)
        t0 = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return {
        "n": len(latencies),
        "errors": errors,
        "achieved_rate": total / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p90_ms": percentile(latencies, 0.90) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "max_ms": max(latencies) * 1e3,
    }


def start_server(tmp: Path, ca: trustme.CA) -> tuple[subprocess.Popen[str], int]:
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp / "tls.key"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shardcache_cluster.webhook.main",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-cert-file",
            str(tmp / "tls.crt"),
            "--tls-private-key-file",
            str(tmp / "tls.key"),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "POD_NAMESPACE": "bench-system"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on port"):
        proc.kill()
        raise SystemExit(f"webhook did not start: {line!r}")
    return proc, int(line.split()[-1])


def server_side(port: int, context: ssl.SSLContext) -> str:
    """The server's own histogram: separates its time from the client's (same 2 cores)."""
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("shardcache_webhook_review_duration_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets[le] = int(line.split()[-1])
    total = buckets["+Inf"]
    shares = ", ".join(
        f"<= {float(le) * 1e3:g} ms: {n / total:.4f}"
        for le, n in buckets.items()
        if le in ("0.001", "0.0025", "0.005")
    )
    return f"server-side (request read to response built), all runs: {shares}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--connections", type=int, default=8)
    args = p.parse_args()
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp), ca)
        try:
            url = f"https://127.0.0.1:{port}/mutate"
            results = []
            for run in range(args.runs):
                result = asyncio.run(
                    one_run(url, context, args.rate, args.seconds, args.connections)
                )
                results.append(result)
                print(
                    f"run {run + 1}: "
                    + ", ".join(
                        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in result.items()
                    )
                )
            print(server_side(port, context))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()
    p99 = statistics.median(r["p99_ms"] for r in results)
    p50 = statistics.median(r["p50_ms"] for r in results)
    verdict = "meets" if p99 < GOAL_P99_S * 1e3 else "MISSES"
    print(
        f"median of {args.runs} runs at {args.rate:g} reviews/s: p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms -> {verdict} R8 (p99 < {GOAL_P99_S * 1e3:g} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
