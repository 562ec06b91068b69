"""The agent follows the tenancy policy file as it changes, and allows nothing in cluster mode
without one: the real agent process on its unix socket, S3 on moto."""

from __future__ import annotations

import json
import os
import time

import pytest
from shardcache.errors import ConfigError, PolicyDeniedError

WAIT_S = 20.0


def eventually(check, what):
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.05)


def generation(agent) -> float:
    return agent.metrics()["shardcache_policy_generation"]


def test_a_policy_edit_reaches_the_next_registration(s3_bucket, make_agent, tmp_path):
    s3_bucket.put({"ds/a.bin": b"a" * 10})
    url = s3_bucket.url("ds/")
    policy = tmp_path / "policy.json"

    def allow(prefixes):
        policy.write_text(json.dumps({"namespaces": {"team-a": prefixes, "*": []}}))

    allow([s3_bucket.url()])
    agent = make_agent(extra=["--policy-file", str(policy)])
    agent.start()
    assert generation(agent) == 1
    agent.client.register(url, "pod-1", namespace="team-a")
    with pytest.raises(PolicyDeniedError):  # no namespace: the "*" entry, which is empty
        agent.client.register(url, "cli-1")

    allow([s3_bucket.url("other/")])  # revoked
    eventually(lambda: generation(agent) == 2, "the revocation is loaded")
    with pytest.raises(PolicyDeniedError, match="may not use"):
        agent.client.register(url, "pod-2", namespace="team-a")
    assert list(agent.client.status(url).owners) == ["pod-1"]  # running pods keep their pin

    policy.write_text("{broken")  # unusable: nothing is allowed until it is fixed
    eventually(lambda: generation(agent) == 3, "the broken file is noticed")
    with pytest.raises(PolicyDeniedError):
        agent.client.register(url, "pod-2", namespace="team-a")

    allow([s3_bucket.url()])  # granted again
    eventually(lambda: generation(agent) == 4, "the grant is loaded")
    agent.client.register(url, "pod-2", namespace="team-a")
    assert sorted(agent.client.status(url).owners) == ["pod-1", "pod-2"]


def test_cluster_mode_without_a_policy_file_allows_nothing(s3_bucket, make_agent):
    s3_bucket.put({"ds/a.bin": b"a" * 10})
    url = s3_bucket.url("ds/")
    # in a cluster (the watcher cannot reach an API server here and turns itself off)
    env = {**os.environ, "KUBERNETES_SERVICE_HOST": "127.0.0.1", "NODE_NAME": "node-a"}
    agent = make_agent(env=env)
    agent.start()
    with pytest.raises(ConfigError, match="needs the namespace"):
        agent.client.register(url, "cli-1")
    with pytest.raises(PolicyDeniedError, match="no dataset"):
        agent.client.register(url, "3f2a0b7c-0000-4000-8000-000000000001", namespace="team-a")
    assert agent.client.datasets() == []
