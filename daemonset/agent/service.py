"""The agent's core: datasets, their owners and prefetch tasks, around one engine.

One engine owns the cache directory in this process. A registration pins the dataset for its
owner at once (so nothing it has is evicted) and starts a prefetch in the background; a dataset
has at most one prefetch task at a time, and a later owner joins the running one. A release
only unpins: the dataset stays cached, evictable once no owner is left, and a running prefetch
goes on (a failed pod's replacement usually asks for the same dataset moments later).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from typing import Any

from shardcache.engine import Engine, Progress
from shardcache.engine import maintenance as m
from shardcache.engine.adopt import scan_full
from shardcache.errors import CacheError, ConfigError, PolicyDeniedError, redact
from shardcache.store.layout import open_dir
from shardcache.urls import StoreURL, parse_url, require_cloud

from ..policy import Policy, validate_pod_url
from . import status as st
from . import statusfile
from .logs import kv
from .metrics import AgentCounters, Snapshot

log = logging.getLogger("shardcache.agent")

#: progress samples kept per dataset for the rate; at one per object, enough for the window
_SAMPLES = 256


class Agent:
    def __init__(self, engine: Engine, policy: Policy) -> None:
        self.engine = engine
        self.policy = policy
        self.counters = AgentCounters()
        self.ready = False
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._download: dict[str, bool] = {}
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._failures: dict[str, list[dict[str, str]]] = {}
        #: (pod uid, url) -> why the policy refused it; shown by GET /v1/datasets
        self.refusals: dict[tuple[str, str], dict[str, str]] = {}
        self._scan: asyncio.Task[None] | None = None
        #: per dataset, the task keeping DATASET_DIR/.shardcache/status.json current
        self._writers: dict[str, asyncio.Task[None]] = {}
        engine.download_observers.append(self._observed)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """The engine's open adopted the cache (quick); check every file in the background."""
        self.ready = True
        self._scan = asyncio.create_task(self._scan_full(), name="scan-full")

    async def _scan_full(self) -> None:
        t0 = time.monotonic()
        scan = functools.partial(scan_full, self.engine.layout, self.engine.index, remove=True)
        try:
            report = await self.engine.db(scan)
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
        self, url: str, owner: str, namespace: str | None, prefetch: str
    ) -> dict[str, Any]:
        ds = self.accept(url, namespace)
        if not isinstance(owner, str) or not owner or len(owner) > 253:
            raise ConfigError("owner must be a non-empty string (a pod UID, or cli-PID)")
        if prefetch not in ("all", "none"):
            raise ConfigError(f'prefetch must be "all" or "none", got {prefetch!r:.40}')
        name = str(ds)
        await self.engine.pin(name, owner)
        # the directory exists from registration on, so a bind mount can be made at once
        await self.engine.io(_make_dir, self.engine, ds)
        self._start(name, download=prefetch == "all")
        log.info(
            "registered", extra=kv(url=name, owner=owner, namespace=namespace, prefetch=prefetch)
        )
        doc = await self.status(name)
        assert doc is not None
        await self._write_status(name, doc)
        return doc

    def accept(self, url: str, namespace: str | None) -> StoreURL:
        """A cloud dataset URL with a clean path; with a namespace, also the tenancy policy."""
        if namespace is None:
            return validate_pod_url(url)
        decision = self.policy.check(namespace, url)
        if not decision.allowed:
            raise PolicyDeniedError(decision.reason)
        assert decision.url is not None
        return decision.url

    def _start(self, url: str, download: bool) -> None:
        self._download[url] = self._download.get(url, False) or download
        running = self.tasks.get(url)
        if running is not None and not running.done():
            return  # join it; a listing-only run sees `download` when it ends
        self._failures.pop(url, None)
        task = self.tasks[url] = asyncio.create_task(self._prefetch(url), name=f"prefetch {url}")
        self._writers[url] = asyncio.create_task(
            self._keep_status_file(url, task), name=f"status file {url}"
        )

    async def _prefetch(self, url: str) -> None:
        samples = self._samples[url] = deque(maxlen=_SAMPLES)

        def progress(p: Progress) -> None:
            samples.append((time.monotonic(), p.bytes_done))

        try:
            while True:
                download = self._download[url]
                report = await self.engine.prefetch(url, progress=progress, download=download)
                if download or not self._download[url]:
                    break
            for f in report.failed:
                self.counters.error(f.kind)
            log.info(
                "prefetch done",
                extra=kv(
                    url=url,
                    objects=report.objects_total,
                    downloaded=report.objects_downloaded,
                    bytes_downloaded=report.bytes_downloaded,
                    already_local=report.objects_already_local,
                    failed=len(report.failed),
                    not_cached=len(report.not_cached),
                    refused=len(report.refused),
                    seconds=round(report.seconds, 3),
                ),
            )
        except Exception as e:  # a prefetch must end in a status, whatever went wrong
            kind = getattr(e, "kind", type(e).__name__)
            self.counters.error(kind)
            self._failures[url] = [{"key": "", "kind": kind, "message": redact(str(e))}]
            log.error(
                "prefetch failed",
                extra=kv(url=url, kind=kind, error=redact(str(e))),
                exc_info=not isinstance(e, CacheError | OSError),
            )
        finally:
            self._download.pop(url, None)
            self.engine.live.pop(url, None)

    async def release(self, url: str, owner: str) -> dict[str, bool]:
        name = str(parse_url(url).as_dataset())
        await self.engine.unpin(name, owner)
        log.info("released", extra=kv(url=name, owner=owner))
        return {"released": True}

    async def release_owner(self, owner: str) -> list[str]:
        """Unpin every dataset `owner` holds (a pod that ended or was deleted)."""
        urls = [u for u, o in await self.pins() if o == owner]
        for url in urls:
            await self.release(url, owner)
        return urls

    async def pins(self) -> list[tuple[str, str]]:
        return list(await self.engine.db(self.engine.index.pins))

    def running(self, url: str) -> bool:
        task = self.tasks.get(url)
        return task is not None and not task.done()

    async def status(self, url: str) -> dict[str, Any] | None:
        name = str(parse_url(url).as_dataset())
        docs = await self._statuses(name)
        return docs[0] if docs else None

    async def statuses(self) -> list[dict[str, Any]]:
        return await self._statuses(None)

    async def _statuses(self, url: str | None) -> list[dict[str, Any]]:
        rows, pins = await self.engine.db(_rows_and_pins, self.engine, url)
        bases = {r["url"]: r for r in rows}
        for name in [*self.tasks, *self._failures]:
            if name not in bases and (url is None or name == url):
                owners = [o for u, o in pins if u == name]
                local_dir = str(self.engine.layout.dataset_dir(parse_url(name)))
                bases[name] = st.unknown(name, local_dir, owners)
        now = time.monotonic()
        return [self._merge(base, now) for _, base in sorted(bases.items())]

    def _merge(self, base: dict[str, Any], now: float) -> dict[str, Any]:
        name = base["url"]
        live = self.engine.live.get(name)
        running = self.running(name)
        live_doc = (
            None
            if live is None or not running
            else {
                "objects_total": live.objects_total,
                "bytes_total": live.bytes_total,
                "objects_done": live.objects_done,
                "bytes_done": live.bytes_done,
            }
        )
        doc = st.merge(
            base,
            running=running,
            live=live_doc,
            samples=list(self._samples.get(name, ())),
            now=now,
            agent_errors=self._failures.get(name, ()),
        )
        doc.pop("listed_at", None)
        if self._failures.get(name) and not running:
            doc["state"] = "failed"
        return doc

    # -- status file ----------------------------------------------------------------------
    async def _keep_status_file(self, url: str, prefetch: asyncio.Task[None]) -> None:
        """Rewrite the dataset's status file about once a second while `prefetch` runs, and
        once more after it ended (then `running` is false and the state is final)."""
        while True:
            done = prefetch.done()
            try:
                doc = await self.status(url)
            except Exception as e:  # e.g. the index is closing: skip this one write
                log.warning("status not read", extra=kv(url=url, error=redact(str(e))))
                doc = None
            if doc is not None:
                await self._write_status(url, doc)
            if done:
                return
            await asyncio.wait({prefetch}, timeout=statusfile.WRITE_INTERVAL_S)

    async def _write_status(self, url: str, doc: dict[str, Any]) -> None:
        record = statusfile.status_record(doc, time.time())
        try:
            await self.engine.io(
                statusfile.write_status_file, self.engine.layout, parse_url(url), record
            )
        except OSError as e:  # progress reporting must never fail a prefetch or a request
            self.counters.error("status_file")
            log.warning("status file not written", extra=kv(url=url, error=redact(str(e))))

    # -- objects --------------------------------------------------------------------------
    async def fetch(self, url: str) -> dict[str, Any]:
        parsed = parse_url(url)
        require_cloud(parsed)
        if not parsed.path or parsed.path.endswith("/"):
            raise ConfigError(f"{url} names a dataset, not an object; fetch one object key")
        if self.policy.rules is not None and not await self.engine.db(
            _pinned_cover, self.engine, parsed
        ):
            raise PolicyDeniedError(
                f"{parsed} is not inside a registered dataset; with a tenancy policy, only "
                "objects of datasets registered for a pod are fetched on demand"
            )
        try:
            result = await self.engine.fetch(url)
        except (CacheError, OSError) as e:
            self.counters.error(getattr(e, "kind", "os_error"))
            raise
        if result.path is None:
            self.counters.misses["client"] += 1
            return {"path": None, "reason": result.reason}
        bucket = self.counters.misses if result.downloaded else self.counters.hits
        bucket["client"] += 1
        return {"path": str(result.path)}

    def path(self, url: str) -> str:
        return str(self.engine.local_path(url))

    # -- maintenance ----------------------------------------------------------------------
    async def verify(self, url: str | None) -> dict[str, Any]:
        if url is not None:
            url = str(parse_url(url).as_dataset())
        report = await self.engine.db(functools.partial(m.verify, self.engine, url))
        return {
            "checked": report.checked,
            "ok": report.ok,
            "corrupt": report.corrupt,
            "missing": report.missing,
            "stray": report.stray,
            "clean": report.clean,
        }

    async def evict(self, url: str, force: bool) -> dict[str, Any]:
        name = str(parse_url(url).as_dataset())
        if self.running(name):
            raise CacheError(f"{name} is being prefetched right now; evict it once that ends")
        objects, nbytes = await self.engine.db(
            functools.partial(m.evict, self.engine, name, force=force)
        )
        self._failures.pop(name, None)
        try:
            await self.engine.io(statusfile.remove_status_file, self.engine.layout, parse_url(name))
        except OSError as e:
            log.warning("status file not removed", extra=kv(url=name, error=redact(str(e))))
        log.info("evicted", extra=kv(url=name, objects=objects, bytes=nbytes, force=force))
        return {"url": name, "objects_removed": objects, "bytes_removed": nbytes}

    # -- metrics --------------------------------------------------------------------------
    def _observed(self, url: StoreURL, size: int, seconds: float) -> None:
        self.counters.durations.observe(seconds)

    async def snapshot(self) -> Snapshot:
        docs = await self.statuses()
        usage = await self.engine.db(self.engine.usage)
        depth = sum(
            max(0, p.objects_total - p.objects_done)
            for u, p in list(self.engine.live.items())
            if self.running(u)
        )
        return Snapshot(
            engine=self.engine.snapshot_counters(),
            queue_depth=depth,
            used_bytes=usage.published,
            capacity_bytes=self.engine.config.max_bytes or usage.disk_total,
            datasets={
                d["url"]: (
                    d["objects_local"],
                    d["objects_total"],
                    d["bytes_local"],
                    d["bytes_total"],
                )
                for d in docs
            },
            ready=self.ready,
        )


def _make_dir(engine: Engine, ds: StoreURL) -> None:
    segments = engine.layout.store_segments(ds) + [p for p in ds.prefix.split("/") if p]
    with open_dir(engine.layout.data_dir, segments, create=True):
        pass


def _rows_and_pins(
    engine: Engine, url: str | None
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    rows = [s.as_json() for s in m.statuses(engine, url)]
    return rows, engine.index.pins()


def _pinned_cover(engine: Engine, url: StoreURL) -> bool:
    for name, _owner in engine.index.pins():
        ds = parse_url(name)
        if ds.store == url.store and url.path.startswith(ds.prefix):
            return True
    return False
