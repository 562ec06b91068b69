"""The retry budget of one download, as one immutable value (after urllib3's `Retry`).

Three loops retry, and one value carries all their budgets, so the rules live in one place:

- `Level.REQUEST`: one GET (a whole object or one ranged part) after a transient failure
  (503/throttling, reset mid-body, short body, timeout), with full-jitter backoff, at most
  `max_attempts` attempts. A stall (`StalledError`) uses the budget up faster: one more
  attempt, not four, so a dead-but-connected endpoint costs about two timeouts per request.
- `Level.ROUND`: one object after a request ran out of attempts. The next round fetches only
  the parts still missing. Bytes that did not add up get `max_attempts` rounds (what the
  whole-object retry always did); other transient failures `object_rounds`; a stall, a changed
  version and a permanent error end the object.
- `Level.RESTART`: one object replaced in the store while it was downloaded starts over on the
  new version, at most `version_restarts` times (an object rewritten faster than it can be
  downloaded is reported, not chased forever).

`increment(error, level)` is pure: it returns the value for the next try, or None when the
budget says stop (the caller re-raises `error`). Sleeping is the caller's business.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .errors import IntegrityError, StalledError, UnavailableError, VersionChangedError


class Level(enum.Enum):
    REQUEST = "request"
    ROUND = "round"
    RESTART = "restart"


def is_retryable(error: BaseException) -> bool:
    """Transient failures worth another attempt: the store was unavailable or sent bytes that
    did not add up (a reset mid-body looks like a short read). A changed version is not
    transient: the caller starts over against the new version instead."""
    if isinstance(error, VersionChangedError):
        return False
    return isinstance(error, (UnavailableError, IntegrityError, TimeoutError))


@dataclass(frozen=True)
class Retry:
    """How often and how patiently a failed download is tried again; see the module doc."""

    #: attempts per request, first included; 5 rides out a burst of throttling (S3 SlowDown
    #: clears within seconds) without turning a dead endpoint into a minute-long hang
    max_attempts: int = 5
    #: rounds per object after transient failures; each round already retried every part
    #: `max_attempts` times, so 3 rounds make an object survive 40% failing requests with a
    #: chance of about 1e-6 of giving up, while a dead endpoint still fails within seconds
    object_rounds: int = 3
    #: new versions one download follows before it reports `version_changed`
    version_restarts: int = 3
    #: first backoff; doubled each attempt, with full jitter, capped by `max_backoff_s`
    base_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    #: the attempt of the current request, the round of the current object (both 1-based)
    #: and the restarts so far: what has been used of the budget
    attempt: int = 1
    round: int = 1
    restarts: int = 0

    def backoff_s(self, rand: float) -> float:
        """Full-jitter exponential backoff after the current attempt, given `rand` in [0, 1)."""
        ceiling = min(self.max_backoff_s, self.base_backoff_s * 2.0 ** (self.attempt - 1))
        return float(ceiling * rand)

    def increment(self, error: BaseException, level: Level) -> Retry | None:
        """The budget after a try at `level` failed with `error`; None: give up."""
        if level is Level.REQUEST:
            return self._next_attempt(error)
        if level is Level.ROUND:
            return replace(self, round=self.round + 1) if self._another_round(error) else None
        if isinstance(error, VersionChangedError) and self.restarts < self.version_restarts:
            return replace(self, restarts=self.restarts + 1)
        return None

    def _next_attempt(self, error: BaseException) -> Retry | None:
        if not is_retryable(error) or self.attempt >= self.max_attempts:
            return None
        step = self.attempt + 1
        if isinstance(error, StalledError):
            step = max(step, self.max_attempts - 1)
        return replace(self, attempt=step)

    def _another_round(self, error: BaseException) -> bool:
        if isinstance(error, (VersionChangedError, StalledError)):
            return False
        if isinstance(error, IntegrityError):
            return self.round < self.max_attempts
        if isinstance(error, UnavailableError):
            return self.round < self.object_rounds
        return False
