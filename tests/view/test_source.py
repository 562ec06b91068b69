"""Where the view's files come from, with an in-test agent and a fake clock: a miss waits for
an agent that restarts (bounded), fails at once on an answer that will not change, and never
accepts a file of another size."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from shardcache.errors import NotFoundError, UnavailableError
from shardcache_csi.view.source import RETRY_S, CacheSource, SourceConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class Agent:
    """Answers from a script: an exception to raise or a path to return, one per call."""

    def __init__(self, answers: list[object]) -> None:
        self.answers, self.calls = answers, []

    def fetch(self, url: str) -> str | None:
        self.calls.append(url)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]


def source(tmp_path: Path, agent: Agent, clock: Clock, timeout_s: float = 5.0) -> CacheSource:
    return CacheSource(
        SourceConfig(str(tmp_path / "ds"), "s3://b/ds/", timeout_s), agent, clock, clock.sleep
    )


def test_local_files_open_only_at_the_listed_size(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a").write_bytes(b"abc")
    os.symlink("/etc/passwd", tmp_path / "ds" / "link")
    src = source(tmp_path, Agent([None]), Clock())
    fd = src.open_local("a", 3)
    assert fd is not None
    os.close(fd)
    assert src.open_local("a", 4) is None  # another version
    assert src.open_local("link", os.path.getsize("/etc/passwd")) is None  # never followed
    assert src.open_local("missing", 1) is None


def test_a_miss_waits_for_a_restarting_agent(tmp_path: Path) -> None:
    published = tmp_path / "published"
    published.write_bytes(b"hello")
    agent = Agent([UnavailableError("down"), UnavailableError("down"), str(published)])
    clock = Clock()
    fd = source(tmp_path, agent, clock).fetch("k", 5)
    os.close(fd)
    assert agent.calls == ["s3://b/ds/k"] * 3 and clock.now == 2 * RETRY_S


def test_a_miss_fails_with_eio_when_the_agent_stays_away(tmp_path: Path) -> None:
    clock = Clock()
    src = source(tmp_path, Agent([UnavailableError("down")]), clock, timeout_s=3.0)
    with pytest.raises(OSError) as info:
        src.fetch("k", 5)
    assert info.value.errno == errno.EIO and clock.now <= 3.0
    assert src.failures[-1]["kind"] == "unavailable" and src.failures[-1]["key"] == "k"


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (NotFoundError("gone"), "not_found"),
        (None, "not_cached"),
    ],
)
def test_an_answer_that_will_not_change_fails_at_once(
    tmp_path: Path, answer: object, kind: str
) -> None:
    clock, agent = Clock(), Agent([answer])
    src = source(tmp_path, agent, clock)
    with pytest.raises(OSError) as info:
        src.fetch("k", 5)
    assert info.value.errno == errno.EIO and len(agent.calls) == 1 and clock.now == 0
    assert src.failures == [{"key": "k", "kind": kind, "message": src.failures[0]["message"]}]


def test_a_published_file_of_another_size_is_never_served(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"x" * 9)
    clock = Clock()
    src = source(tmp_path, Agent([str(wrong)]), clock, timeout_s=2.0)
    with pytest.raises(OSError) as info:
        src.fetch("k", 5)
    assert info.value.errno == errno.EIO and src.failures[-1]["kind"] == "changed"
