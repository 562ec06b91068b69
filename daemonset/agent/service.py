"""The agent's core: datasets, their owners and prefetch tasks, around one engine.

One engine owns the cache directory in this process. A registration pins the dataset for its
owner at once (so nothing it has is evicted) and starts a prefetch in the background; a dataset
has at most one prefetch task at a time, and a later owner joins the running one. A release
only unpins: the dataset stays cached, evictable once no owner is left, and a running prefetch
goes on (a failed pod's replacement usually asks for the same dataset moments later).

A registration may name the owner's share of a partitioned dataset (`I/N`): the prefetch
fetches the union of the registered shares (shares.py), and goes round again when a new
registration widens it; local objects are skipped, so nothing is fetched twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace

from shardcache.engine import (
    DatasetStatus,
    Engine,
    Evicted,
    Failure,
    ManifestPage,
    Progress,
    VerifyReport,
)
from shardcache.errors import CacheError, ConfigError, PolicyDeniedError, kind_of, redact
from shardcache.partition import Partition
from shardcache.urls import StoreURL, parse_url, require_cloud

from ..policy import WILDCARD, ReloadingPolicy, validate_pod_url
from . import status as st
from .logs import kv
from .metrics import AgentCounters, Snapshot
from .shares import Shares
from .views import ViewReports, manifest_page

log = logging.getLogger("shardcache.agent")

#: progress samples kept per dataset for the rate; at one per object, enough for the window
_SAMPLES = 256
#: while a prefetch runs, the status file is rewritten at most this often: an init container
#: polls it about once a second, and a write per finished object would cost a rename per object
STATUS_FILE_INTERVAL_S = 1.0


class Agent:
    def __init__(self, engine: Engine, policy: ReloadingPolicy) -> None:
        self.engine = engine
        self.policy = policy
        self.counters = AgentCounters()
        self.ready = False
        self.tasks: dict[StoreURL, asyncio.Task[None]] = {}
        self._download: dict[StoreURL, bool] = {}
        #: datasets whose next prefetch run must list again (a registration asked `refresh`)
        self._refresh: set[StoreURL] = set()
        #: each owner's share of each dataset; a prefetch fetches their union
        self.shares = Shares()
        self._samples: dict[StoreURL, deque[tuple[float, int]]] = {}
        self._failures: dict[StoreURL, tuple[Failure, ...]] = {}
        #: (pod uid, url) -> why the policy refused it; shown by GET /v1/datasets
        self.refusals: dict[tuple[str, str], dict[str, str]] = {}
        #: reports of the read-through views (open counts, failed opens)
        self.views = ViewReports(self.counters)
        self._scan: asyncio.Task[None] | None = None
        #: per dataset, the task keeping CACHE/status/DIGEST/status.json current
        self._writers: dict[StoreURL, asyncio.Task[None]] = {}
        engine.observe_downloads(self._observed)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """The engine's open adopted the cache (quick); check every file in the background."""
        self.ready = True
        self._scan = asyncio.create_task(self._scan_full(), name="scan-full")

    async def _scan_full(self) -> None:
        t0 = time.monotonic()
        try:
            report = await self.engine.scan()
        except (CacheError, OSError) as e:
            self.counters.error(getattr(e, "kind", "scan"))
            log.error("full scan failed", extra=kv(error=redact(str(e))))
            return
        log.info(
            "full scan done",
            extra=kv(
                adopted=report.adopted,
                missing=len(report.missing),
                changed=len(report.changed),
                stray=len(report.stray),
                seconds=round(time.monotonic() - t0, 3),
            ),
        )

    async def shutdown(self) -> None:
        """Cancel every prefetch and wait for them: staging files are discarded by the engine,
        nothing partial is published; pins stay, so the next start keeps the data."""
        tasks = [t for t in [*self.tasks.values(), self._scan] if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # the writers see their prefetch end and record the final state; a bound keeps a
        # stuck disk from holding up the shutdown
        writers = [t for t in self._writers.values() if not t.done()]
        if writers:
            _, late = await asyncio.wait(writers, timeout=2.0)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- datasets -------------------------------------------------------------------------
    async def register(
        self,
        url: str,
        owner: str,
        namespace: str | None,
        prefetch: str,
        partition: Partition | None = None,
        *,
        refresh: bool = False,
    ) -> DatasetStatus:
        ds = self.accept(url, namespace)
        if not isinstance(owner, str) or not owner or len(owner) > 253:
            raise ConfigError("owner must be a non-empty string (a pod UID, or cli-PID)")
        if prefetch not in ("all", "none"):
            raise ConfigError(f'prefetch must be "all" or "none", got {prefetch!r:.40}')
        self.shares.add(ds, owner, partition)
        # pinning also creates the directory, so a bind mount can be made at once
        await self.engine.pin(ds, owner)
        if refresh:  # the next run lists again, even if a running one reused a listing
            self._refresh.add(ds)
        self._start(ds, download=prefetch == "all")
        log.info(
            "registered",
            extra=kv(
                url=str(ds),
                owner=owner,
                namespace=namespace,
                prefetch=prefetch,
                partition=str(partition) if partition else "all",
            ),
        )
        status = await self._status(ds)
        assert status is not None
        await self._write_status(status)
        return status

    def accept(self, url: str, namespace: str | None) -> StoreURL:
        """A cloud dataset URL with a clean path that the tenancy policy allows: for the
        namespace, or without one (an operator outside a cluster) for the `"*"` entry. In
        cluster mode every registration names the namespace it is for."""
        if namespace is None and self.policy.source.cluster:
            raise ConfigError(
                "in cluster mode a registration needs the namespace it is for (the CSI plugin "
                "and the pod watcher send the pod's)"
            )
        validate_pod_url(url)  # a malformed URL is a ConfigError, not a policy matter
        decision = self.policy.check(namespace or WILDCARD, url)
        if not decision.allowed:
            raise PolicyDeniedError(decision.reason)
        assert decision.url is not None
        return decision.url

    def _start(self, ds: StoreURL, download: bool) -> None:
        self._download[ds] = self._download.get(ds, False) or download
        running = self.tasks.get(ds)
        if running is not None and not running.done():
            return  # join it; a listing-only run sees `download` when it ends
        self._failures.pop(ds, None)
        task = self.tasks[ds] = asyncio.create_task(self._prefetch(ds), name=f"prefetch {ds}")
        self._writers[ds] = asyncio.create_task(
            self._keep_status_file(ds, task), name=f"status file {ds}"
        )

    async def _prefetch(self, ds: StoreURL) -> None:
        samples = self._samples[ds] = deque(maxlen=_SAMPLES)

        def progress(p: Progress) -> None:
            samples.append((time.monotonic(), p.bytes_done))

        try:
            while True:
                download = self._download[ds]
                shares = self.shares.union(ds)
                refresh = ds in self._refresh
                self._refresh.discard(ds)
                report = await self.engine.prefetch(
                    ds, progress=progress, download=download, shares=shares, refresh=refresh
                )
                if (
                    (download or not self._download[ds])
                    and not self.shares.widens(ds, shares)
                    and ds not in self._refresh
                ):
                    break
            for f in report.failed:
                self.counters.error(f.kind)
            log.info(
                "prefetch done",
                extra=kv(
                    url=str(ds),
                    objects=report.objects_total,
                    downloaded=report.objects_downloaded,
                    bytes_downloaded=report.bytes_downloaded,
                    already_local=report.objects_already_local,
                    failed=len(report.failed),
                    not_cached=len(report.not_cached),
                    refused=len(report.refused),
                    listing_reused=report.listing_reused,
                    seconds=round(report.seconds, 3),
                ),
            )
        except Exception as e:  # a prefetch must end in a status, whatever went wrong
            kind = kind_of(e)
            self.counters.error(kind)
            self._failures[ds] = (Failure("", kind, redact(str(e))),)
            log.error(
                "prefetch failed",
                extra=kv(url=str(ds), kind=kind, error=redact(str(e))),
                exc_info=not isinstance(e, CacheError | OSError),
            )
        finally:
            self._download.pop(ds, None)

    async def release(self, url: str, owner: str) -> dict[str, bool]:
        ds = parse_url(url).as_dataset()
        await self.engine.unpin(ds, owner)
        # the share stops counting for what is prefetched next; what is local stays
        self.shares.drop(ds, owner)
        log.info("released", extra=kv(url=str(ds), owner=owner))
        return {"released": True}

    async def release_owner(self, owner: str) -> list[str]:
        """Unpin every dataset `owner` holds (a pod that ended or was deleted)."""
        urls = [u for u, o in await self.pins() if o == owner]
        for url in urls:
            await self.release(url, owner)
        return urls

    async def pins(self) -> list[tuple[str, str]]:
        return [(str(ds), owner) for ds, owner in await self.engine.pins()]

    def running(self, ds: StoreURL) -> bool:
        task = self.tasks.get(ds)
        return task is not None and not task.done()

    async def status(self, url: str) -> DatasetStatus | None:
        return await self._status(parse_url(url).as_dataset())

    async def _status(self, ds: StoreURL) -> DatasetStatus | None:
        found = await self._statuses(ds)
        return found[0] if found else None

    async def statuses(self) -> list[DatasetStatus]:
        return await self._statuses(None)

    async def _statuses(self, ds: StoreURL | None) -> list[DatasetStatus]:
        if ds is None:
            found = {s.url: s for s in await self.engine.statuses()}
        else:
            one = await self.engine.status(ds)
            found = {} if one is None else {ds: one}
        pins: list[tuple[StoreURL, str]] | None = None
        for url in [*self.tasks, *self._failures]:
            if url not in found and (ds is None or url == ds):
                pins = await self.engine.pins() if pins is None else pins
                owners = [o for u, o in pins if u == url]
                found[url] = st.unknown(url, self.engine.local_path(url), owners)
        now = time.monotonic()
        return [
            replace(
                self.views.decorate(
                    st.shown(
                        found[u],
                        running=self.running(u),
                        samples=list(self._samples.get(u, ())),
                        now=now,
                        agent_errors=self._failures.get(u, ()),
                    )
                ),
                shares=tuple(
                    [await self.engine.share_status(u, p) for p in self.shares.partitions(u)]
                ),
            )
            for u in sorted(found)
        ]

    # -- status file ----------------------------------------------------------------------
    async def _keep_status_file(self, ds: StoreURL, prefetch: asyncio.Task[None]) -> None:
        """Rewrite the dataset's status file about once a second while `prefetch` runs, and
        once more after it ended (then `running` is false and the state is final)."""
        while True:
            done = prefetch.done()
            try:
                status = await self._status(ds)
            except Exception as e:  # e.g. the index is closing: skip this one write
                log.warning("status not read", extra=kv(url=str(ds), error=redact(str(e))))
                status = None
            if status is not None:
                await self._write_status(status)
            if done:
                return
            await asyncio.wait({prefetch}, timeout=STATUS_FILE_INTERVAL_S)

    async def _write_status(self, status: DatasetStatus) -> None:
        try:
            await self.engine.write_status(status)
        except OSError as e:  # progress reporting must never fail a prefetch or a request
            self.counters.error("status_file")
            log.warning(
                "status file not written", extra=kv(url=str(status.url), error=redact(str(e)))
            )

    # -- objects --------------------------------------------------------------------------
    async def fetch(self, url: str) -> dict[str, str | None]:
        parsed = parse_url(url)
        require_cloud(parsed)
        if not parsed.path or parsed.path.endswith("/"):
            raise ConfigError(f"{url} names a dataset, not an object; fetch one object key")
        if self.policy.current().rules is not None and not await self.engine.covers(parsed):
            raise PolicyDeniedError(
                f"{parsed} is not inside a registered dataset; with a tenancy policy, only "
                "objects of datasets registered for a pod are fetched on demand"
            )
        try:
            result = await self.engine.fetch(parsed)
        except (CacheError, OSError) as e:
            self.counters.error(getattr(e, "kind", "os_error"))
            raise
        if result.path is None:
            self.counters.misses["client"] += 1
            return {"path": None, "reason": result.reason}
        bucket = self.counters.misses if result.downloaded else self.counters.hits
        bucket["client"] += 1
        return {"path": str(result.path)}

    async def manifest(self, url: str, after: str, limit: int) -> ManifestPage:
        ds = parse_url(url).as_dataset()
        known = ds in self.tasks or ds in self._failures
        return await manifest_page(self.engine, ds, after, limit, known=known)

    def path(self, url: str) -> str:
        return str(self.engine.local_path(parse_url(url)))

    # -- maintenance ----------------------------------------------------------------------
    async def verify(self, url: str | None) -> VerifyReport:
        return await self.engine.verify(None if url is None else parse_url(url).as_dataset())

    async def evict(self, url: str, force: bool) -> Evicted:
        ds = parse_url(url).as_dataset()
        if self.running(ds):
            raise CacheError(f"{ds} is being prefetched right now; evict it once that ends")
        evicted = await self.engine.evict(ds, force=force)
        self._failures.pop(ds, None)
        log.info(
            "evicted",
            extra=kv(
                url=str(ds),
                objects=evicted.objects_removed,
                bytes=evicted.bytes_removed,
                force=force,
            ),
        )
        return evicted

    # -- metrics --------------------------------------------------------------------------
    def _observed(self, url: StoreURL, size: int, seconds: float) -> None:
        self.counters.durations.observe(seconds)

    async def snapshot(self) -> Snapshot:
        docs = await self.statuses()
        usage = await self.engine.usage()
        stats = self.engine.stats()
        return Snapshot(
            engine=stats,
            queue_depth=stats.objects_queued,
            used_bytes=usage.published,
            capacity_bytes=self.engine.config.max_bytes or usage.disk_total,
            datasets={
                str(d.url): (d.objects_local, d.objects_total, d.bytes_local, d.bytes_total)
                for d in docs
            },
            ready=self.ready,
            shares={
                (str(d.url), str(s.partition)): (
                    s.objects_local,
                    s.objects_total,
                    s.bytes_local,
                    s.bytes_total,
                )
                for d in docs
                for s in d.shares
            },
        )
