"""Lease decisions, without I/O but /proc: grant, renew, sweep, adopt after a restart."""

from __future__ import annotations

import os
import subprocess
import sys

from shardcache_cluster.agent import leases as L

POD = "3f2a0b7c-0000-4000-8000-000000000001"


def test_only_owners_that_are_not_pods_are_leased():
    assert L.needs_lease("cli-42") and L.needs_lease("client-x")
    assert not L.needs_lease(POD)


def test_sweep_renews_live_owners_and_expires_dead_ones():
    alive = {(1, 100)}
    live = L.grant("s3://b/a/", "cli-1", 0.0, 10.0, (1, 100), False)
    dead = L.grant("s3://b/a/", "cli-2", 0.0, 10.0, (2, 200), False)
    durable = L.grant("s3://b/a/", "keep", 0.0, 10.0, None, True)
    unknown = L.grant("s3://b/a/", "cli-3", 0.0, 10.0, None, False)
    keep, expired = L.sweep([live, dead, durable, unknown], 5.0, 10.0, alive.__contains__)
    assert expired == [] and next(k for k in keep if k.owner == "cli-1").expires_at == 15.0
    keep, expired = L.sweep(keep, 12.0, 10.0, alive.__contains__)
    assert {e.owner for e in expired} == {"cli-2", "cli-3"}
    assert {k.owner for k in keep} == {"cli-1", "keep"}


def test_renewing_never_shortens():
    lease = L.grant("s3://b/a/", "cli-1", 0.0, 100.0, None, False)
    assert L.renew(lease, 1.0, 10.0).expires_at == 100.0


def test_adopt_gives_unrecorded_pins_a_lease_nobody_renews():
    known = [L.grant("s3://b/a/", "keep", 0.0, 10.0, None, True)]
    pins = [("s3://b/a/", "keep"), ("s3://b/a/", "cli-9"), ("s3://b/a/", POD)]
    adopted = L.adopt(pins, known, 50.0, 10.0)
    assert [(a.owner, a.durable, a.process, a.expires_at) for a in adopted] == [
        ("keep", True, None, 10.0),
        ("cli-9", False, None, 60.0),
    ]


def test_process_identity_tells_a_reused_pid_apart():
    me = L.process_id(os.getpid())
    assert me is not None and L.is_alive(me)
    assert not L.is_alive((me[0], me[1] + 1))  # same pid, another start time
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = L.process_id(child.pid)
    child.wait()
    assert ident is not None and not L.is_alive(ident)
    assert L.process_id(0) is None


def test_the_book_survives_a_restart(tmp_path):
    book = L.LeaseBook(tmp_path / "leases.json")
    book.put(L.grant("s3://b/a/", "cli-1", 0.0, 10.0, (5, 6), False))
    book.put(L.grant("s3://b/a/", "keep", 0.0, 10.0, None, True))
    book.drop("s3://b/a/", "cli-1")
    again = L.LeaseBook(tmp_path / "leases.json").load()
    assert [(x.owner, x.durable) for x in again] == [("keep", True)]
    (tmp_path / "leases.json").write_text("{not json")
    assert L.LeaseBook(tmp_path / "leases.json").load() == []
