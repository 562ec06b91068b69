"""Fetching one object's bytes into a staging file: whole or in parallel ranged parts,
with bounded retries, and the checks that decide whether the bytes may be published."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import TypeVar

from ..backends.base import Backend, ObjectInfo
from ..config import Config, RetryPolicy
from ..errors import IntegrityError, UnavailableError, VersionChangedError
from ..store import files
from .locks import PrioritySemaphore

T = TypeVar("T")


def plan_parts(size: int, threshold: int, part_size: int) -> list[tuple[int, int]]:
    """[start, end) ranges for an object: one range up to `threshold`, else `part_size` parts."""
    if size <= threshold:
        return [(0, size)]
    return [(start, min(start + part_size, size)) for start in range(0, size, part_size)]


def is_retryable(error: BaseException) -> bool:
    """Transient failures worth another attempt: the store was unavailable or sent bytes that
    did not add up (a reset mid-body looks like a short read). A changed version is not
    transient: the caller starts over against the new version instead."""
    if isinstance(error, VersionChangedError):
        return False
    return isinstance(error, (UnavailableError, IntegrityError, TimeoutError))


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy,
                       on_retry: Callable[[BaseException], None] | None = None) -> T:
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as e:
            if not policy.should_retry(attempt, is_retryable(e)):
                raise
            if on_retry:
                on_retry(e)
            await asyncio.sleep(policy.backoff_s(attempt, random.random()))
            attempt += 1


class Downloader:
    """Downloads objects for one engine; shares its request slots and worker threads."""

    def __init__(self, config: Config, slots: PrioritySemaphore, io: Executor) -> None:
        self._config = config
        self._slots = slots
        self._io = io
        #: bytes received from the store (for metrics and R6), retries seen
        self.bytes_read = 0
        self.retries = 0

    async def fetch_into(self, backend: Backend, info: ObjectInfo, staging: files.Staging,
                         priority: int) -> str:
        """Write the object into `staging`; return the MD5 of what was written."""
        cfg = self._config
        parts = plan_parts(info.size, cfg.multipart_threshold_bytes, cfg.part_size_bytes)
        loop = asyncio.get_running_loop()
        if len(parts) == 1:
            data = await self._read(backend, info, 0, info.size, priority)
            return await loop.run_in_executor(self._io, files.write_whole, staging.fd, data)
        await asyncio.gather(*(self._part(backend, info, staging, s, e, priority)
                               for s, e in parts))
        return await loop.run_in_executor(self._io, files.md5_of_fd, staging.fd)

    async def _part(self, backend: Backend, info: ObjectInfo, staging: files.Staging,
                    start: int, end: int, priority: int) -> None:
        data = await self._read(backend, info, start, end, priority)
        await asyncio.get_running_loop().run_in_executor(
            self._io, files.write_at, staging.fd, start, data)

    async def _read(self, backend: Backend, info: ObjectInfo, start: int, end: int,
                    priority: int) -> bytes:
        async def once() -> bytes:
            await self._slots.acquire(priority)
            try:
                data = await asyncio.wait_for(backend.read(info, start, end),
                                              self._config.read_timeout_s)
            except TimeoutError as e:
                raise UnavailableError(
                    f"{info.key}: no complete answer within {self._config.read_timeout_s:.0f} s "
                    f"for bytes {start}-{end}; the store is slow or unreachable") from e
            finally:
                self._slots.release()
            self.bytes_read += len(data)
            if len(data) != end - start:
                raise IntegrityError(
                    f"{info.key}: expected {end - start} bytes for range {start}-{end}, "
                    f"received {len(data)} (connection cut short?)")
            return data

        def count(_: BaseException) -> None:
            self.retries += 1

        if end == start:
            return b""
        return await with_retries(once, self._config.retry, count)


def check_integrity(info: ObjectInfo, md5: str, size: int) -> None:
    """Raise IntegrityError unless the written file matches what the store promised."""
    if size != info.size:
        raise IntegrityError(f"{info.key}: expected {info.size} bytes, wrote {size}")
    if info.checksum and info.checksum.algorithm == "md5" and info.checksum.value != md5:
        raise IntegrityError(
            f"{info.key}: MD5 {md5} does not match the store's {info.checksum.value}; "
            "the bytes were damaged in transit")
