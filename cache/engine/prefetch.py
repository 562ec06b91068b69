"""Prefetching a dataset: list, plan, download what is missing, publish, report."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable

from .. import keys as keymap
from ..backends.base import Backend, ObjectInfo
from ..errors import CacheStateError, OverCapacityError
from ..store.layout import open_dir
from ..urls import StoreURL
from .download import with_retries
from .engine import (
    PRIORITY_PREFETCH,
    Engine,
    Failure,
    PrefetchReport,
    Progress,
    failure_of,
    progress_add,
)


async def run_prefetch(engine: Engine, ds: StoreURL, owner: str | None,
                       progress: Callable[[Progress], None] | None,
                       download: bool) -> PrefetchReport:
    started = time.monotonic()
    url = str(ds)
    backend = await engine.backend(ds)
    listing = await with_retries(lambda: backend.list_objects(ds.prefix), engine.config.retry)
    accepted, refused = keymap.plan_paths(o.key for o in listing)
    ok = set(accepted)
    objects = [o for o in listing if o.key in ok]
    await engine.db(_record_listing, engine, ds, objects, owner)
    # The directory exists from the moment the dataset is known, empty or not, so that a bind
    # mount can be made before the first file arrives.
    await engine.io(_make_dataset_dir, engine, ds)
    local = await engine.db(engine.local_keys, ds, objects)
    todo = [o for o in objects if o.key not in local]
    state = Progress(url, len(objects), sum(o.size for o in objects),
                     objects_done=len(local), bytes_done=sum(o.size for o in objects
                                                             if o.key in local),
                     started_at=time.time())
    engine.live[url] = state
    if progress:
        progress(state)
    failed: list[Failure] = []
    not_cached: list[str] = []
    downloaded = [0, 0]
    if download and todo:
        try:
            await _download_all(engine, backend, ds, todo, failed, not_cached, downloaded,
                                progress)
        except asyncio.CancelledError:
            # SIGTERM or an abandoned request: say so in status instead of "downloading"
            await asyncio.shield(engine.db(engine.index.set_dataset_state, url, "interrupted",
                                           _errors(failed, refused)))
            raise
    final = _final_state(failed, not_cached, refused, download, todo)
    try:
        await engine.db(engine.index.set_dataset_state, url, final, _errors(failed, refused))
    except sqlite3.OperationalError as e:
        if "full" not in str(e):
            raise
        # the disk is full: the files that were published stand, and the report below is
        # still the truth; only the dataset's stored state could not be updated
        failed.append(Failure(url, "over_capacity", "the disk holding the cache is full; "
                              "the dataset's state in the index could not be updated"))
    return PrefetchReport(
        url=url, local_dir=engine.layout.dataset_dir(ds), objects_total=len(objects),
        bytes_total=sum(o.size for o in objects), objects_downloaded=downloaded[0],
        bytes_downloaded=downloaded[1], objects_already_local=len(local), refused=refused,
        failed=failed, not_cached=not_cached, seconds=time.monotonic() - started)


def _errors(failed: list[Failure], refused: list[keymap.KeyRefusal]) -> list[dict[str, str]]:
    """What status shows about a dataset's last run: failed keys first, then refused ones."""
    errors = [{"key": f.key, "kind": f.kind, "message": f.message} for f in failed]
    errors += [{"key": r.key, "kind": "unsafe_key", "message": r.reason} for r in refused]
    return errors[:1000]


def _final_state(failed: list[Failure], not_cached: list[str],
                 refused: list[keymap.KeyRefusal], download: bool,
                 todo: list[ObjectInfo]) -> str:
    if failed:
        return "failed"
    if not_cached or refused or (todo and not download):
        return "partial"
    return "complete"


def _make_dataset_dir(engine: Engine, ds: StoreURL) -> None:
    segments = engine.layout.store_segments(ds) + [p for p in ds.prefix.split("/") if p]
    try:
        with open_dir(engine.layout.data_dir, segments, create=True):
            pass
    except OSError as e:
        # never followed, never replaced behind the operator's back: refuse and say how to fix
        raise CacheStateError(
            f"cannot use {engine.layout.dataset_dir(ds)} as the directory of {ds}: "
            f"{e.strerror}; a symbolic link or a file is in the way. Run `shardcache verify` "
            "(it removes links and files that are not the cache's), then prefetch again") from e


def _record_listing(engine: Engine, ds: StoreURL, objects: list[ObjectInfo],
                    owner: str | None) -> None:
    """Save the manifest and drop local files whose keys no longer exist remotely."""
    idx = engine.index
    idx.begin()
    try:
        url = str(ds)
        idx.save_manifest(url, ds.store, ds.prefix, objects, time.time())
        idx.set_dataset_state(url, "downloading", [])
        if owner:
            idx.pin(url, owner)
        listed = {o.key for o in objects}
        gone = [e.key for e in idx.entries(ds.store, ds.prefix) if e.key not in listed]
        for key in gone:
            engine._evict_one(ds.store, key)
        idx.commit()
    except BaseException:
        idx.rollback()
        raise


async def _download_all(engine: Engine, backend: Backend, ds: StoreURL,
                        todo: list[ObjectInfo], failed: list[Failure], not_cached: list[str],
                        downloaded: list[int],
                        progress: Callable[[Progress], None] | None) -> None:
    url = str(ds)
    protect = ((ds.store, ds.prefix),)
    queue = iter(sorted(todo, key=lambda o: -o.size))  # big first: they bound the makespan

    async def worker() -> None:
        for info in queue:
            outcome = await _one(engine, backend, ds, info, protect, failed, not_cached)
            if outcome == "downloaded":
                downloaded[0] += 1
                downloaded[1] += info.size
            local = outcome in ("downloaded", "local")
            engine.live[url] = progress_add(engine.live[url], objects=1,
                                            nbytes=info.size if local else 0,
                                            failed=int(outcome == "failed"))
            if progress:
                progress(engine.live[url])

    n = min(engine.config.max_concurrency, len(todo))
    # A TaskGroup, not gather: when the prefetch is cancelled, gather returns as soon as the
    # first worker ends cancelled, while its siblings are still cleaning up (discarding their
    # staging files); the group waits for every one of them.
    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(worker())


async def _one(engine: Engine, backend: Backend, ds: StoreURL, info: ObjectInfo,
               protect: tuple[tuple[str, str], ...], failed: list[Failure],
               not_cached: list[str]) -> str:
    """"downloaded", "local" (someone else did), "failed" or "not_cached" (over budget)."""
    target = ds.child(info.key)

    async def new_version(new: ObjectInfo) -> None:
        await engine.db(_update_manifest_row, engine, str(ds), new)

    try:
        result = await engine.ensure_current(target, info, PRIORITY_PREFETCH, protect,
                                             new_version)
    except Exception as e:  # one object's failure must not stop the others
        engine.counters["objects_failed"] += 1
        if isinstance(e, OverCapacityError):
            engine.counters["disk_full"] += 1
        failed.append(failure_of(info.key, e))
        return "failed"
    if result.path is None:
        not_cached.append(info.key)
        return "not_cached"
    return "downloaded" if result.downloaded else "local"


def _update_manifest_row(engine: Engine, url: str, info: ObjectInfo) -> None:
    engine.index.update_manifest_row(url, info)
