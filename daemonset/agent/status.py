"""Dataset status as the agent's API shows it: the engine's `DatasetStatus`, with what only
the agent knows (whether its task runs, a transfer rate, an ETA, its own errors).

Pure: the agent hands in the engine's status (which already carries the progress of a
prefetch running in the engine), whether its task runs and a few recent progress samples; out
comes the status of docs/agent-api.md, with a transfer rate over a sliding window and an ETA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from shardcache.status import DatasetState, DatasetStatus, Failure
from shardcache.urls import StoreURL

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


def displayed_state(state: DatasetState, running: bool, listed: bool) -> DatasetState:
    """listing|downloading while the agent's task runs; else what the engine says, except that
    a "downloading" left behind by a killed agent (nothing runs now) reads as "idle"."""
    if running:
        return DatasetState.DOWNLOADING if listed else DatasetState.LISTING
    if state in (DatasetState.DOWNLOADING, DatasetState.LISTING):
        return DatasetState.IDLE
    return state


def shown(
    status: DatasetStatus,
    *,
    running: bool,
    samples: Sequence[tuple[float, int]],
    now: float,
    agent_errors: Sequence[Failure] = (),
) -> DatasetStatus:
    """The API's status from the engine's."""
    listed = status.listed
    rate = rate_bytes_per_s(samples, now) if running else 0.0
    left = status.bytes_total - status.bytes_local
    if not listed:
        eta = None  # nothing to estimate before the listing
    elif running:
        eta = eta_s(left, rate)
    else:
        eta = 0.0 if left <= 0 else None
    state = displayed_state(status.state, running, listed)
    if agent_errors and not running:
        state = DatasetState.FAILED
    return replace(
        status,
        state=state,
        rate_bytes_per_s=rate,
        eta_s=eta,
        errors=(*status.errors, *agent_errors),
    )


def unknown(url: StoreURL, local_dir: Path, owners: Sequence[str]) -> DatasetStatus:
    """A dataset the agent accepted but has not listed yet."""
    return DatasetStatus(url, local_dir, DatasetState.IDLE, owners=tuple(owners))
