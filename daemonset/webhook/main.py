"""`shardcache-webhook`: the command line that builds the config and runs the server.

    shardcache-webhook --port 8443 --tls-cert-file /tls/tls.crt \\
        --tls-private-key-file /tls/tls.key [--policy-file /policy/policy.yaml] \\
        [--namespace NS] [--mode csi|hostpath] [--image IMAGE]

Exit status: 0 after SIGTERM/SIGINT, 1 when the certificate or the policy cannot be loaded at
start, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from shardcache.errors import ConfigError

from ..policy import in_cluster
from .mutate import Settings
from .server import ServerConfig, running

log = logging.getLogger("shardcache.webhook")


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardcache-webhook", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--host", default=None, help="address to bind (default: every interface)")
    p.add_argument("--tls-cert-file", type=Path, required=True)
    p.add_argument("--tls-private-key-file", type=Path, required=True)
    p.add_argument(
        "--policy-file",
        type=Path,
        default=env.get("SHARDCACHE_POLICY_FILE"),
        help="namespace -> allowed URL prefixes (JSON or YAML); re-read when it changes. "
        "Absent: nothing is allowed inside a cluster (KUBERNETES_SERVICE_HOST set), "
        "every cloud URL outside one",
    )
    p.set_defaults(cluster=in_cluster(env))
    p.add_argument(
        "--namespace",
        default=env.get("POD_NAMESPACE") or "shardcache-system",
        help="the webhook's own namespace, never mutated (default: $POD_NAMESPACE)",
    )
    p.add_argument(
        "--mode",
        choices=("csi", "hostpath"),
        default="csi",
        help="csi (default, Pod Security restricted) or hostpath (less safe)",
    )
    p.add_argument(
        "--image",
        default=env.get("SHARDCACHE_IMAGE") or Settings.image,
        help="image of the wait init container (default: $SHARDCACHE_IMAGE)",
    )
    p.add_argument(
        "--host-cache-dir",
        default=Settings.host_cache_dir,
        help="the agent's cache dir on the node (hostpath mode)",
    )
    p.add_argument(
        "--host-socket-dir",
        default=Settings.host_socket_dir,
        help="the directory of the agent's read-only status socket on the node (hostpath mode)",
    )
    p.add_argument("--default-wait-timeout", type=float, default=Settings.default_wait_timeout_s)
    p.add_argument("--reload-interval", type=float, default=1.0)
    p.add_argument("--log-level", default=env.get("SHARDCACHE_LOG_LEVEL", "INFO"))
    return p


def build_config(args: argparse.Namespace) -> ServerConfig:
    settings = Settings(
        mode=args.mode,
        image=args.image,
        own_namespace=args.namespace,
        host_cache_dir=args.host_cache_dir.rstrip("/") or "/",
        host_socket_dir=args.host_socket_dir.rstrip("/") or "/",
        default_wait_timeout_s=args.default_wait_timeout,
    )
    return ServerConfig(
        cert_file=args.tls_cert_file,
        key_file=args.tls_private_key_file,
        port=args.port,
        host=args.host,
        policy_file=args.policy_file,
        cluster=args.cluster,
        settings=settings,
        reload_interval_s=args.reload_interval,
    )


async def serve_until_signalled(config: ServerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(config) as (_state, port):
        log.info("serving admission reviews on port %d (mode %s)", port, config.settings.mode)
        print(f"listening on port {port}", flush=True)
        await stop.wait()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(os.environ).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.port < 0 or args.port > 65535 or args.reload_interval <= 0:
        print("shardcache-webhook: --port must be 0..65535, --reload-interval > 0", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_until_signalled(build_config(args)))
    except (ConfigError, OSError, ssl.SSLError) as e:
        print(f"shardcache-webhook: cannot start: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
