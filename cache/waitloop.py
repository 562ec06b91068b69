"""Waiting until enough of a dataset is local: one pure decision and one poller.

`shardcache wait` (cli/wait.py: through the agent, a status file or in-process) and the
client's `wait_until_local` / `prefetch` (client/waiting.py) all look at a `DatasetStatus`
now and then and ask `decide()` what it means; `poll()` is the only loop. What each caller
does with a decision (exit status, exception) stays with the caller.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from .status import DatasetState, DatasetStatus


class Decision(enum.Enum):
    #: nothing to say yet: look again
    WAIT = "wait"
    #: the fraction asked for is local
    REACHED = "reached"
    #: the dataset's prefetch failed (and the fraction is not there)
    FAILED = "failed"
    #: nothing works on the dataset now and the fraction is not there (complete short of it,
    #: partial, interrupted, idle): no more will come unless someone starts a prefetch
    SETTLED = "settled"
    #: the deadline passed first
    TIMED_OUT = "timed_out"


def decide(status: DatasetStatus | None, fraction: float, deadline: float, now: float) -> Decision:
    """What one look at the dataset means; `status` is None while nothing is known (not
    registered, no status file yet), and `deadline` and `now` are on one monotonic clock.

    Reaching the fraction wins over a failure: the caller asked for that much, and it is
    there. A failure is reported at once rather than after the deadline, since waiting longer
    brings nothing (nobody retries on their own).
    """
    have = status.fraction_local if status is not None else 0.0
    if have >= fraction:  # a fraction of 0 needs nothing, not even a status
        return Decision.REACHED
    if status is not None and status.state is DatasetState.FAILED:
        return Decision.FAILED
    if now >= deadline:
        return Decision.TIMED_OUT
    if status is not None and status.state.settled:
        return Decision.SETTLED
    return Decision.WAIT


@dataclass(frozen=True)
class Look:
    """What one look found, and why nothing was found when `status` is None."""

    status: DatasetStatus | None
    note: str | None = None


#: every decision but WAIT ends a poll, unless the caller says otherwise
ENDS = frozenset(Decision) - {Decision.WAIT}


def poll(
    look: Callable[[], Look],
    fraction: float,
    timeout_s: float,
    *,
    interval_s: float,
    ends: Collection[Decision] = ENDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Decision, Look]:
    """Look every `interval_s` until `decide` returns one of `ends` (TIMED_OUT always ends)."""
    deadline = clock() + timeout_s
    while True:
        seen = look()
        decision = decide(seen.status, fraction, deadline, clock())
        if decision in ends or decision is Decision.TIMED_OUT:
            return decision, seen
        sleep(min(interval_s, max(0.0, deadline - clock())))
