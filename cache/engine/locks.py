"""Mutual exclusion for downloads: within a process, and across processes.

Across processes, one object = one byte of the cache's `locks` file, locked with an
open-file-description (OFD) lock: unlike classic POSIX locks, OFD locks belong to the open file,
so two engines in one process exclude each other too, and closing an unrelated descriptor of the
same file does not drop them. The kernel releases them when the process dies, so a `kill -9`
never leaves a stale lock. Two keys may hash to the same byte; that only serialises them.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import heapq
import itertools
import os
import struct
from pathlib import Path

_LOCK_SPACE = 1 << 30


def lock_offset(store: str, key: str) -> int:
    digest = hashlib.blake2b(
        f"{store}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") % _LOCK_SPACE


def _flock_struct(lock_type: int, offset: int) -> bytes:
    # struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    # (l_pid must be 0 for OFD locks); padded to the kernel's 32 bytes on 64-bit Linux.
    return struct.pack("hhqqi4x", lock_type, os.SEEK_SET, offset, 1, 0)


class ObjectLock:
    """An exclusive cross-process lock on one object, acquired without blocking the loop."""

    def __init__(self, lock_path: Path, store: str, key: str) -> None:
        self._path = lock_path
        self._offset = lock_offset(store, key)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock_struct(fcntl.F_WRLCK, self._offset))
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    async def acquire(self, timeout_s: float, poll_s: float = 0.02) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.try_acquire():
            if loop.time() > deadline:
                raise TimeoutError(f"waited {timeout_s:.0f} s for another process's download")
            await asyncio.sleep(poll_s)
            poll_s = min(poll_s * 1.5, 0.25)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the description drops its OFD lock
            self._fd = None


class PrioritySemaphore:
    """Request slots whose waiters are served lowest priority number first, FIFO within one.

    Priority 0 (an on-demand read that a reader is blocked on) may use every slot; any other
    priority leaves `reserve` slots free. A prefetch keeps all its slots busy for as long as it
    runs, so without the reserve an opened miss waited for a prefetch request to finish before
    its own first byte was even asked for (7x a raw GET in the view's R10 benchmark); with it, a
    miss starts at once and only shares the bandwidth.

    INVARIANT: `0 <= free`, and a waiter is queued only while it may not take a slot: since a
    worse priority never has a lower threshold than a better one, the head of the heap is the
    only waiter worth waking.
    """

    def __init__(self, value: int, reserve: int = 0) -> None:
        self._free = value
        self._reserve = min(reserve, value - 1) if value > 1 else 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def _may_take(self, priority: int) -> bool:
        return self._free > (0 if priority == 0 else self._reserve)

    async def acquire(self, priority: int) -> None:
        if self._may_take(priority) and not (self._waiters and self._waiters[0][0] <= priority):
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed a slot as we were cancelled: pass it on
            raise

    def release(self) -> None:
        self._free += 1
        while self._waiters and self._may_take(self._waiters[0][0]):
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self._free -= 1
                fut.set_result(None)
