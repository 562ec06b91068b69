"""Start a `shardcache-agent` process and talk to it over its unix socket (R6, R7)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: seconds any single agent request may take; readiness has its own deadline
_REQUEST_TIMEOUT_S = 30.0


def agent_available() -> bool:
    return (Path(sys.executable).parent / "shardcache-agent").exists()


class Agent:
    def __init__(self, cache_dir: Path, socket: Path, env: Mapping[str, str]) -> None:
        self.cache_dir, self.socket, self.env = cache_dir, socket, dict(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def __enter__(self) -> Agent:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "shardcache-agent"),
                "--cache-dir",
                str(self.cache_dir),
                "--socket",
                str(self.socket),
                "--log-level",
                "WARNING",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
            if self.proc.stderr:
                self.proc.stderr.close()

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds from spawn until `/readyz` answers 200."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ""
                raise RuntimeError(f"the agent exited with {self.proc.returncode}: {err}")
            try:
                status, _ = self.request("GET", "/readyz")
                if status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.02)
        raise TimeoutError(f"the agent was not ready within {timeout_s} s")

    def rss_bytes(self) -> int:
        import psutil

        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return asyncio.run(request(self.socket, method, path, body))


async def request(socket: Path, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    import aiohttp

    connector = aiohttp.UnixConnector(path=str(socket))
    timeout = aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S)
    data = json.dumps(body) if body is not None else None
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        session.request(
            method, f"http://agent{path}", data=data, headers={"Content-Type": "application/json"}
        ) as resp,
    ):
        text = await resp.text()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDCACHE_")}
    env.update(extra)
    return env
