"""Backends that misbehave on purpose: slow ones and faulty ones, wrapping a real backend.

Product code, not test code: the fault-injection suite, the benchmarks and anyone reproducing
a production incident use them the same way. Faults are drawn from a seeded random generator,
so a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass

from ..errors import UnavailableError
from .base import Backend, Data, ObjectInfo


class ThrottledBackend:
    """Adds a first-byte delay to every request and caps each read's bandwidth, as a single
    connection to a cloud store behaves."""

    def __init__(
        self, inner: Backend, first_byte_delay_s: float = 0.02, bytes_per_s: float | None = 90e6
    ) -> None:
        self.inner = inner
        self.first_byte_delay_s = first_byte_delay_s
        self.bytes_per_s = bytes_per_s

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        await asyncio.sleep(self.first_byte_delay_s)
        return await self.inner.list_objects(prefix)

    async def stat(self, key: str) -> ObjectInfo:
        await asyncio.sleep(self.first_byte_delay_s)
        return await self.inner.stat(key)

    async def read(self, info: ObjectInfo, start: int, end: int) -> Data:
        data = await self.inner.read(info, start, end)
        transfer = len(data) / self.bytes_per_s if self.bytes_per_s else 0.0
        await asyncio.sleep(self.first_byte_delay_s + transfer)
        return data

    async def close(self) -> None:
        await self.inner.close()


@dataclass(frozen=True)
class FaultPlan:
    """Probabilities per read request, and keys that always fail."""

    unavailable_rate: float = 0.0
    #: answer with fewer bytes than asked, as a connection reset mid-body looks to a reader
    truncate_rate: float = 0.0
    #: flip one byte of the answer, as a damaged transfer would
    flip_rate: float = 0.0
    #: keys matching this regular expression fail every read with UnavailableError
    always_fail: str | None = None
    #: hold a read for `stall_s` before answering, as a connection that stops sending does
    stall_rate: float = 0.0
    stall_s: float = 3600.0
    #: reads whose "KEY@START" matches `flaky` fail with UnavailableError the first
    #: `flaky_reads` times: a deterministic transient fault of one part of one object
    flaky: str | None = None
    flaky_reads: int = 0
    seed: int = 0


class FaultyBackend:
    """Injects faults into reads of an inner backend according to a `FaultPlan`."""

    def __init__(self, inner: Backend, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._always = re.compile(plan.always_fail) if plan.always_fail else None
        self._flaky = re.compile(plan.flaky) if plan.flaky else None
        self._flaky_seen: dict[str, int] = {}
        self.injected = {
            "unavailable": 0,
            "truncated": 0,
            "flipped": 0,
            "always": 0,
            "stalled": 0,
            "flaky": 0,
        }

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        return await self.inner.list_objects(prefix)

    async def stat(self, key: str) -> ObjectInfo:
        return await self.inner.stat(key)

    async def read(self, info: ObjectInfo, start: int, end: int) -> Data:
        if self._always and self._always.search(info.key):
            self.injected["always"] += 1
            raise UnavailableError(f"{info.key}: injected persistent failure (503)")
        self._maybe_flaky(info, start)
        if self._rng.random() < self.plan.stall_rate:
            self.injected["stalled"] += 1
            await asyncio.sleep(self.plan.stall_s)
        if self._rng.random() < self.plan.unavailable_rate:
            self.injected["unavailable"] += 1
            raise UnavailableError(f"{info.key}: injected 503 SlowDown")
        data = await self.inner.read(info, start, end)
        if data and self._rng.random() < self.plan.truncate_rate:
            self.injected["truncated"] += 1
            return data[: self._rng.randrange(len(data))]
        if data and self._rng.random() < self.plan.flip_rate:
            self.injected["flipped"] += 1
            pos = self._rng.randrange(len(data))
            return bytes(data[:pos]) + bytes([data[pos] ^ 0xFF]) + bytes(data[pos + 1 :])
        return data

    def _maybe_flaky(self, info: ObjectInfo, start: int) -> None:
        where = f"{info.key}@{start}"
        if self._flaky is None or not self._flaky.search(where):
            return
        seen = self._flaky_seen.get(where, 0)
        if seen < self.plan.flaky_reads:
            self._flaky_seen[where] = seen + 1
            self.injected["flaky"] += 1
            raise UnavailableError(f"{where}: injected transient failure (503)")

    async def close(self) -> None:
        await self.inner.close()
