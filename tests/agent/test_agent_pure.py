"""The agent's pure parts, without I/O: desired datasets, plan, status merge, metrics text."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

from fake_apiserver import pod
from shardcache.reports import EngineStats
from shardcache.status import DatasetState, Failure, Progress, with_progress
from shardcache.urls import parse_url
from shardcache_cluster.agent import desired, metrics, status
from shardcache_cluster.policy import Policy, parse_policy

POLICY = parse_policy({"namespaces": {"team-a": ["s3://data/"], "*": []}})


def test_view_reads_annotations_and_applies_the_policy():
    uid = str(uuid.uuid4())
    p = pod(
        uid,
        "p",
        "team-a",
        "n",
        {
            "shardcache.io/dataset.train": "s3://data/train",
            "shardcache.io/dataset.val": "s3://other/val/",
            "shardcache.io/prefetch": "none",
        },
    )
    v = desired.view(p, POLICY)
    assert v is not None and v.active
    assert v.wants == (desired.Want(uid, "s3://data/train/", "team-a", "none"),)
    assert [r.url for r in v.refusals] == ["s3://other/val/"]
    assert "team-a" in v.refusals[0].reason


def test_view_ignores_pods_that_did_not_opt_in_and_refuses_local_schemes():
    uid = str(uuid.uuid4())
    ann = {"shardcache.io/dataset": "file:///etc/"}
    assert desired.view(pod(uid, "p", "team-a", "n", ann, enabled=False), POLICY) is None
    v = desired.view(pod(uid, "p", "team-a", "n", ann), Policy(None))
    assert v is not None and not v.wants and v.refusals
    bad = desired.view(pod(uid, "p", "team-a", "n", {"shardcache.io/prefetch": "x"}), POLICY)
    assert bad is not None and "prefetch" in bad.refusals[0].reason


def test_plan_registers_running_pods_and_releases_gone_uid_owners():
    a, b, gone = (str(uuid.uuid4()) for _ in range(3))
    ann = {"shardcache.io/dataset": "s3://data/x/"}
    views = [
        desired.view(pod(a, "a", "team-a", "n", ann, phase="Running"), POLICY),
        desired.view(pod(b, "b", "team-a", "n", ann, phase="Failed"), POLICY),
    ]
    pins = [
        ("s3://data/x/", a),
        ("s3://data/x/", b),
        ("s3://data/x/", gone),
        ("s3://data/x/", "cli-12"),
    ]
    plan = desired.plan([v for v in views if v], pins)
    assert [w.owner for w in plan.register] == [a]
    assert sorted(plan.release) == sorted([("s3://data/x/", b), ("s3://data/x/", gone)])


def test_event_body_names_the_pod():
    r = desired.Refusal("u", "ns", "p", "s3://x/", "not allowed")
    body = desired.event_body(r, "node-1", "2025-01-01T00:00:00Z")
    assert body["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "p",
        "namespace": "ns",
        "uid": "u",
    }
    assert body["type"] == "Warning" and "s3://x/" in body["message"]


def test_rate_and_eta_from_samples():
    samples = [(0.0, 0), (1.0, 100), (2.0, 300)]
    assert status.rate_bytes_per_s(samples, now=2.0) == 150.0
    assert status.rate_bytes_per_s(samples, now=4.0) == 75.0  # a stall lowers the rate
    assert status.rate_bytes_per_s(samples, now=100.0) == 0.0  # all outside the window
    assert status.eta_s(300, 150.0) == 2.0 and status.eta_s(10, 0.0) is None
    assert status.eta_s(0, 0.0) == 0.0


def test_shown_prefers_live_progress_while_running():
    base = status.unknown(parse_url("s3://bkt/p/"), Path("/c/p"), ["o"])
    live = Progress("s3://bkt/p/", 4, 400, objects_done=1, bytes_done=100)
    doc = status.shown(
        with_progress(base, live), running=True, samples=[(0.0, 0), (1.0, 100)], now=1.0
    )
    assert doc.state == "downloading" and doc.bytes_local == 100
    assert doc.rate_bytes_per_s == 100.0 and doc.eta_s == 3.0
    assert doc.fraction_local == 0.25
    listing = status.shown(base, running=True, samples=[], now=0.0)
    assert listing.state == "listing" and listing.eta_s is None
    stale = status.shown(
        replace(base, state=DatasetState.DOWNLOADING, listed_at=1.0),
        running=False,
        samples=[],
        now=0.0,
    )
    assert stale.state == "idle"  # left by a killed agent
    failed = status.shown(
        base,
        running=False,
        samples=[],
        now=0.0,
        agent_errors=[Failure("", "not_found", "no bucket")],
    )
    assert failed.state == "failed" and failed.errors[-1].kind == "not_found"


def test_metrics_render_is_prometheus_text():
    c = metrics.AgentCounters()
    c.error("not_found")
    c.durations.observe(0.03)
    snap = metrics.Snapshot(
        engine=EngineStats(bytes_downloaded=5, objects_downloaded=1),
        queue_depth=2,
        used_bytes=5,
        capacity_bytes=100,
        datasets={'s3://b/"q"/': (1, 2, 5, 10)},
        ready=True,
    )
    text = metrics.render(metrics.families(c, snap))
    values = metrics.parse(text)
    assert values['shardcache_errors_total{kind="not_found"}'] == 1
    assert values['shardcache_download_duration_seconds_bucket{le="0.05"}'] == 1
    assert values['shardcache_download_duration_seconds_bucket{le="0.025"}'] == 0
    assert values['shardcache_dataset_bytes_total{dataset="s3://b/\\"q\\"/"}'] == 10
    assert "# TYPE shardcache_download_duration_seconds histogram" in text


def _with_csi_volume(p, url, prefetch=None):
    attributes = {"dataset": url, **({"prefetch": prefetch} if prefetch else {})}
    p["spec"]["volumes"] = [
        {"name": "cfg", "configMap": {"name": "x"}},
        {"name": "data", "csi": {"driver": "csi.shardcache.io", "volumeAttributes": attributes}},
        {"name": "other", "csi": {"driver": "other.example.com", "volumeAttributes": attributes}},
    ]
    return p


def test_an_unlabelled_pod_with_a_shardcache_csi_volume_counts():
    uid = str(uuid.uuid4())
    p = _with_csi_volume(pod(uid, "p", "team-a", "n", {}, enabled=False), "s3://data/x")
    v = desired.view(p, POLICY)
    assert v is not None and v.wants == (desired.Want(uid, "s3://data/x/", "team-a", "all"),)
    denied = desired.view(
        _with_csi_volume(pod(uid, "p", "team-b", "n", {}, enabled=False), "s3://data/x"), POLICY
    )
    assert denied is not None and not denied.wants and denied.refusals  # policy applies
    assert desired.view(pod(uid, "p", "team-a", "n", {}, enabled=False), POLICY) is None


def test_a_webhook_mutated_pod_is_counted_once():
    uid = str(uuid.uuid4())
    ann = {"shardcache.io/dataset": "s3://data/x/", "shardcache.io/prefetch": "none"}
    p = _with_csi_volume(pod(uid, "p", "team-a", "n", ann), "s3://data/x/", prefetch="none")
    v = desired.view(p, POLICY)
    assert v is not None and v.wants == (desired.Want(uid, "s3://data/x/", "team-a", "none"),)


def test_view_carries_the_pods_share_and_refuses_a_bad_one():
    from shardcache.partition import Partition

    uid = str(uuid.uuid4())
    ann = {
        "shardcache.io/dataset": "s3://data/train/",
        "shardcache.io/partition": "index/8",
        "batch.kubernetes.io/job-completion-index": "3",
    }
    v = desired.view(pod(uid, "p", "team-a", "n", ann), POLICY)
    assert v is not None
    assert v.wants == (desired.Want(uid, "s3://data/train/", "team-a", "all", Partition(3, 8)),)
    del ann["batch.kubernetes.io/job-completion-index"]
    bad = desired.view(pod(uid, "p", "team-a", "n", ann), POLICY)
    assert bad is not None and bad.wants == ()
    assert "shardcache.io/partition" in bad.refusals[0].reason


def test_shares_union_widening_and_release():
    from shardcache.partition import Partition
    from shardcache.urls import parse_url
    from shardcache_cluster.agent.shares import WHOLE, Shares

    s = Shares()
    url = parse_url("s3://data/train/")
    assert s.union(url) == WHOLE  # nobody asked for a share: the whole dataset
    s.add(url, "p0", Partition(0, 4))
    s.add(url, "p1", Partition(1, 4))
    s.add(url, "p1b", Partition(1, 4))
    planned = s.union(url)
    assert planned == (Partition(0, 4), Partition(1, 4))
    assert s.partitions(url) == [Partition(0, 4), Partition(1, 4)]
    assert not s.widens(url, planned)
    s.add(url, "p3", Partition(3, 4))
    assert s.widens(url, planned)
    s.add(url, "all", None)
    assert s.union(url) == WHOLE and s.widens(url, planned)
    assert not s.widens(url, WHOLE)  # the whole dataset covers any share
    for owner in ("all", "p3", "p1", "p0"):
        s.drop(url, owner)
    assert s.union(url) == (Partition(1, 4),)  # p1b still holds its share
    s.drop(url, "p1b")
    assert s.union(url) == WHOLE and s.partitions(url) == []
