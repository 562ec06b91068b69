"""The webhook over real TLS on 127.0.0.1: reviews, hostile bodies, rotation, metrics, CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

DATASET = {"shardcache.io/dataset": "s3://bucket-a/imagenet/", "shardcache.io/wait": "0.9"}


def wait_for(condition, timeout_s=10.0, interval_s=0.02):
    """Poll a condition with a hard deadline (no timing assertion: only a bound)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def test_review_over_tls_yields_a_valid_restricted_pod(client, kit):
    pod = kit.make_pod(DATASET)
    status, review = client.review(kit.make_review(pod, uid="u-1"))
    assert status == 200
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert review["response"]["uid"] == "u-1" and review["response"]["allowed"] is True
    result = kit.apply_response(pod, review)
    kit.validate_pod(result)
    assert kit.restricted_violations(result) == []
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["shardcache-wait"]


def test_resent_review_and_reinvocation_change_nothing_more(client, kit):
    pod = kit.make_pod(DATASET)
    _, first = client.review(kit.make_review(pod))
    _, resent = client.review(kit.make_review(pod))
    assert first == resent
    mutated = kit.apply_response(pod, first)
    _, again = client.review(kit.make_review(mutated))
    assert again["response"]["allowed"] is True and "patch" not in again["response"]


def test_dry_run_and_empty_pod_namespace(client, kit):
    pod = kit.make_pod(DATASET)
    assert "namespace" not in pod["metadata"]
    _, dry = client.review(kit.make_review(pod, dry_run=True))
    _, real = client.review(kit.make_review(pod))
    assert dry == real and "patch" in real["response"]


@pytest.mark.parametrize("namespace", ["kube-system", "shardcache-system"])
def test_protected_namespaces(client, kit, namespace):
    _, review = client.review(kit.make_review(kit.make_pod(DATASET), namespace=namespace))
    assert review["response"] == {"uid": "uid-1", "allowed": True}


def test_policy_file_denies_and_reloads(make_server, ca, kit, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("namespaces:\n  team-a: ['s3://bucket-b/']\n")
    server = make_server(policy_file=policy)
    client = kit.Client(server.port, ca)
    pod = kit.make_pod(DATASET)
    _, denied = client.review(kit.make_review(pod))
    assert denied["response"]["allowed"] is False
    assert "may not use s3://bucket-a/imagenet/" in denied["response"]["status"]["message"]
    policy.write_text('{"namespaces": {"team-a": ["s3://bucket-a/"]}}')
    assert wait_for(lambda: client.review(kit.make_review(pod))[1]["response"]["allowed"])
    assert server.state.policy.generation == 2
    # an unusable edit allows nothing until it is fixed: a revocation with a typo in it must
    # not leave the old grant in force
    policy.write_text("namespaces: [broken")
    assert wait_for(lambda: server.state.metrics.reloads.get(("policy", "error"), 0) >= 1)
    assert client.review(kit.make_review(pod))[1]["response"]["allowed"] is False
    _, text = client.request("GET", "/metrics")
    assert "shardcache_policy_generation 3" in text.decode().splitlines()


def test_cluster_mode_without_a_policy_file_allows_nothing(make_server, ca, kit):
    server = make_server(cluster=True)
    client = kit.Client(server.port, ca)
    _, review = client.review(kit.make_review(kit.make_pod(DATASET)))
    assert review["response"]["allowed"] is False
    assert "allows no dataset" in review["response"]["status"]["message"]


HOSTILE = [
    (b"{not json", 400),
    (b"\xff\xfe\x00garbage", 400),
    (b"[" * 200_000 + b"]" * 200_000, 400),
    (b'{"a": ' + b"1" * 10_000 + b"}", 400),
    (b"null", 400),
    (b'"AdmissionReview"', 400),
    (json.dumps({"apiVersion": "v1", "kind": "Pod"}).encode(), 400),
    (
        json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1beta1",
                "kind": "AdmissionReview",
                "request": {"uid": "x"},
            }
        ).encode(),
        400,
    ),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), 400),
    (
        json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 7}}
        ).encode(),
        400,
    ),
    (
        json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {"uid": "x" * 1000},
            }
        ).encode(),
        400,
    ),
]


@pytest.mark.parametrize(("body", "status"), HOSTILE)
def test_hostile_bodies_get_a_4xx_and_the_server_keeps_serving(client, kit, body, status):
    got, answer = client.request("POST", "/mutate", body)
    assert got == status
    assert "error" in json.loads(answer)
    ok, review = client.review(kit.make_review(kit.make_pod(DATASET)))
    assert ok == 200 and "patch" in review["response"]


