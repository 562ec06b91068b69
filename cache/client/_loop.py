"""An event loop in its own thread, owned by one object, rebuilt after `fork`.

Why: the engine and the backends are async, but DataLoader workers and fsspec callers are
sync. fsspec's answer (one module-global loop in a daemon thread, shared by every instance)
is what hangs s3fs and gcsfs in a forked worker: the child inherits a loop object whose thread
did not survive the fork. Here each facade owns its loop, creates it on first use, closes it
explicitly, and notices a pid change: a child never touches the parent's loop, thread or
anything bound to them; it starts its own.

What a child inherits from its parent (the loop, the engine's sqlite connection, thread
pools) is abandoned, not closed: closing a SQLite connection or joining a thread that only
existed in the parent is itself unsafe after `fork`. `_ABANDONED` keeps those objects alive
for the rest of the child's life so that garbage collection never finalises them either;
forked DataLoader workers leave through `os._exit`, so nothing runs on them at exit.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import UnavailableError

T = TypeVar("T")

#: objects inherited across fork, deliberately kept alive (see the module docstring)
_ABANDONED: list[Any] = []


def abandon(*objects: Any) -> None:
    _ABANDONED.extend(o for o in objects if o is not None)


class LoopThread:
    """`run(fn, timeout_s)` runs the coroutine `fn()` on this object's loop and waits for it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def forked(self) -> bool:
        """True in a child process created after this object was."""
        return self._pid != os.getpid()

    def run(self, fn: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        loop = self._ensure()
        future = asyncio.run_coroutine_threadsafe(_call(fn), loop)
        try:
            return future.result(timeout_s)
        except TimeoutError as e:
            future.cancel()
            raise UnavailableError(
                f"{self._name}: no answer within {timeout_s:.0f} s; the object store or the "
                "cache may be overloaded, try again later"
            ) from e

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self.forked:
            self._after_fork()
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name=self._name, daemon=True
                )
                self._thread.start()
            return self._loop

    def _after_fork(self) -> None:
        # The lock may have been held by a parent thread at fork time: replace, never acquire.
        abandon(self._loop, self._thread, self._lock)
        self._lock = threading.Lock()
        self._loop, self._thread, self._pid = None, None, os.getpid()

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and join its thread (in a forked child: just forget them)."""
        if self.forked:
            self._after_fork()
            return
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        if not thread.is_alive():
            loop.close()


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()
