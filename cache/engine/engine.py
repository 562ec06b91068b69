"""The engine: one per cache directory per process; many may share a directory safely.

`Engine` is the only way into the cache. It is async and owns its resources explicitly
(`async with Engine(config) as engine`): a `Store` (the directory, its index and the one thread
that touches it), a backend per object store, a pool of threads for file I/O. Its verbs take a
parsed `StoreURL` and return frozen values (status.py); nobody reaches into its parts or runs
functions on its threads. Cross-process safety comes from the index's transactions and from
per-object OFD locks (see locks.py), so the CLI, several training processes and the agent can
point at one cache directory and each object is still downloaded once.

    open / close / async with       lifecycle (open adopts what a previous run left)
    prefetch(ds, owner=, progress=, download=, shares=) -> PrefetchReport
    share_status(ds, partition) -> ShareStatus   one member's share of a partitioned dataset
    fetch(object_url) -> FetchResult      one object now, ahead of prefetch work
    lookup(object_url) -> ObjectInfo | None   what the index knows of it, no store request
    manifest(ds, after=, limit=) -> ManifestPage | None   the last listing, a page at a time
    status(ds) -> DatasetStatus | None;  statuses() -> list[DatasetStatus]
    verify(ds | None, repair=) -> VerifyReport;  evict(ds, force=) -> Evicted
    scan() -> AdoptReport                 the full start-up check (the agent runs it)
    pin / unpin / pins / covers           owners of datasets, and the tenancy check
    write_status                          the dataset's status file (CACHE/status/DIGEST/)
    local_path(url) -> Path;  usage() -> Usage;  stats() -> EngineStats
    observe_downloads(fn)                 a host's hook on each download (the agent's metrics)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..backends.base import ObjectInfo
from ..config import Config
from ..errors import CacheError
from ..partition import Partition
from ..policy import Usage
from ..reports import EngineStats, Evicted, ManifestPage, VerifyReport
from ..status import DatasetState, DatasetStatus, Progress, ShareStatus, with_progress
from ..store import maintenance, statusfile
from ..store.adopt import AdoptReport, scan_full
from ..store.store import Store
from ..urls import StoreURL
from .fetch import (
    PRIORITY_ON_DEMAND,
    BackendFactory,
    Backends,
    DownloadObserver,
    Fetcher,
    FetchResult,
    Tally,
)
from .prefetch import Prefetcher, PrefetchReport

T = TypeVar("T")


class Engine:
    """Prefetches datasets and fetches objects into a local, verified mirror."""

    def __init__(self, config: Config, backend_factory: BackendFactory | None = None) -> None:
        self.config = config
        self._store = Store(config)
        self._tally = Tally()
        self._backends = Backends(config, backend_factory)
        self._fetcher = Fetcher(config, self._store, self._backends, self._tally)
        self._prefetcher = Prefetcher(self._store, self._backends, self._fetcher, self._tally)
        #: the prefetches running in this engine, as they advance
        self._live: dict[StoreURL, Progress] = {}
        self._opened = False

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Prepare the cache directory and adopt what a previous run left behind."""
        await self._store.call(self._store.open)
        self._opened = True

    async def close(self) -> None:
        await self._backends.close()
        if self._opened:
            await self._store.call(self._store.close)
            self._opened = False
        self._fetcher.shutdown()
        self._store.shutdown()

    @property
    def root(self) -> Path:
        """The cache directory."""
        return self._store.layout.root

    def local_path(self, url: StoreURL) -> Path:
        """Local directory of a dataset URL (ending in / or naming a bucket) or file of a key,
        whether or not it is local yet."""
        return self._store.layout.local_path(url)

    def observe_downloads(self, observer: DownloadObserver) -> None:
        """Call `observer(url, size, seconds)` after each object this engine downloaded and
        published: how a host (the agent's histogram) sees downloads without the engine
        knowing about metrics."""
        self._fetcher.observers.append(observer)

    # -- datasets -------------------------------------------------------------------------
    async def prefetch(
        self,
        ds: StoreURL,
        *,
        owner: str | None = None,
        progress: Callable[[Progress], None] | None = None,
        download: bool = True,
        shares: tuple[Partition | None, ...] = (None,),
        refresh: bool = False,
    ) -> PrefetchReport:
        """List the dataset `ds`, download what is missing (unless not `download`), publish,
        and report; `owner` also pins it. `progress` sees every step. With `shares`, only
        the union of those members' shares is downloaded (docs/partitions.md). A listing
        younger than `config.listing_max_age_s` is reused instead of listing again, unless
        `refresh`."""
        ds = ds.as_dataset()

        def report(p: Progress) -> None:
            self._live[ds] = p
            if progress is not None and p.listed:
                progress(p)

        try:
            return await self._prefetcher.run(ds, owner, report, download, shares, refresh)
        finally:
            self._live.pop(ds, None)

    async def share_status(self, ds: StoreURL, share: Partition) -> ShareStatus:
        """How much of member `share`'s part of the dataset is local (`listed` False until
        the dataset has been listed)."""
        return await self._store.call(self._store.share_status, ds.as_dataset(), share)

    async def fetch(self, url: StoreURL) -> FetchResult:
        """Make one object local now, ahead of any prefetch work; list it if not known."""
        known, protect = await self._store.call(self._store.known_info, url)
        info = known or await self._fetcher.stat(url)
        return await self._fetcher.ensure_current(url, info, PRIORITY_ON_DEMAND, protect)

    async def lookup(self, url: StoreURL) -> ObjectInfo | None:
        """What the cache knows of the object `url` (its published copy, else its row in a
        dataset's manifest), without asking the store; None when it knows nothing."""
        known, _ = await self._store.call(self._store.known_info, url)
        return known

    async def manifest(
        self, ds: StoreURL, *, after: str = "", limit: int = 10_000
    ) -> ManifestPage | None:
        """Up to `limit` objects of the dataset's last listing after the key `after` (relative
        to its prefix), in key order; None while it has never been listed."""
        return await self._store.call(self._store.manifest_page, ds.as_dataset(), after, limit)

    async def status(self, ds: StoreURL) -> DatasetStatus | None:
        """The dataset's status (with the progress of a prefetch running in this engine), or
        None when it is neither in the cache nor being prefetched here."""
        found = await self._statuses(ds.as_dataset())
        return found[0] if found else None

    async def statuses(self) -> list[DatasetStatus]:
        """Every dataset of the cache, and those being listed here for the first time."""
        return await self._statuses(None)

    async def _statuses(self, ds: StoreURL | None) -> list[DatasetStatus]:
        rows = await self._store.call(maintenance.statuses, self._store, ds)
        known = {r.url: r for r in rows}
        live = {u: p for u, p in self._live.items() if ds is None or u == ds}
        if set(live) - set(known):  # listed for the first time: the index has no row yet
            pins = await self.pins()
            for url in set(live) - set(known):
                known[url] = DatasetStatus(
                    url,
                    self.local_path(url),
                    DatasetState.LISTING,
                    owners=tuple(o for u, o in pins if u == url),
                )
        for url, progress in live.items():
            known[url] = with_progress(known[url], progress)
        return [known[u] for u in sorted(known)]

    async def verify(self, ds: StoreURL | None, *, repair: bool = True) -> VerifyReport:
        """Check every published file of `ds` (or of the whole cache) against the index:
        type, identity, size and MD5; with `repair`, remove damaged and stray files so that
        the next prefetch fetches exactly those again."""
        target = ds.as_dataset() if ds is not None else None
        return await self._store.call(maintenance.verify, self._store, target, repair)

    async def evict(self, ds: StoreURL, *, force: bool = False) -> Evicted:
        """Remove a dataset's files, its status file, and forget it. Refuses a pinned dataset
        unless `force`, and one that this engine is prefetching."""
        ds = ds.as_dataset()
        if ds in self._live:
            raise CacheError(f"{ds} is being prefetched right now; evict it once that ends")
        objects, nbytes = await self._store.call(maintenance.evict, self._store, ds, force)
        # the dataset is gone either way; a status file that cannot be removed is replaced at
        # its next registration
        with contextlib.suppress(OSError):
            await self._fetcher.io(statusfile.remove_status_file, self._store.layout, ds)
        return Evicted(ds, objects, nbytes)

    async def scan(self) -> AdoptReport:
        """Compare every row with its file and every file with the index (stat only), and
        remove what does not match (see adopt.py): the check a long-lived host runs once in
        the background after `open`."""
        return await self._store.call(
            lambda: scan_full(self._store.layout, self._store.index, remove=True)
        )

    # -- owners ---------------------------------------------------------------------------
    async def pin(self, ds: StoreURL, owner: str) -> Path:
        """Pin the dataset for `owner` (nothing of it is evicted while pinned) and create its
        directory, so a bind mount can be made before the first file arrives. A `.shardcache/`
        status directory that an older agent left in it goes (statusfile.sweep_legacy)."""
        ds = ds.as_dataset()
        await self._store.call(self._store.pin, ds, owner)
        path = await self._store.call(self._store.make_dataset_dir, ds)
        with contextlib.suppress(OSError):  # a leftover is cosmetic: it never fails a pin
            await self._store.call(self._sweep_legacy_status, ds)
        return path

    def _sweep_legacy_status(self, ds: StoreURL) -> int:
        """On the store's thread: the index says which names there are objects of `ds`."""
        legacy = ds.prefix + statusfile.LEGACY_DIR + "/"
        known = self._store.index.child_names(ds.store, legacy)
        return statusfile.sweep_legacy(self._store.layout, ds, known)

    async def unpin(self, ds: StoreURL, owner: str) -> None:
        await self._store.call(self._store.unpin, ds.as_dataset(), owner)

    async def pins(self) -> list[tuple[StoreURL, str]]:
        """(dataset, owner) of every pin, in order."""
        return await self._store.call(self._store.pins)

    async def covers(self, url: StoreURL) -> bool:
        """Whether the object `url` lies inside a dataset that some owner has pinned."""
        return await self._store.call(self._store.covers, url)

    # -- the status file ------------------------------------------------------------------
    async def write_status(self, status: DatasetStatus) -> None:
        """Replace `CACHE/status/DIGEST/status.json` with `status` (see statusfile.py)."""
        record = statusfile.status_record(status, time.time())
        await self._fetcher.io(statusfile.write_status_file, self._store.layout, status.url, record)

    # -- numbers --------------------------------------------------------------------------
    async def usage(self) -> Usage:
        return await self._store.call(self._store.usage)

    def stats(self) -> EngineStats:
        """A frozen snapshot of this engine's counters."""
        t, d, s = self._tally, self._fetcher.downloader, self._store
        return EngineStats(
            objects_downloaded=t.objects_downloaded,
            bytes_downloaded=t.bytes_downloaded,
            evictions=s.evictions,
            evicted_bytes=s.evicted_bytes,
            integrity_failures=t.integrity_failures + d.integrity_failures,
            read_through=t.read_through,
            object_retries=t.object_retries,
            version_restarts=t.version_restarts,
            objects_failed=t.objects_failed,
            disk_full=t.disk_full,
            bytes_read=d.bytes_read,
            retries=d.retries,
            objects_queued=sum(
                max(0, p.objects_total - p.objects_done) for p in self._live.values()
            ),
        )
