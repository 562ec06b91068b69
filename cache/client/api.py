"""The small public API for code that wants paths or file objects, not a file system.

The functions use one default `Client` per process, built from the environment on first use
(cache dir, agent socket, budget, store endpoint: read once, so that a hit costs no
environment look-up), closed at interpreter exit, and safe across `fork` (a child rebuilds
the loops it needs). `close_default_clients()` drops it, so the next call reads the
environment again. Code that wants an explicit lifecycle uses `Client` directly:
`with Client() as c: c.open(url)`.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ..config import Config
from ..errors import ConfigError
from ..urls import SCHEMES
from .client import Client, ClientSettings
from .waiting import prefetch as _prefetch
from .waiting import wait_until_local as _wait_until_local

_DEFAULT = ("default",)
_clients: dict[tuple[str | None, ...], Client] = {}
_guard = threading.Lock()
_atexit_registered = False


def default_client() -> Client:
    """The process's client for the environment it had when first asked for."""
    client = _clients.get(_DEFAULT)
    if client is None:
        client = _make(_DEFAULT, Client)
    return client


def _make(key: tuple[str | None, ...], build: Callable[[], Client]) -> Client:
    global _atexit_registered
    with _guard:
        if key not in _clients:
            _clients[key] = build()
            if not _atexit_registered:
                _at_exit(close_default_clients)
                _atexit_registered = True
        return _clients[key]


def _at_exit(fn: Callable[[], None]) -> None:
    """Run `fn` at exit, before the thread pools stop taking work.

    At interpreter exit, `concurrent.futures` stops every thread pool (its workers mark their
    executor shut down) before `atexit` handlers run, so a client closed from `atexit` found
    its engine's threads refusing the close itself ("cannot schedule new futures after
    shutdown", a traceback on every exit with a prefetch running). `threading` runs its own
    exit hooks first, newest first, and concurrent.futures registers there: a hook registered
    there after it runs before it. It is a private hook, hence the fallback."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every CPython since 3.9 has it
        atexit.register(fn)
    else:
        register(fn)


def client_for(
    scheme: str | None,
    options: dict[str, Any] | None,
    cache_dir: str | None,
    agent_socket: str | None,
) -> Client:
    """The default client, or one per distinct set of explicit options (fsspec storage
    options) in this process; closed at exit like the default ones."""
    if not (options or cache_dir or agent_socket):
        return default_client()
    key = ("custom", repr((scheme, sorted((options or {}).items()), cache_dir, agent_socket)))
    client = _clients.get(key)
    if client is None:
        config = Config.from_env(os.environ, cache_dir=cache_dir)
        if options and scheme:
            canonical = SCHEMES.get(scheme, scheme)
            config = config.with_(backend_options={canonical: dict(options)})
        client = _make(key, lambda: Client(config, agent_socket=agent_socket))
    return client


def client_with(settings: ClientSettings) -> Client:
    """This process's client built from `settings` (see `Client.settings`)."""
    key = ("settings", repr(settings))
    client = _clients.get(key)
    if client is None:
        client = _make(key, settings.build)
    return client


def close_default_clients() -> None:
    """Close every default client (registered to run at exit; tests call it too)."""
    while _clients:
        _, client = _clients.popitem()
        client.close()


def local_path(url: str) -> Path:
    """The local directory of a dataset URL (ending in `/`) or the local file of an object,
    whether or not it is local yet."""
    return default_client().local_path(url)


def wait_until_local(url: str, fraction: float = 1.0, timeout_s: float = 600.0) -> float:
    """Block until `fraction` (0..1) of the dataset's bytes are local, starting its prefetch
    if needed; return the fraction reached. Raises `WaitTimeoutError` (a `TimeoutError`)."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"fraction must be within 0..1, got {fraction}")
    return _wait_until_local(default_client(), url, fraction, timeout_s)


def prefetch(url: str) -> Path:
    """Download a dataset (what fits in the budget) and return its local directory."""
    return _prefetch(default_client(), url)


def open(url: str, mode: str = "rb") -> BinaryIO:
    """Open an object for reading: the local file on a hit, fetched (or read through) on a
    miss. Only binary reading is supported: cached objects are read-only."""
    if mode != "rb":
        raise ConfigError(f"shardcache opens objects read-only in binary mode ('rb'), not {mode!r}")
    return default_client().open(url)
