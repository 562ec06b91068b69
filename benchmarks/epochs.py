"""R4: a simulated training read loop, shardcache against s3fs reading directly.

Each epoch reads every sample of the image-like set once in a fresh random order, with
`WORKERS` DataLoader-style worker threads pulling the next index from a shared sampler, and
reads the whole file (decoding is left out: it would be the same for both).

- s3fs direct: `fs.cat_file` per sample through the cloud-like proxy; s3fs has no cache, so
  every epoch costs the same; two epochs are measured.
- shardcache: epoch 1 is a cold `prefetch` of the dataset plus the read loop over the local
  directory (what `shardcache.io/wait: "1"` or `shardcache prefetch && train` does); later
  epochs are the read loop alone.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from shardcache.config import Config
from shardcache.testkit.benchstore import BUCKET, Endpoint
from shardcache.testkit.readers import s3fs_filesystem, shardcache_prefetch

WORKERS = 4


def read_loop(read: Callable[[str], int], keys: Sequence[str], seed: int) -> tuple[float, int]:
    order = list(keys)
    random.Random(seed).shuffle(order)
    todo = iter(order)
    lock = threading.Lock()
    got = [0] * WORKERS

    def worker(w: int) -> None:
        while True:
            with lock:
                key = next(todo, None)
            if key is None:
                return
            got[w] += read(key)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, sum(got)


def one_run(
    endpoint: Endpoint,
    dataset: str,
    sized: list[tuple[str, int]],
    work: Path,
    epochs: int,
    run: int,
) -> dict[str, list[float]]:
    """Seconds per epoch for each reader."""
    keys = [k for k, _ in sized]
    total = sum(s for _, s in sized)
    fs = s3fs_filesystem(endpoint)
    s3fs_epochs = []
    for e in range(2):
        seconds, got = read_loop(lambda k: len(fs.cat_file(f"{BUCKET}/{k}")), keys, run * 100 + e)
        _check(got, total)
        s3fs_epochs.append(seconds)
    cache = work / "cache-epochs"
    config = Config(cache_dir=cache, backend_options={"s3": endpoint.s3_options()})
    prefetch, local = shardcache_prefetch(config, f"s3://{BUCKET}/{dataset}/")
    prefix = dataset + "/"

    def local_read(key: str) -> int:
        with open(local / key.removeprefix(prefix), "rb") as f:
            return len(f.read())

    shard_epochs = []
    for e in range(epochs):
        seconds, got = read_loop(local_read, keys, run * 100 + e)
        _check(got, total)
        shard_epochs.append(seconds + (prefetch.seconds if e == 0 else 0.0))
    shutil.rmtree(cache, ignore_errors=True)
    return {"s3fs": s3fs_epochs, "shardcache": shard_epochs}


def _check(got: int, total: int) -> None:
    if got != total:
        raise RuntimeError(f"epoch read {got} bytes, expected {total}")
