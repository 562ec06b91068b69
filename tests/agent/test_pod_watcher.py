"""The pod watcher through the real `kubernetes` client against a fake API server over HTTP,
inside a real agent process (S3 on moto)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fake_apiserver import FakeApiServer, pod

NODE = "node-a"
#: bound on every "eventually": a relist or a re-watch after a drop is ~1 s (one backoff)
WAIT_S = 20.0


def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.05)


def owners(agent: Any, url: str) -> set[str]:
    for doc in agent.client.datasets():
        if str(doc.url) == url:
            return set(doc.owners)
    return set()


@pytest.fixture
def apiserver():
    with FakeApiServer() as server:
        yield server


@pytest.mark.slow
def test_pod_watcher_end_to_end(s3_bucket, make_agent, apiserver, tmp_path):
    s3_bucket.put({"ds/a.bin": b"a" * 100, "ds/b.bin": b"b" * 200})
    url = s3_bucket.url("ds/")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"namespaces": {"team-a": [f"s3://{s3_bucket.name}/"], "*": []}}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(apiserver.kubeconfig())
    ann = {"shardcache.io/dataset": url}
    running = pod(str(uuid.uuid4()), "running", "team-a", NODE, ann, phase="Running")
    elsewhere = pod(str(uuid.uuid4()), "elsewhere", "team-a", "node-b", ann, phase="Running")
    apiserver.add(running)
    apiserver.add(elsewhere)

    # a previous agent left pins: a pod that no longer exists, and a CLI owner
    gone_uid = str(uuid.uuid4())
    before = make_agent()
    before.start()
    before.client.register(url, gone_uid)
    before.client.register(url, "cli-42")
    assert before.terminate() == 0

    agent = make_agent(
        extra=[
            "--kubeconfig",
            str(kubeconfig),
            "--node-name",
            NODE,
            "--policy-file",
            str(policy),
            "--watch-timeout",
            "5",
        ]
    )
    agent.start()
    uid = running["metadata"]["uid"]
    # reconcile from the list: the running pod pinned, the gone pod released, the CLI kept
    eventually(lambda: owners(agent, url) == {uid, "cli-42"}, "reconciled from the list")
    assert apiserver.count("list") == 1

    # a new pod, still Pending (its containers have not started): the prefetch starts now
    pending = pod(str(uuid.uuid4()), "pending", "team-a", NODE, ann, phase="Pending")
    apiserver.add(pending)
    p_uid = pending["metadata"]["uid"]
    eventually(lambda: p_uid in owners(agent, url), "pending pod registered")
    # the pod finishes: released
    apiserver.modify(p_uid, phase="Succeeded")
    eventually(lambda: p_uid not in owners(agent, url), "finished pod released")
    # the first pod is deleted: released, the dataset stays cached
    apiserver.delete(uid)
    eventually(lambda: owners(agent, url) == {"cli-42"}, "deleted pod released")
    assert agent.wait_status(url).objects_local == 2

    # 410 Gone: the watcher lists again and reconciles what it missed meanwhile
    missed = pod(str(uuid.uuid4()), "missed", "team-a", NODE, ann, phase="Running")
    apiserver.add(missed)
    m_uid = missed["metadata"]["uid"]
    eventually(lambda: m_uid in owners(agent, url), "pod registered")
    apiserver.vanish(m_uid)  # deleted without the watcher seeing an event
    apiserver.expire()
    eventually(lambda: apiserver.count("list") == 2, "relisted after 410")
    eventually(lambda: m_uid not in owners(agent, url), "missed deletion reconciled")

    # a dropped connection: the watcher backs off and watches again
    watches = apiserver.count("watch")
    apiserver.drop()
    late = pod(str(uuid.uuid4()), "late", "team-a", NODE, ann, phase="Pending")
    apiserver.add(late)
    eventually(lambda: late["metadata"]["uid"] in owners(agent, url), "registered after drop")
    assert apiserver.count("watch") > watches and apiserver.count("list") == 2

    # the policy refuses team-b: an Event on the pod, a refusal in status, nothing pinned
    other = s3_bucket.url("other/")
    refused = pod(
        str(uuid.uuid4()), "refused", "team-b", NODE, {"shardcache.io/dataset.train": other}
    )
    apiserver.add(refused)
    event = eventually(lambda: apiserver.events, "event recorded")[0]
    assert event["involvedObject"]["uid"] == refused["metadata"]["uid"]
    assert event["reason"] == "ShardcacheDatasetRefused" and event["type"] == "Warning"
    assert "team-b" in event["message"] and other in event["message"]
    assert "not-a-secret" not in json.dumps(event)
    listing = agent.client._request("GET", "/v1/datasets")
    assert [r["uid"] for r in listing["refusals"]] == [refused["metadata"]["uid"]]
    assert other not in [d["url"] for d in listing["datasets"]]
    assert refused["metadata"]["uid"] not in owners(agent, url)
    assert agent.terminate() == 0


def test_a_failed_open_through_a_view_is_an_event_on_its_pod(
    s3_bucket, make_agent, apiserver, tmp_path
):
    s3_bucket.put({"ds/a.bin": b"a"})
    url = s3_bucket.url("ds/")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(apiserver.kubeconfig())
    running = pod(
        str(uuid.uuid4()),
        "trainer",
        "team-a",
        NODE,
        {"shardcache.io/dataset": url},
        phase="Running",
    )
    apiserver.add(running)
    uid = running["metadata"]["uid"]
    # cluster mode (the pod watcher runs): without a policy file nothing would be allowed
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"namespaces": {"team-a": [f"s3://{s3_bucket.name}/"]}}))
    agent = make_agent(
        extra=["--kubeconfig", str(kubeconfig), "--node-name", NODE, "--policy-file", str(policy)]
    )
    agent.start()
    eventually(lambda: uid in owners(agent, url), "pod registered")
    failure = {"key": "a.bin", "kind": "not_found", "message": "gone from the bucket"}
    agent.client.report_view(url, {"failed_opens": 1}, [{**failure, "pod": uid}])
    event = eventually(lambda: apiserver.events, "event recorded")[0]
    assert event["reason"] == "ShardcacheOpenFailed" and event["type"] == "Warning"
    assert event["involvedObject"]["uid"] == uid and event["involvedObject"]["name"] == "trainer"
    assert f"{url}a.bin" in event["message"] and "not_found" in event["message"]
    assert agent.terminate() == 0


def test_an_unlabelled_pod_with_a_csi_volume_is_pinned_while_it_runs(
    s3_bucket, make_agent, apiserver, tmp_path
):
    """No label, no annotation: the pod's own `csi.shardcache.io` volume is what counts."""
    s3_bucket.put({"ds/a.bin": b"a" * 100})
    url = s3_bucket.url("ds/")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"namespaces": {"team-a": [f"s3://{s3_bucket.name}/"]}}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(apiserver.kubeconfig())
    plain = pod(str(uuid.uuid4()), "hand-written", "team-a", NODE, {}, "Running", enabled=False)
    plain["spec"]["volumes"] = [
        {
            "name": "data",
            "csi": {"driver": "csi.shardcache.io", "volumeAttributes": {"dataset": url}},
        }
    ]
    apiserver.add(plain)
    agent = make_agent(
        extra=["--kubeconfig", str(kubeconfig), "--node-name", NODE, "--policy-file", str(policy)]
    )
    agent.start()
    uid = plain["metadata"]["uid"]
    eventually(lambda: owners(agent, url) == {uid}, "the CSI-volume pod pinned")
    apiserver.modify(uid, phase="Succeeded")
    eventually(lambda: owners(agent, url) == set(), "released when it finished")
    assert agent.terminate() == 0
