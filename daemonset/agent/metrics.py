"""The agent's Prometheus series: a few counters it keeps, the rest read at scrape time.

No prometheus_client: it brings a process-global registry for what is a dozen series here.
Counters the agent itself sees (client hits and misses, errors, download durations) live in
`AgentCounters`, updated on the event loop thread only. Everything else (bytes downloaded,
evictions, cache usage, per-dataset progress) is read from the engine when scraped, so there is
one source of truth. `render` is pure: families in, exposition text (format 0.0.4) out.

Hits and misses: `path="client"` counts `/v1/objects/fetch` calls (a hit when the object was
already local). Reads through the dataset directory never reach the agent (they are plain file
reads on a bind mount), so `path="directory"` is declared but stays at zero; the per-dataset
`*_local` / `*_total` gauges show how much of each dataset such reads find local.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: tuple[tuple[str, Labels, float], ...]  # (suffix, labels, value)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = DURATION_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def samples(self) -> tuple[tuple[str, Labels, float], ...]:
        out: list[tuple[str, Labels, float]] = []
        cumulative = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            cumulative += n
            out.append(("_bucket", {"le": f"{bound:g}"}, cumulative))
        out.append(("_bucket", {"le": "+Inf"}, self.count))
        out.append(("_sum", {}, self.total))
        out.append(("_count", {}, self.count))
        return tuple(out)


@dataclass
class AgentCounters:
    """What only the agent sees; mutated on the loop thread."""

    hits: dict[str, int] = field(default_factory=lambda: {"directory": 0, "client": 0})
    misses: dict[str, int] = field(default_factory=lambda: {"directory": 0, "client": 0})
    errors: dict[str, int] = field(default_factory=dict)
    durations: Histogram = field(default_factory=Histogram)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape shows, gathered by the agent, rendered by `families`."""

    engine: Mapping[str, int]
    queue_depth: int
    used_bytes: int
    capacity_bytes: int
    #: url -> (objects_local, objects_total, bytes_local, bytes_total)
    datasets: Mapping[str, tuple[int, int, int, int]]
    ready: bool


def families(c: AgentCounters, s: Snapshot) -> list[Family]:
    def one(name: str, kind: str, help_: str, value: float) -> Family:
        return Family(name, kind, help_, (("", {}, value),))

    def labelled(
        name: str, kind: str, help_: str, label: str, values: Mapping[str, float]
    ) -> Family:
        return Family(
            name, kind, help_, tuple(("", {label: k}, v) for k, v in sorted(values.items()))
        )

    def per_dataset(name: str, help_: str, i: int) -> Family:
        return labelled(
            name, "gauge", help_, "dataset", {url: v[i] for url, v in s.datasets.items()}
        )

    return [
        one(
            "shardcache_downloaded_bytes_total",
            "counter",
            "Bytes downloaded and published.",
            s.engine.get("bytes_downloaded", 0),
        ),
        one(
            "shardcache_downloaded_objects_total",
            "counter",
            "Objects downloaded and published.",
            s.engine.get("objects_downloaded", 0),
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
            s.engine.get("evictions", 0),
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
        one("shardcache_agent_ready", "gauge", "1 once the cache is adopted.", int(s.ready)),
    ]


def render(fams: Sequence[Family]) -> str:
    lines: list[str] = []
    for f in fams:
        lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        lines.extend(
            f"{f.name}{suffix}{_labels(labels)} {_value(v)}" for suffix, labels, v in f.samples
        )
    return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(v: float) -> str:
    if isinstance(v, int) or (math.isfinite(v) and v == int(v) and abs(v) < 2**53):
        return str(int(v))
    return f"{v:.9g}"


def parse(text: str) -> dict[str, float]:
    """`name{labels}` -> value of an exposition; for tests and the CLI, not a full parser."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def select(values: Mapping[str, float], prefix: str) -> Iterable[tuple[str, float]]:
    return ((k, v) for k, v in values.items() if k.startswith(prefix))
