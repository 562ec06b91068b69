"""Partitioned datasets across real agents: each node fetches its share, each object once.

Every agent is a real `shardcache-agent` process with its own cache directory and socket (one
per simulated node), reaching moto through the cloud-like proxy. The proxy counts requests by
path, so "fetched once across both nodes" is counted where the cloud would bill it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_process import AgentProcess
from shardcache.errors import ConfigError
from shardcache.partition import partition
from shardcache.testkit.proxy import ProxyConfig

from benchmarks.partition_real import CountingProxy

DATA = {f"ds/shard-{i:03d}.tar": os.urandom(20_000 + 7 * i) for i in range(23)}
KEYS = sorted(DATA)
NO_DELAY = ProxyConfig(first_byte_delay_s=0.0, bandwidth_bytes_per_s=None)


@pytest.fixture
def proxy(s3_server) -> Iterator[CountingProxy]:
    with CountingProxy(s3_server.endpoint_url, NO_DELAY) as p:
        yield p


@pytest.fixture
def nodes(tmp_path: Path, proxy: CountingProxy) -> Iterator[list[AgentProcess]]:
    """Two agents (two nodes), each with its own cache dir, both behind the proxy."""
    env = dict(os.environ, AWS_ENDPOINT_URL=proxy.url)
    with tempfile.TemporaryDirectory(prefix="scp-", dir="/tmp") as sockets:
        agents = [
            AgentProcess(
                tmp_path / f"node{i}",
                Path(sockets) / f"n{i}.sock",
                env=env,
                log_path=tmp_path / f"node{i}.log",
            )
            for i in range(2)
        ]
        for agent in agents:
            agent.start(wait=False)
        try:
            for agent in agents:
                agent.wait_ready()
            yield agents
        finally:
            for agent in agents:
                if agent.proc is not None and agent.proc.poll() is None:
                    agent.kill()


def gets(proxy: CountingProxy, bucket: str) -> dict[str, int]:
    """Object GETs per key, and LISTs under the key "" (a GET of the bucket itself)."""
    out: dict[str, int] = {}
    for (method, path), n in proxy.counts().items():
        if method == "GET" and (path == f"/{bucket}" or path.startswith(f"/{bucket}/")):
            key = path[len(bucket) + 2 :]
            out[key] = out.get(key, 0) + n
    return out


def local_keys(doc: Any) -> list[str]:
    root = Path(str(doc["local_dir"]))
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted("ds/" + f for f in files if not f.startswith(".shardcache/"))


def share(doc: Any, spec: str) -> dict[str, object]:
    shares = doc["shares"]
    assert isinstance(shares, list)
    [found] = [s for s in shares if s["partition"] == spec]
    return dict(found)


def test_two_agents_with_one_share_each_fetch_every_object_once(s3_bucket, proxy, nodes):
    s3_bucket.put(DATA)
    url = s3_bucket.url("ds/")
    for i, agent in enumerate(nodes):
        doc = agent.client.register(url, f"pod-{i}", partition=f"{i}/2").as_json()
        assert share(doc, f"{i}/2")["fraction_local"] == 0.0  # reported before it is listed
    docs = [agent.wait_status(url, ("complete", "partial")).as_json() for agent in nodes]

    counted = gets(proxy, s3_bucket.name)
    assert {k: counted.get(k, 0) for k in KEYS} == dict.fromkeys(KEYS, 1)
    assert counted[""] == 2  # one LIST stream (one page) per node
    for i, doc in enumerate(docs):
        mine = partition(KEYS, i, 2)
        assert local_keys(doc) == mine
        part = share(doc, f"{i}/2")
        assert part["objects_local"] == part["objects_total"] == len(mine)
        assert part["bytes_local"] == sum(len(DATA[k]) for k in mine)
        assert part["fraction_local"] == 1.0
        # the whole dataset's progress stays visible beside the share's
        assert doc["objects_total"] == len(KEYS) and doc["objects_local"] == len(mine)
        assert doc["state"] == "partial" and doc["fraction_local"] < 1.0
        m = nodes[i].metrics()
        assert m[f'shardcache_share_bytes_local{{dataset="{url}",partition="{i}/2"}}'] == sum(
            len(DATA[k]) for k in mine
        )


def test_an_object_outside_the_share_is_fetched_on_demand_as_a_miss(s3_bucket, proxy, nodes):
    s3_bucket.put(DATA)
    url = s3_bucket.url("ds/")
    node = nodes[0]
    node.client.register(url, "pod-0", partition="0/2")
    node.wait_status(url, ("complete", "partial"))
    outside = partition(KEYS, 1, 2)[0]
    assert gets(proxy, s3_bucket.name).get(outside, 0) == 0
    path = node.client.fetch(s3_bucket.url(outside))
    assert path is not None and Path(path).read_bytes() == DATA[outside]
    assert gets(proxy, s3_bucket.name)[outside] == 1
    assert node.metrics()['shardcache_misses_total{path="client"}'] == 1


def test_pods_of_one_job_on_one_node_fetch_the_union_of_their_shares_once(s3_bucket, proxy, nodes):
    s3_bucket.put(DATA)
    url = s3_bucket.url("ds/")
    node = nodes[0]
    for owner, spec in (("p0", "0/4"), ("p1", "1/4"), ("p1-again", "1/4"), ("p3", "3/4")):
        node.client.register(url, owner, partition=spec)
    doc = node.wait_status(url, ("complete", "partial")).as_json()
    union = sorted({k for i in (0, 1, 3) for k in partition(KEYS, i, 4)})
    counted = gets(proxy, s3_bucket.name)
    assert {k: counted.get(k, 0) for k in KEYS} == {k: int(k in union) for k in KEYS}
    assert local_keys(doc) == union
    assert sorted(s["partition"] for s in doc["shares"]) == ["0/4", "1/4", "3/4"]
    shown = subprocess.run(
        [sys.executable, "-m", "shardcache.cli.main", "status", url, "--agent", str(node.socket)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert shown.returncode == 0, shown.stderr
    for spec in ("0/4", "1/4", "3/4"):
        assert f"share {spec}" in shown.stdout

    # a pod that wants everything widens it to the whole dataset, still one fetch per object
    node.client.register(url, "reads-all")
    node.wait_status(url, ("complete",))
    counted = gets(proxy, s3_bucket.name)
    assert {k: counted.get(k, 0) for k in KEYS} == dict.fromkeys(KEYS, 1)


@pytest.mark.parametrize("bad", ["2/2", "0/0", "index/2", "a/b", "-1/2"])
def test_the_agent_refuses_a_bad_partition(s3_bucket, nodes, bad):
    with pytest.raises(ConfigError, match="partition"):
        nodes[0].client.register(s3_bucket.url("ds/"), "pod-x", partition=bad)
