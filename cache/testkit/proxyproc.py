"""The cloud-like proxy in a process of its own, with its counters readable from outside.

Running `CloudProxy` in a thread of the measuring process would make the proxy and the client
under test share one GIL, so a client that uses more CPU would also slow the "network". As a
child process, the proxy is part of the environment, like a real network path, and every client
measured against it pays the same price. The parent asks for counters by writing `stats` on the
child's stdin; the child answers with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from .proxy import CloudProxy, ProxyConfig

#: seconds to wait for the child to print its URL or answer a stats request
_ANSWER_TIMEOUT_S = 15.0


class ProxyProcess:
    """`with ProxyProcess(upstream, config) as p:` then `p.url`, `p.stats()`."""

    def __init__(self, upstream_url: str, config: ProxyConfig) -> None:
        self.upstream = upstream_url
        self.config = config
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> ProxyProcess:
        cfg = self.config
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shardcache.testkit.proxyproc",
                "--upstream",
                self.upstream,
                "--first-byte-delay-s",
                str(cfg.first_byte_delay_s or 0),
                "--bandwidth-bytes-per-s",
                str(cfg.bandwidth_bytes_per_s or 0),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.url = self._answer()
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()

    @property
    def pid(self) -> int:
        """The proxy process's id (benchmarks read its CPU time)."""
        assert self._proc is not None
        return self._proc.pid

    def stats(self) -> dict[str, int]:
        """The proxy's counters since it started (see `ProxyStats`)."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write("stats\n")
        self._proc.stdin.flush()
        result: dict[str, int] = json.loads(self._answer())
        return result

    def _answer(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], _ANSWER_TIMEOUT_S)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the proxy process did not answer within {_ANSWER_TIMEOUT_S} s")
        return line.strip()


async def _serve(upstream: str, config: ProxyConfig) -> None:
    loop = asyncio.get_running_loop()
    async with CloudProxy(upstream, config) as proxy:
        print(proxy.url, flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            if line.strip() == "stats":
                print(json.dumps(asdict(proxy.stats())), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shardcache.testkit.proxyproc")
    p.add_argument("--upstream", required=True)
    p.add_argument("--first-byte-delay-s", type=float, default=0.020)
    p.add_argument("--bandwidth-bytes-per-s", type=float, default=90e6)
    a = p.parse_args(argv)
    config = ProxyConfig(
        first_byte_delay_s=a.first_byte_delay_s or None,
        bandwidth_bytes_per_s=a.bandwidth_bytes_per_s or None,
    )
    asyncio.run(_serve(a.upstream, config))
    return 0


def describe(config: ProxyConfig) -> dict[str, Any]:
    return {
        "first_byte_ms": (config.first_byte_delay_s or 0) * 1e3,
        "bandwidth_mb_per_s_per_connection": (config.bandwidth_bytes_per_s or 0) / 1e6,
    }


if __name__ == "__main__":
    sys.exit(main())
