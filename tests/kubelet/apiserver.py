"""The API server as seen from inside the node pod: HTTPS on the pod's own loopback.

The kubelet gives every container `KUBERNETES_SERVICE_HOST`/`_PORT` (the `kubernetes`
Service); the agent, seeing them, runs its pod watcher with the in-cluster configuration: the
token and CA of the projected volume mounted at the service-account path. To let it, the
harness serves tests/agent/fake_apiserver.py (pods of a node, list and watch, events) behind
TLS signed by the cluster CA that `kube-root-ca.crt` carries, on 127.0.0.1 of the node pod's
network namespace: the listening socket is made while the harness's thread has entered that
namespace (setns(2) applies to the calling thread, and a socket stays in the namespace it was
made in), so no address outside the pod is ever used. Each request's `Authorization` header
is recorded: the tests check that the agent authenticates with the token the kubelet mounted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import ssl
import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

import trustme
from agent.fake_apiserver import FakeApiServer, _Handler

CLONE_NEWNET = 0x40000000


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """The calling thread in the network namespace `name` (ip netns), then back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


class _Recording(_Handler):
    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            with self.fake.cond:
                self.server.authorizations.append(self.headers.get("Authorization", ""))
                self.fake.cond.notify_all()
        return ok


class PodNetworkApiServer:
    def __init__(self, netns: str, ca: trustme.CA) -> None:
        with in_netns(netns):
            self.fake = FakeApiServer()
        server: Any = self.fake._server
        server.RequestHandlerClass = _Recording
        server.authorizations = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "kubernetes.default.svc").configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    def service_env(self) -> dict[str, str]:
        """What the kubelet puts in every container for the `kubernetes` Service."""
        host, port = "127.0.0.1", str(self.port)
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }

    def authorizations(self) -> list[str]:
        with self.fake.cond:
            return list(self.fake._server.authorizations)

    def wait_requests(self, timeout_s: float) -> list[str]:
        """The Authorization headers seen, once there is one (or after `timeout_s`)."""
        with self.fake.cond:
            self.fake.cond.wait_for(lambda: self.fake._server.authorizations, timeout_s)
            return list(self.fake._server.authorizations)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.fake.drop()
        if self._thread.is_alive():
            self.fake._server.shutdown()
        self.fake._server.server_close()
