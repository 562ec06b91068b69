"""Property test: the cache against a dict model under random operations and restarts.

The model is what the store holds (key -> bytes). Whatever happens in between (overwrites,
deletes, restarts, damage to the cache at rest, leftovers of a crashed download), a prefetch
followed by a read of the dataset directory must give exactly the model, and the index's byte
count must equal what is on disk.
"""

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule
from shardcache.config import Config
from shardcache.engine import Engine
from shardcache.retry import Retry
from shardcache.store.layout import Layout
from shardcache.urls import parse_url
from support import EngineMachine

KEYS = ["a", "b/c", "b/d", "e/f/g", "ünï code", "sp ace/x"]
URL = "memory://bkt/ds/"


class CacheMachine(EngineMachine):
    URL = URL

    def __init__(self):
        super().__init__()
        self.config = Config(
            cache_dir=self.tmp / "cache",
            min_free_fraction=0.0,
            multipart_threshold_bytes=1024 * 1024,
            part_size_bytes=1024 * 1024,
            retry=Retry(base_backoff_s=0.001, max_backoff_s=0.001),
        )
        self.engine = self._open()
        self.prefetched = False

    def _open(self) -> Engine:
        async def factory(url, cfg):
            return self.store

        engine = Engine(self.config, factory)
        self.loop.run_until_complete(engine.open())
        return engine

    @rule(
        key=st.sampled_from(KEYS), data=st.binary(max_size=3000) | st.just(b""), big=st.booleans()
    )
    def put(self, key, data, big):
        if big:
            data = data * (1 + (1024 * 1024 + 17) // max(1, len(data))) if data else b"x" * 1048600
        self.store.put("ds/" + key, data)
        self.model[key] = data
        self.prefetched = False

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key):
        if key in self.model:
            self.store.delete("ds/" + key)
            del self.model[key]
            self.prefetched = False

    @rule()
    def prefetch(self):
        # refresh: the model is the store as it is now, not as of a reused listing
        report = self.run(self.engine.prefetch(parse_url(URL), refresh=True))
        assert report.ok, report.failed
        assert report.refused == []
        self.prefetched = True

    @rule()
    def restart(self):
        self.run(self.engine.close())
        self.engine = self._open()

    @rule()
    def crash_leftovers(self):
        """What a kill -9 mid-download leaves: an unlocked staging file."""
        (Layout(self.engine.config.cache_dir).staging_dir / "deadbeef.part").write_bytes(b"partial")
        self.run(self.engine.close())
        self.engine = self._open()
        assert list(Layout(self.engine.config.cache_dir).staging_dir.iterdir()) == []

    @precondition(lambda self: self.prefetched and self.model)
    @rule(data=st.data())
    def damage(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        path = self.engine.local_path(parse_url(URL)) / key
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            f.truncate(max(0, len(self.model[key]) - 1) if self.model[key] else 0)
            if not self.model[key]:
                f.write(b"!")
        self.run(self.engine.verify(parse_url(URL)))
        self.prefetched = False

    @precondition(lambda self: self.prefetched)
    @invariant()
    def mirror_equals_model(self):
        assert self.visible() == self.model


TestCacheModel = CacheMachine.TestCase
TestCacheModel.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
