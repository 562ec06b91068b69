"""What the agent knows of the read-through views: their reports (open counts, failed opens)
and the manifest pages they are built from. Kept apart from service.py, which owns datasets
and prefetches; the agent holds one `ViewReports` and calls `manifest_page` for the API."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from shardcache.engine import DatasetStatus, Engine, Failure, ManifestPage
from shardcache.errors import NotFoundError, UnavailableError
from shardcache.status import ViewCounts
from shardcache.urls import StoreURL, parse_url

from .metrics import AgentCounters

#: failed opens kept per dataset for status, newest last
KEPT_FAILURES = 20


class ViewReports:
    def __init__(self, counters: AgentCounters) -> None:
        self.counters = counters
        #: dataset -> the last opens through its views that failed
        self.failures: dict[str, list[Failure]] = {}
        #: called with (dataset, failure as JSON, with the pod's UID) for each failed open
        #: reported (the pod watcher makes it an Event)
        self.observers: list[Callable[[str, dict[str, str]], object]] = []

    def report(self, url: str, delta: dict[str, int], failures: list[dict[str, str]]) -> None:
        """Open counts (a delta) and failed opens from a read-through view of `url`."""
        name = str(parse_url(url).as_dataset())
        self.counters.add_view(name, delta)
        if not failures:
            return
        kept = self.failures.setdefault(name, [])
        for f in failures[:KEPT_FAILURES]:
            failure = {k: str(f.get(k, ""))[:500] for k in ("key", "kind", "message", "pod")}
            kept.append(Failure.from_json(failure))
            for observe in self.observers:
                observe(name, failure)
        del kept[:-KEPT_FAILURES]

    def decorate(self, status: DatasetStatus) -> DatasetStatus:
        """The status with what its views reported: `view` counts, `open_failures`."""
        name = str(status.url)
        counts = self.counters.views.get(name)
        failures = self.failures.get(name)
        if counts is None and not failures:
            return status
        return dataclasses.replace(
            status,
            view=None if counts is None else ViewCounts(**counts),
            open_failures=tuple(failures or ()),
        )


async def manifest_page(
    engine: Engine, ds: StoreURL, after: str, limit: int, *, known: bool
) -> ManifestPage:
    """One page of a dataset's manifest (see `Engine.manifest`). `known`: the agent has the
    dataset, registered but not listed yet (answered `unavailable`: retry shortly)."""
    page = await engine.manifest(ds, after=after, limit=limit)
    if page is not None:
        return page
    if known:
        raise UnavailableError(f"{ds} is not listed yet; retry in a moment")
    raise NotFoundError(f"the agent does not know the dataset {ds}; register it first")
