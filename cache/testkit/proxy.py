"""A reverse proxy that makes a loopback object-store emulator behave like a cloud store.

Why it exists: moto answers on loopback in microseconds at memory speed, so a benchmark or a
retry test against it says nothing about S3, where every request waits ~20 ms for its first
byte, one connection carries ~90 MB/s, and requests sometimes fail with 503 SlowDown, a
connection cut mid-body, a stall, or (rarely, through broken middleboxes) a flipped byte. This
proxy puts that latency, per-connection bandwidth and those faults back, and counts what it did.

It forwards each request head byte for byte, Host header included, so SigV4 signatures made for
the proxy's URL reach the emulator unchanged. Bodies stream in large chunks; bandwidth is paced
per connection by a token bucket. The decisions (framing, keep-alive, which fault, pacing) are
pure functions in proxy_rules.py; each connection's I/O is in proxy_conn.py; `CloudProxy` is the
server, used with `with` (own loop in its own thread) or `async with` (inside a running loop).
Run by hand with
`python -m shardcache.testkit.proxy --upstream URL --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import threading
from dataclasses import asdict, replace

from ..errors import ConfigError
from .proxy_conn import Connection
from .proxy_rules import (
    BadMessageError,
    Fault,
    FaultConfig,
    FaultRule,
    ProxyConfig,
    ProxyStats,
    choose_fault,
    client_response_head,
    fault_offset,
    parse_head,
    parse_upstream,
    request_framing,
    response_framing,
    slowdown_response,
    take_tokens,
    wants_keep_alive,
)

__all__ = [
    "BadMessageError",
    "CloudProxy",
    "Fault",
    "FaultConfig",
    "FaultRule",
    "ProxyConfig",
    "ProxyStats",
    "choose_fault",
    "client_response_head",
    "fault_offset",
    "parse_head",
    "parse_upstream",
    "request_framing",
    "response_framing",
    "slowdown_response",
    "take_tokens",
    "wants_keep_alive",
]


class CloudProxy:
    """The proxy server: `with CloudProxy(url) as p:` runs it on its own loop in its own thread;
    `async with CloudProxy(url) as p:` runs it on the current loop. `p.url` is its address."""

    def __init__(
        self,
        upstream_url: str,
        config: ProxyConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = parse_upstream(upstream_url)
        self.config = config or ProxyConfig()
        self._listen = (host, port)
        self._rng = random.Random(self.config.faults.seed)
        self._counters = asdict(ProxyStats())
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._stop: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._start_error: BaseException | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("CloudProxy is not running; use it with `with` or `async with`")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def stats(self) -> ProxyStats:
        return ProxyStats(**self._counters)

    def set_faults(self, faults: FaultConfig) -> None:
        """Swap the fault settings (and reseed); connections pick them up at their next request."""
        self._rng = random.Random(faults.seed)
        self.config = replace(self.config, faults=faults)

    def count(self, name: str, amount: int = 1) -> None:
        self._counters[name] += amount

    def next_fault(self, method: str, path: str) -> Fault | None:
        return choose_fault(self.config.faults, method, path, self._rng.random())

    def offset_for(self, fault: Fault, body_bytes: int) -> int:
        return fault_offset(fault, body_bytes, self._rng.random())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.count("connections_total")
        try:
            await Connection(self, reader, writer).run()
        except asyncio.CancelledError:
            # aclose() cancels connections; ending normally matters because Python 3.11's
            # start_server callback calls task.exception() on the task, which raises if it
            # ended cancelled. Nothing awaits this task, so the cancellation has no audience.
            pass
        finally:
            self._tasks.discard(task)

    async def astart(self) -> None:
        if self._server is not None:
            raise RuntimeError("CloudProxy is already running")
        host, port = self._listen
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=self.config.chunk_bytes
        )

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> CloudProxy:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self, timeout_s: float = 10.0) -> None:
        """Run the proxy on a new loop in a new thread; returns once it is listening."""
        if self._thread is not None:
            raise RuntimeError("CloudProxy is already running")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve_in_thread(ready)),
            name="cloud-proxy",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(timeout_s) or self._start_error is not None:
            self.stop(timeout_s)
            raise RuntimeError(f"CloudProxy did not start: {self._start_error!r}")

    def stop(self, timeout_s: float = 10.0) -> None:
        thread, stop, self._thread = self._thread, self._stop, None
        if stop is not None:
            loop, event = stop
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(event.set)
        if thread is not None:
            thread.join(timeout_s)

    async def _serve_in_thread(self, ready: threading.Event) -> None:
        event = asyncio.Event()
        self._stop = (asyncio.get_running_loop(), event)
        try:
            await self.astart()
        except Exception as e:
            self._start_error = e
            return
        finally:
            ready.set()
        try:
            await event.wait()
        finally:
            await self.aclose()

    def __enter__(self) -> CloudProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- command line ---------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> tuple[str, int, ProxyConfig]:
    p = argparse.ArgumentParser(
        prog="python -m shardcache.testkit.proxy",
        description="Cloud-like latency, bandwidth and faults in "
        "front of an object-store emulator.",
    )
    p.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:5000 (moto)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    p.add_argument("--first-byte-delay-s", type=float, default=0.020)
    p.add_argument("--bandwidth-bytes-per-s", type=float, default=90e6, help="0 disables")
    for fault in ("slowdown", "reset", "stall", "corrupt"):
        p.add_argument(f"--{fault}-probability", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fault-methods", help="comma-separated, e.g. GET,HEAD (default: all)")
    p.add_argument("--fault-path-regex", help="faults only for paths (/bucket/key) matching")
    a = p.parse_args(argv)
    methods = (
        frozenset(m.strip().upper() for m in a.fault_methods.split(","))
        if a.fault_methods
        else None
    )
    faults = FaultConfig(
        a.slowdown_probability,
        a.reset_probability,
        a.stall_probability,
        a.corrupt_probability,
        a.seed,
        FaultRule(methods, a.fault_path_regex),
    )
    config = ProxyConfig(
        first_byte_delay_s=a.first_byte_delay_s,
        bandwidth_bytes_per_s=a.bandwidth_bytes_per_s,
        faults=faults,
    )
    parse_upstream(a.upstream)  # a usage error, reported before anything listens
    return a.upstream, a.port, config


async def _serve_forever(upstream: str, port: int, config: ProxyConfig) -> None:
    async with CloudProxy(upstream, config, port=port) as proxy:
        print(proxy.url, flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    try:
        upstream, port, config = _parse_args(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve_forever(upstream, port, config))
    except KeyboardInterrupt:
        return 0
    except OSError as e:  # e.g. the port is taken
        print(f"error: cannot serve on port {port}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
