"""Prefetching a dataset and waiting until enough of it is local, through the agent or the
in-process engine. What a status means is `waitloop.decide`; the loop is `waitloop.poll`."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ..errors import ConfigError, NotFoundError, WaitTimeoutError
from ..status import DatasetState, DatasetStatus
from ..urls import StoreURL, parse_url
from ..waitloop import Decision, Look, poll
from .client import Client

__all__ = ["WaitTimeoutError", "owner_name", "prefetch", "wait_until_local"]

#: how often a wait polls progress; status answers come from memory, so this is cheap
POLL_S = 0.2
#: an agent prefetch waited for by `prefetch()` gives up after this long
PREFETCH_TIMEOUT_S = 24 * 3600.0


def owner_name() -> str:
    return f"shardcache-client:{socket.gethostname()}:{os.getpid()}"


def prefetch(client: Client, url: str) -> Path:
    """Download the dataset (or what fits) and return its local directory; a dataset
    mounted in this pod is the node's to fetch (the pod's annotations said how), and its
    mount is its local directory."""
    in_view = client.mounts.path_of(parse_url(url)) if client.mounts else None
    if in_view is not None:
        return Path(in_view)
    ds = parse_url(url).as_dataset()
    if client.agent is None:
        return client.engine.prefetch(ds).local_dir
    agent, owner = client.agent, owner_name()
    status = agent.register(str(ds), owner, prefetch="all")
    try:
        # fraction 1: ends when all is local, or when the run settles short of it
        poll(lambda: Look(agent.status(str(ds))), 1.0, PREFETCH_TIMEOUT_S, interval_s=POLL_S)
    finally:
        agent.release(str(ds), owner)
    return status.local_dir if status.local_dir.is_absolute() else client.local_path(str(ds))


def wait_until_local(client: Client, url: str, fraction: float, timeout_s: float) -> float:
    """Block until `fraction` of the dataset's bytes are local; start its prefetch if needed.
    Raises WaitTimeoutError when less became local in time, or the prefetch ended short."""
    in_view = client.mounts.path_of(parse_url(url)) if client.mounts else None
    if in_view is not None:
        # the pod has neither the agent's socket nor the status: waiting is the wait step's
        raise ConfigError(
            f"{url} is mounted in this pod at {in_view}; to hold the pod until part of it is "
            "local, annotate it with shardcache.io/wait (the read-through view serves every "
            "object meanwhile, fetching a missing one when it is opened)"
        )
    ds = parse_url(url).as_dataset()
    if client.agent is None:
        return _wait_in_process(client, ds, fraction, timeout_s)
    agent, owner = client.agent, owner_name()
    try:
        known: DatasetStatus | None = agent.status(str(ds))
    except NotFoundError:
        known = None
    # Register (and so start a prefetch) only when nobody has; release only what we pinned.
    registered = known is None or known.state is DatasetState.IDLE
    if registered:
        agent.register(str(ds), owner, prefetch="all")
    try:
        decision, seen = poll(
            lambda: Look(agent.status(str(ds))), fraction, timeout_s, interval_s=POLL_S
        )
    finally:
        if registered:
            agent.release(str(ds), owner)
    return _reached(decision, seen, fraction, ds, timeout_s)


def _wait_in_process(client: Client, ds: StoreURL, fraction: float, timeout_s: float) -> float:
    engine = client.engine
    have = engine.status(ds)
    if have is not None and have.fraction_local >= fraction:
        return have.fraction_local
    engine.start_prefetch(ds)
    # this process runs the prefetch: only the fraction or the deadline ends the wait
    decision, seen = poll(
        lambda: Look(engine.status(ds)),
        fraction,
        timeout_s,
        interval_s=POLL_S,
        ends={Decision.REACHED},
    )
    return _reached(decision, seen, fraction, ds, timeout_s)


def _reached(
    decision: Decision, seen: Look, fraction: float, ds: StoreURL, timeout_s: float
) -> float:
    have = seen.status.fraction_local if seen.status is not None else 0.0
    if decision is not Decision.REACHED:
        raise WaitTimeoutError(
            f"{ds}: {100 * have:.1f}% local after {timeout_s:.0f} s, wanted "
            f"{100 * fraction:.1f}%; wait longer, or check `shardcache status {ds}`"
        )
    return have
