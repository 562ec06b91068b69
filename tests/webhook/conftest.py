"""Fixtures for the webhook tests: real TLS certificates, a real server, pods, validators.

The server runs in-process on its own event loop in a thread, bound to 127.0.0.1 on a free
port; clients are the stdlib's http.client over TLS that trusts a trustme CA, so every review
crosses a real socket and a real handshake.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import http.client
import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import trustme
from kubelet.pss import restricted
from shardcache_cluster.webhook.mutate import Settings
from shardcache_cluster.webhook.server import ServerConfig, WebhookState, running

K8S_VERSION = "1.33"


class ServerThread:
    """The webhook serving on 127.0.0.1 from a background thread, with a bounded lifecycle."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.state: WebhookState | None = None
        self.port = 0
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as e:  # reported by start() in the test's thread
            self.error = e
            self.ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with running(self.config) as (state, port):
            self.state, self.port = state, port
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(10), "webhook did not start within 10 s"
        if self.error:
            self.thread.join(10)
            self.loop.close()
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)
        self.loop.close()


class Client:
    """One HTTPS client (a fresh connection per call unless `keep` is used)."""

    def __init__(self, port: int, ca: trustme.CA) -> None:
        self.port = port
        self.context = ssl.create_default_context()
        ca.configure_trust(self.context)

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=10)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        conn: http.client.HTTPSConnection | None = None,
    ) -> tuple[int, bytes]:
        own = conn is None
        conn = conn or self.connect()
        try:
            conn.request(
                method,
                path,
                body=body,
                headers={"Content-Type": "application/json", **(headers or {})},
            )
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            if own:
                conn.close()

    def review(self, review: dict[str, Any], **kw: Any) -> tuple[int, dict[str, Any]]:
        status, body = self.request("POST", "/mutate", json.dumps(review).encode(), **kw)
        return status, json.loads(body)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def write_cert(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = directory / "tls.crt", directory / "tls.key"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    return cert, key


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    return write_cert(ca, tmp_path)


@pytest.fixture
def make_server(cert_files: tuple[Path, Path]) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(**overrides: Any) -> ServerThread:
        fields: dict[str, Any] = {
            "cert_file": cert_files[0],
            "key_file": cert_files[1],
            "host": "127.0.0.1",
            "port": 0,
            "reload_interval_s": 0.05,
            # a single-tenant server unless a test names a policy or asks for cluster mode
            "cluster": False,
        }
        fields.update(overrides)
        server = ServerThread(ServerConfig(**fields)).__enter__()
        started.append(server)
        return server

    yield make
    for server in started:
        server.__exit__()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(settings=Settings(image="registry.example/shardcache:test"))


@pytest.fixture
def client(server: ServerThread, ca: trustme.CA) -> Client:
    return Client(server.port, ca)


def make_pod(
    annotations: dict[str, str] | None = None,
    enabled: bool = True,
    namespace: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A pod that passes Pod Security "restricted" as it is."""
    metadata: dict[str, Any] = {"generateName": "train-", "annotations": annotations or {}}
    if enabled:
        metadata["labels"] = {"shardcache.io/enabled": "true"}
    if namespace is not None:
        metadata["namespace"] = namespace
    container = {
        "name": "train",
        "image": "python:3.11",
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def make_review(
    pod: Any,
    namespace: str = "team-a",
    uid: str = "uid-1",
    operation: str = "CREATE",
    dry_run: bool = False,
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "object": pod,
            "dryRun": dry_run,
            "userInfo": {"username": "system:serviceaccount:team-a:default"},
        },
    }


def apply_response(pod: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
    """The pod the API server would store: the response's JSON patch applied to it."""
    response = review["response"]
    if "patch" not in response:
        return copy.deepcopy(pod)
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    return jsonpatch.apply_patch(pod, ops)  # type: ignore[no-any-return]


def validate_pod(pod: dict[str, Any]) -> None:
    """Strict schema check (no unknown fields) against a current Kubernetes version."""
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security "restricted" level's refusals for the pod (the one checker, shared with
    the kubelet box: tests/kubelet/pss.py)."""
    return restricted(pod["spec"])


@pytest.fixture
def env_without_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SHARDCACHE_") or name == "POD_NAMESPACE":
            monkeypatch.delenv(name)


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, handed to tests as a fixture (test modules never import conftest)."""
    return SimpleNamespace(
        make_pod=make_pod,
        make_review=make_review,
        apply_response=apply_response,
        validate_pod=validate_pod,
        restricted_violations=restricted_violations,
        write_cert=write_cert,
        Client=Client,
    )
