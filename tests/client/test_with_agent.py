"""The client through a real `shardcache-agent` on a unix socket, against moto; and what it
does when that agent dies mid-run (local files stay readable, misses fall back to the store)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
import shardcache.client as sc
from shardcache.client import Client, api, waiting
from shardcache.client.agent_client import AgentClient

pytestmark = pytest.mark.timeout(120)

AGENT = Path(sys.executable).parent / "shardcache-agent"
_MAIN = Path(__file__).resolve().parents[2] / "daemonset" / "agent" / "main.py"
if not (AGENT.exists() and _MAIN.exists()):
    pytest.skip("agent not available", allow_module_level=True)


class AgentProcess:
    """A real agent process; `kill()` ends it abruptly, as a crashed agent would."""

    def __init__(self, cache_dir: Path, socket: Path, *extra: str) -> None:
        self.socket = str(socket)
        self.log = open(cache_dir.parent / "agent.log", "wb")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        self.proc = subprocess.Popen(
            [str(AGENT), "--cache-dir", str(cache_dir), "--socket", self.socket, *extra],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        client = AgentClient(self.socket, timeout_s=2.0)
        deadline = time.monotonic() + 60
        while not client.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the agent did not become ready; see {self.log.name}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()


@pytest.fixture
def agent_dirs(tmp_path) -> tuple[Path, Path]:
    # unix socket paths are limited to ~107 bytes: keep the socket short
    sock_dir = Path(f"/tmp/sc-agent-{os.getpid()}-{tmp_path.name[-20:]}")
    sock_dir.mkdir(exist_ok=True)
    yield tmp_path / "agent-cache", sock_dir / "a.sock"
    shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
def agent(agent_dirs, proxy, bucket) -> Iterator[AgentProcess]:
    process = AgentProcess(*agent_dirs)
    yield process
    process.kill()


def agent_only_client(socket: str) -> Client:
    """A client configured like a pod's: only the agent socket; the cache dir is learnt
    from the agent."""
    return Client(env={"SHARDCACHE_AGENT_SOCKET": socket, "SHARDCACHE_FSYNC": "0"})


@pytest.fixture
def agent_client(agent) -> Iterator[Client]:
    with agent_only_client(agent.socket) as c:
        yield c


def test_a_miss_goes_through_the_agent_and_then_hits_locally(
    agent, agent_client, bucket, objects, proxy, agent_dirs
):
    url = bucket.url("ds/a.bin")
    assert agent_client.cat(url) == objects["ds/a.bin"]
    local = agent_client.local_file(url)
    assert local is not None and local.startswith(str(agent_dirs[0]))
    before = proxy.stats().requests_total
    assert agent_client.cat(url) == objects["ds/a.bin"]
    assert before > 0 and proxy.stats().requests_total == before
    stats = agent_client.stats()
    assert (stats.misses, stats.hits, stats.fallbacks) == (1, 1, 0)


def test_fsspec_both_forms_through_the_agent(
    agent, bucket, objects, cache_env, monkeypatch, agent_dirs
):
    monkeypatch.setenv("SHARDCACHE_AGENT_SOCKET", agent.socket)
    monkeypatch.delenv("SHARDCACHE_CACHE_DIR")
    api.close_default_clients()
    with fsspec.open(f"shardcache::s3://{bucket.name}/ds/sub/b.bin") as f:
        assert f.read() == objects["ds/sub/b.bin"]
    fs = fsspec.filesystem("shardcache", target_protocol="s3")
    assert fs.cat(f"{bucket.name}/ds/sub/b.bin") == objects["ds/sub/b.bin"]
    assert fs.ls(f"{bucket.name}/ds", detail=False) == [
        f"{bucket.name}/ds/a.bin",
        f"{bucket.name}/ds/sub",
    ]
    assert fs.stats().hits == 1 and fs.stats().misses == 1
    assert str(sc.local_path(bucket.url("ds/"))).startswith(str(agent_dirs[0]))


def test_wait_and_prefetch_through_the_agent(agent, agent_client, bucket, objects):
    ds = bucket.url("ds/")
    assert waiting.wait_until_local(agent_client, ds, 1.0, timeout_s=60) == 1.0
    assert waiting.prefetch(agent_client, ds) == agent_client.local_path(ds)
    before = agent_client.stats()
    assert agent_client.cat(bucket.url("ds/sub/deeper/d.bin")) == objects["ds/sub/deeper/d.bin"]
    assert agent_client.stats().hits == before.hits + 1


def test_agent_killed_mid_run_falls_back_to_direct_reads(
    agent, agent_client, bucket, objects, proxy
):
    assert agent_client.cat(bucket.url("ds/a.bin")) == objects["ds/a.bin"]
    agent.kill()
    # what is local stays readable without the agent
    assert agent_client.cat(bucket.url("ds/a.bin")) == objects["ds/a.bin"]
    before = proxy.stats().requests_total
    for key in ("ds/sub/b.bin", "ds/sub/c.txt"):
        assert agent_client.cat(bucket.url(key)) == objects[key]
    assert proxy.stats().requests_total > before
    stats = agent_client.stats()
    assert (stats.hits, stats.misses, stats.fallbacks) == (1, 3, 2)
    assert agent_client.local_file(bucket.url("ds/sub/b.bin")) is not None
    assert not os.path.exists(agent_client.local_file(bucket.url("ds/sub/b.bin")) or "")


def test_agent_over_budget_reads_through(agent_dirs, proxy, bucket, objects):
    small = AgentProcess(*agent_dirs, "--max-bytes", "10000")
    try:
        with agent_only_client(small.socket) as c:
            assert c.cat(bucket.url("ds/a.bin")) == objects["ds/a.bin"]
            stats = c.stats()
            assert (stats.misses, stats.read_through, stats.fallbacks) == (1, 1, 0)
    finally:
        small.kill()


@pytest.mark.parametrize("method", ["fork", pytest.param("forkserver", marks=pytest.mark.slow)])
def test_dataloader_workers_through_the_agent(
    method, agent, bucket, objects, cache_env, monkeypatch
):
    torch_data = pytest.importorskip("torch.utils.data")
    from shardcache.client.torch import ShardcacheDataset

    monkeypatch.setenv("SHARDCACHE_AGENT_SOCKET", agent.socket)
    monkeypatch.delenv("SHARDCACHE_CACHE_DIR")
    api.close_default_clients()
    expected = [objects[k] for k in sorted(k for k in objects if k.startswith("ds/"))]
    loader = torch_data.DataLoader(
        ShardcacheDataset(bucket.url("ds/")),
        batch_size=None,
        num_workers=2,
        multiprocessing_context=method,
        timeout=120,
    )
    assert list(loader) == expected
    # the workers' misses were fetched by the agent into its cache, once each
    for key in (k for k in objects if k.startswith("ds/")):
        assert sc.local_path(bucket.url(key)).read_bytes() == objects[key]
