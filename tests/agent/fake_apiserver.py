"""TEST FIXTURE: a small fake Kubernetes API server over HTTP on 127.0.0.1.

It serves just what the pod watcher uses, the way the real API server does:
- `GET /api/v1/pods?fieldSelector=spec.nodeName=X`: a PodList with a resourceVersion;
- the same with `watch=true&resourceVersion=RV`: newline-delimited JSON events, chunked,
  from RV on, until `timeoutSeconds`; an RV older than the compaction point gets a
  `410 Gone` ERROR event (as a real server does after etcd compaction);
- `POST /api/v1/namespaces/NS/events`: stores the Event, answers 201.
The test drives it: `add`/`modify`/`delete` emit events, `vanish` removes a pod without an
event (a missed event), `expire` compacts history (the next watch gets 410), `drop` cuts every
open watch connection mid-stream.
"""

from __future__ import annotations

import copy
import http.server
import json
import socket
import threading
import urllib.parse
from typing import Any


class FakeApiServer:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pods: dict[str, dict[str, Any]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.rv = 100
        self.compacted = 0
        self.generation = 0  # bumped by drop(): open watches end abruptly
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self) -> str:
        """A kubeconfig pointing at this server (JSON is YAML)."""
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            }
        )

    # -- driving --------------------------------------------------------------------------
    def _emit(self, kind: str, pod: dict[str, Any]) -> None:
        self.rv += 1
        pod["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, kind, copy.deepcopy(pod)))
        self.cond.notify_all()

    def add(self, pod: dict[str, Any]) -> None:
        with self.cond:
            self.pods[pod["metadata"]["uid"]] = pod
            self._emit("ADDED", pod)

    def modify(self, uid: str, **status: Any) -> None:
        with self.cond:
            pod = self.pods[uid]
            pod.setdefault("status", {}).update(status)
            self._emit("MODIFIED", pod)

    def delete(self, uid: str) -> None:
        with self.cond:
            self._emit("DELETED", self.pods.pop(uid))

    def vanish(self, uid: str) -> None:
        with self.cond:
            self.pods.pop(uid)
            self.rv += 1

    def expire(self) -> None:
        """Compact history: every watch from an older version gets 410 Gone."""
        with self.cond:
            self.compacted = self.rv + 1
            self.rv += 1
            self.generation += 1
            self.cond.notify_all()

    def drop(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def count(self, what: str) -> int:
        with self.cond:
            return sum(1 for r in self.requests if r == what)


def pod(
    uid: str,
    name: str,
    namespace: str,
    node: str,
    annotations: dict[str, str],
    phase: str = "Pending",
    enabled: bool = True,
) -> dict[str, Any]:
    labels = {"shardcache.io/enabled": "true"} if enabled else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "uid": uid,
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": phase},
    }


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeApiServer:
        return self.server.fake  # type: ignore[no-any-return]

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if parts.path != "/api/v1/pods":
            return self._json(404, _status(404, "NotFound", f"no route {parts.path}"))
        node = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
        if query.get("watch", "").lower() in ("true", "1"):
            return self._watch(node, query)
        with self.fake.cond:
            self.fake.requests.append("list")
            items = [
                copy.deepcopy(p) for p in self.fake.pods.values() if p["spec"]["nodeName"] == node
            ]
            doc = {
                "apiVersion": "v1",
                "kind": "PodList",
                "metadata": {"resourceVersion": str(self.fake.rv)},
                "items": items,
            }
        self._json(200, doc)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        parts = self.path.split("?")[0].split("/")
        if len(parts) == 6 and parts[1:4] == ["api", "v1", "namespaces"] and parts[5] == "events":
            with self.fake.cond:
                self.fake.requests.append("event")
                body.setdefault("metadata", {})["name"] = f"event-{len(self.fake.events)}"
                self.fake.events.append(body)
            return self._json(201, body)
        self._json(404, _status(404, "NotFound", f"no route {self.path}"))

    def _watch(self, node: str, query: dict[str, str]) -> None:
        fake = self.fake
        since = int(query.get("resourceVersion") or 0)
        timeout_s = min(float(query.get("timeoutSeconds") or 30), 30.0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with fake.cond:
            fake.requests.append("watch")
            generation = fake.generation
            if since < fake.compacted:
                self._chunk(
                    {
                        "type": "ERROR",
                        "object": _status(
                            410, "Expired", f"too old resource version: {since} ({fake.compacted})"
                        ),
                    }
                )
                return self._end()
            sent = since
            deadline = _now() + timeout_s
            while True:
                if fake.generation != generation:
                    # dropped: no terminating chunk, the connection just closes
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                for rv, kind, obj in fake.history:
                    if rv > sent and obj["spec"]["nodeName"] == node:
                        self._chunk({"type": kind, "object": obj})
                    sent = max(sent, rv)
                left = deadline - _now()
                if left <= 0:
                    return self._end()
                fake.cond.wait(left)

    def _chunk(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end(self) -> None:
        self.close_connection = True
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def _now() -> float:
    import time

    return time.monotonic()
