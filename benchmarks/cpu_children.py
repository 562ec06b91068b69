"""The readers of `cpu_per_object.py`, one per child process (`python -m
benchmarks.cpu_children READER SPEC`): each prints one JSON line with the CPU seconds (user +
sys of this process, all threads) of its work, the whole process's, wall seconds and bytes."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any


def _write_file(root: str, key: str, data: bytes) -> None:
    """What any cache must do with an object at least: a new file, its bytes, their MD5
    (the store's ETag check), fsync, and a rename into the mirror."""
    import hashlib

    tmp = os.path.join(root, "staging", key.replace("/", "_") + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        os.write(fd, data)
        hashlib.md5(data, usedforsecurity=False).hexdigest()
        os.fsync(fd)
    finally:
        os.close(fd)
    dest = os.path.join(root, "data", key)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.rename(tmp, dest)


class _PartedFile:
    """The floor of any cache for an object fetched in ranged parts: each part written at its
    offset as it arrives, the MD5 fed in offset order (parts that arrive early wait in memory,
    without bound), and once the last part is in, fsync and a rename into the mirror."""

    def __init__(self, root: str, key: str, nparts: int) -> None:
        import hashlib
        import threading

        self.root, self.key, self.remaining = root, key, nparts
        self.tmp = os.path.join(root, "staging", key.replace("/", "_") + ".part")
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.next = 0
        self.waiting: dict[int, bytes] = {}
        self.lock = threading.Lock()

    def write(self, start: int, data: bytes) -> None:
        os.pwrite(self.fd, data, start)
        with self.lock:
            self.waiting[start] = data
            while self.next in self.waiting:
                chunk = self.waiting.pop(self.next)
                self.md5.update(chunk)
                self.next += len(chunk)
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self.md5.hexdigest()
            os.fsync(self.fd)
            os.close(self.fd)
            dest = os.path.join(self.root, "data", self.key)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.rename(self.tmp, dest)


# -- children ---------------------------------------------------------------------------------


async def _raw(
    env: dict[str, str],
    keys: list[str],
    concurrency: int,
    part_bytes: int,
    sizes: list[int],
    write_to: str = "",
) -> int:
    import aiohttp
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    base = f"{env['AWS_ENDPOINT_URL']}/{env['BENCH_BUCKET']}/"
    todo = iter(_requests(keys, sizes, part_bytes))
    total = 0
    parted: dict[str, _PartedFile] = {}
    if write_to and part_bytes:
        for k, size in zip(keys, sizes, strict=True):
            parted[k] = _PartedFile(write_to, k, len(range(0, size, part_bytes)) or 1)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:

        async def worker() -> None:
            nonlocal total
            for key, start, end in todo:
                url = base + key
                req = AWSRequest(
                    method="GET", url=url, headers={"Range": f"bytes={start}-{end - 1}"}
                )
                S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
                async with session.get(url, headers=dict(req.headers.items())) as resp:
                    resp.raise_for_status()
                    data = await resp.read()
                if key in parted:
                    await asyncio.to_thread(parted[key].write, start, data)
                elif write_to:
                    await asyncio.to_thread(_write_file, write_to, key, data)
                total += len(data)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


def _requests(keys: list[str], sizes: list[int], part_bytes: int) -> list[tuple[str, int, int]]:
    """(key, start, end) per GET: whole objects, or ranged parts of `part_bytes`."""
    from shardcache.testkit.readers import plan_requests

    plan = plan_requests(list(zip(keys, sizes, strict=True)), part_bytes or None)
    return [(keys[i], start, end) for i, start, end in plan]


async def _obstore(
    env: dict[str, str], keys: list[str], concurrency: int, part_bytes: int, sizes: list[int]
) -> int:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        env["BENCH_BUCKET"],
        endpoint=env["AWS_ENDPOINT_URL"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region="us-east-1",
        client_options={"allow_http": True, "timeout": "300s"},
    )
    todo = iter(_requests(keys, sizes, part_bytes))
    total = 0

    async def worker(store: Any) -> None:
        nonlocal total
        for key, start, end in todo:
            if part_bytes:
                data = await obstore.get_range_async(store, key, start=start, end=end)
            else:
                data = await (await obstore.get_async(store, key)).bytes_async()
            total += len(data)

    await asyncio.gather(*(worker(store) for _ in range(concurrency)))
    # Let obstore's runtime settle before the loop closes: without this pause about one
    # process in six aborted at exit (SIGABRT in a runtime thread after finalization began)
    del store
    await asyncio.sleep(0.01)
    return total


def _s3fs(env: dict[str, str], keys: list[str]) -> int:
    """s3fs `cat` of every path at once (its own concurrency: one GET per object)."""
    import fsspec

    fs = fsspec.filesystem(
        "s3",
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"], "region_name": "us-east-1"},
        skip_instance_cache=True,
        use_listings_cache=False,
    )
    paths = [f"{env['BENCH_BUCKET']}/{k}" for k in keys]
    return sum(len(b) for b in fs.cat(paths).values())


def _prefetch(env: dict[str, str], cache_dir: str, concurrency: int, part_bytes: int) -> int:
    """`shardcache prefetch URL --output json` in this process, exactly as the CLI runs it."""
    import contextlib
    import io

    from shardcache.cli.main import main as cli

    if part_bytes:  # the knobs a sweep turns, which the CLI has no flags for
        from shardcache.config import Config

        plain = Config.from_env

        def with_parts(env: Any, **overrides: Any) -> Config:
            return plain(env, **overrides).with_(
                part_size_bytes=part_bytes, multipart_threshold_bytes=part_bytes
            )

        Config.from_env = with_parts  # type: ignore[method-assign]
    out = io.StringIO()
    argv = [
        "prefetch",
        f"s3://{env['BENCH_BUCKET']}/{env['BENCH_PREFIX']}",
        "--cache-dir",
        cache_dir,
        "--concurrency",
        str(concurrency),
        "--output",
        "json",
        "-q",
    ]
    with contextlib.redirect_stdout(out):
        code = cli(argv)
    if code != 0:
        raise RuntimeError(f"prefetch exited {code}: {out.getvalue()[-2000:]}")
    return int(json.loads(out.getvalue())["bytes_downloaded"])


def child(reader: str, spec_path: str) -> None:
    """Run one reader and print one JSON line: work CPU, process CPU, wall, bytes."""
    spec = json.loads(Path(spec_path).read_text())
    env = dict(os.environ)
    keys, sizes = spec["keys"], spec["sizes"]
    conc, part = spec["concurrency"], spec["part_bytes"]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if reader == "raw":
        got = asyncio.run(_raw(env, keys, conc, part, sizes))
    elif reader == "raw+write":
        os.makedirs(os.path.join(spec["cache_dir"], "staging"))
        got = asyncio.run(_raw(env, keys, conc, part, sizes, spec["cache_dir"]))
    elif reader == "s3fs":
        got = _s3fs(env, keys)
    elif reader == "obstore":
        got = asyncio.run(_obstore(env, keys, conc, part, sizes))
    else:
        got = _prefetch(env, spec["cache_dir"], conc, part)
        got = spec["expect_bytes"] if reader == "rerun" and got == 0 else got
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "reader": reader,
                "cpu_s": cpu,
                "wall_s": wall,
                "bytes": got,
                "process_cpu_s": ru.ru_utime + ru.ru_stime,
                "sys_s": ru.ru_stime - ru0.ru_stime,
            }
        )
    )


# -- parent -----------------------------------------------------------------------------------


if __name__ == "__main__":
    child(*sys.argv[1:3])
