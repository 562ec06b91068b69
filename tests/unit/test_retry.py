"""The retry value's decisions, pure: which failure earns another try at which level, and
when each budget is spent."""

import pytest
from shardcache.errors import (
    IntegrityError,
    NotFoundError,
    StalledError,
    UnavailableError,
    VersionChangedError,
)
from shardcache.retry import Level, Retry


def _spend(retry: Retry | None, error: BaseException, level: Level) -> int:
    """How many further tries `error` earns at `level` before the budget says stop."""
    tries = 0
    while retry is not None and (retry := retry.increment(error, level)) is not None:
        tries += 1
    return tries


def test_a_request_gets_max_attempts_in_all_and_a_stall_only_one_more():
    fresh = Retry(max_attempts=5)
    assert _spend(fresh, UnavailableError("503"), Level.REQUEST) == 4
    assert _spend(fresh, IntegrityError("short body"), Level.REQUEST) == 4
    assert _spend(fresh, TimeoutError(), Level.REQUEST) == 4
    after_stall = fresh.increment(StalledError("stall"), Level.REQUEST)
    assert after_stall is not None and after_stall.attempt == 4
    assert _spend(after_stall, StalledError("stall"), Level.REQUEST) == 1


@pytest.mark.parametrize("error", [NotFoundError("x"), VersionChangedError("x"), ValueError()])
def test_permanent_errors_and_a_changed_version_are_not_retried_as_requests(error):
    assert Retry().increment(error, Level.REQUEST) is None


def test_object_rounds_depend_on_what_failed():
    fresh = Retry(max_attempts=5, object_rounds=3)
    assert _spend(fresh, UnavailableError("x"), Level.ROUND) == 2  # 3 rounds in all
    assert _spend(fresh, IntegrityError("x"), Level.ROUND) == 4  # max_attempts rounds
    for error in (StalledError("x"), VersionChangedError("x"), NotFoundError("x")):
        assert fresh.increment(error, Level.ROUND) is None


def test_version_restarts_are_bounded_and_only_for_a_changed_version():
    fresh = Retry(version_restarts=3)
    assert _spend(fresh, VersionChangedError("x"), Level.RESTART) == 3
    assert fresh.increment(UnavailableError("x"), Level.RESTART) is None


def test_budgets_are_independent_and_the_value_is_immutable():
    fresh = Retry()
    spent = fresh.increment(UnavailableError("x"), Level.REQUEST)
    assert spent is not None and (fresh.attempt, spent.attempt) == (1, 2)
    assert (spent.round, spent.restarts) == (1, 0)


def test_backoff_is_bounded_and_jittered():
    retry = Retry(base_backoff_s=0.1, max_backoff_s=1.0)
    assert retry.backoff_s(0.5) == pytest.approx(0.05)
    late = Retry(base_backoff_s=0.1, max_backoff_s=1.0, attempt=10)
    assert late.backoff_s(0.999) <= 1.0
    assert retry.backoff_s(0.0) == 0.0
