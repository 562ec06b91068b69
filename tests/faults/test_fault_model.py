"""Property test: the cache against a dict model under random faults, kills and restarts.

Complements tests/engine/test_store_model.py (fault-free) with a store that fails, truncates,
flips and stalls reads at random, and with prefetches abandoned mid-way (a task cancelled at a
random moment, then a staging file left behind, then a restart: what SIGKILL leaves). At every
step, whatever is visible in the dataset directory is some version the store really held for
that key (never partial, never mixed); after a fault-free prefetch it is exactly the model.
"""

import asyncio
import contextlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from shardcache.backends.faults import FaultPlan, FaultyBackend
from shardcache.config import Config
from shardcache.engine import Engine
from shardcache.retry import Retry
from shardcache.store.layout import Layout
from shardcache.urls import parse_url
from support import EngineMachine

KEYS = ["a", "b/c", "b/d", "e/f/g", "ünï code"]
URL = "memory://bkt/ds/"
MiB = 1024 * 1024


class FaultyCacheMachine(EngineMachine):
    URL = URL

    def __init__(self):
        super().__init__()
        self.backend = self.store
        self.history: dict[str, set[bytes]] = {}
        self.config = Config(
            cache_dir=self.tmp / "cache",
            min_free_fraction=0.0,
            fsync=False,
            multipart_threshold_bytes=MiB,
            part_size_bytes=MiB,
            read_timeout_s=1.0,
            retry=Retry(base_backoff_s=0.0005, max_backoff_s=0.001),
        )
        self.engine = self._open()

    def _open(self):
        machine = self

        class Current:
            """The engine keeps the backend it was given; this one forwards to whichever
            backend the current step uses (faulty or not)."""

            def __getattr__(self, name):
                return getattr(machine.backend, name)

            async def close(self):
                pass

        async def factory(url, cfg):
            return Current()

        engine = Engine(self.config, factory)
        self.loop.run_until_complete(engine.open())
        return engine

    def restart(self):
        self.run(self.engine.close())
        self.engine = self._open()
        assert list(Layout(self.engine.config.cache_dir).staging_dir.iterdir()) == []

    @rule(key=st.sampled_from(KEYS), data=st.binary(max_size=2000), big=st.booleans())
    def put(self, key, data, big):
        if big:
            data = (data or b"x") * (1 + (2 * MiB) // max(1, len(data)))
        self.store.put("ds/" + key, data)
        self.model[key] = data
        self.history.setdefault(key, set()).add(data)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key):
        if key in self.model:
            self.store.delete("ds/" + key)
            del self.model[key]

    @rule(
        seed=st.integers(0, 2**16),
        unavailable=st.sampled_from([0.0, 0.3, 0.9]),
        truncate=st.sampled_from([0.0, 0.1]),
        flip=st.sampled_from([0.0, 0.1, 1.0]),
    )
    def faulty_prefetch(self, seed, unavailable, truncate, flip):
        self.backend = FaultyBackend(
            self.store,
            FaultPlan(
                unavailable_rate=unavailable, truncate_rate=truncate, flip_rate=flip, seed=seed
            ),
        )
        try:
            report = self.run(self.engine.prefetch(parse_url(URL), refresh=True))
        finally:
            self.backend = self.store
        for f in report.failed:
            assert f.key.removeprefix("ds/") in self.model

    @rule(seed=st.integers(0, 2**16), after_s=st.sampled_from([0.0, 0.002, 0.01, 0.03]))
    def kill_mid_prefetch(self, seed, after_s):
        self.backend = FaultyBackend(self.store, FaultPlan(stall_rate=0.3, stall_s=0.02, seed=seed))

        async def abandon():
            task = asyncio.ensure_future(self.engine.prefetch(parse_url(URL)))
            await asyncio.sleep(after_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        try:
            self.run(abandon())
        finally:
            self.backend = self.store
        (Layout(self.engine.config.cache_dir).staging_dir / f"{seed:x}.part").write_bytes(b"half")
        self.restart()

    @rule()
    def clean_prefetch_gives_the_model(self):
        report = self.run(self.engine.prefetch(parse_url(URL), refresh=True))
        assert report.ok, report.failed
        assert self.visible() == self.model

    @rule()
    def restart_rule(self):
        self.restart()

    @invariant()
    def nothing_partial_is_ever_visible(self):
        for key, data in self.visible().items():
            assert data in self.history.get(key, set()), key


TestFaultyCacheModel = FaultyCacheMachine.TestCase
TestFaultyCacheModel.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
