"""The probe runner against real servers on loopback: a gRPC health service and HTTP(S)."""

from __future__ import annotations

import http.server
import threading
from concurrent import futures

import grpc
import pytest

from .kubeobj import Probe
from .probes import HEALTH_CHECK, run_once


class _NoContainer:
    """httpGet, tcpSocket and grpc probes never touch the container."""


@pytest.fixture
def health_server():
    answer = {"bytes": b"\x08\x01"}
    seen: list[bytes] = []

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(request)
        return answer["bytes"]

    service, method = HEALTH_CHECK.strip("/").split("/")
    handler = grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(check)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, answer, seen
    finally:
        server.stop(None).wait(5)


def test_grpc_probe_asks_the_health_service(health_server):
    port, answer, seen = health_server
    probe = Probe("grpc", port, service="csi", timeout_s=5)
    assert run_once(probe, "127.0.0.1", _NoContainer()).ok  # type: ignore[arg-type]
    assert seen == [b"\x0a\x03csi"]
    answer["bytes"] = b"\x08\x02"  # NOT_SERVING
    assert not run_once(probe, "127.0.0.1", _NoContainer()).ok  # type: ignore[arg-type]


def test_http_probe_success_is_2xx_and_3xx():
    codes = iter([200, 302, 500])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(next(codes))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe = Probe("httpGet", server.server_address[1], "/healthz", timeout_s=5)
        results = [run_once(probe, "127.0.0.1", _NoContainer()).ok for _ in range(3)]  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()
    assert results == [True, True, False]


def test_a_closed_port_fails_the_probe():
    probe = Probe("tcpSocket", 1, timeout_s=2)
    outcome = run_once(probe, "127.0.0.1", _NoContainer())  # type: ignore[arg-type]
    assert not outcome.ok and "Connection refused" in outcome.detail
