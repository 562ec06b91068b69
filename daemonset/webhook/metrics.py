"""A tiny Prometheus text-format registry: counters, gauges and one histogram.

The webhook needs five series; prometheus_client would add a dependency and a process-global
registry for that. Values live in plain dicts owned by one `Metrics` object, updated from the
event loop thread only, so no locking is needed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

#: review latency buckets in seconds: the goal is p99 < 5 ms, the API server's timeout 5 s
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> Iterable[str]:
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            cumulative += count
            yield f'{name}_bucket{{le="{bound:g}"}} {cumulative}'
        yield f'{name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{name}_sum {self.total:.9g}"
        yield f"{name}_count {self.count}"


class Metrics:
    """The webhook's series; `render()` gives the Prometheus text exposition (0.0.4)."""

    def __init__(self) -> None:
        self.reviews: dict[str, int] = {}
        self.reloads: dict[tuple[str, str], int] = {}
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.cert_expiry_s: float | None = None

    def review(self, outcome: str, seconds: float) -> None:
        self.reviews[outcome] = self.reviews.get(outcome, 0) + 1
        self.latency.observe(seconds)

    def reload(self, what: str, result: str) -> None:
        key = (what, result)
        self.reloads[key] = self.reloads.get(key, 0) + 1

    def render(self) -> str:
        out = [
            "# HELP shardcache_webhook_reviews_total Admission reviews answered, by outcome.",
            "# TYPE shardcache_webhook_reviews_total counter",
        ]
        out += [
            f'shardcache_webhook_reviews_total{{outcome="{k}"}} {v}'
            for k, v in sorted(self.reviews.items())
        ]
        out += [
            "# HELP shardcache_webhook_review_duration_seconds Time to answer one review.",
            "# TYPE shardcache_webhook_review_duration_seconds histogram",
            *self.latency.lines("shardcache_webhook_review_duration_seconds"),
            "# HELP shardcache_webhook_reloads_total Reloads of the certificate or the policy.",
            "# TYPE shardcache_webhook_reloads_total counter",
        ]
        out += [
            f'shardcache_webhook_reloads_total{{file="{w}",result="{r}"}} {v}'
            for (w, r), v in sorted(self.reloads.items())
        ]
        if self.cert_expiry_s is not None:
            out += [
                "# HELP shardcache_webhook_certificate_expiry_timestamp_seconds "
                "When the serving certificate expires (Unix time).",
                "# TYPE shardcache_webhook_certificate_expiry_timestamp_seconds gauge",
                f"shardcache_webhook_certificate_expiry_timestamp_seconds {self.cert_expiry_s:.0f}",
            ]
        return "\n".join(out) + "\n"
