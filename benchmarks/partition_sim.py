"""R12: a discrete-event simulation of one job's prefetch over 1 to 1,000 nodes.

What a real cluster of that size would cost to rent, this simulates from the parts that
decide the answer, each a stated model:

- **The split** is the product's own: `shardcache.partition.Partition` and `share_ranges`
  (several pods of a job on one node fetch the union of their shares, once).
- **The engine's scheduling** comes from `shardcache.config.Config`'s defaults: at most
  `max_concurrency` requests in flight per node, objects above `multipart_threshold_bytes`
  fetched as ranged parts of `part_size_bytes`, biggest objects first (prefetch.py), one
  LIST stream of 1,000-key pages before any download (the S3 adapter's page size).
- **The object store**: each request waits `first_byte_s` (~20 ms, S3's time to first byte),
  then streams at most `conn_bytes_per_s` (~90 MB/s per connection). Its aggregate is
  unlimited unless `max_requests_per_s` is set (S3 documents 5,500 GET/s per prefix before it
  repartitions; the `capped` table shows what that costs a cold 1,000-node job).
- **A node**: the responses of its connections share `min(NIC, disk write)` bytes/s fairly
  (processor sharing: each active transfer gets `min(per-connection cap, node cap / active)`).
  A slow node has a fraction of that; a failed node stops after half of its requests and its
  pods are rescheduled onto an empty node, which fetches their shares (or, without partitions,
  the whole dataset) again. Kubernetes' own delay before it reschedules (about 340 s with the
  default `tolerationSeconds`) is the same with or without partitions and is left out.

The data set grows with the job (weak scaling: each member's share is `share_objects` shards of
`shard_bytes`), which is what "time flat in N" means: with partitions every node fetches one
share whatever N; without, every node fetches all N shares.

Speed: nodes are independent unless the store's request rate is capped, so identical nodes are
simulated once (memoised by their request list and speed); a capped store couples them through
one request gate, and each class of identical nodes then counts its members' requests there.
Inside a node, processor sharing is tracked by one "virtual service" clock (bytes each active
transfer has received), so an event costs O(log n) rather than a pass over all transfers.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from shardcache.config import Config
from shardcache.partition import Partition, share_ranges

MB = 1_000_000
MiB = 1 << 20
LIST_PAGE_KEYS = 1000
#: bytes of one ListObjectsV2 page of 1,000 keys (XML, about 250 bytes per key)
LIST_PAGE_BYTES = 250_000


@dataclass(frozen=True)
class StoreModel:
    first_byte_s: float = 0.020
    #: each request's first byte comes after first_byte_s x U(1 - j, 1 + j): real latencies
    #: vary, and without it equal parts finish in lock-step and idle together for 20 ms
    jitter: float = 0.5
    conn_bytes_per_s: float = 90 * MB
    #: None: the store scales with the load (S3 after repartitioning; GCS, Azure at this size)
    max_requests_per_s: float | None = None


@dataclass(frozen=True)
class EngineModel:
    max_concurrency: int
    part_size_bytes: int
    multipart_threshold_bytes: int

    @classmethod
    def from_config(cls, config: Config) -> EngineModel:
        return cls(config.max_concurrency, config.part_size_bytes, config.multipart_threshold_bytes)

    def requests(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """Bytes of each request, in the order the engine issues them (biggest first)."""
        out: list[int] = []
        for size in sorted(sizes, reverse=True):
            if size <= self.multipart_threshold_bytes:
                out.append(size)
                continue
            whole, rest = divmod(size, self.part_size_bytes)
            out += [self.part_size_bytes] * whole + ([rest] if rest else [])
        return tuple(out)


@dataclass(frozen=True)
class NodeModel:
    nic_bytes_per_s: float = 25e9 / 8  # 25 Gbit/s
    disk_bytes_per_s: float = 3e9  # one NVMe SSD's sequential write
    speed: float = 1.0  # 0.1: a degraded NIC, a noisy neighbour

    @property
    def cap_bytes_per_s(self) -> float:
        return min(self.nic_bytes_per_s, self.disk_bytes_per_s) * self.speed


@dataclass(frozen=True)
class NodeClass:
    """Nodes that do the same work at the same speed (simulated once, counted `members`)."""

    name: str
    requests: tuple[int, ...]
    list_pages: int
    node: NodeModel
    members: int = 1
    start_s: float = 0.0
    #: stop after this many requests (a failed node); None runs to the end
    fail_after: int | None = None


@dataclass
class ClassResult:
    done_s: float = 0.0
    requests: int = 0
    list_requests: int = 0
    bytes: int = 0
    failed_at_s: float | None = None


@dataclass
class _Node:
    spec: NodeClass
    queue: Iterator[int]
    result: ClassResult
    free: int
    active: list[tuple[float, int]] = field(default_factory=list)  # (target service, bytes)
    service: float = 0.0  # bytes each active transfer has received so far
    clock: float = 0.0
    version: int = 0
    finished: int = 0
    stopped: bool = False

    def rate(self, store: StoreModel) -> float:
        n = len(self.active)
        return 0.0 if n == 0 else min(store.conn_bytes_per_s, self.spec.node.cap_bytes_per_s / n)

    def advance(self, now: float, store: StoreModel) -> None:
        self.service += self.rate(store) * (now - self.clock)
        self.clock = now


def simulate(
    classes: Sequence[NodeClass], store: StoreModel, engine: EngineModel
) -> list[ClassResult]:
    """Run the classes against one store; each result is one member's."""
    events: list[tuple[float, int, str, int, float]] = []
    seq = itertools.count()
    gate = [0.0]
    rng = random.Random(12)
    nodes = [_Node(c, iter(c.requests), ClassResult(), engine.max_concurrency) for c in classes]

    def issue(at: float, weight: int) -> float:
        if store.max_requests_per_s is None:
            return at
        start = max(at, gate[0])
        gate[0] = start + weight / store.max_requests_per_s
        return start

    def fill(i: int, now: float) -> None:
        node = nodes[i]
        while node.free and not node.stopped:
            size = next(node.queue, None)
            if size is None:
                return
            node.free -= 1
            node.result.requests += 1
            t = issue(now, node.spec.members) + latency()
            heapq.heappush(events, (t, next(seq), "join", i, float(size)))

    def latency() -> float:
        return store.first_byte_s * (1 + store.jitter * (2 * rng.random() - 1))

    def reschedule(i: int) -> None:
        node = nodes[i]
        node.version += 1
        if node.active:
            target = node.active[0][0]
            t = node.clock + (target - node.service) / node.rate(store)
            heapq.heappush(events, (t, next(seq), "finish", i, float(node.version)))

    for i, node in enumerate(nodes):
        t = node.spec.start_s
        for _ in range(node.spec.list_pages):  # one LIST stream, page after page
            t = issue(t, node.spec.members) + latency()
            t += LIST_PAGE_BYTES / store.conn_bytes_per_s
        node.result.list_requests = node.spec.list_pages
        node.clock = t
        heapq.heappush(events, (t, next(seq), "start", i, 0.0))
    while events:
        now, _, kind, i, value = heapq.heappop(events)
        node = nodes[i]
        if (kind == "finish" and value != node.version) or node.stopped:
            continue  # superseded (the node's rate changed since), or the node is gone
        node.advance(now, store)
        if kind == "join":
            heapq.heappush(node.active, (node.service + value, int(value)))
        elif kind == "finish":
            _, size = heapq.heappop(node.active)
            node.result.bytes += size  # what a failed node had in flight is not counted
            node.free += 1
            node.finished += 1
            node.result.done_s = now
            if node.spec.fail_after is not None and node.finished >= node.spec.fail_after:
                node.stopped = True
                node.result.failed_at_s = now
                node.active.clear()
        if kind == "start":
            node.result.done_s = now
        fill(i, now)
        reschedule(i)
    return [n.result for n in nodes]


