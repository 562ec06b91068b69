"""The engine: one per cache directory per process; many may share a directory safely.

`Engine` is async and owns its resources explicitly (`async with Engine(config) as engine`):
a backend per store, a thread for the index, a pool of threads for file I/O. Cross-process
safety comes from the index's transactions and from per-object OFD locks (see locks.py), so
the CLI, several training processes and the agent can point at one cache directory and each
object is still downloaded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from .. import keys as keymap
from ..backends.base import Backend, Checksum, ObjectInfo
from ..config import Config
from ..errors import CacheError, IntegrityError, VersionChangedError, redact
from ..policy import Candidate, Protection, Usage, choose_victims, headroom
from ..store import files
from ..store.index import Index
from ..store.layout import Layout
from ..urls import StoreURL, parse_url
from .download import Downloader, PartTracker, check_integrity, object_round_decision, with_retries
from .locks import ObjectLock, PrioritySemaphore

T = TypeVar("T")
BackendFactory = Callable[[StoreURL, Config], Awaitable[Backend]]

#: priorities of request slots: an on-demand miss goes before prefetch work
PRIORITY_ON_DEMAND = 0
PRIORITY_PREFETCH = 1
#: how many times one download starts over because the object was replaced meanwhile
VERSION_RESTARTS = 3


@dataclass(frozen=True)
class FetchResult:
    key: str
    #: the published file, or None when the object could not be cached (read it through)
    path: Path | None
    downloaded: bool
    reason: str | None = None
    size: int = 0


@dataclass(frozen=True)
class Progress:
    url: str
    objects_total: int
    bytes_total: int
    objects_done: int = 0
    bytes_done: int = 0
    objects_failed: int = 0
    started_at: float = 0.0


@dataclass(frozen=True)
class Failure:
    key: str
    kind: str
    message: str


@dataclass(frozen=True)
class PrefetchReport:
    url: str
    local_dir: Path
    objects_total: int
    bytes_total: int
    objects_downloaded: int
    bytes_downloaded: int
    objects_already_local: int
    refused: list[keymap.KeyRefusal] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    not_cached: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class Engine:
    """Prefetches datasets and fetches objects into a local, verified mirror."""

    def __init__(self, config: Config, backend_factory: BackendFactory | None = None) -> None:
        self.config = config
        self.layout = Layout(config.cache_dir)
        self._factory = backend_factory
        self._backends: dict[str, Backend] = {}
        self._backend_locks: dict[str, asyncio.Lock] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[FetchResult]] = {}
        self._slots = PrioritySemaphore(config.max_concurrency)
        self._io = ThreadPoolExecutor(max(8, config.max_concurrency // 2),
                                      thread_name_prefix="shardcache-io")
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="shardcache-index")
        self._index: Index | None = None
        self.downloader = Downloader(config, self._slots, self._io)
        self.live: dict[str, Progress] = {}
        self.counters: dict[str, int] = {
            "objects_downloaded": 0, "bytes_downloaded": 0, "evictions": 0,
            "evicted_bytes": 0, "integrity_failures": 0, "read_through": 0,
            "object_retries": 0, "version_restarts": 0, "objects_failed": 0, "disk_full": 0,
        }
        #: called as fn(url, size, seconds) after each object this engine downloaded and
        #: published: how a host (the agent's duration histogram) observes single downloads
        #: without the engine knowing about metrics
        self.download_observers: list[Callable[[StoreURL, int, float], None]] = []

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Prepare the cache directory and adopt what a previous run left behind."""
        await asyncio.get_running_loop().run_in_executor(self._db_thread, self._open_sync)

    def _open_sync(self) -> None:
        self.layout.prepare()
        self._index = Index(self.layout.index_path)
        from .adopt import adopt_quick

        adopt_quick(self.layout, self._index)

    async def close(self) -> None:
        for backend in self._backends.values():
            # closing must not mask the caller's error
            with contextlib.suppress(Exception):
                await backend.close()
        self._backends.clear()
        if self._index is not None:
            await self.db(self._index.close)
            self._index = None
        # Queued work is cleanup (discarding staging files) or a few file steps: let it run.
        self._io.shutdown(wait=True)
        self._db_thread.shutdown(wait=True)

    @property
    def index(self) -> Index:
        if self._index is None:
            raise CacheError("the engine is not open; use `async with Engine(config)`")
        return self._index

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the index thread (the only thread that touches the index)."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def backend(self, url: StoreURL) -> Backend:
        lock = self._backend_locks.setdefault(url.store, asyncio.Lock())
        async with lock:
            if url.store not in self._backends:
                factory = self._factory
                if factory is None:
                    from ..backends.cloud import open_backend

                    factory = open_backend
                self._backends[url.store] = await factory(url, self.config)
            return self._backends[url.store]

    # -- paths --------------------------------------------------------------------------
    def local_path(self, url: str | StoreURL) -> Path:
        """Local directory of a dataset URL (ending in / or naming a prefix) or file of a key."""
        parsed = parse_url(url) if isinstance(url, str) else url
        if not parsed.path or parsed.path.endswith("/"):
            return self.layout.dataset_dir(parsed)
        return self.layout.object_path(parsed)

    # -- fetching one object ------------------------------------------------------------
    async def ensure(self, url: StoreURL, info: ObjectInfo, *, priority: int = PRIORITY_ON_DEMAND,
                     protect: tuple[tuple[str, str], ...] = ()) -> FetchResult:
        """Make `info` local (once, however many callers ask at the same time)."""
        slot = (url.store, info.key)
        if slot in self._inflight:
            # a follower: the leader downloads, everyone gets the file
            return replace(await asyncio.shield(self._inflight[slot]), downloaded=False)
        fut: asyncio.Future[FetchResult] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inflight[slot] = fut
        try:
            result = await self._ensure_locked(url, info, priority, protect)
        except BaseException as e:
            fut.set_exception(e if isinstance(e, Exception) else CacheError("cancelled"))
            raise
        finally:
            del self._inflight[slot]
        fut.set_result(result)
        return result

    async def _ensure_locked(self, url: StoreURL, info: ObjectInfo, priority: int,
                             protect: tuple[tuple[str, str], ...]) -> FetchResult:
        segments = self.layout.store_segments(url)
        path = files.path_of(self.layout, segments, info.key)
        # The lock comes first (one open and one fcntl, no thread hop); then one trip to the
        # index thread both checks for a published copy and reserves room for a download.
        lock = ObjectLock(self.layout.lock_path, url.store, info.key)
        await lock.acquire(timeout_s=self.config.read_timeout_s * 4)
        try:
            rid = uuid.uuid4().hex
            started = time.monotonic()
            try:
                state = await self.db(self._check_and_reserve, rid, segments, url.store, info,
                                      protect)
            except BaseException:  # cancelled while the thread may have reserved
                await asyncio.shield(self.db(self._drop_reservation, rid))
                raise
            if state == "local":
                return FetchResult(info.key, path, downloaded=False, size=info.size)
            if state == "over_capacity":
                self.counters["read_through"] += 1
                return FetchResult(info.key, None, downloaded=False, reason="over_capacity")
            try:
                await self._download_and_publish(url, info, segments, rid, priority)
            except BaseException:
                await asyncio.shield(self.db(self._drop_reservation, rid))
                raise
        finally:
            lock.release()
        self.counters["objects_downloaded"] += 1
        self.counters["bytes_downloaded"] += info.size
        for observe in self.download_observers:
            observe(url, info.size, time.monotonic() - started)
        return FetchResult(info.key, path, downloaded=True, size=info.size)

    async def _download_and_publish(self, url: StoreURL, info: ObjectInfo, segments: list[str],
                                    rid: str, priority: int) -> None:
        """Download into one staging file, in rounds that keep the parts already verified
        (see download.py), then publish; the staging file is discarded on any failure."""
        backend = await self.backend(url)
        staging = self._create_staging()
        tracker = self.downloader.tracker(info)
        try:
            for round_no in itertools.count(1):
                try:
                    fin = await self.downloader.fetch_into(backend, info, staging, priority,
                                                           tracker)
                    check_integrity(info, fin.md5, fin.size)
                    break
                except CacheError as e:
                    if not self._another_round(e, round_no, tracker):
                        raise
        except BaseException:
            await asyncio.shield(self.io(files.discard, self.layout, staging))
            raise
        await self._publish(url, info, segments, staging, fin, rid)

    def _create_staging(self) -> files.Staging:
        """A new staging file, created on the loop's thread on purpose: it is one open() and
        one flock() in a local directory, and doing it in a worker thread opened a window in
        which a cancelled download (SIGTERM) left a file behind that nobody would remove."""
        return files.create_staging(self.layout)

    def _another_round(self, error: CacheError, round_no: int, tracker: PartTracker) -> bool:
        """Whether an object whose round failed with `error` is worth another round."""
        mismatch = isinstance(error, IntegrityError) and not tracker.missing()
        if mismatch and not isinstance(error, VersionChangedError):
            # every part arrived but the whole does not match: nothing is worth keeping
            self.counters["integrity_failures"] += 1
            tracker.reset()
        go_on = object_round_decision(error, round_no, self.config.retry.max_attempts)
        if go_on:
            self.counters["object_retries"] += 1
        return go_on

    async def _publish(self, url: StoreURL, info: ObjectInfo, segments: list[str],
                       staging: files.Staging, fin: files.Finished, rid: str) -> None:
        try:
            # Both steps inside the `try`: a cancellation while either runs in its thread must
            # still discard the staging file and the row this download wrote (and only that
            # row: it is matched by inode, so an older published version keeps its entry).
            await self.db(self._record_pending, url.store, info, fin, rid)
            await self.io(files.publish, self.layout, staging, segments, info.key)
        except BaseException as e:
            await asyncio.shield(self.db(self.index.remove_if_inode, url.store, info.key,
                                         fin.ino))
            await asyncio.shield(self.io(files.discard, self.layout, staging))
            if isinstance(e, OSError):
                raise CacheError(
                    f"{url.child(info.key)}: cannot publish to "
                    f"{files.path_of(self.layout, segments, info.key)}: {e.strerror}; "
                    "something other than a plain directory is in the way (run "
                    "`shardcache verify`)") from e
            raise
        await self.db(self.index.mark_ready, url.store, info.key)

    # -- index-thread helpers (blocking) ------------------------------------------------
    def _is_local(self, store: str, segments: list[str], info: ObjectInfo) -> bool:
        entry = self.index.get(store, info.key)
        if entry is None or entry.version != info.version or entry.state != "ready":
            return False
        st = files.stat_published(self.layout, segments, info.key)
        return st is not None and (st.st_ino, st.st_size, st.st_mtime_ns) == (
            entry.ino, entry.size, entry.mtime_ns)

    def local_keys(self, url: StoreURL, infos: list[ObjectInfo]) -> set[str]:
        segments = self.layout.store_segments(url)
        return {i.key for i in infos if self._is_local(url.store, segments, i)}

    def _record_pending(self, store: str, info: ObjectInfo, fin: files.Finished,
                        rid: str) -> None:
        idx = self.index
        idx.begin()
        try:
            idx.put_pending(store, info, fin.md5, fin.ino, fin.mtime_ns)
            idx.drop_reservation(rid)
            idx.commit()
        except BaseException:
            idx.rollback()
            raise

    def _check_and_reserve(self, rid: str, segments: list[str], store: str, info: ObjectInfo,
                           protect: tuple[tuple[str, str], ...]) -> str:
        """"local" when a valid copy is published, else "reserved" or "over_capacity"."""
        if self._is_local(store, segments, info):
            return "local"
        return "reserved" if self._reserve(rid, info.size, store, protect) else "over_capacity"

    def _drop_reservation(self, rid: str) -> None:
        try:
            self.index.drop_reservation(rid)
        except sqlite3.OperationalError as e:
            # On a full disk even a DELETE needs room in the WAL. The reservation then only
            # lowers this process's headroom until it exits (start-up drops it), and the
            # error that brought us here (ENOSPC while writing) stays the one reported.
            if "full" not in str(e):
                raise

    def disk_usage(self) -> tuple[int, int]:
        st = os.statvfs(self.layout.root)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def usage(self) -> Usage:
        free, total = self.disk_usage()
        return Usage(self.index.published_bytes(), self.index.reserved_bytes(), free, total)

    def protection(self, store: str, requester: tuple[tuple[str, str], ...]) -> Protection:
        pinned = tuple((u.store, u.prefix) for u in
                       (parse_url(url) for url, _ in self.index.pins()))
        return Protection(pinned=pinned, requester=requester)

    def _reserve(self, rid: str, size: int, store: str,
                 requester: tuple[tuple[str, str], ...]) -> bool:
        idx = self.index
        idx.begin()
        try:
            room = headroom(self.usage(), self.config.max_bytes, self.config.min_free_fraction)
            victims = choose_victims(size, room, self._candidates(),
                                     self.protection(store, requester))
            if victims is None:
                idx.rollback()
                return False
            for v in victims:
                self._evict_one(v.store, v.key)
            idx.add_reservation(rid, size)
            idx.commit()
            return True
        except BaseException:
            idx.rollback()
            raise

    def _candidates(self) -> Iterator[Candidate]:
        after: tuple[float, str, str] | None = None
        while batch := self.index.eviction_order(256, after):
            for e in batch:
                yield Candidate(e.store, e.key, e.size, e.atime)
            last = batch[-1]
            after = (last.atime, last.store, last.key)

    def _evict_one(self, store: str, key: str) -> None:
        url = parse_url(store + "/")
        files.unlink_published(self.layout, self.layout.store_segments(url), key)
        entry = self.index.remove(store, key)
        self.counters["evictions"] += 1
        self.counters["evicted_bytes"] += entry.size if entry else 0

    # -- datasets -----------------------------------------------------------------------
    async def prefetch(self, url: str, *, owner: str | None = None,
                       progress: Callable[[Progress], None] | None = None,
                       download: bool = True) -> PrefetchReport:
        from .prefetch import run_prefetch

        return await run_prefetch(self, parse_url(url).as_dataset(), owner, progress, download)

    async def fetch(self, url: str) -> FetchResult:
        """Make one object local now, ahead of any prefetch work; list it if not known."""
        parsed = parse_url(url)
        known, protect = await self.db(self._fetch_plan, parsed)
        info = known or await self._stat(parsed)
        return await self.ensure_current(parsed, info, PRIORITY_ON_DEMAND, protect)

    async def ensure_current(self, url: StoreURL, info: ObjectInfo, priority: int,
                             protect: tuple[tuple[str, str], ...],
                             on_new_version: Callable[[ObjectInfo], Awaitable[None]] | None = None,
                             ) -> FetchResult:
        """`ensure`, starting over on the object's new version each time it is replaced
        while being downloaded (at most `VERSION_RESTARTS` times: an object rewritten faster
        than it can be downloaded is reported, not chased forever)."""
        for restart in itertools.count():
            try:
                return await self.ensure(url, info, priority=priority, protect=protect)
            except VersionChangedError:
                if restart >= VERSION_RESTARTS:
                    raise
            self.counters["version_restarts"] += 1
            info = await self._stat(url)
            if on_new_version is not None:
                await on_new_version(info)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _stat(self, url: StoreURL) -> ObjectInfo:
        backend = await self.backend(url)
        return await with_retries(lambda: backend.stat(url.path), self.config.retry)

    def _known_info(self, url: StoreURL) -> ObjectInfo | None:
        entry = self.index.get(url.store, url.path)
        if entry is not None and entry.state == "ready":
            return ObjectInfo(entry.key, entry.size, entry.version)
        row = self.index.manifest_info(url.store, url.path)
        if row is None:
            return None
        key, size, version, md5 = row
        return ObjectInfo(key, size, version, Checksum("md5", md5) if md5 else None)

    def _fetch_plan(self, url: StoreURL
                    ) -> tuple[ObjectInfo | None, tuple[tuple[str, str], ...]]:
        """What the index knows of an object, and the datasets it belongs to: one trip."""
        return self._known_info(url), self._covering_datasets(url)

    def _covering_datasets(self, url: StoreURL) -> tuple[tuple[str, str], ...]:
        return tuple((d.store, d.prefix) for d in self.index.datasets()
                     if d.store == url.store and url.path.startswith(d.prefix))

    async def pin(self, url: str, owner: str) -> None:
        await self.db(self.index.pin, str(parse_url(url).as_dataset()), owner)

    async def unpin(self, url: str, owner: str) -> None:
        await self.db(self.index.unpin, str(parse_url(url).as_dataset()), owner)

    def snapshot_counters(self) -> dict[str, int]:
        integrity = self.counters["integrity_failures"] + self.downloader.integrity_failures
        return dict(self.counters, bytes_read=self.downloader.bytes_read,
                    retries=self.downloader.retries, integrity_failures=integrity)


def failure_of(key: str, error: BaseException) -> Failure:
    kind = getattr(error, "kind", type(error).__name__)
    return Failure(key, str(kind), redact(str(error)) or type(error).__name__)


def progress_add(p: Progress, objects: int = 0, nbytes: int = 0, failed: int = 0) -> Progress:
    return replace(p, objects_done=p.objects_done + objects, bytes_done=p.bytes_done + nbytes,
                   objects_failed=p.objects_failed + failed)
