"""Prefetching a dataset: list, plan, download what is missing, publish, report."""

from __future__ import annotations

import asyncio
import enum
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import keys as keymap
from ..backends.base import ObjectInfo
from ..errors import OverCapacityError, is_disk_full, kind_of, redact
from ..partition import Partition, share_ranges
from ..status import DatasetState, Failure, Progress
from ..store.store import Protect, Store
from ..urls import StoreURL
from .download import with_retries
from .fetch import PRIORITY_PREFETCH, Backends, Fetcher, Tally


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
    #: the dataset's saved listing was reused (no LIST request): see `listing_is_fresh`
    listing_reused: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


def listing_is_fresh(listed_at: float | None, now: float, max_age_s: float) -> bool:
    """Whether a listing that ended at `listed_at` (wall clock) may stand in for a new one at
    `now`: younger than `max_age_s`. A time ahead of `now` (the clock was set back) is not
    trusted."""
    return listed_at is not None and 0.0 <= now - listed_at < max_age_s


def failure_of(key: str, error: BaseException) -> Failure:
    return Failure(key, kind_of(error), redact(str(error)) or type(error).__name__)


class Outcome(enum.Enum):
    """What became of one object of a prefetch."""

    DOWNLOADED = "downloaded"
    #: someone else (another caller, another process) published it meanwhile
    LOCAL = "local"
    FAILED = "failed"
    #: over the byte budget: read through on demand
    NOT_CACHED = "not_cached"


@dataclass
class _Run:
    """One prefetch's working state (what it downloaded, what failed, its progress)."""

    ds: StoreURL
    progress: Progress
    report: Callable[[Progress], None]
    failed: list[Failure] = field(default_factory=list)
    not_cached: list[str] = field(default_factory=list)
    objects_downloaded: int = 0
    bytes_downloaded: int = 0

    def advance(self, info: ObjectInfo, outcome: Outcome) -> None:
        if outcome is Outcome.DOWNLOADED:
            self.objects_downloaded += 1
            self.bytes_downloaded += info.size
        local = outcome in (Outcome.DOWNLOADED, Outcome.LOCAL)
        self.progress = self.progress.add(
            objects=1, nbytes=info.size if local else 0, failed=int(outcome is Outcome.FAILED)
        )
        self.report(self.progress)


