"""The gRPC server on a unix socket, and the start-up rule for a socket file left behind.

kubelet and node-driver-registrar find the plugin by its socket path, which stays the same
across restarts; a plugin that died leaves the file behind and a new one cannot bind until it
is gone. The file is replaced only when it is a socket that nobody answers on: a live socket
means another plugin is serving (two would fight over mounts), and a file that is not a socket
is not ours to delete.
"""

from __future__ import annotations

import enum
import os
import socket
import stat
from concurrent import futures

import grpc
from shardcache.errors import ConfigError

from .node import NodeDriver
from .proto import csi_pb2_grpc
from .service import IdentityService, NodeService

#: kubelet calls are few and short; the agent call inside publish is bounded by its timeout
MAX_WORKERS = 4
CONNECT_PROBE_TIMEOUT_S = 1.0


def socket_path(endpoint: str) -> str:
    """`unix:///csi/csi.sock` (or a plain absolute path) -> `/csi/csi.sock`."""
    path = endpoint[len("unix://") :] if endpoint.startswith("unix://") else endpoint
    if "://" in path or not os.path.isabs(path):
        raise ConfigError(f"--endpoint {endpoint!r} must be unix:///absolute/path.sock")
    return path


class SocketAction(enum.Enum):
    BIND = "bind"  # nothing there
    REPLACE = "replace"  # a stale socket: remove it, then bind
    REFUSE = "refuse"  # someone serves there, or it is not a socket


def decide_socket(exists: bool, is_socket: bool, answers: bool) -> SocketAction:
    if not exists:
        return SocketAction.BIND
    if is_socket and not answers:
        return SocketAction.REPLACE
    return SocketAction.REFUSE


def prepare_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
        exists = True
    except FileNotFoundError:
        mode, exists = 0, False
    is_socket = stat.S_ISSOCK(mode)
    action = decide_socket(exists, is_socket, is_socket and _answers(path))
    if action is SocketAction.REFUSE:
        raise ConfigError(
            f"{path} is in use by a running process, or is not a socket; refusing to replace it"
        )
    if action is SocketAction.REPLACE:
        os.unlink(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(CONNECT_PROBE_TIMEOUT_S)
        try:
            s.connect(path)
        except OSError:
            return False
        return True


def build_server(driver: NodeDriver, *, endpoint: str, node_id: str, version: str) -> grpc.Server:
    """A started server for Identity and Node on `endpoint`; the caller stops it."""
    path = socket_path(endpoint)
    prepare_socket(path)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS))
    identity, node = IdentityService(driver, version), NodeService(driver, node_id)
    # the generated registration functions carry no annotations
    csi_pb2_grpc.add_IdentityServicer_to_server(identity, server)  # type: ignore[no-untyped-call]
    csi_pb2_grpc.add_NodeServicer_to_server(node, server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"unix://{path}")
    server.start()
    return server
