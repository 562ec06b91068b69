"""The webhook under load, over real TLS: the in-flight budget, the body deadline and cap,
large bodies decoded off the event loop; and the memory arithmetic the cap comes from."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import tracemalloc

import pytest
from shardcache_cluster.policy import ALLOW_ALL
from shardcache_cluster.prometheus import parse
from shardcache_cluster.webhook.limits import LoadBudget, max_body_bytes, peak_bytes
from shardcache_cluster.webhook.mutate import Settings
from shardcache_cluster.webhook.review import answer

DATASET = {"shardcache.io/dataset": "s3://bucket-a/imagenet/"}

#: the API server refuses request bodies above 3 MiB; no legitimate review is larger
APISERVER_MAX_REQUEST_BYTES = 3 * 1024 * 1024


def wait_for(condition, timeout_s=20.0, interval_s=0.02):
    """Poll a condition with a hard deadline (a bound, never a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def metric(client, name):
    _, text = client.request("GET", "/metrics")
    return parse(text.decode())[name]


class RawRequest:
    """A POST /mutate whose body is sent in pieces, on its own TLS connection."""

    def __init__(self, port, ca, declared_length):
        context = ssl.create_default_context()
        ca.configure_trust(context)
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        head = (
            "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared_length}\r\nConnection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def send(self, data):
        self.sock.sendall(data)

    def response(self):
        """Status and body (by Content-Length: the server may linger before closing)."""
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536) or pytest.fail("closed before a response")
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(body) < int(fields["content-length"]):
            body += self.sock.recv(65536) or pytest.fail("closed inside the body")
        return int(lines[0].split()[1]), body

    def close(self):
        self.sock.close()


def test_the_cap_fits_full_concurrency_in_the_memory_limit():
    budget = LoadBudget()
    cap = max_body_bytes(budget)
    assert cap >= APISERVER_MAX_REQUEST_BYTES  # no legitimate review is refused
    assert peak_bytes(budget, cap) <= budget.memory_limit_bytes
    assert peak_bytes(budget, cap + 64 * 1024) > budget.memory_limit_bytes  # the cap is tight
    assert max_body_bytes(LoadBudget(memory_limit_bytes=64 * 1024 * 1024)) == 0


@pytest.mark.parametrize("item", ['{"":{}}', "[[]]", "{}", '{"a":[]}', "[0]", '"ab"', "1.5"])
def test_json_amplification_stays_within_the_budget(item):
    """The factor the cap is derived from, measured: what json.loads allocates per byte of
    the densest hostile shapes."""
    body = ("[" + ",".join([item] * 100_000) + "]").encode()
    tracemalloc.start()
    try:
        doc = json.loads(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del doc
    assert peak <= LoadBudget().amplification * len(body)


def test_reviews_wait_for_a_slot_then_are_answered(make_server, ca, kit):
    server = make_server(
        budget=LoadBudget(max_in_flight=2, body_timeout_s=60.0, queue_timeout_s=60.0),
        settings=Settings(image="registry.example/shardcache:test"),
    )
    client = kit.Client(server.port, ca)
    slow = [RawRequest(server.port, ca, declared_length=1000) for _ in range(2)]
    try:
        for r in slow:
            r.send(b'{"apiVersion": ')
        assert wait_for(lambda: metric(client, "shardcache_webhook_reviews_in_flight") == 2)
        answered = {}

        def third():
            answered["review"] = client.review(kit.make_review(kit.make_pod(DATASET)))

        t = threading.Thread(target=third)
        t.start()
        assert wait_for(lambda: metric(client, "shardcache_webhook_reviews_waiting") == 1)
        assert "review" not in answered  # no slot is free: its body has not even been read
        slow[0].send(b" " * 985)  # the first slow body completes: not a review, a 400
        assert slow[0].response()[0] == 400
        t.join(30)
        status, review = answered["review"]
        assert status == 200 and "patch" in review["response"]
    finally:
        for r in slow:
            r.close()
    assert wait_for(lambda: metric(client, "shardcache_webhook_reviews_in_flight") == 0)
    assert client.review(kit.make_review(kit.make_pod(DATASET)))[0] == 200


def test_a_slow_body_times_out_and_frees_its_slot(make_server, ca, kit):
    server = make_server(budget=LoadBudget(max_in_flight=1, body_timeout_s=0.2))
    client = kit.Client(server.port, ca)
    slow = RawRequest(server.port, ca, declared_length=1000)
    try:
        slow.send(b"{")
        status, body = slow.response()
    finally:
        slow.close()
    assert status == 408 and "did not arrive" in json.loads(body)["error"]
    assert client.review(kit.make_review(kit.make_pod(DATASET)))[0] == 200


def test_a_full_queue_is_answered_503_so_the_failure_policy_applies(make_server, ca, kit):
    server = make_server(
        budget=LoadBudget(max_in_flight=1, body_timeout_s=60.0, queue_timeout_s=0.2)
    )
    client = kit.Client(server.port, ca)
    slow = RawRequest(server.port, ca, declared_length=1000)
    try:
        slow.send(b"{")
        assert wait_for(lambda: metric(client, "shardcache_webhook_reviews_in_flight") == 1)
        status, body = client.request("POST", "/mutate", b"{}")
        assert status == 503 and "in flight" in json.loads(body)["error"]
    finally:
        slow.close()
    assert wait_for(lambda: client.review(kit.make_review(kit.make_pod(DATASET)))[0] == 200)


def test_large_bodies_are_decoded_off_the_loop_with_the_same_answer(client, server, kit):
    big = kit.make_pod({**DATASET, "example.com/notes": "n" * (200 * 1024)})
    review = kit.make_review(big)
    before = metric(client, "shardcache_webhook_offloaded_reviews_total")
    status, got = client.review(review)
    assert status == 200
    assert got == answer(review, server.config.settings, ALLOW_ALL).body
    assert metric(client, "shardcache_webhook_offloaded_reviews_total") == before + 1
    client.review(kit.make_review(kit.make_pod(DATASET)))  # a small one stays on the loop
    assert metric(client, "shardcache_webhook_offloaded_reviews_total") == before + 1
    again, same = client.review(review)  # idempotent on the worker path too
    assert (again, same) == (status, got)


def test_large_hostile_bodies_get_a_well_formed_400(client, kit):
    hostile = ("[" + ",".join(['{"":{}}'] * 200_000) + "]").encode()
    status, body = client.request("POST", "/mutate", hostile)
    assert status == 400 and "error" in json.loads(body)
    deep = b'{"request": ' * 50_000 + b"1" + b"}" * 50_000
    status, body = client.request("POST", "/mutate", deep)
    assert status == 400 and "error" in json.loads(body)
    assert client.review(kit.make_review(kit.make_pod(DATASET)))[0] == 200


def test_a_chunked_body_over_the_cap_is_refused(client, server, kit):
    cap = server.config.max_body_bytes
    conn = client.connect()
    try:
        piece = b" " * (256 * 1024)
        chunks = iter([piece] * (cap // len(piece) + 2))
        conn.request("POST", "/mutate", body=chunks, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413
        response.read()
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass  # the server answered 413 and closed before the rest was sent: refused too
    finally:
        conn.close()
    assert client.review(kit.make_review(kit.make_pod(DATASET)))[0] == 200
