"""R6: cloud bytes when several readers on one node want the same dataset.

Bytes are counted where the cloud would bill them: response bodies leaving the cloud-like
proxy. Two set-ups, each from a fresh cache directory:

- N `shardcache prefetch` processes started at once on one cache directory (the embedded mode:
  processes coordinate through the index and per-object file locks);
- N clients asking one `shardcache-agent` for the dataset at once (`POST /v1/datasets`), then
  waiting for it to be complete.

R6 = proxy response bytes during the set-up / dataset bytes (listing responses add a little).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

from shardcache.testkit.benchstore import BUCKET, BenchStore

from .agentproc import Agent, agent_available, child_env, request

#: seconds the whole set-up may take before it counts as failed
_DEADLINE_S = 600.0


def processes(store: BenchStore, dataset: str, work: Path, n: int) -> dict[str, float]:
    assert store.cloud is not None
    cache = work / "cache-r6"
    env = child_env(dict(store.cloud.env, SHARDCACHE_CACHE_DIR=str(cache)))
    cli = str(Path(sys.executable).parent / "shardcache")
    before = store.proxy_bytes_out()
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [cli, "prefetch", f"s3://{BUCKET}/{dataset}/", "--output", "json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(n)
    ]
    codes = [p.wait(timeout=_DEADLINE_S) for p in procs]
    seconds = time.perf_counter() - start
    errors = [p.stderr.read().decode()[-500:] for p in procs if p.stderr and p.returncode]
    for p in procs:
        if p.stderr:
            p.stderr.close()
    shutil.rmtree(cache, ignore_errors=True)
    if any(codes):
        raise RuntimeError(f"shardcache prefetch failed: {errors[:1]}")
    return {"bytes": store.proxy_bytes_out() - before, "seconds": seconds}


def agent_clients(store: BenchStore, dataset: str, work: Path, n: int) -> dict[str, float] | None:
    if not agent_available():
        return None
    assert store.cloud is not None
    cache, socket = work / "cache-r6-agent", work / "agent.sock"
    url = f"s3://{BUCKET}/{dataset}/"
    try:
        with Agent(cache, socket, child_env(store.cloud.env)) as agent:
            agent.wait_ready(60)
            before = store.proxy_bytes_out()
            start = time.perf_counter()
            asyncio.run(_ask_all(socket, url, n))
            _wait_complete(agent, url)
            seconds = time.perf_counter() - start
            return {"bytes": store.proxy_bytes_out() - before, "seconds": seconds}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


async def _ask_all(socket: Path, url: str, n: int) -> None:
    answers = await asyncio.gather(
        *(
            request(
                socket, "POST", "/v1/datasets", {"url": url, "owner": f"pod-{i}", "prefetch": "all"}
            )
            for i in range(n)
        )
    )
    bad = [a for a in answers if a[0] != 200]
    if bad:
        raise RuntimeError(f"the agent refused the dataset: {bad[0]}")


def _wait_complete(agent: Agent, url: str) -> None:
    from urllib.parse import quote

    deadline = time.perf_counter() + _DEADLINE_S
    while time.perf_counter() < deadline:
        status, body = agent.request("GET", f"/v1/datasets/status?url={quote(url)}")
        if status == 200 and body.get("state") in ("complete", "partial", "failed"):
            if body["state"] != "complete":
                raise RuntimeError(f"the agent's prefetch ended {body['state']}: {body}")
            return
        time.sleep(0.05)
    raise TimeoutError(f"the agent did not complete {url} within {_DEADLINE_S} s")
