"""The agent's Prometheus series: a few counters it keeps, the rest read at scrape time.

No prometheus_client: it brings a process-global registry for what is a dozen series here.
Counters the agent itself sees (client hits and misses, errors, download durations) live in
`AgentCounters`, updated on the event loop thread only. Everything else (bytes downloaded,
evictions, cache usage, per-dataset progress) is read from the engine when scraped, so there is
one source of truth. `render` is pure: families in, exposition text (format 0.0.4) out.

Hits and misses: `path="client"` counts `/v1/objects/fetch` calls (a hit when the object was
already local). `path="directory"` counts opens through the read-through view, which its server
reports (`POST /v1/views/report`); reads through a `bind` view never reach the agent. The
`shardcache_view_*` families break the view's opens and bytes down per dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shardcache.reports import EngineStats

from ..prometheus import Family, Histogram, parse, render

__all__ = ["AgentCounters", "Family", "Snapshot", "families", "parse", "render"]

#: per-object download time: 20 ms (a small object's first byte) up to minutes (a multi-GiB
#: object at one connection's speed)
DURATION_BUCKETS_S = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


VIEW_KEYS = ("hit_opens", "hit_bytes", "miss_opens", "miss_bytes", "failed_opens")


@dataclass
class AgentCounters:
    """What only the agent sees; mutated on the loop thread."""

    hits: dict[str, int] = field(default_factory=lambda: {"directory": 0, "client": 0})
    misses: dict[str, int] = field(default_factory=lambda: {"directory": 0, "client": 0})
    errors: dict[str, int] = field(default_factory=dict)
    durations: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS_S))
    #: dataset -> opens and bytes through the read-through view, as its server reported them
    #: (keys: hit_opens, hit_bytes, miss_opens, miss_bytes, failed_opens)
    views: dict[str, dict[str, int]] = field(default_factory=dict)

    def add_view(self, url: str, delta: Mapping[str, int]) -> None:
        counts = self.views.setdefault(url, dict.fromkeys(VIEW_KEYS, 0))
        for key in VIEW_KEYS:
            counts[key] += max(0, int(delta.get(key, 0)))
        self.hits["directory"] += max(0, int(delta.get("hit_opens", 0)))
        self.misses["directory"] += max(0, int(delta.get("miss_opens", 0)))

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape shows, gathered by the agent, rendered by `families`."""

    engine: EngineStats
    queue_depth: int
    used_bytes: int
    capacity_bytes: int
    #: url -> (objects_local, objects_total, bytes_local, bytes_total)
    datasets: Mapping[str, tuple[int, int, int, int]]
    ready: bool
    #: (url, "I/N") -> (objects_local, objects_total, bytes_local, bytes_total) of each share
    #: registered with a partition (docs/partitions.md)
    shares: Mapping[tuple[str, str], tuple[int, int, int, int]] = field(default_factory=dict)


def families(c: AgentCounters, s: Snapshot) -> list[Family]:
    def one(name: str, kind: str, help_: str, value: float) -> Family:
        return Family(name, kind, help_, (("", {}, value),))

    def labelled(
        name: str, kind: str, help_: str, label: str, values: Mapping[str, float]
    ) -> Family:
        return Family(
            name, kind, help_, tuple(("", {label: k}, v) for k, v in sorted(values.items()))
        )

    def per_share(name: str, help_: str, i: int) -> Family:
        samples = tuple(
            ("", {"dataset": url, "partition": part}, v[i])
            for (url, part), v in sorted(s.shares.items())
        )
        return Family(name, "gauge", help_, samples)

    def per_dataset(name: str, help_: str, i: int) -> Family:
        return labelled(
            name, "gauge", help_, "dataset", {url: v[i] for url, v in s.datasets.items()}
        )

    return [
        one(
            "shardcache_downloaded_bytes_total",
            "counter",
            "Bytes downloaded and published.",
            s.engine.bytes_downloaded,
        ),
        one(
            "shardcache_downloaded_objects_total",
            "counter",
            "Objects downloaded and published.",
            s.engine.objects_downloaded,
        ),
        labelled(
            "shardcache_hits_total",
            "counter",
            "Reads that found the object local (directory reads are not visible to the agent).",
            "path",
            c.hits,
        ),
        labelled(
            "shardcache_misses_total",
            "counter",
            "Reads that had to download or read through.",
            "path",
            c.misses,
        ),
        one(
            "shardcache_prefetch_queue_depth",
            "gauge",
            "Objects still to do in running prefetches.",
            s.queue_depth,
        ),
        one(
            "shardcache_evictions_total",
            "counter",
            "Objects evicted to make room.",
            s.engine.evictions,
        ),
        labelled("shardcache_errors_total", "counter", "Failures by kind.", "kind", c.errors),
        Family(
            "shardcache_download_duration_seconds",
            "histogram",
            "Time to download and publish one object.",
            c.durations.samples(),
        ),
        one("shardcache_cache_used_bytes", "gauge", "Published bytes in the cache.", s.used_bytes),
        one(
            "shardcache_cache_capacity_bytes",
            "gauge",
            "The byte budget (or the disk size).",
            s.capacity_bytes,
        ),
        per_dataset(
            "shardcache_dataset_objects_local", "Objects of the dataset that are local.", 0
        ),
        per_dataset("shardcache_dataset_objects_total", "Objects in the dataset's listing.", 1),
        per_dataset("shardcache_dataset_bytes_local", "Bytes of the dataset that are local.", 2),
        per_dataset("shardcache_dataset_bytes_total", "Bytes in the dataset's listing.", 3),
        per_share(
            "shardcache_share_objects_local", "Objects of a partition's share that are local.", 0
        ),
        per_share("shardcache_share_objects_total", "Objects in a partition's share.", 1),
        per_share(
            "shardcache_share_bytes_local", "Bytes of a partition's share that are local.", 2
        ),
        per_share("shardcache_share_bytes_total", "Bytes in a partition's share.", 3),
        one("shardcache_agent_ready", "gauge", "1 once the cache is adopted.", int(s.ready)),
        *view_families(c.views),
    ]


def view_families(views: Mapping[str, Mapping[str, int]]) -> list[Family]:
    """Opens and bytes through the read-through views, per dataset and result."""
    opens = tuple(
        ("", {"dataset": url, "result": result}, v[f"{result}_opens"])
        for url, v in sorted(views.items())
        for result in ("hit", "miss", "failed")
    )
    nbytes = tuple(
        ("", {"dataset": url, "result": result}, v[f"{result}_bytes"])
        for url, v in sorted(views.items())
        for result in ("hit", "miss")
    )
    return [
        Family(
            "shardcache_view_opens_total",
            "counter",
            "Opens of files through the read-through view: hit (local), miss (fetched on "
            "open), failed (EIO).",
            opens,
        ),
        Family(
            "shardcache_view_bytes_total",
            "counter",
            "Sizes of the files opened through the read-through view (reads are served by "
            "the kernel and not seen one by one).",
            nbytes,
        ),
    ]
