"""The cache directory, synchronously: its layout, its index and its files, in one object.

`Store` owns the index connection and the one thread that may touch it: the engine hands work
to that thread with `call()`, every other method is blocking and runs there. Multi-row changes
go through `transaction()` (BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error). Nothing here
is async and nothing here talks to an object store: the engine (cache/engine/) does that and
asks the store what is local, for room, and to record what it published.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..backends.base import Checksum, ObjectInfo
from ..config import Config
from ..errors import CacheError, CacheStateError, is_disk_full
from ..keys import KeyRefusal
from ..partition import Partition
from ..policy import (
    Candidate,
    Protection,
    Trim,
    Usage,
    choose_victims,
    headroom,
    inode_room,
    trim,
)
from ..reports import ManifestPage
from ..status import DatasetState, Failure, ShareStatus
from ..urls import StoreURL, parse_url
from . import files
from .adopt import adopt_quick
from .index import Index
from .layout import Layout, open_dir

log = logging.getLogger(__name__)
T = TypeVar("T")
#: (store, prefix) of datasets whose objects may not be evicted to make room for a download
Protect = tuple[tuple[str, str], ...]


class Reservation(enum.Enum):
    """What `check_and_reserve` found: a valid copy, room reserved, or no room to be had."""

    LOCAL = "local"
    RESERVED = "reserved"
    OVER_CAPACITY = "over_capacity"


class Store:
    """One cache directory; see the module docstring."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.layout = Layout(config.cache_dir)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="shardcache-index")
        self._index: Index | None = None
        #: objects and bytes this store evicted (to make room, or gone from a listing)
        self.evictions = 0
        self.evicted_bytes = 0
        #: what the start-up trim evicted and what stayed over the budget (set by open)
        self.last_trim = Trim((), 0, 0)

    # -- lifecycle and the index thread ---------------------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the blocking `fn(*args)` on the store's thread (the only one that touches the
        index)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def open(self) -> None:
        """Prepare the directory and adopt what a previous run left behind (see adopt.py)."""
        self.layout.prepare()
        self._index = Index(self.layout.index_path)
        adopt_quick(self.layout, self._index)
        self.last_trim = self._trim()

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def shutdown(self) -> None:
        """After `close()` ran on the thread: let the thread go."""
        self._thread.shutdown(wait=True)

    @property
    def index(self) -> Index:
        if self._index is None:
            raise CacheError("the engine is not open; use `async with Engine(config)`")
        return self._index

    @contextmanager
    def transaction(self) -> Iterator[Index]:
        with self.index.transaction() as idx:
            yield idx

    # -- objects --------------------------------------------------------------------------
    def is_local(self, url: StoreURL, info: ObjectInfo) -> bool:
        """A ready row at `info`'s version whose file still has the recorded identity."""
        entry = self.index.get(url.store, info.key)
        if entry is None or entry.version != info.version or entry.state != "ready":
            return False
        st = files.stat_published(self.layout, self.layout.store_segments(url), info.key)
        return st is not None and (st.st_ino, st.st_size, st.st_mtime_ns) == (
            entry.ino,
            entry.size,
            entry.mtime_ns,
        )

    def local_keys(self, url: StoreURL, infos: Sequence[ObjectInfo]) -> set[str]:
        return {i.key for i in infos if self.is_local(url, i)}

    def check_and_reserve(
        self, rid: str, url: StoreURL, info: ObjectInfo, protect: Protect
    ) -> Reservation:
        """One trip: is a valid copy published, else reserve room for a download."""
        if self.is_local(url, info):
            return Reservation.LOCAL
        if self._reserve(rid, info.size, protect):
            return Reservation.RESERVED
        return Reservation.OVER_CAPACITY

    def drop_reservation(self, rid: str) -> None:
        try:
            self.index.drop_reservation(rid)
        except sqlite3.OperationalError as e:
            # On a full disk even a DELETE needs room in the WAL. The reservation then only
            # lowers this process's headroom until it exits (start-up drops it), and the
            # error that brought us here (ENOSPC while writing) stays the one reported.
            if not is_disk_full(e):
                raise

    def record_pending(self, store: str, info: ObjectInfo, fin: files.Finished, rid: str) -> None:
        with self.transaction() as idx:
            idx.put_pending(store, info, fin.md5, fin.ino, fin.mtime_ns)
            idx.drop_reservation(rid)

    def mark_ready(self, store: str, key: str) -> None:
        self.index.mark_ready(store, key)

    def publish(
        self, url: StoreURL, info: ObjectInfo, fin: files.Finished, rid: str, staging: files.Staging
    ) -> None:
        """Record a finished download as pending, rename it into the mirror and mark it ready:
        the same three steps in the same order, each committed before the next, in one trip
        to the index thread. As three trips (the rename on an I/O thread) they were two more
        thread hand-offs per object, a visible share of a small-object prefetch's CPU (R11).
        A failure after the rename (the ready mark) leaves a published file whose row the
        caller drops: the next lookup does not trust it and downloads the object again."""
        self.record_pending(url.store, info, fin, rid)
        files.publish(self.layout, staging, self.layout.store_segments(url), info.key)
        self.mark_ready(url.store, info.key)

    def forget_if_inode(self, store: str, key: str, ino: int) -> None:
        self.index.remove_if_inode(store, key, ino)

    def evict_object(self, store: str, key: str) -> None:
        """Unlink one published file and drop its row (inside the caller's transaction)."""
        url = parse_url(store + "/")
        files.unlink_published(self.layout, self.layout.store_segments(url), key)
        entry = self.index.remove(store, key)
        self.evictions += 1
        self.evicted_bytes += entry.size if entry else 0

    def known_info(self, url: StoreURL) -> tuple[ObjectInfo | None, Protect]:
        """What the index knows of an object, and the datasets it belongs to: one trip."""
        return self._known_info(url), self._covering_datasets(url)

    def _known_info(self, url: StoreURL) -> ObjectInfo | None:
        entry = self.index.get(url.store, url.path)
        if entry is not None and entry.state == "ready":
            return ObjectInfo(entry.key, entry.size, entry.version)
        row = self.index.manifest_info(url.store, url.path)
        if row is None:
            return None
        key, size, version, md5 = row
        return ObjectInfo(key, size, version, Checksum("md5", md5) if md5 else None)

    def _covering_datasets(self, url: StoreURL) -> Protect:
        return tuple(
            (d.store, d.prefix)
            for d in self.index.datasets()
            if d.store == url.store and url.path.startswith(d.prefix)
        )

    # -- capacity -------------------------------------------------------------------------
    def usage(self) -> Usage:
        st = os.statvfs(self.layout.root)
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        return Usage(
            self.index.published_bytes(),
            self.index.reserved_bytes(),
            free,
            total,
            files_free=st.f_favail,
            files_total=st.f_files,
        )

    def _protection(self, requester: Protect) -> Protection:
        pinned = tuple(
            (u.store, u.prefix) for u in (parse_url(url) for url, _ in self.index.pins())
        )
        return Protection(pinned=pinned, requester=requester)

    def _reserve(self, rid: str, size: int, requester: Protect) -> bool:
        with self.transaction() as idx:
            usage = self.usage()  # one statvfs for the byte and the inode room
            room = headroom(usage, self.config.max_bytes, self.config.min_free_fraction)
            # Who is protected only matters when something must be evicted: reading the pins
            # for every object of a prefetch that fits was a query per object for nothing.
            files_short = 1 - self._inode_room(usage)
            if size <= room and files_short <= 0:
                victims: list[Candidate] | None = []
            else:
                victims = choose_victims(
                    size,
                    room,
                    self._candidates(),
                    self._protection(requester),
                    files_short=files_short,
                )
            if victims is None:
                idx.rollback()
                return False
            for v in victims:
                self.evict_object(v.store, v.key)
            idx.add_reservation(rid, size)
            return True

    def _inode_room(self, usage: Usage) -> int:
        return inode_room(usage.files_free, usage.files_total, self.config.min_free_inode_fraction)

    def _trim(self) -> Trim:
        """Bring the cache back within its budget and reserves at start-up (the budget may
        have been lowered since the last run): unpinned objects go oldest first; what is
        pinned stays, and is reported."""
        with self.transaction():
            usage = self.usage()
            room = headroom(usage, self.config.max_bytes, self.config.min_free_fraction)
            result = trim(room, self._inode_room(usage), self._candidates(), self._protection(()))
            for v in result.victims:
                self.evict_object(v.store, v.key)
        if result.victims:
            log.info(
                "trimmed %d objects (%d bytes) to fit the budget",
                len(result.victims),
                sum(v.size for v in result.victims),
            )
        if result.bytes_over or result.files_over:
            log.warning(
                "the cache stays over its budget by %d bytes and %d files: all of it "
                "is pinned by running pods or owners",
                result.bytes_over,
                result.files_over,
            )
        return result

    def _candidates(self) -> Iterator[Candidate]:
        after: tuple[float, str, str] | None = None
        while batch := self.index.eviction_order(256, after):
            for e in batch:
                yield Candidate(e.store, e.key, e.size, e.atime)
            last = batch[-1]
            after = (last.atime, last.store, last.key)

    # -- datasets -------------------------------------------------------------------------
    def record_listing(
        self,
        ds: StoreURL,
        objects: Sequence[ObjectInfo],
        owner: str | None,
        refused: Sequence[KeyRefusal] = (),
    ) -> None:
        """Save the manifest (and the keys the listing refused) and drop local files whose
        keys no longer exist remotely."""
        url = str(ds)
        with self.transaction() as idx:
            pairs = [(r.key, r.reason) for r in refused]
            idx.save_manifest(url, ds.store, ds.prefix, list(objects), time.time(), pairs)
            idx.set_dataset_state(url, DatasetState.DOWNLOADING.value, [])
            if owner:
                idx.pin(url, owner)
            listed = {o.key for o in objects}
            gone = [e.key for e in idx.entries(ds.store, ds.prefix) if e.key not in listed]
            for key in gone:
                self.evict_object(ds.store, key)

    def listed_at(self, ds: StoreURL) -> float | None:
        """When the dataset's saved listing ended (wall clock), if one can be reused."""
        row = self.index.dataset(str(ds))
        return row.listed_at if row is not None and row.refused is not None else None

    def reuse_listing(
        self, ds: StoreURL, owner: str | None
    ) -> tuple[list[ObjectInfo], list[KeyRefusal]] | None:
        """The saved listing (objects in key order, refused keys), for a prefetch that will
        not list again; the dataset is marked downloading and pinned for `owner`, as
        `record_listing` does. None when there is none to reuse (forgotten meanwhile)."""
        url = str(ds)
        with self.transaction() as idx:
            row = idx.dataset(url)
            if row is None or row.listed_at is None or row.refused is None:
                return None
            objects = idx.manifest_objects(url)
            idx.set_dataset_state(url, DatasetState.DOWNLOADING.value, [])
            if owner:
                idx.pin(url, owner)
        return objects, [KeyRefusal(key, reason) for key, reason in row.refused]

    def set_state(self, ds: StoreURL, state: DatasetState, errors: Sequence[Failure]) -> None:
        self.index.set_dataset_state(str(ds), state.value, [e.as_json() for e in errors[:1000]])

    def manifest_page(self, ds: StoreURL, after: str, limit: int) -> ManifestPage | None:
        """Up to `limit` objects of the dataset's manifest after the key `after` (relative to
        the prefix), in key order; None while the dataset has never been listed."""
        row = self.index.dataset(str(ds))
        if row is None or row.listed_at is None:
            return None
        rows = self.index.manifest_page(str(ds), ds.prefix + after, limit)
        cut = len(ds.prefix)
        objects = tuple((key[cut:], size) for key, size in rows)
        return ManifestPage(
            ds, row.objects_total, objects, objects[-1][0] if len(objects) == limit else None
        )

    def share_status(self, ds: StoreURL, share: Partition) -> ShareStatus:
        """How much of member `share`'s part of the dataset's manifest is local (shares are
        ranges of the sorted keys; the manifest's primary key keeps them sorted)."""
        row = self.index.dataset(str(ds))
        if row is None or row.listed_at is None:
            return ShareStatus(share, listed=False)
        start, stop = share.bounds(row.objects_total)
        n, nbytes, n_local, b_local = self.index.range_totals(str(ds), ds.store, start, stop)
        return ShareStatus(
            share, objects_total=n, objects_local=n_local, bytes_total=nbytes, bytes_local=b_local
        )

    def update_manifest_row(self, ds: StoreURL, info: ObjectInfo) -> None:
        self.index.update_manifest_row(str(ds), info)

    def make_dataset_dir(self, ds: StoreURL) -> Path:
        """The dataset's directory, created if missing; never through a link."""
        try:
            with open_dir(self.layout.data_dir, self.layout.dataset_segments(ds), create=True):
                pass
        except OSError as e:
            # never followed, never replaced behind the operator's back: refuse and say how
            raise CacheStateError(
                f"cannot use {self.layout.dataset_dir(ds)} as the directory of {ds}: "
                f"{e.strerror}; a symbolic link or a file is in the way. Run `shardcache "
                "verify` (it removes links and files that are not the cache's), then prefetch "
                "again"
            ) from e
        return self.layout.dataset_dir(ds)

    def pin(self, ds: StoreURL, owner: str) -> None:
        self.index.pin(str(ds), owner)

    def unpin(self, ds: StoreURL, owner: str) -> None:
        self.index.unpin(str(ds), owner)

    def pins(self) -> list[tuple[StoreURL, str]]:
        return [(parse_url(u), owner) for u, owner in self.index.pins()]

    def covers(self, url: StoreURL) -> bool:
        """Whether the object `url` lies inside a dataset that some owner has pinned."""
        return any(
            ds.store == url.store and url.path.startswith(ds.prefix) for ds, _ in self.pins()
        )
