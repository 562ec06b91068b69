"""Fetching one object's bytes into a staging file: whole or in parallel ranged parts,
with bounded retries, and the checks that decide whether the bytes may be published.

Retries happen at two levels, and neither repeats work that was verified:

- per request: every GET (one whole object or one part) is retried on a transient failure
  (503/throttling, reset mid-body, short body, timeout) with full-jitter backoff, as the
  `Retry` value (retry.py) allows;
- per object: when a part still fails after its own attempts, the parts that did arrive whole
  stay in the staging file (their length was checked, and their version was pinned by the
  precondition), and the next round fetches only the missing parts (`PartTracker`).

A whole-object checksum mismatch (only possible for single-request objects: multipart S3
uploads carry no whole-object MD5) restarts that one request; there is nothing smaller to keep.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

from ..backends.base import Backend, Data, ObjectInfo
from ..config import Config
from ..errors import (
    IntegrityError,
    OverCapacityError,
    StalledError,
    VersionChangedError,
    is_disk_full,
)
from ..retry import Level, Retry, is_retryable
from ..store import files
from .locks import PrioritySemaphore

T = TypeVar("T")


def plan_parts(size: int, threshold: int, part_size: int) -> list[tuple[int, int]]:
    """[start, end) ranges for an object: one range up to `threshold`, else `part_size` parts."""
    if size <= threshold:
        return [(0, size)]
    return [(start, min(start + part_size, size)) for start in range(0, size, part_size)]


def worst_error(errors: list[BaseException]) -> BaseException:
    """The error that decides what happens to the object when several parts failed: a changed
    version (start over) beats a permanent error (give up) beats a transient one (retry)."""
    for e in errors:
        if isinstance(e, VersionChangedError):
            return e
    for e in errors:
        if not is_retryable(e):
            return e
    return errors[0]


@dataclass
class PartTracker:
    """Which parts of one object are already in its staging file, verified by length and
    fetched under the object's version precondition."""

    parts: list[tuple[int, int]]
    done: set[int] = field(default_factory=set)

    def missing(self) -> list[tuple[int, int]]:
        return [p for p in self.parts if p[0] not in self.done]

    def reset(self) -> None:
        self.done.clear()


class OrderedMD5:
    """MD5 of an object whose parts arrive out of order, hashed in offset order as they arrive.

    Each part is fed once it is written. The next part in offset order is hashed at once, and
    so is every part after it that is already in; a part that arrives early waits in memory
    while the early ones together stay under `max_buffered_bytes`, and past that only its place
    is noted: when the hash reaches it, it is read back from the staging file (`read_back`,
    from the page cache, just written) in `_READ_BACK` pieces. Nothing is read back twice, and
    the file is never read whole at the end: the previous version gave up past the budget and
    hashed the whole file after the last part, which on the benchmark machine (parts of one
    object arriving in any order) put a 128 MiB hash (~0.2 s) after the transfer.
    Fed from worker threads, so the state sits behind a lock.
    """

    def __init__(
        self,
        parts: list[tuple[int, int]],
        max_buffered_bytes: int,
        read_back: Callable[[int, int], Data],
    ) -> None:
        self._parts = parts
        self._next = 0
        #: parts that arrived early: their bytes, or None when they are to be read back
        self._waiting: dict[int, Data | None] = {}
        self._buffered = 0
        self._max = max_buffered_bytes
        self._read_back = read_back
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._lock = threading.Lock()
        #: bytes hashed from the staging file rather than from memory (for tests and metrics)
        self.read_back_bytes = 0

    def feed(self, start: int, data: Data) -> None:
        with self._lock:
            if self._buffered + len(data) <= self._max or start == self._parts[self._next][0]:
                self._waiting[start] = data
                self._buffered += len(data)
            else:
                self._waiting[start] = None
            while self._next < len(self._parts) and self._parts[self._next][0] in self._waiting:
                self._hash_next()

    def _hash_next(self) -> None:
        begin, end = self._parts[self._next]
        chunk = self._waiting.pop(begin)
        if chunk is None:
            for at in range(begin, end, _READ_BACK):
                piece = self._read_back(at, min(at + _READ_BACK, end))
                self._md5.update(piece)
                self.read_back_bytes += len(piece)
        else:
            self._buffered -= len(chunk)
            self._md5.update(chunk)
        self._next += 1

    def hexdigest(self) -> str | None:
        """The MD5 when every part was fed, else None (the file is then read back whole)."""
        with self._lock:
            return self._md5.hexdigest() if self._next == len(self._parts) else None


#: read-back piece of `OrderedMD5`: small enough to stay in the CPU's cache between the
#: copy out of the page cache and the hash
_READ_BACK = 4 * 1024 * 1024


