"""Ranged parts of one object against moto (S3 over HTTP, read through obstore): parts that
arrive last-first still land at their offsets and hash to the ETag (the early ones past the
memory budget are hashed from the staging file), and a part that fails all its attempts is
fetched again alone."""

import asyncio
import os

import pytest
from shardcache.backends.base import Backend, Data, ObjectInfo
from shardcache.backends.cloud import open_backend
from shardcache.backends.faults import FaultPlan, FaultyBackend
from shardcache.config import Config
from shardcache.engine import Engine
from shardcache.retry import Retry
from shardcache.urls import parse_url
from support import run, tree

MiB = 1024 * 1024
#: every wait in the reordering wrapper is bounded; far above a 1 MiB read from moto
WAIT_S = 60.0


class LastFirst:
    """A real backend whose reads of one object's parts return in reverse offset order: the
    read of the part at `start` returns only once the part after it has returned. Records the
    type of every buffer the backend gave."""

    def __init__(self, inner: Backend, part_size: int) -> None:
        self.inner = inner
        self.part_size = part_size
        self.returned: dict[tuple[str, int], asyncio.Event] = {}
        self.types: set[type] = set()

    def _event(self, key: str, start: int) -> asyncio.Event:
        return self.returned.setdefault((key, start), asyncio.Event())

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        return await self.inner.list_objects(prefix)

    async def stat(self, key: str) -> ObjectInfo:
        return await self.inner.stat(key)

    async def read(self, info: ObjectInfo, start: int, end: int) -> Data:
        data = await self.inner.read(info, start, end)
        self.types.add(type(data))
        if start + self.part_size < info.size:
            await asyncio.wait_for(self._event(info.key, start + self.part_size).wait(), WAIT_S)
        self._event(info.key, start).set()
        return data

    async def close(self) -> None:
        await self.inner.close()


def parted_config(tmp_path) -> Config:
    return Config(
        cache_dir=tmp_path / "cache",
        min_free_fraction=0.0,
        multipart_threshold_bytes=MiB,
        part_size_bytes=MiB,  # the hasher keeps at most 4 early parts in memory
        retry=Retry(base_backoff_s=0.001, max_backoff_s=0.01),
    )


def prefetch_through(config, url, wrap):
    async def go():
        async def factory(store_url, cfg):
            return wrap(await open_backend(store_url, cfg))

        async with Engine(config, factory) as engine:
            report = await engine.prefetch(parse_url(url))
            return report, await engine.verify(parse_url(url)), engine.stats()

    return run(go())


def test_parts_arriving_last_first_land_at_their_offsets_and_match_the_etag(s3_bucket, tmp_path):
    data = os.urandom(9 * MiB + 5)  # 10 parts; moto's ETag is the MD5 of the whole
    s3_bucket.put({"ds/big": data, "ds/small": b"x" * 1000})
    config = parted_config(tmp_path)
    wrapped: list[LastFirst] = []

    def wrap(backend: Backend) -> Backend:
        wrapped.append(LastFirst(backend, config.part_size_bytes))
        return wrapped[-1]

    report, verified, counters = prefetch_through(config, s3_bucket.url("ds/"), wrap)
    assert report.ok, report.failed
    assert tree(report.local_dir) == {"big": data, "small": b"x" * 1000}
    assert verified.ok == verified.checked == 2
    assert counters.integrity_failures == 0 and counters.object_retries == 0
    # all ten parts were in flight at once, and obstore's buffers were used without a copy
    assert all(wrapped[0].returned[("ds/big", s)].is_set() for s in range(0, len(data), MiB))
    assert wrapped[0].types == {memoryview}


def test_a_part_that_fails_all_its_attempts_is_fetched_again_alone(s3_bucket, tmp_path):
    data = os.urandom(5 * MiB + 3)  # 6 parts of 1 MiB
    s3_bucket.put({"ds/big": data})
    config = parted_config(tmp_path)
    plan = FaultPlan(flaky=r"@2097152$", flaky_reads=config.retry.max_attempts)

    report, verified, counters = prefetch_through(
        config, s3_bucket.url("ds/"), lambda b: FaultyBackend(b, plan)
    )
    assert report.ok, report.failed
    assert tree(report.local_dir) == {"big": data}
    assert verified.ok == 1
    assert counters.object_retries == 1
    # the five good parts crossed the wire once: nothing verified was downloaded again
    assert counters.bytes_read == len(data)


@pytest.mark.parametrize("part_mib", [1, 3])
def test_objects_of_every_part_count_round_trip(s3_bucket, tmp_path, part_mib):
    objects = {f"ds/o{n}": os.urandom(n * MiB + n) for n in (0, 1, 2, 7)}
    s3_bucket.put(objects)
    config = parted_config(tmp_path).with_(
        part_size_bytes=part_mib * MiB, multipart_threshold_bytes=part_mib * MiB
    )
    report, verified, _ = prefetch_through(config, s3_bucket.url("ds/"), lambda b: b)
    assert report.ok, report.failed
    assert tree(report.local_dir) == {k[3:]: v for k, v in objects.items()}
    assert verified.ok == len(objects)
