"""Helpers shared by test modules (tests/ is on pytest's pythonpath)."""

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis.stateful import RuleBasedStateMachine, invariant
from shardcache.backends.memory import MemoryBackend
from shardcache.engine import Engine
from shardcache.store.index import Index
from shardcache.store.layout import Layout
from shardcache.urls import parse_url


def open_engine(config, backend):
    async def factory(url, cfg):
        return backend

    return Engine(config, factory)


def run(coro):
    return asyncio.run(coro)


def tree(root):
    """Relative path -> bytes of every file under root."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = f.read()
    return out


class EngineMachine(RuleBasedStateMachine):
    """What the model-based tests of the store share: an engine on its own loop, the dataset
    directory as the reader sees it, and the index's byte count checked after every step.
    Subclasses set `URL` and open `engine` on `store`, in `tmp`."""

    URL = ""

    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.loop = asyncio.new_event_loop()
        self.store = MemoryBackend("bkt")
        self.model: dict[str, bytes] = {}

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def visible(self):
        root = self.engine.local_path(parse_url(self.URL))
        return tree(root) if root.exists() else {}

    @invariant()
    def byte_count_matches_the_index(self):
        # a second connection, as another process would open: the index is shared by design
        index = Index(Layout(self.engine.config.cache_dir).index_path)
        try:
            assert index.published_bytes() == sum(e.size for e in index.entries())
        finally:
            index.close()

    def teardown(self):
        self.run(self.engine.close())
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
