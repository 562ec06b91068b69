"""The persistent index of the cache, in SQLite.

Why SQLite and not diskcache: the engine needs prefix queries (a dataset is a key range),
multi-row transactions shared by several processes (capacity reservations, pins), and a
schema a human can inspect with `sqlite3`. It stores plain columns, never pickles.

Crash safety comes from the order of steps, not from the index alone: a file is renamed into
data/ only after its row is written as `pending` with the staging file's inode, and the row is
marked `ready` after the rename. On start, a `pending` row whose path now has that inode is
adopted; any other `pending` row is dropped. Rows never outlive their file unnoticed:
`lookup_valid` compares inode, size and mtime before calling anything a hit.

INVARIANT: meta.published_bytes == SUM(objects.size WHERE state = 'ready' or 'pending').
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.base import Checksum, ObjectInfo
from ..errors import CacheStateError, is_disk_full
from .processes import process_alive, process_start_ticks

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects(
    store TEXT NOT NULL, key TEXT NOT NULL, version TEXT NOT NULL, size INTEGER NOT NULL,
    md5 TEXT, ino INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, state TEXT NOT NULL,
    atime REAL NOT NULL, PRIMARY KEY (store, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS datasets(
    url TEXT PRIMARY KEY, store TEXT NOT NULL, prefix TEXT NOT NULL, listed_at REAL,
    objects_total INTEGER NOT NULL DEFAULT 0, bytes_total INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'idle', errors TEXT NOT NULL DEFAULT '[]',
    last_used REAL NOT NULL DEFAULT 0, refused TEXT);
CREATE TABLE IF NOT EXISTS manifest(
    url TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, version TEXT NOT NULL,
    md5 TEXT, PRIMARY KEY (url, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_by_key ON manifest(key);
CREATE TABLE IF NOT EXISTS pins(
    url TEXT NOT NULL, owner TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (url, owner)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations(
    id TEXT PRIMARY KEY, pid INTEGER NOT NULL, start_ticks INTEGER NOT NULL,
    bytes INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('published_bytes', 0);
"""


@dataclass(frozen=True)
class Entry:
    store: str
    key: str
    version: str
    size: int
    md5: str | None
    ino: int
    mtime_ns: int
    state: str
    atime: float


@dataclass(frozen=True)
class DatasetRow:
    url: str
    store: str
    prefix: str
    listed_at: float | None
    objects_total: int
    bytes_total: int
    state: str
    errors: list[dict[str, str]]
    last_used: float
    #: the keys the last listing refused as unsafe, as [key, reason] pairs; None when that
    #: listing was saved by a version that did not keep them (it cannot be reused)
    refused: list[list[str]] | None = None


def _refused(text: str | None, listed_at: float | None) -> list[list[str]] | None:
    """The refused keys saved with the listing of `listed_at`. They carry that time, so a
    listing saved later by an older shardcache (which leaves the column alone) is told apart
    from the one they belong to: the column was added without a FORMAT change, and both
    versions can keep using one cache."""
    doc = json.loads(text) if text is not None else None
    return doc["keys"] if doc is not None and doc["at"] == listed_at else None


def _dataset_row(r: tuple[Any, ...]) -> DatasetRow:
    return DatasetRow(
        url=r[0],
        store=r[1],
        prefix=r[2],
        listed_at=r[3],
        objects_total=r[4],
        bytes_total=r[5],
        state=r[6],
        errors=json.loads(r[7]),
        last_used=r[8],
        refused=_refused(r[9], r[3]),
    )


#: how long a statement waits for another process's lock on the index
_BUSY_TIMEOUT_S = 60.0