# ---- one job ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    nodes: int
    pods_per_node: int = 1
    share_objects: int = 32
    shard_bytes: int = 256 * MiB
    partitioned: bool = True
    #: "healthy", "slow" (one node at 1/10 speed) or "failed" (one node dies half-way)
    fault: str = "healthy"
    slow_speed: float = 0.1

    @property
    def members(self) -> int:
        return self.nodes * self.pods_per_node

    def keys(self) -> list[str]:
        return [f"train/shard-{j:07d}.tar" for j in range(self.members * self.share_objects)]


@dataclass(frozen=True)
class JobResult:
    job: Job
    dataset_bytes: int
    cloud_bytes: int
    #: seconds until every pod's share is local (the job's slowest member)
    all_local_s: float
    #: the same for the healthy nodes only
    healthy_local_s: float
    list_requests: int
    get_requests: int

    @property
    def cloud_ratio(self) -> float:
        return self.cloud_bytes / self.dataset_bytes


def node_keys(job: Job, node: int, ordered: Sequence[str]) -> Sequence[str]:
    """The keys node `node` fetches (`ordered`: the sorted manifest): the union of its pods'
    shares, pods placed in order (pods k*G .. k*G+G-1 on node k), or all of them."""
    if not job.partitioned:
        return ordered
    pods = range(node * job.pods_per_node, (node + 1) * job.pods_per_node)
    shares = [Partition(p, job.members) for p in pods]
    return [k for a, b in share_ranges(len(ordered), shares) for k in ordered[a:b]]


