"""The keeper: a tiny process that holds every view's `/dev/fuse` descriptor.

A FUSE mount lives as long as some process holds its `/dev/fuse` descriptor. While one does,
a dead server means blocked requests rather than `ENOTCONN`, and a new server that gets the
descriptor takes the mount over. The keeper is that holder: it does nothing else (no
threads, no network, no parsing beyond one JSON object per message), so it has little
reason to die. The view server hands it each descriptor before mounting, and asks for them
back when it starts.

Protocol, on a `SOCK_SEQPACKET` unix socket (message boundaries kept, descriptors attached
with SCM_RIGHTS): one JSON object per message, one answer per message.
    {"op": "put", "id": ID, "meta": {...}} + 1 fd  ->  {"ok": true}
    {"op": "list"}                                 ->  {"ids": [ID, ...]}
    {"op": "get", "id": ID}                        ->  {"meta": {...}} + 1 fd, or {"error": ...}
    {"op": "drop", "id": ID}                       ->  {"ok": true}
A descriptor whose connection is gone (unmounted: poll says POLLERR) is closed by the keeper
itself once it is older than `GRACE_S` (a descriptor is put before its mount is made).
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import time
from dataclasses import dataclass
from typing import Any

from .device import is_dead

log = logging.getLogger(__name__)

MESSAGE_BYTES = 64 * 1024
#: a put descriptor gets this long to be mounted before a dead-looking one is dropped
GRACE_S = 30.0
#: how often held descriptors are checked for an unmounted connection
SWEEP_S = 1.0
#: a client that stops talking mid-conversation is dropped after this long
CLIENT_TIMEOUT_S = 5.0


@dataclass
class Held:
    fd: int
    meta: dict[str, Any]
    since: float


def send(sock: socket.socket, doc: dict[str, Any], fd: int | None = None) -> None:
    data = json.dumps(doc).encode()
    if fd is None:
        sock.send(data)
    else:
        socket.send_fds(sock, [data], [fd])


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(sock, MESSAGE_BYTES, 4)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


class Keeper:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.held: dict[str, Held] = {}

    def serve_forever(self, stop: list[bool] | None = None) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        claim_socket(self.socket_path)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(16)
        log.info("keeper holding view connections on %s", self.socket_path)
        try:
            while not (stop and stop[0]):
                ready, _, _ = select.select([listener], [], [], SWEEP_S)
                if ready:
                    conn, _ = listener.accept()
                    with conn:
                        self._converse(conn)
                self._sweep()
        finally:
            listener.close()

    def _converse(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_TIMEOUT_S)
        try:
            while True:
                doc, fds = recv(conn)
                if doc is None:
                    return
                self._answer(conn, doc, fds)
        except (OSError, ValueError) as e:
            log.warning("keeper client dropped: %s", e)

    def _answer(self, conn: socket.socket, doc: dict[str, Any], fds: list[int]) -> None:
        op, ident = doc.get("op"), str(doc.get("id", ""))
        if op == "put" and len(fds) == 1 and ident:
            old = self.held.pop(ident, None)
            if old is not None:
                os.close(old.fd)
            self.held[ident] = Held(fds[0], dict(doc.get("meta") or {}), time.monotonic())
            send(conn, {"ok": True})
            return
        for fd in fds:
            os.close(fd)
        if op == "list":
            send(conn, {"ids": sorted(self.held)})
        elif op == "get" and ident in self.held:
            send(conn, {"meta": self.held[ident].meta}, self.held[ident].fd)
        elif op == "drop":
            self._drop(ident)
            send(conn, {"ok": True})
        else:
            send(conn, {"error": f"bad request {op!r} for {ident!r}"})

    def _drop(self, ident: str) -> None:
        held = self.held.pop(ident, None)
        if held is not None:
            os.close(held.fd)
            log.info("dropped view %s (%s)", ident, held.meta.get("target"))

    def _sweep(self) -> None:
        now = time.monotonic()
        for ident, held in list(self.held.items()):
            if now - held.since > GRACE_S and is_dead(held.fd):
                self._drop(ident)


class KeeperClient:
    """One conversation per call; every wait bounded by `timeout_s`."""

    def __init__(self, socket_path: str, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def _call(self, doc: dict[str, Any], fd: int | None = None) -> tuple[dict[str, Any], list[int]]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.settimeout(self.timeout_s)
            s.connect(self.socket_path)
            send(s, doc, fd)
            answer, fds = recv(s)
        if answer is None:
            raise ConnectionError(f"the keeper at {self.socket_path} hung up")
        return answer, fds

    def put(self, ident: str, meta: dict[str, Any], fd: int) -> None:
        answer, _ = self._call({"op": "put", "id": ident, "meta": meta}, fd)
        if not answer.get("ok"):
            raise ConnectionError(f"the keeper refused {ident}: {answer}")

    def ids(self) -> list[str]:
        return [str(i) for i in self._call({"op": "list"})[0].get("ids", [])]

    def get(self, ident: str) -> tuple[dict[str, Any], int] | None:
        answer, fds = self._call({"op": "get", "id": ident})
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return None
        return dict(answer["meta"]), fds[0]

    def drop(self, ident: str) -> None:
        self._call({"op": "drop", "id": ident})


def claim_socket(path: str) -> None:
    """Remove a stale socket file; refuse to steal one a live keeper listens on."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)
            return
    raise OSError(f"another keeper is serving on {path}")
