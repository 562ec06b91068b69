"""R7: start-up with a million cached objects, and the memory the index costs per object.

Synthesis (not timed): a cache directory laid out by the real engine, then N published objects
written the way the engine leaves them: one tiny file each under data/s3/BUCKET/ (1000 per
directory) and one `ready` row each in the index with that file's inode and mtime, plus the
dataset's manifest (N rows), in one transaction. Sizes are tiny: start-up cost depends on the
number of objects, not their bytes.

Measurements, each in a fresh process so that nothing is already in memory:

- engine open (`Engine.open`: layout checks, index open, `adopt_quick`) and a first lookup;
  index memory = RSS after open and lookup, minus the same on an empty cache, divided by N;
- `shardcache-agent` readiness (spawn to `/readyz` 200) and its RSS at readiness and for a few
  seconds after (background work may load more), minus an agent on an empty cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .agentproc import Agent, agent_available, child_env

BUCKET = "bench-r7"
STORE = f"s3://{BUCKET}"


def synthesize(cache: Path, n: int) -> None:
    from shardcache.config import Config
    from shardcache.engine import Engine

    async def prepare() -> None:
        async with Engine(Config(cache_dir=cache)):
            pass

    asyncio.run(prepare())
    rows = []
    base = cache / "data" / "s3" / BUCKET
    for d in range(-(-n // 1000)):
        (base / f"part-{d:04d}").mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i in range(n):
        key = f"part-{i // 1000:04d}/obj-{i:07d}"
        fd = os.open(base / key, os.O_CREAT | os.O_WRONLY, 0o444)
        os.write(fd, b"x")
        st = os.fstat(fd)
        os.close(fd)
        rows.append((STORE, key, f"etag{i:08x}", 1, None, st.st_ino, st.st_mtime_ns, "ready", now))
    db = sqlite3.connect(cache / "index.sqlite3", isolation_level=None)
    db.execute("BEGIN")
    db.executemany("INSERT INTO objects VALUES (?,?,?,?,?,?,?,?,?)", rows)
    db.executemany(
        "INSERT INTO manifest VALUES (?,?,?,?,?)",
        [(STORE + "/", r[1], 1, r[2], None) for r in rows],
    )
    db.execute(
        "INSERT INTO datasets(url, store, prefix, listed_at, objects_total, bytes_total, "
        "state, last_used) VALUES (?,?,?,?,?,?,'complete',?)",
        (STORE + "/", STORE, "", now, n, n, now),
    )
    db.execute("UPDATE meta SET v=? WHERE k='published_bytes'", (n,))
    db.execute("COMMIT")
    db.close()


def _child(cache: str) -> None:
    """Runs in a fresh process: open the engine, look one object up, report time and RSS."""
    import psutil
    from shardcache.config import Config
    from shardcache.engine import Engine
    from shardcache.urls import parse_url

    me = psutil.Process()
    rss0 = me.memory_info().rss

    async def run() -> dict[str, Any]:
        t0 = time.perf_counter()
        engine = Engine(Config(cache_dir=Path(cache)))
        await engine.open()
        opened = time.perf_counter() - t0
        url = parse_url(f"{STORE}/part-0000/obj-0000000")
        entry = await engine.lookup(url)
        total = (await engine.usage()).published
        first = time.perf_counter() - t0
        rss = me.memory_info().rss
        await engine.close()
        return {
            "open_s": opened,
            "first_lookup_s": first,
            "rss_delta": rss - rss0,
            "found": entry is not None,
            "published_bytes": total,
        }

    print(json.dumps(asyncio.run(run())))


def engine_open(cache: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.startup", "--child", str(cache)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def agent_start(cache: Path, socket: Path, watch_s: float) -> dict[str, float] | None:
    if not agent_available():
        return None
    with Agent(cache, socket, child_env({})) as agent:
        ready = agent.wait_ready(120)
        at_ready = agent.rss_bytes()
        peak = at_ready
        end = time.perf_counter() + watch_s
        while time.perf_counter() < end:
            peak = max(peak, agent.rss_bytes())
            time.sleep(0.1)
        return {"ready_s": ready, "rss_at_ready": at_ready, "rss_peak": peak}


def measure(work: Path, n: int, watch_s: float, log: Any) -> dict[str, Any]:
    empty, full = work / "r7-empty", work / "r7-full"
    log(f"  R7: synthesizing {n} cached objects ...")
    t0 = time.perf_counter()
    synthesize(empty, 0)
    synthesize(full, n)
    result: dict[str, Any] = {
        "objects": n,
        "watch_s": watch_s,
        "synth_s": time.perf_counter() - t0,
        "index_file_bytes": sum(p.stat().st_size for p in full.glob("index.sqlite3*")),
    }
    log("  R7: engine open ...")
    result["engine_empty"] = engine_open(empty)
    result["engine_full"] = engine_open(full)
    log("  R7: agent start-up ...")
    result["agent_empty"] = agent_start(empty, work / "r7-empty.sock", watch_s)
    result["agent_full"] = agent_start(full, work / "r7-full.sock", watch_s)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--child")
    a = p.parse_args(argv)
    if a.child:
        _child(a.child)
    return 0


if __name__ == "__main__":
    sys.exit(main())