class Prefetcher:
    """Runs prefetches over one engine's store, backends and fetcher."""

    def __init__(self, store: Store, backends: Backends, fetcher: Fetcher, tally: Tally) -> None:
        self._store = store
        self._backends = backends
        self._fetcher = fetcher
        self._tally = tally

    async def run(
        self,
        ds: StoreURL,
        owner: str | None,
        report: Callable[[Progress], None],
        download: bool,
        shares: Sequence[Partition | None] = (None,),
        refresh: bool = False,
    ) -> PrefetchReport:
        """List `ds` (or reuse its saved listing while it is fresh, unless `refresh`),
        download what is missing of the union of `shares` (None: the whole dataset; a
        Partition: that member's share, see shardcache.partition), report."""
        started = time.monotonic()
        store, url = self._store, str(ds)
        report(Progress(url, 0, 0, started_at=time.time(), listed=False))
        saved = None if refresh else await self._fresh_listing(ds, owner)
        if saved is None:
            objects, refused = await self._list(ds)
            await store.call(store.record_listing, ds, objects, owner, refused)
        else:
            objects, refused = saved
        # The directory exists from the moment the dataset is known, empty or not, so that a
        # bind mount can be made before the first file arrives.
        local_dir = await store.call(store.make_dataset_dir, ds)
        local = await store.call(store.local_keys, ds, objects)
        wanted = [o for a, b in share_ranges(len(objects), shares) for o in objects[a:b]]
        todo = [o for o in wanted if o.key not in local]
        # objects outside every share asked for are left to on-demand reads: those of them
        # not local yet keep the dataset from being complete after this run
        local_outside = len(local) - (len(wanted) - len(todo))
        unplanned = len(objects) - len(wanted) - local_outside
        run = _Run(
            ds,
            Progress(
                url,
                len(objects),
                sum(o.size for o in objects),
                objects_done=len(local),
                bytes_done=sum(o.size for o in objects if o.key in local),
                started_at=time.time(),
            ),
            report,
        )
        report(run.progress)
        if download and todo:
            try:
                await self._download_all(run, todo)
            except asyncio.CancelledError:
                # SIGTERM or an abandoned request: say so in status instead of "downloading"
                await asyncio.shield(
                    store.call(
                        store.set_state, ds, DatasetState.INTERRUPTED, _errors(run.failed, refused)
                    )
                )
                raise
        await self._settle(run, _final_state(run, refused, download, todo, unplanned > 0), refused)
        return PrefetchReport(
            url=url,
            local_dir=local_dir,
            objects_total=len(objects),
            bytes_total=sum(o.size for o in objects),
            objects_downloaded=run.objects_downloaded,
            bytes_downloaded=run.bytes_downloaded,
            objects_already_local=len(local),
            refused=refused,
            failed=run.failed,
            not_cached=run.not_cached,
            seconds=time.monotonic() - started,
            listing_reused=saved is not None,
        )

    async def _fresh_listing(
        self, ds: StoreURL, owner: str | None
    ) -> tuple[list[ObjectInfo], list[keymap.KeyRefusal]] | None:
        """The dataset's saved listing if it is fresh enough to stand in for a new one."""
        store = self._store
        listed_at = await store.call(store.listed_at, ds)
        if not listing_is_fresh(listed_at, time.time(), store.config.listing_max_age_s):
            return None
        return await store.call(store.reuse_listing, ds, owner)

    async def _list(self, ds: StoreURL) -> tuple[list[ObjectInfo], list[keymap.KeyRefusal]]:
        """The dataset's objects whose keys can be paths, and the refused ones."""
        backend = await self._backends.get(ds)
        if hasattr(backend, "list_page"):
            # it lists in parallel key ranges and retries each page like a GET
            # (backends/parallel_list.py): retrying the whole listing too would multiply
            listing = await backend.list_objects(ds.prefix)
        else:
            listing = await with_retries(
                lambda: backend.list_objects(ds.prefix), self._store.config.retry
            )
        accepted, refused = keymap.plan_paths(o.key for o in listing)
        ok = set(accepted)
        # sorted: the shares of a partition are ranges of the sorted keys
        return sorted((o for o in listing if o.key in ok), key=lambda o: o.key), refused

    async def _settle(
        self, run: _Run, final: DatasetState, refused: list[keymap.KeyRefusal]
    ) -> None:
        """Store the run's final state and errors."""
        store = self._store
        try:
            await store.call(store.set_state, run.ds, final, _errors(run.failed, refused))
        except sqlite3.OperationalError as e:
            if not is_disk_full(e):
                raise
            # the disk is full: the files that were published stand, and the report is still
            # the truth; only the dataset's stored state could not be updated
            run.failed.append(
                Failure(
                    str(run.ds),
                    "over_capacity",
                    "the disk holding the "
                    "cache is full; the dataset's state in the index could "
                    "not be updated",
                )
            )

    async def _download_all(self, run: _Run, todo: list[ObjectInfo]) -> None:
        protect = ((run.ds.store, run.ds.prefix),)
        queue = iter(sorted(todo, key=lambda o: -o.size))  # big first: they bound the makespan

        async def worker() -> None:
            for info in queue:
                run.advance(info, await self._one(run, info, protect))

        n = min(self._store.config.max_concurrency, len(todo))
        # A TaskGroup, not gather: when the prefetch is cancelled, gather returns as soon as
        # the first worker ends cancelled, while its siblings are still cleaning up
        # (discarding their staging files); the group waits for every one of them.
        async with asyncio.TaskGroup() as group:
            for _ in range(n):
                group.create_task(worker())

    async def _one(self, run: _Run, info: ObjectInfo, protect: Protect) -> Outcome:
        store = self._store

        async def new_version(new: ObjectInfo) -> None:
            await store.call(store.update_manifest_row, run.ds, new)

        try:
            result = await self._fetcher.ensure_current(
                run.ds.child(info.key), info, PRIORITY_PREFETCH, protect, new_version
            )
        except Exception as e:  # one object's failure must not stop the others
            self._tally.objects_failed += 1
            if isinstance(e, OverCapacityError):
                self._tally.disk_full += 1
            run.failed.append(failure_of(info.key, e))
            return Outcome.FAILED
        if result.path is None:
            run.not_cached.append(info.key)
            return Outcome.NOT_CACHED
        return Outcome.DOWNLOADED if result.downloaded else Outcome.LOCAL


def _errors(failed: list[Failure], refused: list[keymap.KeyRefusal]) -> list[Failure]:
    """What status shows about a dataset's last run: failed keys first, then refused ones."""
    return [*failed, *(Failure(r.key, "unsafe_key", r.reason) for r in refused)]


def _final_state(
    run: _Run,
    refused: list[keymap.KeyRefusal],
    download: bool,
    todo: list[ObjectInfo],
    outside_shares: bool = False,
) -> DatasetState:
    if run.failed:
        return DatasetState.FAILED
    if run.not_cached or refused or (todo and not download) or outside_shares:
        return DatasetState.PARTIAL
    return DatasetState.COMPLETE
