"""Sync facades over the async engine and the async backends, for sync callers.

`InProcessEngine` runs an `Engine` on the cache directory (the embedded mode, no agent);
`RemoteStore` talks to the object store directly without caching (read-through when over
budget, fallback when the agent is unreachable, and listings of unknown datasets). Each owns
one `LoopThread`, opens what it needs on first use, has an explicit lifecycle (`with`,
`close()`), and after `fork` rebuilds in the child instead of reusing the parent's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..backends.base import Backend, Data, ObjectInfo
from ..config import Config
from ..engine import (
    DatasetStatus,
    Engine,
    FetchResult,
    PrefetchReport,
    ShareStatus,
    with_retries,
)
from ..partition import Partition
from ..urls import StoreURL
from ._loop import LoopThread, abandon

T = TypeVar("T")

#: a fetch waits for a whole object to download; matches the agent client's fetch timeout
FETCH_TIMEOUT_S = 600.0
#: bounded parallelism of one direct read: enough to fill a connection pool, no more
_READ_PARALLELISM = 8


class InProcessEngine:
    """The engine on its own loop in its own thread; opened on first use."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._loop = LoopThread("shardcache-engine")
        self._opening: asyncio.Future[Engine] | None = None
        self._tasks: dict[StoreURL, asyncio.Task[PrefetchReport]] = {}

    def __enter__(self) -> InProcessEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, url: StoreURL) -> FetchResult:
        return self._run(lambda e: e.fetch(url), FETCH_TIMEOUT_S)

    def prefetch(self, ds: StoreURL) -> PrefetchReport:
        return self._run(lambda e: e.prefetch(ds), FETCH_TIMEOUT_S * 6)

    def start_prefetch(self, ds: StoreURL, share: Partition | None = None) -> None:
        """Start a prefetch (of one member's `share` only, when given) on the engine's loop
        and return at once (once per dataset)."""

        async def start(engine: Engine) -> None:
            if ds not in self._tasks or self._tasks[ds].done():
                self._tasks[ds] = asyncio.create_task(engine.prefetch(ds, shares=(share,)))

        self._run(start, self.config.read_timeout_s)

    def share_status(self, ds: StoreURL, share: Partition) -> ShareStatus:
        """How much of member `share`'s part of the dataset is local."""
        return self._run(lambda e: e.share_status(ds, share), self.config.read_timeout_s)

    def status(self, ds: StoreURL) -> DatasetStatus | None:
        """The dataset's status (None while it was never listed). Raises what a prefetch
        started by `start_prefetch` failed with."""

        async def query(engine: Engine) -> DatasetStatus | None:
            task = self._tasks.get(ds)
            if task is not None and task.done() and not task.cancelled():
                task.result()
            return await engine.status(ds)

        return self._run(query, self.config.read_timeout_s)

    def _run(self, fn: Callable[[Engine], Awaitable[T]], timeout_s: float) -> T:
        if self._loop.forked:
            abandon(self._opening)
            self._opening, self._tasks = None, {}

        async def call() -> T:
            if self._opening is None:  # checked and set on the loop thread: no race
                self._opening = asyncio.ensure_future(_open_engine(self.config))
            opening = self._opening
            try:
                engine = await asyncio.shield(opening)
            except BaseException:
                if self._opening is opening and opening.done():
                    self._opening = None  # a failed open is tried again next time
                raise
            return await fn(engine)

        return self._loop.run(call, timeout_s)

    def close(self) -> None:
        if self._loop.forked or self._opening is None:
            self._loop.close()
            return

        async def shut() -> None:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            assert self._opening is not None
            if _succeeded(self._opening):
                await self._opening.result().close()

        try:
            self._loop.run(shut, 60.0)
        finally:
            self._opening = None
            self._loop.close()


def _succeeded(future: asyncio.Future[T]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


async def _open_engine(config: Config) -> Engine:
    engine = Engine(config)
    await engine.open()
    return engine


class RemoteStore:
    """Direct, uncached access to object stores through the backend adapter."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._loop = LoopThread("shardcache-remote")
        self._backends: dict[str, asyncio.Future[Backend]] = {}

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, parsed: StoreURL) -> bytes:
        """The whole object, read in parallel ranged parts of one version."""

        async def read(backend: Backend) -> bytes:
            info = await self._retry(lambda: backend.stat(parsed.path))
            step = self.config.part_size_bytes
            gate = asyncio.Semaphore(_READ_PARALLELISM)

            async def part(start: int) -> Data:
                async with gate:
                    end = min(start + step, info.size)
                    return await self._retry(lambda: backend.read(info, start, end))

            return b"".join(await asyncio.gather(*(part(s) for s in range(0, info.size, step))))

        return self._run(parsed, read, FETCH_TIMEOUT_S)

    def stat(self, parsed: StoreURL) -> ObjectInfo:
        return self._run(
            parsed,
            lambda b: self._retry(lambda: b.stat(parsed.path)),
            self.config.read_timeout_s * 2,
        )

    def list_objects(self, parsed: StoreURL) -> list[ObjectInfo]:
        """Every object whose key starts with the path of `parsed`, taken literally."""
        return self._run(
            parsed, lambda b: self._retry(lambda: b.list_objects(parsed.path)), FETCH_TIMEOUT_S
        )

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(call, self.config.retry)

    def _run(self, url: StoreURL, fn: Callable[[Backend], Awaitable[T]], timeout_s: float) -> T:
        if self._loop.forked:
            abandon(self._backends)
            self._backends = {}

        async def call() -> T:
            if url.store not in self._backends:
                from ..backends.cloud import open_backend

                self._backends[url.store] = asyncio.ensure_future(open_backend(url, self.config))
            opening = self._backends[url.store]
            try:
                backend = await asyncio.shield(opening)
            except BaseException:
                if self._backends.get(url.store) is opening:
                    del self._backends[url.store]  # a failed connect is tried again next time
                raise
            return await fn(backend)

        return self._loop.run(call, timeout_s)

    def close(self) -> None:
        if self._loop.forked or not self._backends:
            self._loop.close()
            return
        pending = list(self._backends.values())

        async def shut() -> None:
            for opening in pending:
                if _succeeded(opening):
                    await opening.result().close()

        try:
            self._loop.run(shut, 60.0)
        finally:
            self._backends = {}
            self._loop.close()
