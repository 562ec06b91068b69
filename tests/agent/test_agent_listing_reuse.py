"""The agent lists a dataset once for the node: a pod registering after the prefetch ended
reuses the saved manifest (no request reaches the store), and `"refresh": true` lists again.
Real agent process, moto behind the counting proxy."""

from __future__ import annotations

import json
import os
import time

from shardcache.testkit.proxy import CloudProxy, ProxyConfig

FAST = ProxyConfig(first_byte_delay_s=0.0, bandwidth_bytes_per_s=None)


def prefetches_done(agent) -> list[dict[str, object]]:
    lines = agent.log_path.read_text(errors="replace").splitlines()
    return [json.loads(x) for x in lines if '"prefetch done"' in x]


def wait_prefetches(agent, n: int, timeout_s: float = 60.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while len(done := prefetches_done(agent)) < n:
        assert time.monotonic() < deadline, agent.log()
        time.sleep(0.05)
    return done


def test_a_later_pod_reuses_the_listing_and_refresh_lists_again(s3_server, s3_bucket, make_agent):
    s3_bucket.put({f"ds/f{i}": os.urandom(100) for i in range(5)})
    url = s3_bucket.url("ds/")
    with CloudProxy(s3_server.endpoint_url, FAST) as proxy:
        agent = make_agent(env=dict(os.environ, AWS_ENDPOINT_URL=proxy.url))
        agent.start()
        agent.client.register(url, "pod-a")
        [first] = wait_prefetches(agent, 1)
        assert first["listing_reused"] is False and first["downloaded"] == 5
        before = proxy.stats().requests_total

        agent.client.register(url, "pod-b")  # after the first prefetch ended
        second = wait_prefetches(agent, 2)[-1]
        assert second["listing_reused"] is True and second["objects"] == 5
        assert proxy.stats().requests_total == before  # no LIST, nothing to GET

        s3_bucket.put({"ds/new": b"added"})
        agent.client.register(url, "pod-c", refresh=True)
        third = wait_prefetches(agent, 3)[-1]
        assert third["listing_reused"] is False and third["objects"] == 6
        assert third["downloaded"] == 1
        assert agent.terminate() == 0
