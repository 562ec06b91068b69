"""`shardcache-view`: the node's read-through views, as two processes.

    shardcache-view keeper --keeper-socket /csi/view-keeper.sock
    shardcache-view serve  --socket /csi/view.sock --keeper-socket /csi/view-keeper.sock \
        --agent-socket /run/shardcache/agent.sock --state-dir /var/lib/shardcache-view

The keeper holds the `/dev/fuse` descriptors and nothing else; the server does the work and
may be killed and restarted at any time (it takes the mounts back from the keeper). The CSI
plugin asks the server for mounts on `--socket` (ViewClient). Both need CAP_SYS_ADMIN and
the kubelet directory with bidirectional mount propagation, like the plugin.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

from shardcache.errors import CacheError, redact

from .keeper import Keeper, claim_socket, recv, send
from .server import ViewConfig, ViewServer

log = logging.getLogger("shardcache_view")

#: in the plugin's directory, which pods never mount (unlike /run/shardcache, which pods of
#: the hostpath mode do): whoever reaches these sockets can mount views and take connections
DEFAULT_SOCKET = "/var/lib/kubelet/plugins/csi.shardcache.io/view.sock"
DEFAULT_KEEPER_SOCKET = "/var/lib/kubelet/plugins/csi.shardcache.io/view-keeper.sock"
#: a mount request may wait for the agent's listing; the plugin's client waits a bit longer
CONTROL_TIMEOUT_S = 90.0
#: at start the server waits this long for the keeper (both containers start together)
KEEPER_WAIT_S = 30.0


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="shardcache-view", description=__doc__.split("\n")[0])
    p.add_argument("role", choices=["keeper", "serve"])
    p.add_argument("--socket", default=env.get("SHARDCACHE_VIEW_SOCKET", DEFAULT_SOCKET))
    p.add_argument(
        "--keeper-socket", default=env.get("SHARDCACHE_VIEW_KEEPER_SOCKET", DEFAULT_KEEPER_SOCKET)
    )
    p.add_argument(
        "--agent-socket", default=env.get("SHARDCACHE_AGENT_SOCKET", "/run/shardcache/agent.sock")
    )
    p.add_argument("--state-dir", default="/var/lib/shardcache-view")
    p.add_argument("--kubelet-dir", default=ViewConfig.kubelet_dir)
    p.add_argument("--miss-timeout-s", type=float, default=ViewConfig.miss_timeout_s)
    p.add_argument(
        "--no-passthrough",
        action="store_true",
        help="serve reads from this process (for kernels where passthrough fails)",
    )
    p.add_argument("--log-level", default=env.get("SHARDCACHE_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return args


def serve_control(server: ViewServer, path: str, stop: threading.Event) -> None:
    """Answer the plugin's requests, one thread per connection (a mount may wait)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    claim_socket(path)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(64)
    listener.settimeout(0.5)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(target=_converse, args=(server, conn), daemon=True).start()
    listener.close()


def _converse(server: ViewServer, conn: socket.socket) -> None:
    with conn:
        conn.settimeout(CONTROL_TIMEOUT_S)
        try:
            doc, _ = recv(conn)
            if doc is not None:
                send(conn, _answer(server, doc))
        except (OSError, ValueError) as e:
            log.warning("control client dropped: %s", e)


def _answer(server: ViewServer, doc: dict[str, Any]) -> dict[str, Any]:
    try:
        if doc.get("op") == "mount":
            server.mount(str(doc["target"]), str(doc["dataset"]), str(doc["local_dir"]))
            return {"ok": True}
        if doc.get("op") == "status":
            return {"views": server.status()}
        return {"error": {"kind": "config", "message": f"unknown op {doc.get('op')!r}"}}
    except CacheError as e:
        return {"error": {"kind": e.kind, "message": redact(str(e))}}
    except (OSError, KeyError) as e:
        return {"error": {"kind": "cache_state", "message": redact(f"{type(e).__name__}: {e}")}}


def _background(server: ViewServer, stop: threading.Event, interval_s: float) -> None:
    while not stop.wait(interval_s):
        try:
            server.sync_keeper()
        except OSError as e:
            log.warning("keeper not reachable: %s", e)
        server.report()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, os.environ)
    stop = threading.Event()
    flag = [False]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        flag[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.role == "keeper":
        Keeper(args.keeper_socket).serve_forever(flag)
        return 0
    config = ViewConfig(
        control_socket=args.socket,
        keeper_socket=args.keeper_socket,
        agent_socket=args.agent_socket,
        state_dir=args.state_dir,
        kubelet_dir=args.kubelet_dir,
        miss_timeout_s=args.miss_timeout_s,
        passthrough=not args.no_passthrough,
    )
    server = ViewServer(config)
    deadline = time.monotonic() + KEEPER_WAIT_S
    while True:
        try:
            server.take_over()
            break
        except OSError as e:
            if time.monotonic() > deadline:
                print(f"shardcache-view: the keeper did not answer: {e}", file=sys.stderr)
                return 1
            time.sleep(0.1)
    threading.Thread(
        target=_background, args=(server, stop, config.report_interval_s), daemon=True
    ).start()
    # stopping leaves every mount in place: the keeper holds them for the next server
    serve_control(server, args.socket, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
