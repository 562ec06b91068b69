"""Helpers shared by test modules (tests/ is on pytest's pythonpath)."""

import asyncio
import os

from shardcache.engine import Engine


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
