"""The engine under injected faults, against the in-memory store: retries that keep verified
parts, stalls that end, integrity failures that are counted, and the pure retry decisions."""

import asyncio
import os

import pytest
from shardcache.backends.faults import FaultPlan, FaultyBackend
from shardcache.engine.download import worst_error
from shardcache.errors import NotFoundError, UnavailableError, VersionChangedError
from shardcache.urls import parse_url
from support import open_engine, run, tree

URL = "memory://bkt/ds/"
MiB = 1024 * 1024


def test_the_worst_error_decides_for_the_object():
    errors = [UnavailableError("a"), NotFoundError("b"), VersionChangedError("c")]
    assert isinstance(worst_error(errors), VersionChangedError)
    assert isinstance(worst_error(errors[:2]), NotFoundError)


def test_a_part_that_fails_all_its_attempts_is_fetched_again_alone(store, config):
    data = os.urandom(5 * MiB + 3)  # 6 parts of 1 MiB
    store.put("ds/big", data)
    # the part at 2 MiB fails exactly max_attempts times: its first round gives up on it
    faulty = FaultyBackend(
        store, FaultPlan(flaky=r"@2097152$", flaky_reads=config.retry.max_attempts)
    )

    async def go():
        async with open_engine(config, faulty) as engine:
            report = await engine.prefetch(parse_url(URL))
            return report, engine.stats()

    report, counters = run(go())
    assert report.ok, report.failed
    assert tree(report.local_dir) == {"big": data}
    assert counters.object_retries == 1
    # the five good parts crossed the wire once: nothing verified was downloaded again
    assert store.stats().bytes_read == len(data)


def test_prefetch_survives_heavy_transient_faults(store, config):
    objects = {f"ds/f{i:02}": os.urandom(1000 + i) for i in range(40)}
    objects["ds/big"] = os.urandom(4 * MiB + 5)
    for k, v in objects.items():
        store.put(k, v)
    faulty = FaultyBackend(
        store, FaultPlan(unavailable_rate=0.3, truncate_rate=0.1, flip_rate=0.05, seed=7)
    )

    async def go():
        async with open_engine(config, faulty) as engine:
            return await engine.prefetch(parse_url(URL)), engine.stats()

    report, counters = run(go())
    assert report.ok, report.failed
    assert tree(report.local_dir) == {k[3:]: v for k, v in objects.items()}
    assert counters.retries > 0
    # short bodies count per request; flips per object round (two flipped parts of one
    # object fail its whole-object MD5 once)
    short, flipped = faulty.injected["truncated"], faulty.injected["flipped"]
    assert short > 0 and flipped > 0
    assert short + 1 <= counters.integrity_failures <= short + flipped


def test_persistent_failures_are_reported_and_the_rest_completes(store, config):
    objects = {f"ds/ok{i}": os.urandom(500) for i in range(10)}
    objects.update({"ds/bad1": b"x" * 10, "ds/sub/bad2": b"y" * 3 * MiB})
    for k, v in objects.items():
        store.put(k, v)
    faulty = FaultyBackend(store, FaultPlan(always_fail=r"bad"))

    async def go():
        async with open_engine(config, faulty) as engine:
            report = await engine.prefetch(parse_url(URL))
            rows = [await engine.status(parse_url(URL))]
            return report, rows, engine.stats()

    report, [row], counters = run(go())
    assert sorted(f.key for f in report.failed) == ["ds/bad1", "ds/sub/bad2"]
    assert all(f.kind == "unavailable" for f in report.failed)
    assert tree(report.local_dir) == {k[3:]: v for k, v in objects.items() if "bad" not in k}
    assert row.state.value == "failed" and {e.key for e in row.errors} == {"ds/bad1", "ds/sub/bad2"}
    assert counters.objects_failed == 2


def test_a_flipped_byte_that_persists_is_never_published(store, config):
    store.put("ds/a", os.urandom(3000))
    faulty = FaultyBackend(store, FaultPlan(flip_rate=1.0))

    async def go():
        async with open_engine(config, faulty) as engine:
            return await engine.prefetch(parse_url(URL)), engine.stats()

    report, counters = run(go())
    [failure] = report.failed
    assert failure.kind == "integrity" and "MD5" in failure.message
    assert counters.integrity_failures == config.retry.max_attempts
    assert tree(report.local_dir) == {}
    assert list((config.cache_dir / "staging").iterdir()) == []


def test_a_stalled_store_surfaces_as_an_error(store, config):
    store.put("ds/slow", b"z" * 100)
    store.put("ds/fine", b"ok")
    cfg = config.with_(read_timeout_s=0.2)
    faulty = FaultyBackend(store, FaultPlan(stall_rate=0.5, seed=3))

    async def go():
        async with open_engine(cfg, faulty) as engine:
            return await asyncio.wait_for(engine.prefetch(parse_url(URL)), 30)

    report = run(go())
    # whatever stalled twice in a row is reported as a stall; nothing hangs, nothing partial
    for f in report.failed:
        assert "no complete answer within 0.2 s" in f.message
    assert set(tree(report.local_dir)) | {f.key[3:] for f in report.failed} == {"slow", "fine"}


def test_object_replaced_again_and_again_is_chased_then_reported(store, config):
    data = os.urandom(3 * MiB)
    store.put("ds/hot", data)

    class Rewriter(FaultyBackend):
        """Replaces the object after each first part, `times` times."""

        def __init__(self, inner, times):
            super().__init__(inner, FaultPlan())
            self.times = times

        async def read(self, info, start, end):
            out = await super().read(info, start, end)
            if start == 0 and self.times > 0:
                self.times -= 1
                self.inner.put(info.key, os.urandom(3 * MiB))
            return out

    async def go(times):
        cfg = config.with_(max_concurrency=1)
        async with open_engine(cfg, Rewriter(store, times)) as engine:
            return await engine.prefetch(parse_url(URL), refresh=True), engine.stats()

    report, counters = run(go(2))
    assert report.ok and counters.version_restarts == 2
    assert tree(report.local_dir) == {"hot": run(store.read(run(store.stat("ds/hot")), 0, 3 * MiB))}
    store.put("ds/hot", data)
    report, _ = run(go(10))
    [failure] = report.failed
    assert failure.kind == "version_changed"


def test_cancelled_prefetch_leaves_nothing_partial_and_state_interrupted(store, config):
    store.put("ds/big", os.urandom(6 * MiB))
    store.put("ds/small", b"s")
    faulty = FaultyBackend(store, FaultPlan(stall_rate=1.0, stall_s=60))

    async def go():
        async with open_engine(config, faulty) as engine:
            task = asyncio.create_task(engine.prefetch(parse_url(URL)))
            while faulty.injected["stalled"] < 2:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            rows = await engine.statuses()
            return rows, list((config.cache_dir / "staging").iterdir())

    [row], staging = run(go())
    assert row.state == "interrupted"
    assert staging == []
