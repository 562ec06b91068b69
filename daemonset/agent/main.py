"""`shardcache-agent`: the node agent's command line.

    shardcache-agent --cache-dir /var/lib/shardcache --socket /run/shardcache/agent.sock \\
        [--max-bytes 500GiB] [--metrics-port 9400] [--metrics-host 0.0.0.0] \\
        [--node-name NODE] [--kubeconfig FILE] [--policy-file FILE]

The pod watcher runs with `--kubeconfig`, or inside a cluster (KUBERNETES_SERVICE_HOST set);
it needs the node name (`--node-name`, default $NODE_NAME). Exit status: 0 after SIGTERM or
SIGINT, 1 when the agent cannot start (socket in use, unreadable policy, unusable cache
directory), 2 for a usage error.

The socket is made mode 0660 (`--socket-mode`; 600 is stricter still): only root and the
socket's group may connect, and every request that changes anything must come from uid 0
(checked with SO_PEERCRED, see auth.py). Pods never reach this socket. In the hostpath mode,
`--status-socket PATH` adds a second socket, mode 0666, in a directory of its own that the
webhook mounts into pods: it serves one dataset's status, paths and health, nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from shardcache.config import Config, parse_size
from shardcache.engine import Engine
from shardcache.errors import CacheError, ConfigError, redact

from ..policy import PolicySource, ReloadingPolicy, in_cluster
from . import logs
from .leasekeeper import LeaseKeeper
from .leases import DEFAULT_TTL_S, SWEEP_INTERVAL_S, LeaseBook
from .logs import kv
from .server import api_app, claim_socket, metrics_app, status_app
from .service import Agent
from .watcher import PodWatcher, WatcherConfig

log = logging.getLogger("shardcache.agent")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: seconds that in-flight API requests get to finish after SIGTERM; the kubelet's grace
#: period (30 s in deploy/) must cover this plus cancelling downloads and closing the index
SHUTDOWN_GRACE_S = 3.0


@dataclass(frozen=True)
class AgentOptions:
    config: Config
    socket: Path
    socket_mode: int
    status_socket: Path | None
    metrics_port: int | None
    metrics_host: str
    policy: PolicySource
    lease_ttl_s: float
    lease_sweep_s: float
    watcher: WatcherConfig | None


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardcache-agent", description=__doc__.split("\n")[0])
    p.add_argument(
        "--cache-dir",
        default=env.get("SHARDCACHE_CACHE_DIR"),
        required=not env.get("SHARDCACHE_CACHE_DIR"),
    )
    p.add_argument(
        "--socket",
        default=env.get("SHARDCACHE_AGENT_SOCKET"),
        required=not env.get("SHARDCACHE_AGENT_SOCKET"),
    )
    p.add_argument(
        "--socket-mode",
        default="660",
        type=lambda s: int(s, 8),
        help="octal permission bits of the socket (default 660)",
    )
    p.add_argument(
        "--status-socket",
        type=Path,
        help="also serve read-only status here, mode 0666 (hostpath mode: mount only its "
        "directory into pods)",
    )
    p.add_argument("--max-bytes", type=_size, help="byte budget, e.g. 500GiB")
    p.add_argument("--metrics-port", type=int, help="serve /metrics, /healthz, /readyz on TCP")
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address of the metrics port (0.0.0.0 inside a pod)",
    )
    p.add_argument("--node-name", default=env.get("NODE_NAME"))
    p.add_argument(
        "--kubeconfig",
        help="watch pods with this kubeconfig (default: in-cluster "
        "when KUBERNETES_SERVICE_HOST is set, else no pod watcher)",
    )
    p.add_argument(
        "--policy-file",
        default=env.get("SHARDCACHE_POLICY_FILE"),
        help="namespace -> allowed URL prefixes, re-read when it changes; absent: nothing "
        "in cluster mode (with the pod watcher, or KUBERNETES_SERVICE_HOST set), every cloud "
        "URL outside it",
    )
    p.add_argument(
        "--lease-ttl",
        type=float,
        default=DEFAULT_TTL_S,
        help="seconds a pin of a non-pod owner outlives its owner (default %(default)s)",
    )
    p.add_argument(
        "--lease-sweep-interval", type=float, default=SWEEP_INTERVAL_S, help=argparse.SUPPRESS
    )
    p.add_argument("--watch-timeout", type=int, default=300, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default=env.get("SHARDCACHE_LOG_LEVEL", "INFO"))
    return p


def _size(text: str) -> int:
    try:
        return int(parse_size(text))
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def build_options(args: argparse.Namespace, env: Mapping[str, str]) -> AgentOptions:
    config = Config.from_env(env, cache_dir=args.cache_dir, max_bytes=args.max_bytes)
    watcher = None
    if args.kubeconfig or env.get("KUBERNETES_SERVICE_HOST"):
        if not args.node_name:
            raise ConfigError(
                "the pod watcher needs --node-name (or NODE_NAME from the "
                "downward API: fieldRef spec.nodeName)"
            )
        watcher = WatcherConfig(
            node=args.node_name,
            kubeconfig=args.kubeconfig,
            watch_timeout_s=args.watch_timeout,
            read_timeout_s=args.watch_timeout + 30.0,
        )
    if args.socket_mode & ~0o660:
        raise ConfigError(
            f"--socket-mode {args.socket_mode:o} lets others than root and the socket's group "
            "connect; use 660 or 600 (pods read status through --status-socket)"
        )
    if args.status_socket is not None and args.status_socket.parent == Path(args.socket).parent:
        raise ConfigError(
            "--status-socket must be in another directory than --socket: the directory "
            "mounted into pods must not hold the main socket"
        )
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise ConfigError(f"--metrics-port must be 0..65535, got {args.metrics_port}")
    return AgentOptions(
        config=config,
        socket=Path(args.socket),
        socket_mode=args.socket_mode,
        status_socket=args.status_socket,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        policy=PolicySource(
            Path(args.policy_file) if args.policy_file else None,
            cluster=watcher is not None or in_cluster(env),
        ),
        watcher=watcher,
        lease_ttl_s=args.lease_ttl,
        lease_sweep_s=args.lease_sweep_interval,
    )


async def serve(opts: AgentOptions) -> None:
    """Listen at once (healthz answers, readyz says 503), adopt the cache, then serve until
    SIGTERM/SIGINT: stop taking work, cancel downloads, close the index, return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    t0 = time.monotonic()
    engine = Engine(opts.config)
    policy = ReloadingPolicy(opts.policy)
    agent = Agent(engine, policy)
    leases = LeaseKeeper(
        agent,
        LeaseBook(opts.config.cache_dir / "leases.json", opts.lease_ttl_s),
        opts.lease_sweep_s,
    )
    stopping = [False]
    runners = await _listen(opts, agent, stopping, leases)
    watcher = None
    try:
        await engine.open()
        agent.start()
        await leases.start()
        log.info(
            "ready",
            extra=kv(
                cache_dir=str(opts.config.cache_dir),
                socket=str(opts.socket),
                seconds=round(time.monotonic() - t0, 3),
            ),
        )
        if opts.watcher is not None:
            watcher = PodWatcher(agent, policy, opts.watcher, loop)
            watcher.start()
            open_failed = watcher.open_failed  # posts an Event: off the loop, it waits on I/O
            agent.views.observers.append(
                lambda url, failure: loop.run_in_executor(None, open_failed, url, failure)
            )
        await stop.wait()
    finally:
        log.info("stopping", extra=kv())
        stopping[0] = True
        if watcher is not None:
            watcher.stop()
        await leases.stop()
        await agent.shutdown()
        for runner in runners:
            await runner.cleanup()
        await engine.close()
        log.info("stopped", extra=kv(seconds_up=round(time.monotonic() - t0, 1)))


