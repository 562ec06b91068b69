"""R5: hit rate per epoch under random shuffling when the dataset is larger than the cache.

Two measurements:

- the policy models, driven access by access: `StickyCacheModel` (the engine's admission rule,
  built on `choose_victims`) and `LRUCacheModel`, for caches of 25/50/75% of the dataset;
- the real engine, in process, on a `MemoryBackend` with a `max_bytes` budget of 50%: the
  dataset is listed once (`prefetch(download=False)`, as the agent does when a pod asks for
  it), then each epoch fetches every object in a new random order. A fetch that returns an
  already-published file is a hit; a download or a read-through is a miss.

The bound for any policy that does not know the future order is cache/dataset (by bytes).
"""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

from shardcache.backends.base import Backend
from shardcache.backends.memory import MemoryBackend
from shardcache.config import Config
from shardcache.engine import Engine
from shardcache.urls import StoreURL, parse_url

from .models import LRUCacheModel, StickyCacheModel


def sizes(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [90 * 1024 + rng.randrange(40 * 1024) for _ in range(n)]


def simulate(
    model: StickyCacheModel | LRUCacheModel, object_sizes: list[int], epochs: int, seed: int
) -> list[float]:
    """Byte hit rate per epoch."""
    rng = random.Random(seed)
    out = []
    total = sum(object_sizes)
    for _ in range(epochs):
        order = list(range(len(object_sizes)))
        rng.shuffle(order)
        hit = sum(object_sizes[i] for i in order if model.access(str(i), object_sizes[i]))
        out.append(hit / total)
    return out


def models(n: int, epochs: int, seed: int) -> dict[str, list[float]]:
    s = sizes(n, seed)
    total = sum(s)
    out = {}
    for share in (0.25, 0.5, 0.75):
        cap = int(total * share)
        out[f"sticky {share:.0%}"] = simulate(StickyCacheModel(cap), s, epochs, seed)
        out[f"lru {share:.0%}"] = simulate(LRUCacheModel(cap), s, epochs, seed)
    return out


async def _engine_epochs(cache: Path, n: int, epochs: int, seed: int, share: float) -> list[float]:
    backend = MemoryBackend("bench-r5")
    s = [x // 16 for x in sizes(n, seed)]  # tiny objects: the policy, not the disk, is measured
    rng = random.Random(seed)
    for i, size in enumerate(s):
        backend.put(f"ds/obj-{i:06d}", rng.randbytes(size))
    total = sum(s)

    async def factory(url: StoreURL, config: Config) -> Backend:
        return backend

    config = Config(
        cache_dir=cache, max_bytes=int(total * share), min_free_fraction=0.0, fsync=False
    )
    out = []
    async with Engine(config, backend_factory=factory) as engine:
        await engine.prefetch(parse_url("memory://bench-r5/ds/"), download=False)
        for _ in range(epochs):
            order = list(range(n))
            rng.shuffle(order)
            hit = 0
            for i in order:
                result = await engine.fetch(parse_url(f"memory://bench-r5/ds/obj-{i:06d}"))
                if result.path is not None and not result.downloaded:
                    hit += s[i]
            out.append(hit / total)
    return out


def real_engine(work: Path, n: int, epochs: int, seed: int, share: float = 0.5) -> list[float]:
    cache = work / "cache-r5"
    try:
        return asyncio.run(_engine_epochs(cache, n, epochs, seed, share))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