def _is_busy(error: sqlite3.Error) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED (the low byte of an extended result code)."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Index:
    """One connection to the index. Not thread-safe: the engine owns it from one thread."""

    def __init__(self, path: Path) -> None:
        #: this process's pid and start time, the owner written on its reservations
        self._me = (0, 0)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE where it matters)
        self._db = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._setup()
        except sqlite3.DatabaseError as e:
            self._db.close()
            if is_disk_full(e) or _is_busy(e):
                raise
            # a damaged index cannot be checked, so nothing it says may be trusted
            raise CacheStateError(
                f"the cache index {path} is damaged ({e}); remove the cache directory "
                f"{path.parent} to start afresh"
            ) from e

    def _setup(self) -> None:
        """WAL mode and the schema. Switching a fresh file to WAL takes an exclusive lock and
        SQLite answers BUSY at once, without its busy handler, when another process opening
        the same fresh cache holds it: that is a moment to wait, not damage."""
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as e:
                if not _is_busy(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring an index written by an older version up to `_SCHEMA` (columns added at the
        end of their table, so `SELECT *` rows keep their order)."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(datasets)")}
        if "refused" not in columns:
            try:
                self._db.execute("ALTER TABLE datasets ADD COLUMN refused TEXT")
            except sqlite3.OperationalError as e:
                if "duplicate column" not in str(e):  # another process was first
                    raise

    def close(self) -> None:
        self._db.close()

    # -- transactions -------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Index]:
        """BEGIN IMMEDIATE (take the write lock now, so capacity checks are not racy), then
        COMMIT, or ROLLBACK on any exception (cancellation included), as sqlite3's connection
        does as a context manager; `rollback()` ends it early, with nothing written."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def rollback(self) -> None:
        """Inside `transaction()`: undo what it wrote; the context then commits nothing."""
        self._db.execute("ROLLBACK")

    # -- objects ------------------------------------------------------------------------
    def get(self, store: str, key: str) -> Entry | None:
        row = self._db.execute(
            "SELECT * FROM objects WHERE store=? AND key=?", (store, key)
        ).fetchone()
        return Entry(*row) if row else None

    def entries(self, store: str | None = None, prefix: str = "") -> Iterator[Entry]:
        if store is None:
            cur = self._db.execute("SELECT * FROM objects ORDER BY store, key")
        else:
            cur = self._db.execute(
                "SELECT * FROM objects WHERE store=? AND key>=? AND key<? ORDER BY key",
                (store, prefix, prefix + "\U0010ffff"),
            )
        for row in cur:
            yield Entry(*row)

    def entries_batched(self, batch: int = 1000) -> Iterator[Entry]:
        """Every row in (store, key) order, `batch` rows in memory at a time."""
        after = ("", "")
        while rows := self._db.execute(
            "SELECT * FROM objects WHERE (store, key) > (?, ?) ORDER BY store, key LIMIT ?",
            (*after, batch),
        ).fetchall():
            for row in rows:
                yield Entry(*row)
            after = (rows[-1][0], rows[-1][1])

    def child_names(self, store: str, prefix: str) -> set[str]:
        """Last segments of the keys directly under `prefix` ("" or ending in "/")."""
        start = len(prefix) + 1
        rows = self._db.execute(
            "SELECT substr(key, ?) FROM objects WHERE store=? AND key>=? AND key<? "
            "AND instr(substr(key, ?), '/') = 0",
            (start, store, prefix, prefix + "\U0010ffff", start),
        ).fetchall()
        return {r[0] for r in rows}

    def put_pending(self, store: str, info: ObjectInfo, md5: str, ino: int, mtime_ns: int) -> None:
        """Record a file about to be renamed into place (replacing any older version)."""
        self._remove_row(store, info.key)
        self._db.execute(
            "INSERT INTO objects VALUES (?,?,?,?,?,?,?,'pending',?)",
            (store, info.key, info.version, info.size, md5, ino, mtime_ns, time.time()),
        )
        self._add_bytes(info.size)

    def mark_ready(self, store: str, key: str) -> None:
        self._db.execute("UPDATE objects SET state='ready' WHERE store=? AND key=?", (store, key))

    def remove(self, store: str, key: str) -> Entry | None:
        entry = self.get(store, key)
        self._remove_row(store, key)
        return entry

    def remove_if_inode(self, store: str, key: str, ino: int) -> None:
        """Drop the row of `key` only if it describes the file with inode `ino`."""
        entry = self.get(store, key)
        if entry is not None and entry.ino == ino:
            self._remove_row(store, key)

    def _remove_row(self, store: str, key: str) -> None:
        row = self._db.execute(
            "SELECT size FROM objects WHERE store=? AND key=?", (store, key)
        ).fetchone()
        if row:
            self._db.execute("DELETE FROM objects WHERE store=? AND key=?", (store, key))
            self._add_bytes(-row[0])

    def pending(self) -> list[Entry]:
        return [Entry(*r) for r in self._db.execute("SELECT * FROM objects WHERE state='pending'")]

    def eviction_order(self, batch: int, after: tuple[float, str, str] | None) -> list[Entry]:
        """Ready entries oldest first, `batch` at a time, resuming after `after`."""
        if after is None:
            cur = self._db.execute(
                "SELECT * FROM objects WHERE state='ready' ORDER BY atime, store, key LIMIT ?",
                (batch,),
            )
        else:
            cur = self._db.execute(
                "SELECT * FROM objects WHERE state='ready' AND (atime, store, key) > (?,?,?) "
                "ORDER BY atime, store, key LIMIT ?",
                (*after, batch),
            )
        return [Entry(*r) for r in cur]

    # -- capacity -----------------------------------------------------------------------
    def published_bytes(self) -> int:
        row = self._db.execute("SELECT v FROM meta WHERE k='published_bytes'").fetchone()
        return int(row[0])

    def _add_bytes(self, delta: int) -> None:
        self._db.execute("UPDATE meta SET v = v + ? WHERE k='published_bytes'", (delta,))

    def reserved_bytes(self) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(bytes),0) FROM reservations").fetchone()
        return int(row[0])

    def add_reservation(self, rid: str, nbytes: int) -> None:
        pid = os.getpid()
        if self._me[0] != pid:  # read /proc once per process, not once per object
            self._me = (pid, process_start_ticks(pid))
        self._db.execute("INSERT INTO reservations VALUES (?,?,?,?)", (rid, *self._me, nbytes))

    def drop_reservation(self, rid: str) -> None:
        self._db.execute("DELETE FROM reservations WHERE id=?", (rid,))

    def drop_dead_reservations(self) -> int:
        rows = self._db.execute("SELECT id, pid, start_ticks FROM reservations").fetchall()
        dead = [(rid,) for rid, pid, ticks in rows if not process_alive(pid, ticks)]
        self._db.executemany("DELETE FROM reservations WHERE id=?", dead)
        return len(dead)

    # -- datasets, manifests, pins ------------------------------------------------------
    def save_manifest(
        self,
        url: str,
        store: str,
        prefix: str,
        objects: list[ObjectInfo],
        when: float,
        refused: list[tuple[str, str]],
    ) -> None:
        """The dataset's listing, complete, as of `when` (when it ended), with the keys it
        refused."""
        self._db.execute("DELETE FROM manifest WHERE url=?", (url,))
        self._db.executemany(
            "INSERT INTO manifest VALUES (?,?,?,?,?)",
            [
                (url, o.key, o.size, o.version, o.checksum.value if o.checksum else None)
                for o in objects
            ],
        )
        self._db.execute(
            "INSERT INTO datasets(url, store, prefix, listed_at, objects_total, bytes_total, "
            "state, last_used, refused) VALUES (?,?,?,?,?,?,'listed',?,?) ON CONFLICT(url) DO "
            "UPDATE SET listed_at=excluded.listed_at, objects_total=excluded.objects_total, "
            "bytes_total=excluded.bytes_total, last_used=excluded.last_used, "
            "refused=excluded.refused",
            (
                url,
                store,
                prefix,
                when,
                len(objects),
                sum(o.size for o in objects),
                when,
                json.dumps({"at": when, "keys": refused}),
            ),
        )

    def manifest_objects(self, url: str) -> list[ObjectInfo]:
        """The dataset's saved listing, in key order."""
        return [
            ObjectInfo(key, size, version, Checksum("md5", md5) if md5 else None)
            for key, size, version, md5 in self._db.execute(
                "SELECT key, size, version, md5 FROM manifest WHERE url=? ORDER BY key", (url,)
            )
        ]

    def manifest_info(self, store: str, key: str) -> tuple[str, int, str, str | None] | None:
        row = self._db.execute(
            "SELECT m.key, m.size, m.version, m.md5 FROM manifest m JOIN datasets d "
            "ON d.url = m.url WHERE m.key=? AND d.store=? LIMIT 1",
            (key, store),
        ).fetchone()
        return tuple(row) if row else None  # type: ignore[return-value]

    def manifest_page(self, url: str, after: str, limit: int) -> list[tuple[str, int]]:
        """(key, size) of the dataset's manifest in key order, `limit` keys after `after`."""
        return self._db.execute(
            "SELECT key, size FROM manifest WHERE url=? AND key>? ORDER BY key LIMIT ?",
            (url, after, limit),
        ).fetchall()

    def update_manifest_row(self, url: str, info: ObjectInfo) -> None:
        self._db.execute(
            "UPDATE manifest SET size=?, version=?, md5=? WHERE url=? AND key=?",
            (
                info.size,
                info.version,
                info.checksum.value if info.checksum else None,
                url,
                info.key,
            ),
        )

    def set_dataset_state(self, url: str, state: str, errors: list[dict[str, str]]) -> None:
        self._db.execute(
            "UPDATE datasets SET state=?, errors=? WHERE url=?", (state, json.dumps(errors), url)
        )

    def datasets(self) -> list[DatasetRow]:
        rows = self._db.execute("SELECT * FROM datasets ORDER BY url").fetchall()
        return [_dataset_row(r) for r in rows]

    def dataset(self, url: str) -> DatasetRow | None:
        r = self._db.execute("SELECT * FROM datasets WHERE url=?", (url,)).fetchone()
        return _dataset_row(r) if r else None

    def local_totals(self, url: str) -> tuple[int, int]:
        """Objects and bytes of the dataset's manifest that are published at that version."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(m.size),0) FROM manifest m JOIN datasets d "
            "ON d.url = m.url JOIN objects o ON o.store = d.store AND o.key = m.key "
            "AND o.version = m.version AND o.state='ready' WHERE m.url=?",
            (url,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def range_totals(
        self, url: str, store: str, start: int, stop: int
    ) -> tuple[int, int, int, int]:
        """Objects and bytes of the manifest's keys [start, stop) in key order (a partition's
        share; the primary key keeps them sorted), and how many of those are local."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(m.size),0), COUNT(o.key), "
            "COALESCE(SUM(CASE WHEN o.key IS NULL THEN 0 ELSE m.size END),0) FROM "
            "(SELECT key, size, version FROM manifest WHERE url=? ORDER BY key LIMIT ? OFFSET ?) m "
            "LEFT JOIN objects o ON o.store=? AND o.key=m.key AND o.version=m.version "
            "AND o.state='ready'",
            (url, max(0, stop - start), start, store),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def forget_dataset(self, url: str) -> None:
        self._db.execute("DELETE FROM manifest WHERE url=?", (url,))
        self._db.execute("DELETE FROM datasets WHERE url=?", (url,))
        self._db.execute("DELETE FROM pins WHERE url=?", (url,))

    def pin(self, url: str, owner: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO pins VALUES (?,?,?)", (url, owner, time.time()))

    def unpin(self, url: str, owner: str) -> None:
        self._db.execute("DELETE FROM pins WHERE url=? AND owner=?", (url, owner))

    def pins(self) -> list[tuple[str, str]]:
        return self._db.execute("SELECT url, owner FROM pins ORDER BY url, owner").fetchall()
