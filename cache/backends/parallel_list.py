"""The thin driver of a parallel listing: workers ask `ListingPlan` what to list next.

A store that can start a listing after any key (S3 `StartAfter`, GCS `startOffset`) exposes
`list_page`; `list_parallel` then lists a prefix with `concurrency` requests in flight, each
page retried on its own like a GET (a 503 costs that page, not the listing). The decisions
(where ranges start, which range to split) live in `shardcache.listing_plan`.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ..listing_plan import ListingPlan, seed_ranges
from ..retry import Level, Retry
from .base import ObjectInfo

T = TypeVar("T")

#: keys per page: the most S3 and GCS return
PAGE_KEYS = 1000


@dataclass(frozen=True)
class Page:
    """One LIST response: objects (placeholders already dropped), the sub-prefixes a
    delimiter listing names, and whether more keys follow."""

    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    #: the last key the store returned, placeholders included (where the next page starts)
    last_key: str | None = None


class PageLister(Protocol):
    async def list_page(self, prefix: str, start_after: str, delimiter: str, max_keys: int) -> Page:
        """Keys under `prefix` greater than `start_after` (`start_after == prefix`: from the
        first key), at most `max_keys`, ascending; with `delimiter`, grouped sub-prefixes."""
        ...


@dataclass
class ListingStats:
    """What a listing cost: pages asked for (retries included), ranges split, retries, and
    `depth`, the most pages one worker asked for in series: the listing's critical path in
    round trips, which sets its time when the client's CPU does not."""

    requests: int = 0
    depth: int = 0
    steals: int = 0
    retries: int = 0
    ranges: list[int] = field(default_factory=list)


async def _retried(call: Callable[[], Awaitable[T]], retry: Retry, stats: ListingStats) -> T:
    """`call()` with the request budget of `retry`, as every GET has (`Level.REQUEST`)."""
    budget: Retry | None = retry
    while True:
        try:
            stats.requests += 1
            return await call()
        except Exception as e:
            assert budget is not None
            after = budget.increment(e, Level.REQUEST)
            if after is None:
                raise
            stats.retries += 1
            await asyncio.sleep(budget.backoff_s(random.random()))
            budget = after


async def list_parallel(
    lister: PageLister,
    prefix: str,
    concurrency: int,
    retry: Retry,
    stats: ListingStats | None = None,
    page_keys: int = PAGE_KEYS,
) -> list[ObjectInfo]:
    """Every object under `prefix`, in key order, listed `concurrency` pages at a time."""
    stats = stats if stats is not None else ListingStats()
    first = await _retried(lambda: lister.list_page(prefix, prefix, "", page_keys), retry, stats)
    if not first.truncated:
        return first.objects  # a small prefix costs one request, as a plain listing does
    # Seed the ranges from the store's own directories (one delimiter listing); the first
    # page is kept as the first range's first page.
    seed = await _retried(lambda: lister.list_page(prefix, prefix, "/", page_keys), retry, stats)
    bounds = [
        b
        for b in seed.prefixes + [o.key for o in seed.objects]
        if first.last_key is None or b > first.last_key
    ]
    plan = ListingPlan(prefix, seed_ranges(prefix, bounds, max(concurrency, 2)))
    found: dict[int, list[ObjectInfo]] = {}
    rid0, _ = plan.take() or (0, prefix)
    keep0 = plan.record(rid0, [o.key for o in first.objects], first.truncated, first.last_key)
    found[rid0] = [first.objects[i] for i in keep0]
    rest0 = plan.resume(rid0)
    changed = asyncio.Condition()

    async def one_range(rid: int, after: str | None) -> int:
        pages = 0
        while after is not None:
            pages += 1
            page = await _retried(
                functools.partial(lister.list_page, prefix, after, "", page_keys), retry, stats
            )
            keys = [o.key for o in page.objects]
            keep = plan.record(rid, keys, page.truncated, page.last_key)
            found.setdefault(rid, []).extend(page.objects[i] for i in keep)
            async with changed:
                changed.notify_all()
            after = plan.resume(rid)
        return pages

    async def worker(pages: int = 0) -> None:
        while not plan.finished():
            job = plan.take() or plan.steal()
            if job is None:
                async with changed:  # nothing to take or split now: wait for a page
                    await changed.wait()
                continue
            pages += await one_range(*job)
        stats.depth = max(stats.depth, pages + 2)  # + the first page and the seed
        async with changed:
            changed.notify_all()

    async def first_worker(after: str) -> None:
        await worker(await one_range(rid0, after))

    try:
        async with asyncio.TaskGroup() as group:
            if rest0 is not None:
                group.create_task(first_worker(rest0))
            for _ in range(max(1, concurrency)):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        # the first failure, as a plain error the caller's table and retry know
        raise group_error.exceptions[0] from None
    stats.steals += plan.steals
    order = sorted(found, key=lambda rid: plan.ranges()[rid].after)
    stats.ranges.append(len(plan.ranges()))
    return [o for rid in order for o in found[rid]]
