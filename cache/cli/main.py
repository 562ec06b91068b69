"""`shardcache`: prefetch, inspect and maintain the cache from a shell.

Exit status: 0 on success, 1 when the work failed, 2 for a usage error (bad flags, a URL that
cannot be parsed, a bad size). Errors print one line that says what to do; never a traceback
for an expected failure, never a credential.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .. import __version__
from ..config import Config, parse_size
from ..errors import CacheError, ConfigError, codes_of, is_disk_full, redact
from ..partition import Partition
from ..retry import Retry
from .output import Output

EXIT_OK, EXIT_FAILED = 0, 1  # and 2 for a usage error: the `config` kind (errors.CODES)
#: 128 + SIGTERM, what a shell reports for a process killed by SIGTERM: callers (kubelet,
#: systemd, scripts) already read it as "stopped on request", not "the work failed"
EXIT_TERMINATED = 128 + signal.SIGTERM

#: tuning knobs read from the environment by the CLI only (the agent has its own flags)
_ENV_FLOATS = {
    "SHARDCACHE_READ_TIMEOUT_S": "read_timeout_s",
    "SHARDCACHE_CONNECT_TIMEOUT_S": "connect_timeout_s",
}


class Terminated(Exception):
    """The process received SIGTERM; the main task was cancelled and has cleaned up."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir",
        help="cache directory (env SHARDCACHE_CACHE_DIR; default: $XDG_CACHE_HOME/shardcache)",
    )
    common.add_argument(
        "--max-bytes", type=_size, help="byte budget, e.g. 20GiB (env SHARDCACHE_MAX_BYTES)"
    )
    common.add_argument(
        "--agent",
        metavar="SOCKET",
        help="use the node agent on this unix socket (env SHARDCACHE_AGENT_SOCKET)",
    )
    common.add_argument("--output", choices=("text", "json"), default="text")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    parser = argparse.ArgumentParser(
        prog="shardcache", description="Node-local cache of cloud datasets for training jobs."
    )
    parser.add_argument("--version", action="version", version=f"shardcache {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "prefetch", parents=[common], help="download a dataset; print its local directory"
    )
    p.add_argument("url")
    p.add_argument("--owner", help="pin the dataset for this owner until released")
    p.add_argument("--concurrency", type=int, help="concurrent requests (default 64)")
    p.add_argument(
        "--partition",
        type=_partition,
        metavar="I/N",
        help="fetch only member I of N's share (docs/partitions.md)",
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="list the dataset again even if its saved listing is fresh "
        "(SHARDCACHE_LISTING_MAX_AGE_S, default 600)",
    )

    p = sub.add_parser("path", parents=[common], help="print the local path of a dataset or object")
    p.add_argument("url")

    p = sub.add_parser("status", parents=[common], help="show datasets and progress")
    p.add_argument("url", nargs="?")

    p = sub.add_parser(
        "verify",
        parents=[common],
        help="check cached files against their checksums; remove damaged ones",
    )
    p.add_argument("url", nargs="?")

    p = sub.add_parser("evict", parents=[common], help="remove a dataset from the cache")
    p.add_argument("url")
    p.add_argument("--force", action="store_true", help="evict even if pinned")

    p = sub.add_parser(
        "wait",
        parents=[common],
        help="wait until a share of a dataset is local (for init containers)",
    )
    p.add_argument("url")
    p.add_argument("--fraction", type=float, default=1.0, help="share of bytes, 0..1")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds")
    p.add_argument(
        "--prefetch",
        action="store_true",
        help="in-process mode: start the prefetch instead of waiting for another",
    )
    p.add_argument(
        "--partition",
        type=_partition,
        metavar="I/N",
        help="the fraction is of member I of N's share, not of the whole dataset",
    )

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="run the built-in demo against a local S3 emulator and print a throughput comparison",
    )
    p.add_argument("--small-files", type=int, default=2000)
    p.add_argument("--large-files", type=int, default=4)
    p.add_argument("--large-mib", type=int, default=64)
    p.add_argument("--first-byte-ms", type=float, default=20.0)
    p.add_argument("--bandwidth-mbps", type=float, default=90.0, help="per-connection cap in MB/s")
    return parser


