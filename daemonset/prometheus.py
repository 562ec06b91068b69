"""Prometheus text exposition (format 0.0.4) for the agent and the webhook.

Both need a dozen series; prometheus_client would add a dependency and a process-global
registry for that. A `Family` is a plain value, `render` is pure, and `Histogram` is the one
mutable piece, owned by whoever observes it (on one event loop thread, so without locks).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: tuple[tuple[str, Labels, float], ...]  # (suffix, labels, value)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
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


def policy_generation(generation: int) -> Family:
    """`shardcache_policy_generation`, the same series wherever the tenancy policy is read."""
    return Family(
        "shardcache_policy_generation",
        "gauge",
        "Tenancy policies put in force since start (rises on every reload).",
        (("", {}, generation),),
    )


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
