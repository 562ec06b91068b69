"""The typed status document and the one wait decision, on plain values: the fraction rule
(empty datasets included), the JSON round trip, and what `decide` makes of a status."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardcache.status import (
    DatasetState,
    DatasetStatus,
    Failure,
    Progress,
    fraction_local,
    with_progress,
)
from shardcache.urls import parse_url
from shardcache.waitloop import Decision, Look, decide, poll

DS = parse_url("s3://bucket-a/imagenet/")


def status(
    state: str,
    local: int,
    total: int,
    n_local: int = 0,
    n_total: int = 0,
    listed_at: float | None = None,
) -> DatasetStatus:
    return DatasetStatus(
        DS, Path("/c"), DatasetState(state), n_total, n_local, total, local, listed_at=listed_at
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((50, 100, 0, 0, False), 0.5),
        ((150, 100, 0, 0, True), 1.0),  # never above 1
        ((0, 0, 0, 0, True), 1.0),  # an empty dataset, listed: all of it is local
        ((0, 0, 0, 0, False), 0.0),  # not listed yet: nothing is known to be local
        ((0, 0, 1, 3, True), 0.0),  # three empty objects, one local
        ((0, 0, 3, 3, True), 1.0),
    ],
)
def test_the_one_fraction_rule(args, expected):
    assert fraction_local(*args) == expected


def test_a_status_is_listed_by_its_listing_time_or_its_state():
    assert not status("idle", 0, 0).listed and status("idle", 0, 0, listed_at=1.0).listed
    assert not status("listing", 0, 0).listed and status("complete", 0, 0).listed
    assert status("complete", 0, 0).fraction_local == 1.0
    assert status("listing", 0, 0).fraction_local == 0.0


def test_json_round_trip_keeps_every_field():
    s = DatasetStatus(
        DS,
        Path("/c/imagenet"),
        DatasetState.FAILED,
        3,
        1,
        300,
        100,
        owners=("pod",),
        errors=(Failure("k", "integrity", "bad"),),
        listed_at=5.0,
        rate_bytes_per_s=2.5,
        eta_s=80.0,
    )
    doc = s.as_json()
    assert doc["state"] == "failed" and doc["fraction_local"] == pytest.approx(1 / 3, abs=1e-6)
    assert DatasetStatus.from_json(doc) == s
    api = s.as_json(listed_at=False)
    assert "listed_at" not in api and set(api) == set(doc) - {"listed_at"}


def test_from_json_refuses_what_is_not_a_status():
    for bad in (
        {},
        {"url": "nope"},
        {"url": str(DS), "bytes_total": "x"},
        {"url": str(DS), "errors": "x"},
    ):
        with pytest.raises((KeyError, TypeError, ValueError)):
            DatasetStatus.from_json(bad)
    assert DatasetStatus.from_json({"url": str(DS), "state": "??"}).state is DatasetState.IDLE


def test_live_progress_overrides_the_index_while_a_prefetch_runs():
    base = status("complete", 100, 400, 1, 4, listed_at=1.0)
    live = Progress(str(DS), 4, 400, objects_done=2, bytes_done=200)
    shown = with_progress(base, live)
    assert (shown.state, shown.bytes_local, shown.objects_local) == ("downloading", 200, 2)
    listing = Progress(str(DS), 0, 0, listed=False)
    assert with_progress(status("idle", 0, 0), listing).state is DatasetState.LISTING
    assert with_progress(base, listing).state is DatasetState.DOWNLOADING  # listed before


@pytest.mark.parametrize(
    ("seen", "wanted", "timed_out", "expected"),
    [
        (None, 0.5, False, Decision.WAIT),
        (None, 0.5, True, Decision.TIMED_OUT),
        (None, 0.0, False, Decision.REACHED),
        (status("downloading", 40, 100), 0.5, False, Decision.WAIT),
        (status("downloading", 50, 100), 0.5, False, Decision.REACHED),
        (status("downloading", 40, 100), 0.5, True, Decision.TIMED_OUT),
        (status("complete", 100, 100), 1.0, False, Decision.REACHED),
        (status("partial", 90, 100), 1.0, False, Decision.SETTLED),
        (status("partial", 90, 100), 1.0, True, Decision.TIMED_OUT),
        (status("failed", 10, 100), 0.5, False, Decision.FAILED),
        (status("failed", 60, 100), 0.5, False, Decision.REACHED),  # what was asked is there
        (status("listing", 0, 0), 0.5, False, Decision.WAIT),  # zero bytes: not listed yet
        (status("idle", 0, 0), 0.5, True, Decision.TIMED_OUT),
        (status("complete", 0, 0), 1.0, False, Decision.REACHED),  # an empty dataset
        (status("downloading", 0, 0, 0, 0), 1.0, False, Decision.REACHED),
        (status("downloading", 0, 0, 1, 3), 1.0, False, Decision.WAIT),  # three empty objects
    ],
)
def test_decide(seen, wanted, timed_out, expected):
    now = 100.0
    deadline = now if timed_out else now + 1
    assert decide(seen, wanted, deadline, now) is expected


def test_poll_looks_until_a_decision_ends_it_on_a_fake_clock():
    clock = [0.0]
    seen = iter([None, status("downloading", 10, 100), status("downloading", 80, 100)])
    decision, last = poll(
        lambda: Look(next(seen)),
        0.5,
        10.0,
        interval_s=1.0,
        clock=lambda: clock[0],
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )
    assert decision is Decision.REACHED and clock[0] == 2.0
    assert last.status is not None and last.status.bytes_local == 80


def test_poll_times_out_even_when_the_caller_waits_through_settled_states():
    clock = [0.0]
    decision, last = poll(
        lambda: Look(status("partial", 10, 100), "why"),
        0.5,
        3.0,
        interval_s=1.0,
        ends={Decision.REACHED},
        clock=lambda: clock[0],
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )
    assert decision is Decision.TIMED_OUT and clock[0] == 3.0 and last.note == "why"