def _partition(text: str) -> Partition:
    try:
        return Partition.parse(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def make_config(args: argparse.Namespace, env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ) if env is None else env
    overrides: dict[str, Any] = {
        "cache_dir": args.cache_dir,
        "max_bytes": args.max_bytes,
        "max_concurrency": getattr(args, "concurrency", None),
    }
    for name, attr in _ENV_FLOATS.items():
        if env.get(name):
            overrides[attr] = _positive(env, name)
    if env.get("SHARDCACHE_RETRY_ATTEMPTS"):
        overrides["retry"] = Retry(
            max_attempts=max(1, int(_positive(env, "SHARDCACHE_RETRY_ATTEMPTS")))
        )
    return Config.from_env(env, **overrides)


def _positive(env: dict[str, str], name: str) -> float:
    try:
        value = float(env[name])
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{name}={env[name]!r} must be a positive number")
    return value


def run_cancellable(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on a fresh loop; SIGTERM cancels it, so every `finally` (staging files,
    reservations, locks, backend connections) runs before the process exits."""

    async def runner() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        terminated: list[bool] = []

        def on_sigterm() -> None:
            terminated.append(True)
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await main
        except asyncio.CancelledError:
            if terminated:
                raise Terminated() from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(runner())


def _run_wait(args: argparse.Namespace, agent: str | None, out: Output) -> int:
    """The agent if named; else the status file in SHARDCACHE_STATUS_DIR (the webhook's init
    container has nothing else: no socket, no cache dir); else the cache dir in-process."""
    from . import wait

    status_dir = os.environ.get("SHARDCACHE_STATUS_DIR")
    if agent:
        return wait.wait_with_agent(args, agent, out)
    if status_dir:
        return wait.wait_on_status_file(args, status_dir, out)
    with _terminable():
        return wait.wait_in_process(args, make_config(args), out)


@contextmanager
def _terminable() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread, for the commands that block in it (the
    in-process wait): every `with` is left on the way out, so the engine's close cancels the
    prefetch and discards its staging files."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(json_mode=args.output == "json", quiet=args.quiet)
    try:
        if args.command == "wait" and not 0.0 <= args.fraction <= 1.0:
            raise ConfigError(f"--fraction must be between 0 and 1, got {args.fraction}")
        if args.command == "wait" and not args.timeout >= 0.0:
            raise ConfigError(f"--timeout must be 0 or more seconds, got {args.timeout}")
        agent = args.agent or os.environ.get("SHARDCACHE_AGENT_SOCKET")
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args, make_config(args), out)
        if args.command == "wait":
            return _run_wait(args, agent, out)
        if agent:
            from .agent_commands import run_with_agent

            return int(run_with_agent(args, agent, out))
        from .commands import run_in_process

        return run_cancellable(run_in_process(args, make_config(args), out))
    except Terminated:
        out.error(
            "terminated: downloads in flight were cancelled and their staging files "
            "removed; nothing partial was published. Run the command again to finish"
        )
        return EXIT_TERMINATED
    except CacheError as e:  # the exit status of its kind: 2 to fix the command line, else 1
        out.error(redact(str(e)))
        return codes_of(e.kind).exit
    except sqlite3.Error as e:
        out.error(redact(_sqlite_message(e)))
        return EXIT_FAILED
    except OSError as e:
        out.error(redact(_os_message(e)))
        return EXIT_FAILED
    except KeyboardInterrupt:
        out.error("interrupted; nothing partial was published")
        return 130


def _os_message(e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    if is_disk_full(e):
        return (
            f"the disk holding the cache is full{where}; files already complete were "
            "kept. Free space, or set --max-bytes / SHARDCACHE_MAX_BYTES below what the "
            "disk can hold, and run the command again"
        )
    return f"{e.strerror or e}{where}; check the cache directory and its permissions"


def _sqlite_message(e: sqlite3.Error) -> str:
    text = str(e)
    if is_disk_full(e):
        return (
            "the disk holding the cache index is full; files already complete were kept. "
            "Free space, or set --max-bytes / SHARDCACHE_MAX_BYTES below what the disk can "
            "hold, and run the command again"
        )
    return (
        f"the cache index cannot be used ({text}); run `shardcache verify`, or remove the "
        "cache directory to start afresh"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
