"""The synchronous `Store` under the engine: its transaction, two processes opening one fresh
cache directory at once, and disk-full recognised by its code rather than its wording."""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest
from shardcache.backends.base import ObjectInfo
from shardcache.config import Config
from shardcache.errors import is_disk_full
from shardcache.store.store import Store
from shardcache.urls import parse_url

DS = parse_url("memory://bkt/ds/")


@pytest.fixture
def store(tmp_path):
    s = Store(Config(cache_dir=tmp_path / "cache"))
    s.open()
    yield s
    s.close()
    s.shutdown()


def test_a_transaction_commits_what_it_wrote(store):
    with store.transaction() as idx:
        idx.pin(str(DS), "pod-a")
    assert store.pins() == [(DS, "pod-a")]


def test_a_transaction_rolls_back_on_any_exception(store):
    with pytest.raises(KeyboardInterrupt), store.transaction() as idx:
        idx.pin(str(DS), "pod-a")
        raise KeyboardInterrupt  # a BaseException, as a cancellation is
    assert store.pins() == []
    store.pin(DS, "pod-b")  # the connection is usable again: no transaction left open
    assert store.pins() == [(DS, "pod-b")]


def test_rollback_inside_a_transaction_ends_it_with_nothing_written(store):
    with store.transaction() as idx:
        idx.pin(str(DS), "pod-a")
        idx.rollback()
    assert store.pins() == []


def test_record_listing_is_one_transaction(store):
    objects = [ObjectInfo("ds/a", 3, "v1"), ObjectInfo("ds/b", 4, "v1")]
    store.record_listing(DS, objects, "pod-a")
    [row] = store.index.datasets()
    assert (row.state, row.objects_total, row.bytes_total) == ("downloading", 2, 7)
    assert store.pins() == [(DS, "pod-a")]


def _open_in_child(root, gate: int) -> int:
    """Fork a process that opens a Store on `root` as soon as `gate` is readable."""
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on, leave through os._exit
        code = 1
        try:
            os.read(gate, 1)
            store = Store(Config(cache_dir=root))
            store.open()
            store.close()
            store.shutdown()
            code = 0
        except BaseException as e:
            os.write(2, f"open failed: {e!r}\n".encode())
        finally:
            os._exit(code)
    return pid


def test_two_processes_opening_a_fresh_cache_at_once_never_fail(tmp_path):
    """Once a shared `.FORMAT.tmp` made one of them fail about 1 in 60 times; 200 races."""
    for i in range(200):
        root = tmp_path / f"cache-{i}"
        gate_r, gate_w = os.pipe()
        try:
            pids = [_open_in_child(root, gate_r) for _ in range(2)]
            os.write(gate_w, b"gg")  # release both at once
        finally:
            os.close(gate_r)
            os.close(gate_w)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        assert codes == [0, 0], f"race {i}: {codes}"
        names = os.listdir(root)
        assert "FORMAT" in names and not [n for n in names if n.endswith(".tmp")]


def test_disk_full_is_recognised_by_errno_and_sqlite_code():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EACCES, "the disk is full of secrets"))
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    assert is_disk_full(full)
    wording = sqlite3.OperationalError("full")
    wording.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    assert not is_disk_full(wording)
