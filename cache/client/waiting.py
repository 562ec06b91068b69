"""Prefetching a dataset and waiting until enough of it is local, through the agent or the
in-process engine. The decisions (`fraction_of`, `settled`) are pure; polling is the shell."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CacheError, NotFoundError
from ..urls import parse_url
from .client import Client

#: how often a wait polls progress; status answers come from memory, so this is cheap
POLL_S = 0.2
#: an agent prefetch waited for by `prefetch()` gives up after this long
PREFETCH_TIMEOUT_S = 24 * 3600.0


class WaitTimeoutError(CacheError, TimeoutError):
    """Less of the dataset than asked for became local in time; wait longer or ask less."""

    kind = "timeout"


def fraction_of(status: dict[str, Any]) -> float:
    """`fraction_local` of an agent dataset status (computed if the agent leaves it out)."""
    if "fraction_local" in status:
        return float(status["fraction_local"])
    total = int(status.get("bytes_total", 0))
    return 1.0 if total == 0 else int(status.get("bytes_local", 0)) / total


def settled(status: dict[str, Any]) -> bool:
    """The agent is no longer working on the dataset (done, partly done, or failed)."""
    return status.get("state") in ("complete", "partial", "failed", "idle")


def owner_name() -> str:
    return f"shardcache-client:{socket.gethostname()}:{os.getpid()}"


def prefetch(client: Client, url: str) -> Path:
    """Download the dataset (or what fits) and return its local directory."""
    ds = str(parse_url(url).as_dataset())
    if client.agent is None:
        return client.engine.prefetch(ds).local_dir
    agent, owner = client.agent, owner_name()
    status = agent.register(ds, owner, prefetch="all")
    try:
        _poll(lambda: agent.status(ds), settled, PREFETCH_TIMEOUT_S)
    finally:
        agent.release(ds, owner)
    return Path(str(status.get("local_dir") or client.local_path(ds)))


def wait_until_local(client: Client, url: str, fraction: float, timeout_s: float) -> float:
    """Block until `fraction` of the dataset's bytes are local; start its prefetch if needed."""
    ds = str(parse_url(url).as_dataset())
    if client.agent is None:
        return _wait_in_process(client, ds, fraction, timeout_s)
    agent, owner = client.agent, owner_name()
    try:
        known: dict[str, Any] | None = agent.status(ds)
    except NotFoundError:
        known = None
    # Register (and so start a prefetch) only when nobody has; release only what we pinned.
    registered = known is None or known.get("state") == "idle"
    if registered:
        agent.register(ds, owner, prefetch="all")
    try:
        status = _poll(
            lambda: agent.status(ds),
            lambda s: fraction_of(s) >= fraction or (settled(s) and s.get("state") != "idle"),
            timeout_s,
        )
    finally:
        if registered:
            agent.release(ds, owner)
    return _reached(fraction_of(status), fraction, ds, timeout_s)


def _wait_in_process(client: Client, ds: str, fraction: float, timeout_s: float) -> float:
    engine = client.engine
    have = engine.fraction_local(ds)
    if have is not None and have >= fraction:
        return have
    engine.start_prefetch(ds)
    deadline = time.monotonic() + timeout_s
    while True:
        have = engine.fraction_local(ds) or 0.0
        if have >= fraction or time.monotonic() >= deadline:
            return _reached(have, fraction, ds, timeout_s)
        time.sleep(POLL_S)


def _reached(have: float, fraction: float, ds: str, timeout_s: float) -> float:
    if have < fraction:
        raise WaitTimeoutError(
            f"{ds}: {100 * have:.1f}% local after {timeout_s:.0f} s, wanted "
            f"{100 * fraction:.1f}%; wait longer, or check `shardcache status {ds}`"
        )
    return have


def _poll(
    get: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = get()
        if done(status) or time.monotonic() >= deadline:
            return status
        time.sleep(POLL_S)
