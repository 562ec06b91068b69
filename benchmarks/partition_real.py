"""R12 on this machine: several real agents, each with its own cache dir, one share each.

The simulation (partition_sim.py) predicts what a job costs at 1,000 nodes; this checks it
where a real run fits. Each `shardcache-agent` process stands for one node: its own cache
directory, its own socket, reaching moto through the cloud-like proxy (20 ms to first byte,
90 MB/s per connection). Each registers the dataset for one pod with `partition: I/N`. The
proxy counts every request by method and path, so "each object fetched once across the nodes"
is counted where the cloud would bill it, not taken from the agents' own reports.

The same job is run without partitions (every agent fetches everything) as the baseline, and
the simulator is run at the same size beside both. The machine's 2 cores are shared by every
agent and the proxy, so the simulated nodes get the per-node bandwidth this machine gave one
agent alone in the same run, divided by the number of agents running at once: times are a
sanity check of the model; bytes and request counts are the claim.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shardcache.testkit.datasets import generate, shard_like
from shardcache.testkit.emulators import MotoS3Server
from shardcache.testkit.proxy import CloudProxy, Fault, ProxyConfig

from .agentproc import Agent, child_env
from .partition_sim import EngineModel, Job, NodeModel, StoreModel, run_job

#: seconds one agent's prefetch may take before the run counts as failed
DEADLINE_S = 300.0
BUCKET = "shardcache-r12"
PREFIX = "shards/"
WARMUP = f"s3://{BUCKET}/warm-up/"


class CountingProxy(CloudProxy):
    """The cloud-like proxy, also counting requests by (method, path)."""

    def __init__(self, upstream_url: str, config: ProxyConfig | None = None) -> None:
        super().__init__(upstream_url, config)
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()

    def next_fault(self, method: str, path: str) -> Fault | None:
        # called once for every request the proxy reads, before any delay or fault
        with self._lock:
            self.requests[(method, path)] += 1
        return super().next_fault(method, path)

    def counts(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self.requests)


@dataclass(frozen=True)
class Outcome:
    agents: int
    partitioned: bool
    seconds: float
    #: GET requests per object key; LIST requests (GETs of the bucket itself)
    gets: Mapping[str, int]
    lists: int
    proxy_bytes: int
    local_files: tuple[int, ...]

    def as_json(self, sizes: Mapping[str, int]) -> dict[str, Any]:
        fetched = sum(sizes[k] * n for k, n in self.gets.items() if k in sizes)
        return {
            "agents": self.agents,
            "partitioned": self.partitioned,
            "seconds": round(self.seconds, 3),
            "objects": len(sizes),
            "objects_fetched_once": sum(1 for k in sizes if self.gets.get(k) == 1),
            "objects_fetched_more": sum(1 for k in sizes if self.gets.get(k, 0) > 1),
            "objects_never": sum(1 for k in sizes if not self.gets.get(k)),
            "object_bytes_fetched": fetched,
            "dataset_bytes": sum(sizes.values()),
            "cloud_ratio": fetched / sum(sizes.values()),
            "list_requests": self.lists,
            "get_requests": sum(self.gets.get(k, 0) for k in sizes),
            "proxy_bytes": self.proxy_bytes,
            "local_files": list(self.local_files),
        }


def run(
    s3: MotoS3Server, proxy_config: ProxyConfig, work: Path, agents: int, partitioned: bool
) -> Outcome:
    """One job: `agents` fresh agents register the dataset at once; wait for every one."""
    url = f"s3://{BUCKET}/{PREFIX}"
    with CountingProxy(s3.endpoint_url, proxy_config) as proxy:
        env = child_env(dict(s3.env(), AWS_ENDPOINT_URL=proxy.url))
        nodes = [Agent(work / f"node{i}", work / f"n{i}.sock", env) for i in range(agents)]
        try:
            for node in nodes:
                node.__enter__()
            for node in nodes:
                node.wait_ready(60)
            # each agent opens its S3 client (imports, a session) on first use: do that on a
            # one-object warm-up dataset, outside the clock and the counts
            for node in nodes:
                _register(node, WARMUP, {"owner": "warm-up"})
            for node in nodes:
                _wait_settled(node, WARMUP)
            before, bytes_before = proxy.counts(), proxy.stats().response_body_bytes_total
            start = time.perf_counter()
            for i, node in enumerate(nodes):
                share = {"partition": f"{i}/{agents}"} if partitioned else {}
                _register(node, url, {"owner": f"pod-{i}", **share})
            for node in nodes:
                _wait_settled(node, url)
            seconds = time.perf_counter() - start
            local = tuple(
                _count_files(work / f"node{i}" / "data" / "s3" / BUCKET / PREFIX)
                for i in range(agents)
            )
        finally:
            for node in nodes:
                node.__exit__(None, None, None)
            for i in range(agents):
                shutil.rmtree(work / f"node{i}", ignore_errors=True)
        counts = proxy.counts() - before
        bytes_out = proxy.stats().response_body_bytes_total - bytes_before
    bucket_path = f"/{BUCKET}"
    gets = {
        path[len(bucket_path) + 1 :]: n
        for (method, path), n in counts.items()
        if method == "GET" and path.startswith(bucket_path + "/")
    }
    lists = sum(
        n
        for (method, path), n in counts.items()
        if method == "GET" and path.rstrip("/") == bucket_path
    )
    return Outcome(agents, partitioned, seconds, gets, lists, bytes_out, local)


def _register(node: Agent, url: str, body: dict[str, str]) -> None:
    status, answer = node.request("POST", "/v1/datasets", {"url": url, **body})
    if status != 200:
        raise RuntimeError(f"the agent refused the registration of {url}: {answer}")


def _wait_settled(node: Agent, url: str) -> None:
    deadline = time.perf_counter() + DEADLINE_S
    while time.perf_counter() < deadline:
        status, doc = node.request("GET", f"/v1/datasets/status?url={quote(url)}")
        if status == 200 and doc.get("state") in ("complete", "partial", "failed"):
            if doc["state"] == "failed":
                raise RuntimeError(f"the prefetch failed: {doc.get('errors')}")
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not settle within {DEADLINE_S} s")


def _count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and ".shardcache" not in p.parts)


def measure(
    work: Path,
    proxy_config: ProxyConfig,
    agents: int = 2,
    shards_mib: tuple[int, ...] = (8,) * 32,
    runs: int = 3,
) -> dict[str, Any]:
    """The job with and without partitions and one agent alone (for the bandwidth), each
    `runs` times (interleaved; median seconds; counts must agree), the simulator beside."""
    objects = {PREFIX + k: v for k, v in generate(shard_like(shards_mib)).items()}
    sizes = {k: len(v) for k, v in objects.items()}
    jobs = {"alone": (1, False), "partitioned": (agents, True), "whole": (agents, False)}
    seen: dict[str, list[Outcome]] = {name: [] for name in jobs}
    with MotoS3Server() as s3:
        s3.create_bucket(BUCKET)
        s3.put_objects(BUCKET, {**objects, "warm-up/one": b"x"})
        for _ in range(runs):
            for name, (n, partitioned) in jobs.items():
                seen[name].append(run(s3, proxy_config, work, n, partitioned))
    real: dict[str, Any] = {}
    for name, outcomes in seen.items():
        if any(o.gets != outcomes[0].gets for o in outcomes):
            raise RuntimeError(f"{name}: the request counts differ between runs")
        real[name] = outcomes[0].as_json(sizes)
        real[name]["seconds"] = round(statistics.median(o.seconds for o in outcomes), 3)
        real[name]["seconds_runs"] = [round(o.seconds, 3) for o in outcomes]
    # what one agent got from this machine: its median bytes per second
    per_node = sum(sizes.values()) / real["alone"]["seconds"]
    real["node_bytes_per_s_alone"] = per_node
    sim = simulate_same(proxy_config, agents, shards_mib, per_node)
    return {"real": real, "simulated": sim, "runs": runs}


def simulate_same(
    proxy_config: ProxyConfig, agents: int, shards_mib: tuple[int, ...], node_bytes_per_s: float
) -> dict[str, Any]:
    from .partition_bench import engine_model

    engine: EngineModel = engine_model()
    store = StoreModel(
        first_byte_s=proxy_config.first_byte_delay_s,
        conn_bytes_per_s=proxy_config.bandwidth_bytes_per_s or 1e12,
    )
    shard = shards_mib[0] * (1 << 20)
    share = len(shards_mib) // agents
    out = {}
    for name, partitioned in (("partitioned", True), ("whole", False)):
        job = Job(agents, share_objects=share, shard_bytes=shard, partitioned=partitioned)
        r = run_job(job, store, engine, NodeModel(node_bytes_per_s, 1e12), memo={})
        # the agents here share one machine's 2 cores: the same job with each node getting
        # its fair part of what one agent alone got is the other end of the range
        shared = run_job(job, store, engine, NodeModel(node_bytes_per_s / agents, 1e12), memo={})
        out[name] = {
            "cloud_ratio": r.cloud_ratio,
            "seconds": r.all_local_s,
            "seconds_shared_machine": shared.all_local_s,
            "list_requests": r.list_requests,
            "get_requests": r.get_requests,
        }
    return out