async def with_retries(
    call: Callable[[], Awaitable[T]],
    retry: Retry,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """`call()` until it succeeds or the request budget of `retry` is spent."""
    while True:
        try:
            return await call()
        except Exception as e:
            after = retry.increment(e, Level.REQUEST)
            if after is None:
                raise
            if on_retry:
                on_retry(e)
            await asyncio.sleep(retry.backoff_s(random.random()))
            retry = after


class Downloader:
    """Downloads objects for one engine; shares its request slots and worker threads."""

    def __init__(self, config: Config, slots: PrioritySemaphore, io: Executor) -> None:
        self._config = config
        self._slots = slots
        self._io = io
        #: bytes received from the store (for metrics and R6), retries seen, and requests whose
        #: bytes did not add up (short body, or a checksum the SDK checked did not match)
        self.bytes_read = 0
        self.retries = 0
        self.integrity_failures = 0

    def tracker(self, info: ObjectInfo) -> PartTracker:
        cfg = self._config
        return PartTracker(
            plan_parts(info.size, cfg.multipart_threshold_bytes, cfg.part_size_bytes)
        )

    async def fetch_into(
        self,
        backend: Backend,
        info: ObjectInfo,
        staging: files.Staging,
        priority: int,
        tracker: PartTracker | None = None,
    ) -> files.Finished:
        """Write the missing parts of the object into `staging` and finish the file (fsync,
        read-only); return its identity and MD5.

        Every part runs to success or to the end of its retries, so one failed part does not
        throw away its siblings' bytes; the worst failure is raised after all have settled.
        """
        tracker = tracker or self.tracker(info)
        fsync = self._config.fsync
        if len(tracker.parts) == 1:
            data = await self._read(backend, info, 0, info.size, priority)
            fin: files.Finished = await self._write(files.write_whole, staging, data, fsync)
            tracker.done.add(0)
            return fin
        todo = tracker.missing()
        # Hash on the way only when this pass fetches every part; after a failed round the
        # kept parts are on disk only, and the file is read back instead.
        hasher = (
            OrderedMD5(
                tracker.parts,
                4 * self._config.part_size_bytes,
                functools.partial(files.read_part, staging),
            )
            if len(todo) == len(tracker.parts)
            else None
        )
        results = await asyncio.gather(
            *(self._part(backend, info, staging, s, e, priority, hasher) for s, e in todo),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        tracker.done.update(
            s for (s, _), r in zip(todo, results, strict=True) if not isinstance(r, BaseException)
        )
        if errors:
            raise worst_error(errors)
        md5 = hasher.hexdigest() if hasher else None
        done: files.Finished = await self._write(files.finish, staging, md5, fsync)
        return done

    async def _part(
        self,
        backend: Backend,
        info: ObjectInfo,
        staging: files.Staging,
        start: int,
        end: int,
        priority: int,
        hasher: OrderedMD5 | None,
    ) -> None:
        data = await self._read(backend, info, start, end, priority)
        await self._write(_write_and_hash, staging, start, data, hasher)

    async def _write(self, fn: Callable[..., T], staging: files.Staging, *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._io, fn, staging, *args)
        except OSError as e:
            if is_disk_full(e):
                raise OverCapacityError(
                    f"the disk holding the cache is full ({e.strerror}); free space, or set "
                    "--max-bytes / SHARDCACHE_MAX_BYTES below what the disk can hold"
                ) from e
            raise

    async def _read(
        self, backend: Backend, info: ObjectInfo, start: int, end: int, priority: int
    ) -> Data:
        async def once() -> Data:
            await self._slots.acquire(priority)
            try:
                # a timeout scope, not wait_for: on Python 3.11 wait_for wraps every request
                # in a task of its own, a visible cost per object of a small-object prefetch
                async with asyncio.timeout(self._config.read_timeout_s):
                    data = await backend.read(info, start, end)
            except TimeoutError as e:
                raise StalledError(
                    f"{info.key}: no complete answer within {self._config.read_timeout_s:g} s "
                    f"for bytes {start}-{end}; the store is slow or unreachable"
                ) from e
            finally:
                self._slots.release()
            self.bytes_read += len(data)
            if len(data) != end - start:
                raise IntegrityError(
                    f"{info.key}: expected {end - start} bytes for range {start}-{end}, "
                    f"received {len(data)} (connection cut short?)"
                )
            return data

        async def counted() -> Data:
            try:
                return await once()
            except IntegrityError as e:
                self.integrity_failures += not isinstance(e, VersionChangedError)
                raise

        def count(_: BaseException) -> None:
            self.retries += 1

        if end == start:
            return b""
        return await with_retries(counted, self._config.retry, count)


def _write_and_hash(
    staging: files.Staging, start: int, data: Data, hasher: OrderedMD5 | None
) -> None:
    files.write_part(staging, start, data)
    if hasher is not None:
        hasher.feed(start, data)


def check_integrity(info: ObjectInfo, md5: str, size: int) -> None:
    """Raise IntegrityError unless the written file matches what the store promised."""
    if size != info.size:
        raise IntegrityError(f"{info.key}: expected {info.size} bytes, wrote {size}")
    if info.checksum and info.checksum.algorithm == "md5" and info.checksum.value != md5:
        raise IntegrityError(
            f"{info.key}: MD5 checksum {md5} does not match the store's {info.checksum.value}; "
            "the bytes were damaged in transit"
        )
