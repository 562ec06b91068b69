"""Making one object local: single flight, the cross-process lock, room, download, publish.

`Fetcher.ensure` is the one path by which bytes become a published file. Within a process,
concurrent callers for one object share one download (the first leads, the others await its
future); across processes, an OFD lock per object (locks.py) makes the others find the
published copy when they get the lock. The retry budget of the whole object is one `Retry`
value (retry.py): requests inside the downloader, rounds and version restarts here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from ..backends.base import Backend, ObjectInfo
from ..config import Config
from ..errors import CacheError, IntegrityError, VersionChangedError
from ..retry import Level, Retry
from ..store import files
from ..store.store import Protect, Reservation, Store
from ..urls import StoreURL
from .download import Downloader, PartTracker, check_integrity, with_retries
from .locks import ObjectLock, PrioritySemaphore

T = TypeVar("T")
BackendFactory = Callable[[StoreURL, Config], Awaitable[Backend]]
#: called as fn(url, size, seconds) after each object this engine downloaded and published
DownloadObserver = Callable[[StoreURL, int, float], None]

#: priorities of request slots: an on-demand miss goes before prefetch work
PRIORITY_ON_DEMAND = 0
PRIORITY_PREFETCH = 1
#: request slots beyond `max_concurrency` that only on-demand reads may use: a prefetch keeps
#: all of its slots busy, and a reader blocked on a miss must not wait for one of them to end
ON_DEMAND_SLOTS = 8


@dataclass(frozen=True)
class FetchResult:
    key: str
    #: the published file, or None when the object could not be cached (read it through)
    path: Path | None
    downloaded: bool
    reason: str | None = None
    size: int = 0


@dataclass
class Tally:
    """The engine's running counters (mutable, inside the engine package; `EngineStats` is
    the frozen snapshot that leaves it)."""

    objects_downloaded: int = 0
    bytes_downloaded: int = 0
    integrity_failures: int = 0
    read_through: int = 0
    object_retries: int = 0
    version_restarts: int = 0
    objects_failed: int = 0
    disk_full: int = 0


class Backends:
    """One backend per store, opened on first use and shared."""

    def __init__(self, config: Config, factory: BackendFactory | None) -> None:
        self._config = config
        self._factory = factory
        self._open: dict[str, Backend] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, url: StoreURL) -> Backend:
        async with self._locks.setdefault(url.store, asyncio.Lock()):
            if url.store not in self._open:
                factory = self._factory
                if factory is None:
                    from ..backends.cloud import open_backend

                    factory = open_backend
                self._open[url.store] = await factory(url, self._config)
            return self._open[url.store]

    async def close(self) -> None:
        for backend in self._open.values():
            with contextlib.suppress(Exception):  # closing must not mask the caller's error
                await backend.close()
        self._open.clear()


class Fetcher:
    """Downloads objects for one engine into its store."""

    def __init__(self, config: Config, store: Store, backends: Backends, tally: Tally) -> None:
        self._config = config
        self._store = store
        self._backends = backends
        self._tally = tally
        self._inflight: dict[tuple[str, str], asyncio.Future[FetchResult]] = {}
        self._io = ThreadPoolExecutor(
            max(8, config.max_concurrency // 2), thread_name_prefix="shardcache-io"
        )
        slots = PrioritySemaphore(config.max_concurrency + ON_DEMAND_SLOTS, ON_DEMAND_SLOTS)
        self.downloader = Downloader(config, slots, self._io)
        self.observers: list[DownloadObserver] = []

    def shutdown(self) -> None:
        # Queued work is cleanup (discarding staging files) or a few file steps: let it run.
        self._io.shutdown(wait=True)

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def stat(self, url: StoreURL) -> ObjectInfo:
        backend = await self._backends.get(url)
        return await with_retries(lambda: backend.stat(url.path), self._config.retry)

    async def ensure_current(
        self,
        url: StoreURL,
        info: ObjectInfo,
        priority: int,
        protect: Protect,
        on_new_version: Callable[[ObjectInfo], Awaitable[None]] | None = None,
    ) -> FetchResult:
        """`ensure`, starting over on the object's new version each time it is replaced
        while being downloaded, as far as the restart budget of `Retry` goes."""
        retry: Retry | None = self._config.retry
        while True:
            try:
                return await self.ensure(url, info, priority, protect)
            except VersionChangedError as e:
                assert retry is not None
                retry = retry.increment(e, Level.RESTART)
                if retry is None:
                    raise
            self._tally.version_restarts += 1
            info = await self.stat(url)
            if on_new_version is not None:
                await on_new_version(info)

    async def ensure(
        self, url: StoreURL, info: ObjectInfo, priority: int, protect: Protect
    ) -> FetchResult:
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

    async def _ensure_locked(
        self, url: StoreURL, info: ObjectInfo, priority: int, protect: Protect
    ) -> FetchResult:
        layout = self._store.layout
        path = files.path_of(layout, layout.store_segments(url), info.key)
        # The lock comes first (one open and one fcntl, no thread hop); then one trip to the
        # index thread both checks for a published copy and reserves room for a download.
        lock = ObjectLock(layout.lock_path, url.store, info.key)
        await lock.acquire(timeout_s=self._config.read_timeout_s * 4)
        try:
            rid = uuid.uuid4().hex
            started = time.monotonic()
            try:
                state = await self._store.call(
                    self._store.check_and_reserve, rid, url, info, protect
                )
            except BaseException:  # cancelled while the thread may have reserved
                await asyncio.shield(self._store.call(self._store.drop_reservation, rid))
                raise
            if state is Reservation.LOCAL:
                return FetchResult(info.key, path, downloaded=False, size=info.size)
            if state is Reservation.OVER_CAPACITY:
                self._tally.read_through += 1
                return FetchResult(info.key, None, downloaded=False, reason="over_capacity")
            try:
                await self._download_and_publish(url, info, rid, priority)
            except BaseException:
                await asyncio.shield(self._store.call(self._store.drop_reservation, rid))
                raise
        finally:
            lock.release()
        self._tally.objects_downloaded += 1
        self._tally.bytes_downloaded += info.size
        for observe in self.observers:
            observe(url, info.size, time.monotonic() - started)
        return FetchResult(info.key, path, downloaded=True, size=info.size)

    async def _download_and_publish(
        self, url: StoreURL, info: ObjectInfo, rid: str, priority: int
    ) -> None:
        """Download into one staging file, in rounds that keep the parts already verified
        (see download.py), then publish; the staging file is discarded on any failure."""
        backend = await self._backends.get(url)
        # Created on the loop's thread on purpose: it is one open() and one flock() in a local
        # directory, and doing it in a worker thread opened a window in which a cancelled
        # download (SIGTERM) left a file behind that nobody would remove.
        staging = files.create_staging(self._store.layout)
        tracker = self.downloader.tracker(info)
        retry: Retry | None = self._config.retry
        try:
            while True:
                try:
                    fin = await self.downloader.fetch_into(
                        backend, info, staging, priority, tracker
                    )
                    check_integrity(info, fin.md5, fin.size)
                    break
                except CacheError as e:
                    assert retry is not None
                    retry = self._another_round(e, retry, tracker)
                    if retry is None:
                        raise
        except BaseException:
            await asyncio.shield(self.io(files.discard, self._store.layout, staging))
            raise
        await self._publish(url, info, staging, fin, rid)

    def _another_round(self, error: CacheError, retry: Retry, tracker: PartTracker) -> Retry | None:
        """The budget for another round of an object whose round failed with `error`."""
        mismatch = isinstance(error, IntegrityError) and not tracker.missing()
        if mismatch and not isinstance(error, VersionChangedError):
            # every part arrived but the whole does not match: nothing is worth keeping
            self._tally.integrity_failures += 1
            tracker.reset()
        after = retry.increment(error, Level.ROUND)
        if after is not None:
            self._tally.object_retries += 1
        return after

    async def _publish(
        self, url: StoreURL, info: ObjectInfo, staging: files.Staging, fin: files.Finished, rid: str
    ) -> None:
        store, layout = self._store, self._store.layout
        segments = layout.store_segments(url)
        try:
            # Inside the `try`: a cancellation while the steps run in the index thread must
            # still discard the staging file and the row this download wrote (and only that
            # row: it is matched by inode, so an older published version keeps its entry).
            await store.call(store.publish, url, info, fin, rid, staging)
        except BaseException as e:
            await asyncio.shield(store.call(store.forget_if_inode, url.store, info.key, fin.ino))
            await asyncio.shield(self.io(files.discard, layout, staging))
            if isinstance(e, OSError):
                raise CacheError(
                    f"{url}: cannot publish to {files.path_of(layout, segments, info.key)}: "
                    f"{e.strerror}; something other than a plain directory is in the way (run "
                    "`shardcache verify`)"
                ) from e
            raise
