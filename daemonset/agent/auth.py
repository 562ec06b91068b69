"""Who may do what through the agent's sockets: the caller's identity, and a pure rule.

The kernel tells a unix-socket server who connected (`SO_PEERCRED`: pid, uid, gid of the
process that called connect, in the server's pid namespace), so no token or secret is
involved. The rule:

* reading (every GET: health, status, datasets, paths, metrics) is open to whoever can open
  the socket; the socket's mode (0660 by default) and its directory decide who that is;
* changing what the agent holds or fetches (every POST: register, release, fetch, verify,
  evict and its `force`) needs uid 0: the CSI plugin, the pod watcher inside the agent, a
  node operator with root. A pod never reaches the main socket; in hostpath mode it gets at
  most the read-only status socket, which serves no POST at all.

Fetch and verify are not named by the issue that introduced this rule; they are held to root
too because both make the agent download or read on the caller's behalf (egress, disk), which
is exactly what an unprivileged process on the node must not be able to cause.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

_UCRED = struct.Struct("3i")
#: methods that only read; every other method changes the agent's state
READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Peer:
    """The process at the other end of a unix socket (pid 0: not in our pid namespace)."""

    pid: int
    uid: int
    gid: int

    @property
    def is_root(self) -> bool:
        return self.uid == 0


def peer_of(sock: socket.socket) -> Peer:
    """The credentials the kernel recorded when the peer connected."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid)


def refusal(peer: Peer | None, method: str, path: str) -> str | None:
    """Why `peer` may not call `method path`, or None when it may. Pure."""
    if method in READ_METHODS:
        return None
    if peer is None:
        return f"{method} {path} needs a caller on the agent's unix socket"
    if peer.is_root:
        return None
    return (
        f"uid {peer.uid} may not {method} {path}: only root (the CSI plugin, a node operator) "
        "may register, release, fetch, verify or evict; read the status with GET instead"
    )
