"""Where the view's files come from: the dataset's directory in the node's cache, or the
agent, asked to fetch a miss at the front of its queue (`POST /v1/objects/fetch`, single
flight: concurrent opens of one object share one download).

A published file is complete and verified by construction (the agent renames it into place
only then), so opening it is enough; its size is still compared with the manifest, so a file
of another version never passes for the one the view lists.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shardcache.errors import CacheError, UnavailableError, redact

log = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
#: between two attempts to reach an agent that does not answer (restarting)
RETRY_S = 0.25


class Fetcher(Protocol):
    """The agent's fetch verb (`AgentClient.fetch`)."""

    def fetch(self, url: str) -> str | None: ...


@dataclass(frozen=True)
class SourceConfig:
    #: the dataset's directory on the node (the agent's `local_dir`)
    local_dir: str
    #: the dataset URL, ending in "/": an object's URL is this plus its key
    dataset: str
    #: how long an open of a miss may wait, agent restarts included, before it fails with EIO;
    #: a 64 MiB shard at 50 MB/s behind a queue needs seconds, a stuck store must not hang a pod
    miss_timeout_s: float = 120.0


class CacheSource:
    def __init__(
        self,
        config: SourceConfig,
        agent: Fetcher,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.agent = agent
        self.clock = clock
        self.sleep = sleep
        #: failures the view saw, newest last, reported with the open counts
        self.failures: list[dict[str, str]] = []

    def open_local(self, key: str, size: int) -> int | None:
        return _open_checked(os.path.join(self.config.local_dir, key), size)

    def fetch(self, key: str, size: int) -> int:
        url = self.config.dataset + key
        deadline = self.clock() + self.config.miss_timeout_s
        while True:
            try:
                path = self.agent.fetch(url)
            except UnavailableError as e:  # the agent restarts: wait for it, bounded
                if self.clock() + RETRY_S >= deadline:
                    raise self._failed(key, "unavailable", str(e)) from e
                self.sleep(RETRY_S)
                continue
            except CacheError as e:
                raise self._failed(key, e.kind, str(e)) from e
            if path is None:
                raise self._failed(
                    key,
                    "not_cached",
                    "the cache has no room for it and the view does not read "
                    "through uncached objects",
                )
            fd = _open_checked(path, size)
            if fd is not None:
                return fd
            # published and gone again (evicted), or another version: ask once more
            if self.clock() + RETRY_S >= deadline:
                raise self._failed(key, "changed", f"{path} is not the listed {size} bytes")
            self.sleep(RETRY_S)

    def _failed(self, key: str, kind: str, message: str) -> OSError:
        self.failures.append({"key": key, "kind": kind, "message": redact(message)})
        del self.failures[:-20]
        log.warning("open of %s%s failed (%s): %s", self.config.dataset, key, kind, redact(message))
        return OSError(errno.EIO, f"{key}: {kind}")


def _open_checked(path: str, size: int) -> int | None:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None  # a symlink where a file should be: not ours, never followed
        raise
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_size == size:
        return fd
    os.close(fd)
    return None
