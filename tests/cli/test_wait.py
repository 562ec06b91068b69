"""`shardcache wait`: the pure decision, the status-file mode an init container uses (no cache
dir, no socket), and the in-process mode; the agent mode is in tests/agent/test_cli_agent_mode.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from shardcache.cli.main import main
from shardcache.store.statusfile import parse_status_file
from shardcache.urls import parse_url

URL = "s3://bucket-a/imagenet/"
CLI = Path(sys.executable).parent / "shardcache"


def status_doc(url: str = URL, state: str = "complete", local: int = 100, total: int = 100):
    return {
        "url": url,
        "state": state,
        "objects_total": 2,
        "objects_local": 2 if local == total else 1,
        "bytes_total": total,
        "bytes_local": local,
        "updated_at": 1700000000.0,
    }


def test_parse_status_file() -> None:
    ds = parse_url(URL)
    seen, note = parse_status_file(json.dumps(status_doc(local=25)), ds)
    assert note is None and seen is not None and seen.fraction_local == 0.25
    assert parse_status_file(json.dumps(status_doc(url="s3://bucket-a/other/")), ds)[0] is None
    for bad in ("", "{", "[1]", '{"url": "s3://bucket-a/imagenet/", "bytes_total": "x"}'):
        seen, note = parse_status_file(bad, ds)
        assert seen is None and note and "unreadable" in note


# ---- status-file mode: what the webhook's init container runs --------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A status mount with no socket and a cache dir that must stay untouched."""
    mount = tmp_path / "status"
    mount.mkdir(parents=True)
    monkeypatch.setenv("SHARDCACHE_STATUS_DIR", str(mount))
    monkeypatch.delenv("SHARDCACHE_AGENT_SOCKET", raising=False)
    monkeypatch.setenv("SHARDCACHE_CACHE_DIR", str(tmp_path / "not-used"))
    return mount


def write_status(mount: Path, doc: dict[str, object]) -> None:
    tmp = mount / ".tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, mount / "status.json")


def wait(*args: str) -> int:
    return main(["wait", URL, *args])


def test_status_file_reached(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_status(data_dir, status_doc(state="downloading", local=60))
    # the URL as the annotation may spell it: normalised like the agent's
    assert main(["wait", "s3://bucket-a/imagenet", "--fraction", "0.6", "--timeout", "30"]) == 0
    assert "60.0% local" in capsys.readouterr().err
    assert wait("--fraction", "0.5", "--timeout", "30", "--output", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["reached"] is True and doc["fraction_local"] == 0.6
    assert not (data_dir.parent / "not-used").exists()


@pytest.mark.parametrize(
    ("doc", "note"),
    [
        (status_doc(state="downloading", local=10), None),
        (status_doc(url="s3://bucket-a/other/"), "describes 's3://bucket-a/other/'"),
        (None, "no readable"),
    ],
)
def test_status_file_timeout_starts_the_pod_anyway(
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    doc: dict[str, object] | None,
    note: str | None,
) -> None:
    if doc is not None:
        write_status(data_dir, doc)
    assert wait("--fraction", "0.9", "--timeout", "0.3") == 0
    err = capsys.readouterr().err
    assert "warning" in err and "starting anyway" in err
    assert "read-through view fetches each missing object when it is opened" in err
    if note:
        assert note in err
    assert wait("--fraction", "0.9", "--timeout", "0", "--output", "json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reached"] is False and result["timed_out"] is True
    assert not (data_dir.parent / "not-used").exists()


def test_status_file_failed(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_status(data_dir, status_doc(state="failed", local=10))
    assert wait("--fraction", "0.5", "--timeout", "30") == 1
    assert "prefetch failed" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--fraction", "1.5"], ["--timeout", "-1"]])
def test_usage_errors(data_dir: Path, bad: list[str]) -> None:
    assert wait(*bad) == 2
    assert main(["wait", "no scheme here"]) == 2


def test_the_console_script_waits_for_the_file_to_appear(tmp_path: Path) -> None:
    """The real `shardcache wait` process polls until the agent's file says enough."""
    mount = tmp_path / "status"
    env = {k: v for k, v in os.environ.items() if k != "SHARDCACHE_AGENT_SOCKET"}
    env.update(SHARDCACHE_STATUS_DIR=str(mount), SHARDCACHE_CACHE_DIR=str(tmp_path / "not-used"))
    proc = subprocess.Popen(
        [str(CLI), "wait", URL, "--fraction", "1", "--timeout", "60", "--output", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        mount.mkdir()
        write_status(mount, status_doc(state="downloading", local=50))
        write_status(mount, status_doc())
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert json.loads(out)["reached"] is True
    assert not (tmp_path / "not-used").exists()


# ---- in-process mode: the cache dir on this machine ------------------------------------------


@pytest.fixture
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("SHARDCACHE_STATUS_DIR", raising=False)
    monkeypatch.delenv("SHARDCACHE_AGENT_SOCKET", raising=False)
    monkeypatch.setenv("SHARDCACHE_CACHE_DIR", str(tmp_path / "cache"))
    store = tmp_path / "store" / "ds"
    store.mkdir(parents=True)
    for i in range(4):
        (store / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
    return f"file://{store}/"


def test_in_process_prefetch_then_reached(
    local_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["wait", local_store, "--fraction", "1", "--timeout", "60", "--output", "json"]
    assert main([*argv, "--prefetch"]) == 0
    assert json.loads(capsys.readouterr().out)["reached"] is True
    assert main(argv) == 0  # already local: no prefetch needed
    assert json.loads(capsys.readouterr().out)["fraction_local"] == 1.0


def test_in_process_unknown_dataset_times_out_with_exit_0(
    local_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["wait", local_store, "--fraction", "0.5", "--timeout", "0.3"]) == 0
    assert "starting anyway" in capsys.readouterr().err
