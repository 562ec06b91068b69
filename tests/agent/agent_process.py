"""`shardcache-agent` as a real child process, reached over its real unix socket."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from shardcache.client.agent_client import AgentClient
from shardcache.status import DatasetStatus
from shardcache.testkit.emulators import free_port
from shardcache_cluster.agent.metrics import parse

AGENT = Path(sys.executable).parent / "shardcache-agent"
#: bound on start-up and shutdown in tests: generous for a busy 2-core machine
START_TIMEOUT_S = 30.0


class AgentProcess:
    def __init__(
        self,
        cache_dir: Path,
        socket: Path,
        *,
        env: Mapping[str, str] | None = None,
        extra: list[str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.cache_dir, self.socket = cache_dir, socket
        self.env = dict(os.environ if env is None else env)
        self.extra = extra or []
        self.metrics_port = free_port()
        self.log_path = log_path or socket.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = AgentClient(str(socket), timeout_s=10.0, fetch_timeout_s=60.0)

    def start(self, wait: bool = True) -> float:
        """Start; with `wait`, return the seconds until /readyz said ready."""
        cmd = [
            str(AGENT),
            "--cache-dir",
            str(self.cache_dir),
            "--socket",
            str(self.socket),
            "--metrics-port",
            str(self.metrics_port),
            *self.extra,
        ]
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=log)
        if wait:
            self.wait_ready()
        return time.monotonic() - t0

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.client.ready():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"agent not ready after {timeout_s} s:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def metrics_text(self) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200
            return resp.read().decode()
        finally:
            conn.close()

    def metrics(self) -> dict[str, float]:
        return parse(self.metrics_text())

    def terminate(self, timeout_s: float = START_TIMEOUT_S) -> int:
        return self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> int:
        return self._signal(signal.SIGKILL, START_TIMEOUT_S)

    def _signal(self, sig: signal.Signals, timeout_s: float) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout_s)
            raise

    def wait_status(
        self, url: str, states: tuple[str, ...] = ("complete",), timeout_s: float = 60.0
    ) -> DatasetStatus:
        deadline = time.monotonic() + timeout_s
        while True:
            doc = self.client.status(url)
            if doc.state in states:
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{url} still {doc.state} after {timeout_s} s: {doc}\n{self.log()}"
                )
            time.sleep(0.05)