@pytest.mark.parametrize(
    "request_part",
    [
        {"uid": "x"},
        {"uid": "x", "operation": "CREATE", "resource": {"group": "", "resource": "pods"}},
        {
            "uid": "x",
            "operation": "CREATE",
            "resource": {"group": "", "resource": "pods"},
            "object": {
                "metadata": {"labels": {"shardcache.io/enabled": "true"}, "annotations": DATASET},
                "spec": {"containers": "x"},
            },
        },
        {
            "uid": "x",
            "operation": "CREATE",
            "resource": {"group": "", "resource": "pods"},
            "namespace": ["x"],
            "object": {
                "metadata": {
                    "labels": {"shardcache.io/enabled": "true"},
                    "annotations": {"shardcache.io/dataset": {}},
                }
            },
        },
        {
            "uid": "x",
            "operation": "CREATE",
            "resource": {"group": "apps", "resource": "deployments"},
            "object": {"spec": {}},
        },
    ],
)
def test_odd_but_well_formed_reviews_get_a_well_formed_answer(client, request_part):
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request_part,
    }
    status, answer = client.review(review)
    assert status == 200
    assert answer["response"]["uid"] == "x"
    assert isinstance(answer["response"]["allowed"], bool)


def test_oversized_bodies_are_refused(client, kit):
    conn = client.connect()
    try:  # a declared 100 MiB body is refused before it is read
        conn.putrequest("POST", "/mutate")
        conn.putheader("Content-Length", str(100 * 1024 * 1024))
        conn.endheaders(b"{" * 1024)
        response = conn.getresponse()
        assert response.status == 413
        response.read()
    finally:
        conn.close()
    status, _ = client.request("POST", "/mutate", b" " * (5 * 1024 * 1024))
    assert status == 413
    ok, _ = client.review(kit.make_review(kit.make_pod(DATASET)))
    assert ok == 200


def test_wrong_methods_and_paths(client):
    assert client.request("GET", "/mutate")[0] == 405
    assert client.request("POST", "/nowhere", b"{}")[0] == 404
    assert client.request("GET", "/healthz") == (200, b"ok")


def test_metrics_count_outcomes_and_expose_the_certificate_expiry(client, kit):
    client.review(kit.make_review(kit.make_pod(DATASET)))
    client.request("POST", "/mutate", b"nope")
    status, body = client.request("GET", "/metrics")
    text = body.decode()
    assert status == 200
    assert 'shardcache_webhook_reviews_total{outcome="patched"} 1' in text
    assert 'shardcache_webhook_reviews_total{outcome="invalid"} 1' in text
    assert 'shardcache_webhook_review_duration_seconds_bucket{le="+Inf"} 2' in text
    expiry = [
        line
        for line in text.splitlines()
        if line.startswith("shardcache_webhook_certificate_expiry_timestamp_seconds ")
    ]
    assert len(expiry) == 1 and float(expiry[0].split()[1]) > time.time()


def peer_cert(client) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", client.port), timeout=10) as raw,
        client.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert(binary_form=True)
        assert cert is not None
        return cert


def test_certificate_rotation_under_a_stream_of_reviews(
    server, client, kit, ca, cert_files, tmp_path
):
    before = peer_cert(client)
    pod = kit.make_pod(DATASET)
    failures: list[object] = []
    count = [0]
    stop = threading.Event()

    def stream():
        keep = client.connect()  # one kept-alive connection and fresh ones, interleaved
        try:
            while not stop.is_set() and count[0] < 5000:
                try:
                    conn = keep if count[0] % 2 else None
                    status, review = client.review(kit.make_review(pod), conn=conn)
                    if status != 200 or "patch" not in review["response"]:
                        failures.append(status)
                except (OSError, ssl.SSLError) as e:
                    failures.append(e)
                count[0] += 1
        finally:
            keep.close()

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        for round_ in range(3):
            staging = tmp_path / f"new-{round_}"
            staging.mkdir()
            new_cert, new_key = kit.write_cert(ca, staging)
            seen = count[0]
            # Two separate renames: readers can catch the new certificate with the old key.
            os.replace(new_cert, cert_files[0])
            os.replace(new_key, cert_files[1])
            assert wait_for(lambda old=before: peer_cert(client) != old)
            before = peer_cert(client)
            assert wait_for(lambda s=seen: count[0] > s + 20)
    finally:
        stop.set()
        thread.join(30)
    assert failures == []
    assert count[0] > 60
    assert server.state.metrics.reloads.get(("certificate", "ok"), 0) >= 3


def test_cli_serves_and_stops_on_sigterm(cert_files, ca, kit, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDCACHE_")}
    env["POD_NAMESPACE"] = "team-a"  # the webhook's own namespace is never mutated
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shardcache_cluster.webhook.main",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-cert-file",
            str(cert_files[0]),
            "--tls-private-key-file",
            str(cert_files[1]),
            "--image",
            "img:1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on port"), proc.stderr.read() if proc.stderr else ""
        client = kit.Client(int(line.split()[-1]), ca)
        _, own = client.review(kit.make_review(kit.make_pod(DATASET), namespace="team-a"))
        assert "patch" not in own["response"]
        _, other = client.review(kit.make_review(kit.make_pod(DATASET), namespace="team-b"))
        assert "patch" in other["response"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_cli_refuses_missing_certificates(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "shardcache_cluster.webhook.main",
            "--port",
            "0",
            "--tls-cert-file",
            str(tmp_path / "no.crt"),
            "--tls-private-key-file",
            str(tmp_path / "no.key"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr
