"""The webhook's Prometheus series: reviews by outcome, latency, reloads, certificate expiry.

Rendering is shared with the agent (daemonset/prometheus.py). Values live in plain dicts owned
by one `Metrics` object, updated from the event loop thread only, so no locking is needed.
"""

from __future__ import annotations

from ..prometheus import Family, Histogram, policy_generation, render

#: review latency buckets in seconds: the goal is p99 < 5 ms, the API server's timeout 5 s
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class Metrics:
    """The webhook's series; `render()` gives the Prometheus text exposition (0.0.4)."""

    def __init__(self) -> None:
        self.reviews: dict[str, int] = {}
        self.reloads: dict[tuple[str, str], int] = {}
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.cert_expiry_s: float | None = None
        #: policies put in force since start (ReloadingPolicy.generation)
        self.policy_generation = 0
        #: reviews being read or answered now, and those waiting for a slot
        self.in_flight = 0
        self.waiting = 0
        #: reviews whose body was large enough to be decoded off the event loop
        self.offloaded = 0

    def review(self, outcome: str, seconds: float) -> None:
        self.reviews[outcome] = self.reviews.get(outcome, 0) + 1
        self.latency.observe(seconds)

    def reload(self, what: str, result: str) -> None:
        key = (what, result)
        self.reloads[key] = self.reloads.get(key, 0) + 1

    def render(self) -> str:
        fams = [
            Family(
                "shardcache_webhook_reviews_total",
                "counter",
                "Admission reviews answered, by outcome.",
                tuple(("", {"outcome": k}, v) for k, v in sorted(self.reviews.items())),
            ),
            Family(
                "shardcache_webhook_review_duration_seconds",
                "histogram",
                "Time to answer one review.",
                self.latency.samples(),
            ),
            Family(
                "shardcache_webhook_reloads_total",
                "counter",
                "Reloads of the certificate or the policy.",
                tuple(
                    ("", {"file": f, "result": r}, v) for (f, r), v in sorted(self.reloads.items())
                ),
            ),
            policy_generation(self.policy_generation),
            Family(
                "shardcache_webhook_reviews_in_flight",
                "gauge",
                "Reviews being read or answered now.",
                (("", {}, self.in_flight),),
            ),
            Family(
                "shardcache_webhook_reviews_waiting",
                "gauge",
                "Reviews waiting for an in-flight slot.",
                (("", {}, self.waiting),),
            ),
            Family(
                "shardcache_webhook_offloaded_reviews_total",
                "counter",
                "Reviews whose large body was decoded on the worker thread.",
                (("", {}, self.offloaded),),
            ),
        ]
        if self.cert_expiry_s is not None:
            fams.append(
                Family(
                    "shardcache_webhook_certificate_expiry_timestamp_seconds",
                    "gauge",
                    "When the serving certificate expires (Unix time).",
                    (("", {}, round(self.cert_expiry_s)),),
                )
            )
        return render(fams)
