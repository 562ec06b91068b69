"""TEST FIXTURE ONLY: a small real HTTP server speaking the agent API subset the plugin uses.

The real node agent (`shardcache-agent`, daemonset/agent) does not exist yet while the CSI
plugin is written. This stub serves the same HTTP/JSON protocol on a real unix socket
(docs/agent-api.md) — /healthz, /readyz, POST /v1/datasets, POST /v1/datasets/release,
GET /v1/datasets — so the plugin is tested through its real `AgentClient`. It keeps owners in
memory and maps each dataset to `root/<scheme>/<bucket>/<prefix>`, a directory the test fills.
The end-to-end tests must be switched to the real agent once it exists.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shardcache.urls import parse_url


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    stub: AgentStub


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _UnixHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # unix peers have no address
        pass

    def do_GET(self) -> None:
        stub = self.server.stub
        if self.path == "/healthz":
            self._text(200, "ok")
        elif self.path == "/readyz":
            self._text(200, "ready") if stub.ready else self._text(503, "starting")
        elif self.path == "/v1/datasets":
            with stub.lock:
                self._json(200, {"datasets": [stub.status(u) for u in stub.owners]})
        else:
            self._error(404, "not_found", f"no route {self.path}")

    def do_POST(self) -> None:
        stub = self.server.stub
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with stub.lock:
            stub.calls.append((self.path, body))
            if self.path == "/v1/datasets":
                if body.get("url") in stub.deny:
                    self._error(403, "policy_denied", f"{body['url']} is not allowed")
                    return
                stub.owners.setdefault(body["url"], set()).add(body["owner"])
                self._json(200, stub.status(body["url"]))
            elif self.path == "/v1/datasets/release":
                stub.owners.get(body["url"], set()).discard(body["owner"])
                self._json(200, {"released": True})
            else:
                self._error(404, "not_found", f"no route {self.path}")

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain")

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _error(self, status: int, kind: str, message: str) -> None:
        self._json(status, {"error": {"kind": kind, "message": message}})

    def _send(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class AgentStub:
    socket_path: str
    root: Path
    ready: bool = True
    #: dataset URLs the stub refuses with policy_denied, as an agent with a policy would
    deny: set[str] = field(default_factory=set)
    owners: dict[str, set[str]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: _UnixHTTPServer | None = None
    _thread: threading.Thread | None = None

    def local_dir(self, url: str) -> Path:
        u = parse_url(url).as_dataset()
        return self.root / u.scheme / u.bucket / u.prefix

    def status(self, url: str) -> dict[str, Any]:
        return {
            "url": url,
            "local_dir": str(self.local_dir(url)),
            "state": "complete",
            "objects_total": 0,
            "objects_local": 0,
            "bytes_total": 0,
            "bytes_local": 0,
            "rate_bytes_per_s": 0.0,
            "eta_s": None,
            "owners": sorted(self.owners.get(url, ())),
            "errors": [],
        }

    def start(self) -> AgentStub:
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self._server = _UnixHTTPServer(self.socket_path, _Handler)
        self._server.stub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
