"""Fixtures for the agent tests: the agent as a child process on a real unix socket, in front
of a real moto S3 server (optionally through the cloud-like proxy)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_process import AgentProcess


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # AF_UNIX paths stop at 108 bytes; pytest's tmp_path can be longer than that
    with tempfile.TemporaryDirectory(prefix="sca-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def make_agent(tmp_path: Path, sock_dir: Path) -> Iterator[object]:
    started: list[AgentProcess] = []

    def make(
        *,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
        cache_dir: Path | None = None,
    ) -> AgentProcess:
        agent = AgentProcess(
            cache_dir or tmp_path / "cache",
            sock_dir / "agent.sock",
            env=env if env is not None else dict(os.environ),
            extra=extra,
            log_path=tmp_path / f"agent-{len(started)}.log",
        )
        started.append(agent)
        return agent

    yield make
    for agent in started:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
