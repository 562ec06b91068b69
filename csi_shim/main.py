"""`shardcache-csi`: parse the command line and environment, build the plugin, serve.

    shardcache-csi --endpoint unix:///csi/csi.sock --node-id "$NODE_NAME" \
        [--state-dir /var/lib/shardcache-csi] [--kubelet-dir /var/lib/kubelet] \
        [--cache-dir /var/lib/shardcache] [--policy-file FILE] \
        [--view-socket /csi/view.sock --view-state-dir /var/lib/shardcache-view]

The agent is reached at `SHARDCACHE_AGENT_SOCKET` (or `--agent-socket`), the policy file
may also come from `SHARDCACHE_POLICY_FILE` and is re-read when it changes; inside a cluster
(KUBERNETES_SERVICE_HOST set) no policy file allows nothing. `--cache-dir` (or
`SHARDCACHE_CACHE_DIR`) is the agent's cache as the plugin's container sees it: the plugin
mounts only the directory it computes there for a dataset, whatever the agent answers.

Exit status 2 for a usage error, 1 when the plugin cannot start; SIGTERM and SIGINT stop it
gracefully, leaving every mount in place.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from shardcache.client.agent_client import AgentClient
from shardcache.errors import CacheError, redact
from shardcache.store.layout import Layout
from shardcache_cluster.policy import PolicySource, ReloadingPolicy, in_cluster

from .node import NodeDriver
from .server import build_server
from .state import StateDir
from .view.client import ViewClient
from .view.supervise import Supervisor, server_command

log = logging.getLogger("shardcache_csi")

DEFAULT_AGENT_SOCKET = "/run/shardcache/agent.sock"
#: the agent's --cache-dir in deploy/base, mounted at the same path in the plugin's container
DEFAULT_CACHE_DIR = "/var/lib/shardcache"
#: in-flight calls get this long to finish when the plugin is asked to stop
GRACE_S = 5.0


@dataclass(frozen=True)
class CsiConfig:
    endpoint: str
    node_id: str
    agent_socket: str
    #: where the per-target records live; a hostPath, so that they outlive the container
    state_dir: str = "/var/lib/shardcache-csi"
    #: kubelet's root dir; target paths outside its pods/ tree are refused
    kubelet_dir: str = "/var/lib/kubelet"
    #: the agent's cache root as this container sees it
    cache_dir: str = DEFAULT_CACHE_DIR
    #: None: no policy file; then nothing is allowed in cluster mode, everything outside it
    policy_file: str | None = None
    #: the view server's control socket; None: only `view: bind` volumes are served
    view_socket: str | None = None
    #: with a view socket: run the view server as a child, with its state here (a hostPath)
    view_state_dir: str | None = None
    #: the keeper that holds the views' connections (its own DaemonSet)
    view_keeper_socket: str = "/csi/view-keeper.sock"
    #: cluster mode (kubelet started the plugin): no policy file allows nothing
    cluster: bool = True


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> CsiConfig:
    p = argparse.ArgumentParser(prog="shardcache-csi", description=__doc__.split("\n")[0])
    p.add_argument("--endpoint", required=True, help="unix:///path/to/csi.sock")
    p.add_argument(
        "--node-id", default=env.get("NODE_NAME"), help="this node's name (default: $NODE_NAME)"
    )
    p.add_argument(
        "--agent-socket", default=env.get("SHARDCACHE_AGENT_SOCKET", DEFAULT_AGENT_SOCKET)
    )
    p.add_argument("--state-dir", default=CsiConfig.state_dir)
    p.add_argument("--kubelet-dir", default=CsiConfig.kubelet_dir)
    p.add_argument("--cache-dir", default=env.get("SHARDCACHE_CACHE_DIR") or DEFAULT_CACHE_DIR)
    p.add_argument("--policy-file", default=env.get("SHARDCACHE_POLICY_FILE") or None)
    p.add_argument(
        "--view-socket",
        default=env.get("SHARDCACHE_VIEW_SOCKET") or None,
        help="the view server's socket; absent: only view: bind volumes",
    )
    p.add_argument(
        "--view-state-dir",
        default=None,
        help="run the view server as a child of the plugin, keeping its state here",
    )
    p.add_argument("--view-keeper-socket", default=CsiConfig.view_keeper_socket)
    p.add_argument("--log-level", default=env.get("SHARDCACHE_LOG_LEVEL", "INFO"))
    args = p.parse_args(argv)
    if not args.node_id:
        p.error("--node-id (or NODE_NAME) is required")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return CsiConfig(
        endpoint=args.endpoint,
        node_id=args.node_id,
        agent_socket=args.agent_socket,
        state_dir=args.state_dir,
        kubelet_dir=args.kubelet_dir,
        cache_dir=args.cache_dir,
        policy_file=args.policy_file,
        view_socket=args.view_socket,
        view_state_dir=args.view_state_dir,
        view_keeper_socket=args.view_keeper_socket,
        cluster=in_cluster(env),
    )


def plugin_version() -> str:
    try:
        return importlib.metadata.version("shardcache")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def build_driver(config: CsiConfig) -> NodeDriver:
    state = StateDir(config.state_dir)
    state.prepare()
    return NodeDriver(
        agent=AgentClient(config.agent_socket),
        policy=ReloadingPolicy(PolicySource(_path(config.policy_file), config.cluster)),
        state=state,
        kubelet_dir=config.kubelet_dir,
        view=ViewClient(config.view_socket) if config.view_socket else None,
        layout=Layout(Path(config.cache_dir)),
    )


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)


def run(config: CsiConfig, stop: threading.Event) -> None:
    """Serve until `stop` is set; mounts are left as they are when the plugin stops."""
    driver = build_driver(config)
    driver.recover()
    server = build_server(
        driver, endpoint=config.endpoint, node_id=config.node_id, version=plugin_version()
    )
    log.info("serving CSI %s on %s for node %s", "Identity+Node", config.endpoint, config.node_id)
    with contextlib.ExitStack() as stack:
        if config.view_socket and config.view_state_dir:
            stack.enter_context(
                Supervisor(
                    server_command(
                        socket=config.view_socket,
                        keeper_socket=config.view_keeper_socket,
                        agent_socket=config.agent_socket,
                        state_dir=config.view_state_dir,
                        kubelet_dir=config.kubelet_dir,
                    )
                )
            )
        try:
            stop.wait()
        finally:
            server.stop(GRACE_S).wait(GRACE_S)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv, os.environ)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run(config, stop)
    except CacheError as e:
        print(f"shardcache-csi: {redact(str(e))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
