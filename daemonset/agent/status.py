"""Dataset status as the API shows it: the index's view, merged with live progress.

Pure: the agent hands in the index row (as JSON), whether a prefetch is running, the live
progress and a few recent progress samples; out comes the status document of docs/agent-api.md,
with a transfer rate over a sliding window and an ETA from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: progress samples older than this do not count towards the rate: long enough to smooth over
#: one large object finishing, short enough that a stalled download shows a falling rate
RATE_WINDOW_S = 10.0


def rate_bytes_per_s(samples: Sequence[tuple[float, int]], now: float) -> float:
    """Bytes per second over the samples (monotonic time, bytes done) inside the window.

    The sample at the start of the window is the baseline; one sample gives no rate.
    """
    recent = [s for s in samples if now - s[0] <= RATE_WINDOW_S]
    if len(recent) < 2:
        return 0.0
    (t0, b0), (t1, b1) = recent[0], recent[-1]
    # measured up to now, not to the last sample: a stall makes the rate fall
    span = max(now, t1) - t0
    return max(0, b1 - b0) / span if span > 0 else 0.0


def eta_s(bytes_left: int, rate: float) -> float | None:
    if bytes_left <= 0:
        return 0.0
    return round(bytes_left / rate, 1) if rate > 0 else None


def displayed_state(index_state: str | None, running: bool, listed: bool) -> str:
    """listing|downloading while a prefetch runs; else what the index says, except that a
    "downloading" left behind by a killed agent (nothing runs now) reads as "idle"."""
    if running:
        return "downloading" if listed else "listing"
    if index_state is None or index_state == "downloading":
        return "idle"
    return index_state


def merge(
    base: dict[str, Any],
    *,
    running: bool,
    live: dict[str, int] | None,
    samples: Sequence[tuple[float, int]],
    now: float,
    agent_errors: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """The API's status document from the index's `DatasetStatus.as_json()` (`base`).

    While a prefetch runs, `live` (objects_total, bytes_total, objects_done, bytes_done) is
    newer than the index, which only learns of an object once it is published.
    """
    doc = dict(base)
    if live is not None:
        for name in ("objects_total", "bytes_total"):
            doc[name] = live[name]
        doc["objects_local"] = max(doc.get("objects_local", 0), live["objects_done"])
        doc["bytes_local"] = max(doc.get("bytes_local", 0), live["bytes_done"])
    listed = live is not None or base.get("listed_at") is not None
    doc["state"] = displayed_state(base.get("state"), running, listed)
    total, local = doc.get("bytes_total", 0), doc.get("bytes_local", 0)
    objects_done = doc.get("objects_local", 0) >= doc.get("objects_total", 0)
    doc["fraction_local"] = (
        round(local / total, 6) if total else (1.0 if objects_done and listed else 0.0)
    )
    rate = rate_bytes_per_s(samples, now) if running else 0.0
    doc["rate_bytes_per_s"] = round(rate, 1)
    if not listed:
        doc["eta_s"] = None  # nothing to estimate before the listing
    elif running:
        doc["eta_s"] = eta_s(total - local, rate)
    else:
        doc["eta_s"] = 0.0 if local >= total else None
    doc["errors"] = list(doc.get("errors", [])) + list(agent_errors)
    return doc


def unknown(url: str, local_dir: str, owners: Sequence[str]) -> dict[str, Any]:
    """The index row of a dataset the agent accepted but has not listed yet."""
    return {
        "url": url,
        "local_dir": local_dir,
        "state": None,
        "objects_total": 0,
        "objects_local": 0,
        "bytes_total": 0,
        "bytes_local": 0,
        "owners": list(owners),
        "errors": [],
        "listed_at": None,
    }