def run_job(
    job: Job,
    store: StoreModel,
    engine: EngineModel,
    base: NodeModel = NodeModel(),
    memo: dict[tuple[object, ...], ClassResult] | None = None,
) -> JobResult:
    ordered = sorted(job.keys())
    pages = math.ceil(len(ordered) / LIST_PAGE_KEYS)
    # every shard has the same size, so a node's work is fixed by how many keys it fetches
    classes: dict[int, NodeClass] = {}
    for node in range(job.nodes):
        count = len(node_keys(job, node, ordered))
        if count in classes:
            classes[count] = replace(classes[count], members=classes[count].members + 1)
        else:
            reqs = engine.requests([job.shard_bytes] * count)
            classes[count] = NodeClass(f"n{len(classes)}", reqs, pages, base)
    healthy = list(classes.values())
    special: list[NodeClass] = []
    if job.fault != "healthy":  # the fault hits one node of the first (largest) kind
        first = healthy[0]
        healthy[0] = replace(first, members=first.members - 1)
        if job.fault == "slow":
            special.append(
                replace(first, name="slow", members=1, node=replace(base, speed=job.slow_speed))
            )
        else:
            special.append(
                replace(first, name="failed", members=1, fail_after=len(first.requests) // 2)
            )
    live = [c for c in healthy if c.members] + special
    results = _run(live, store, engine, memo)
    if job.fault == "failed":
        failed = results[-1]
        spare = replace(
            special[0], name="replacement", fail_after=None, start_s=failed.failed_at_s or 0.0
        )
        results.append(_run([spare], store, engine, memo)[0])
        live.append(spare)
    total = len(ordered) * job.shard_bytes
    counted = [(c, r) for c, r in zip(live, results, strict=True)]
    finishing = [r.done_s for c, r in counted if c.name != "failed"]
    healthy_done = [r.done_s for c, r in counted if c.name.startswith("n")]
    return JobResult(
        job=job,
        dataset_bytes=total,
        cloud_bytes=sum(c.members * r.bytes for c, r in counted),
        all_local_s=max(finishing),
        healthy_local_s=max(healthy_done, default=0.0),
        list_requests=sum(c.members * r.list_requests for c, r in counted),
        get_requests=sum(c.members * r.requests for c, r in counted),
    )


def _run(
    classes: list[NodeClass],
    store: StoreModel,
    engine: EngineModel,
    memo: dict[tuple[object, ...], ClassResult] | None,
) -> list[ClassResult]:
    """Coupled when the store is capped; otherwise each class alone, memoised."""
    if store.max_requests_per_s is not None or memo is None:
        return simulate(classes, store, engine)
    out = []
    for c in classes:
        key = (c.requests, c.list_pages, c.node, c.fail_after, store, engine)
        if key not in memo:
            memo[key] = simulate([replace(c, start_s=0.0, members=1)], store, engine)[0]
        r = memo[key]
        shift = c.start_s
        out.append(
            replace(
                r,
                done_s=r.done_s + shift,
                failed_at_s=None if r.failed_at_s is None else r.failed_at_s + shift,
            )
        )
    return out
