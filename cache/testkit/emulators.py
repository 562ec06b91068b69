"""Real object-store emulators on loopback ports, with an explicit lifecycle.

Each launcher runs its emulator as a child process in its own process group on a free
127.0.0.1 port, waits (with a deadline) until it answers HTTP, and on `stop()` kills the whole
group, so no emulator outlives the test session, demo or benchmark that started it::

    with MotoS3Server() as s3:
        s3.create_bucket("data")
        s3.put_objects("data", {"a/b.bin": b"..."})
        env = s3.env()   # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...

The clients under test find the emulators only through the SDKs' standard environment
variables (`env()`), exactly as they would find a real cloud. The upload helpers exist to seed
data; they use the emulators' own protocols with a thread pool, because the demo seeds
thousands of small objects.
"""

from __future__ import annotations

import abc
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_http(port: int, path: str, timeout_s: float) -> bool:
    """True when something on `port` answers an HTTP request with any status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


@dataclass(frozen=True)
class Bucket:
    """A bucket (or container) on an emulator, with helpers to seed it."""

    server: EmulatorProcess
    name: str

    def url(self, prefix: str = "") -> str:
        return f"{self.server.scheme}://{self.name}/{prefix}"

    def put(self, objects: Mapping[str, bytes]) -> None:
        self.server.put_objects(self.name, objects)

    def delete(self, key: str) -> None:
        self.server.delete_object(self.name, key)


class EmulatorProcess(abc.ABC):
    """A child process serving HTTP on a free loopback port; subclasses give the command."""

    #: name used in error messages
    name = "emulator"
    #: the URL scheme of the store it emulates
    scheme = ""
    #: path requested to probe readiness (any HTTP answer counts)
    probe_path = "/"

    def __init__(self, *, startup_timeout_s: float = 60.0) -> None:
        #: generous: the first start of a Node or moto process on a busy 2-core CI machine
        #: takes several seconds; a hung start still fails within this bound
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    # --- subclass hooks ---

    @abc.abstractmethod
    def command(self, port: int) -> list[str]:
        """The argv that starts the emulator on `port`."""

    @abc.abstractmethod
    def env(self) -> dict[str, str]:
        """The SDK environment variables that point a client at this emulator."""

    @abc.abstractmethod
    def create_bucket(self, bucket: str) -> None:
        """Make an empty bucket (or container) named `bucket`."""

    @abc.abstractmethod
    def put_objects(self, bucket: str, objects: Mapping[str, bytes]) -> None:
        """Upload `objects` (key -> bytes) into `bucket`."""

    @abc.abstractmethod
    def delete_object(self, bucket: str, key: str) -> None:
        """Delete one object."""

    def new_bucket(self, stem: str = "test") -> Bucket:
        """A fresh, uniquely named, empty bucket."""
        name = f"{stem}-{uuid.uuid4().hex[:12]}"
        self.create_bucket(name)
        return Bucket(self, name)

    # --- lifecycle ---

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError(f"{self.name} is already running on port {self.port}")
        self._workdir = tempfile.TemporaryDirectory(prefix=f"shardcache-{self.name}-")
        self.port = free_port()
        log = open(Path(self._workdir.name) / "emulator.log", "wb")  # noqa: SIM115
        with log:
            self._proc = subprocess.Popen(
                self.command(self.port),
                cwd=self._workdir.name,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one on stop()
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            _kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait(timeout=5)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, n_bytes: int = 4000) -> str:
        if self._workdir is None:
            return ""
        path = Path(self._workdir.name) / "emulator.log"
        return path.read_bytes()[-n_bytes:].decode("utf-8", "replace") if path.exists() else ""

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self._proc.returncode} during start-up:\n"
                    + self.log_tail()
                )
            if answers_http(self.port, self.probe_path, timeout_s=1.0):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name} did not answer on port {self.port} within {self.startup_timeout_s} s:\n"
            + self.log_tail()
        )


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, sig)


def parallel(fn: Callable[[Any], object], items: Iterable[Any], max_workers: int) -> None:
    """Run `fn` over `items` in threads; re-raise the first failure."""
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        for _ in pool.map(fn, items):
            pass


class MotoS3Server(EmulatorProcess):
    """moto's standalone server (S3 and friends) from the venv that runs this Python."""

    name = "moto_server"
    scheme = "s3"
    probe_path = "/moto-api/"

    def command(self, port: int) -> list[str]:
        moto = Path(sys.executable).parent / "moto_server"
        if not moto.exists():
            raise FileNotFoundError(
                f"{moto} not found; install the bench or test extra: pip install -e '.[test]'"
            )
        return [str(moto), "-H", "127.0.0.1", "-p", str(port)]

    def env(self) -> dict[str, str]:
        # moto refuses anonymous GETs, so the client signs with dummy keys
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, max_pool_connections: int = 32) -> Any:
        """A boto3 S3 client for seeding data (thread-safe, so one serves a pool)."""
        import boto3
        from botocore.config import Config

        env = self.env()
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
            config=Config(max_pool_connections=max_pool_connections),
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def put_objects(self, bucket: str, objects: Mapping[str, bytes], max_workers: int = 32) -> None:
        client = self.client(max_pool_connections=max_workers)
        parallel(
            lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
            objects.items(),
            max_workers,
        )

    def delete_object(self, bucket: str, key: str) -> None:
        self.client().delete_object(Bucket=bucket, Key=key)