async def _listen(
    opts: AgentOptions, agent: Agent, stopping: list[bool], leases: LeaseKeeper
) -> list[web.AppRunner]:
    claim_socket(opts.socket)
    api = web.AppRunner(
        api_app(agent, stopping, leases), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
    )
    await api.setup()
    await web.UnixSite(api, str(opts.socket)).start()
    os.chmod(opts.socket, opts.socket_mode)
    runners = [api]
    if opts.status_socket is not None:
        claim_socket(opts.status_socket)
        status = web.AppRunner(
            status_app(agent, stopping), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await status.setup()
        await web.UnixSite(status, str(opts.status_socket)).start()
        os.chmod(opts.status_socket, 0o666)  # read-only routes only, for pods of any uid
        runners.append(status)
    if opts.metrics_port is not None:
        tcp = web.AppRunner(
            metrics_app(agent, stopping, leases), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await tcp.setup()
        site = web.TCPSite(tcp, opts.metrics_host, opts.metrics_port)
        await site.start()
        runners.append(tcp)
        log.info("metrics listening", extra=kv(host=opts.metrics_host, port=opts.metrics_port))
    return runners


def main(argv: Sequence[str] | None = None) -> int:
    env = dict(os.environ)
    args = parser(env).parse_args(argv)
    logs.setup(args.log_level)
    try:
        opts = build_options(args, env)
    except ConfigError as e:
        log.error("bad configuration", extra=kv(error=redact(str(e))))
        return EXIT_USAGE
    try:
        asyncio.run(serve(opts))
    except (CacheError, OSError) as e:
        log.error("cannot run", extra=kv(error=redact(f"{type(e).__name__}: {e}")))
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
