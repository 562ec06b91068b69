"""The agent's side of leases (see leases.py): grant on register, guard release, sweep.

Registrations and releases that come through the socket pass through here, with the caller
the kernel named (`SO_PEERCRED`); a background task renews the leases of live processes and
releases the pins whose lease expired. Pod owners are left to the pod watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from shardcache.errors import AccessDeniedError, CacheError, redact
from shardcache.urls import parse_url

from . import leases as L
from .auth import Peer
from .logs import kv
from .service import Agent

log = logging.getLogger("shardcache.agent.leases")


class LeaseKeeper:
    def __init__(
        self,
        agent: Agent,
        book: L.LeaseBook,
        sweep_interval_s: float = L.SWEEP_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent = agent
        self.book = book
        self.sweep_interval_s = sweep_interval_s
        self.clock = clock
        self.sweeps = 0
        self.reclaimed = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Adopt the pins a previous run left (a lease for each, from the book or fresh),
        then sweep in the background."""
        adopted = L.adopt(await self.agent.pins(), self.book.load(), self.clock(), self.book.ttl_s)
        self.book.replace_all(adopted)
        self._task = asyncio.create_task(self._sweep_forever(), name="lease sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def registered(self, url: str, owner: str, peer: Peer | None, durable: bool) -> None:
        """A registration went through: grant or renew the owner's lease."""
        if not L.needs_lease(owner):
            return
        key = (_canonical(url), owner)
        now = self.clock()
        lease = self.book.leases.get(key)
        if lease is None or lease.durable != durable:
            process = L.process_id(peer.pid) if peer is not None else None
            lease = L.grant(key[0], owner, now, self.book.ttl_s, process, durable)
        else:
            lease = L.renew(lease, now, self.book.ttl_s)
        self.book.put(lease)

    def check_release(self, url: str, owner: str, peer: Peer | None) -> None:
        """Refuse to release a pin whose lease belongs to another process that still lives."""
        lease = self.book.leases.get((_canonical(url), owner))
        if lease is None or lease.process is None or not L.is_alive(lease.process):
            return
        caller = L.process_id(peer.pid) if peer is not None else None
        if caller != lease.process:
            raise AccessDeniedError(
                f"the pin of {lease.url} for {owner!r} belongs to process {lease.process[0]}, "
                "which is still running; only it may release it (or it ends, and the pin "
                "goes with its lease)"
            )

    def released(self, url: str, owner: str) -> None:
        self.book.drop(_canonical(url), owner)

    async def sweep_once(self) -> int:
        """Renew the leases of live processes, release expired ones; how many were released."""
        keep, expired = L.sweep(
            list(self.book.leases.values()), self.clock(), self.book.ttl_s, L.is_alive
        )
        for lease in expired:
            try:
                await self.agent.release(lease.url, lease.owner)
            except CacheError as e:  # gone already (evicted by force): nothing to hold
                log.info("expired lease", extra=kv(url=lease.url, error=redact(str(e))))
            log.info("lease expired; pin released", extra=kv(url=lease.url, owner=lease.owner))
        self.book.replace_all(keep)
        self.sweeps += 1
        self.reclaimed += len(expired)
        return len(expired)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep_once()
            except Exception as e:  # a sweep that fails must not stop the next one
                log.error("lease sweep failed", extra=kv(error=redact(str(e))))


def _canonical(url: str) -> str:
    return str(parse_url(url).as_dataset())
