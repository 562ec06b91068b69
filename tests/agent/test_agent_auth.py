"""The agent's socket API is authorised by the caller's identity (SO_PEERCRED): the real agent
process on its real unix socket, called by real processes running as root and as other uids."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from shardcache_cluster.agent.auth import Peer, refusal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")

#: an unprivileged uid, and another gid that is given the socket in these tests
NOBODY = 65534
GROUP = 4242

#: stdlib only: the child runs as another uid, which may not read the test's virtualenv
CALL = r"""
import json, socket, sys
path, method, target, body = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
try:
    s.connect(path)
except OSError as e:
    print(json.dumps({"connect_errno": e.errno})); sys.exit(0)
data = body.encode()
s.sendall((f"{method} {target} HTTP/1.0\r\nHost: agent\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
reply = b""
while chunk := s.recv(65536):
    reply += chunk
head, _, payload = reply.partition(b"\r\n\r\n")
print(json.dumps({"status": int(head.split()[1]), "body": payload.decode()}))
"""


def python_for_any_uid() -> str:
    """An interpreter every uid can run (the test's own may live under /root, mode 0700)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        parents = Path(candidate).parents
        if os.path.exists(candidate) and all(os.stat(p).st_mode & stat.S_IXOTH for p in parents):
            return candidate
    pytest.fail("no python interpreter that an unprivileged uid may run")


def call_as(uid: int, gid: int, socket_path: Path, method: str, target: str, body=None):
    result = subprocess.run(
        [
            python_for_any_uid(),
            "-c",
            CALL,
            str(socket_path),
            method,
            target,
            json.dumps(body or {}),
        ],
        user=uid,
        group=gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_rule_is_pure():
    root, user = Peer(10, 0, 0), Peer(11, 1000, 1000)
    assert refusal(user, "GET", "/v1/datasets/status") is None
    for path in ("/v1/datasets", "/v1/datasets/release", "/v1/evict", "/v1/objects/fetch"):
        assert refusal(root, "POST", path) is None
        assert "only root" in (refusal(user, "POST", path) or "")
    assert refusal(None, "POST", "/v1/datasets") is not None


def test_only_root_changes_what_the_agent_holds(s3_bucket, make_agent, sock_dir):
    sock_dir.chmod(0o711)  # the directory lets anyone through: the socket's mode decides
    s3_bucket.put({"ds/a.bin": b"a" * 100})
    url = s3_bucket.url("ds/")
    agent = make_agent()
    agent.start()
    sock = agent.socket
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660
    # nobody outside the socket's group cannot even connect
    denied = call_as(NOBODY, NOBODY, sock, "GET", "/healthz")
    assert denied == {"connect_errno": 13}
    os.chown(sock, 0, GROUP)  # an operator grants a group read access
    assert call_as(NOBODY, GROUP, sock, "GET", "/healthz")["status"] == 200
    for target, body in (
        ("/v1/datasets", {"url": url, "owner": "cli-1"}),
        ("/v1/objects/fetch", {"url": url + "a.bin"}),
        ("/v1/evict", {"url": url, "force": True}),
        ("/v1/verify", {}),
    ):
        answer = call_as(NOBODY, GROUP, sock, "POST", target, body)
        assert answer["status"] == 403, answer
        assert json.loads(answer["body"])["error"]["kind"] == "access_denied"
    assert agent.client.datasets() == []  # nothing was registered by the refused calls
    # root registers; the group member may read the status, not release the pin
    agent.client.register(url, "cli-1")
    agent.wait_status(url)
    status = call_as(NOBODY, GROUP, sock, "GET", f"/v1/datasets/status?url={url}")
    assert status["status"] == 200 and json.loads(status["body"])["owners"] == ["cli-1"]
    released = call_as(
        NOBODY, GROUP, sock, "POST", "/v1/datasets/release", {"url": url, "owner": "cli-1"}
    )
    assert released["status"] == 403
    assert list(agent.client.status(url).owners) == ["cli-1"]
    # root, but another process than the one that pinned: refused too (see the leases)
    as_root = call_as(0, 0, sock, "POST", "/v1/datasets/release", {"url": url, "owner": "cli-1"})
    assert as_root["status"] == 403 and "still running" in as_root["body"]
    agent.client.release(url, "cli-1")  # the pinning process itself
    assert list(agent.client.status(url).owners) == []


def test_the_status_socket_serves_pods_read_only(s3_bucket, make_agent, sock_dir):
    s3_bucket.put({"ds/a.bin": b"a" * 100})
    url = s3_bucket.url("ds/")
    sock_dir.chmod(0o711)
    (sock_dir / "pods").mkdir(mode=0o755)
    status_sock = sock_dir / "pods" / "agent.sock"
    agent = make_agent(extra=["--status-socket", str(status_sock)])
    agent.start()
    agent.client.register(url, "cli-1")
    agent.wait_status(url)
    assert stat.S_IMODE(os.stat(status_sock).st_mode) == 0o666
    seen = call_as(NOBODY, NOBODY, status_sock, "GET", f"/v1/datasets/status?url={url}")
    assert seen["status"] == 200 and json.loads(seen["body"])["state"] == "complete"
    # as root too (a root container in hostpath mode): every change refused, no listing of
    # other datasets, no metrics
    for method, target, code in (
        ("POST", "/v1/datasets", 403),
        ("POST", "/v1/evict", 403),
        ("POST", "/v1/datasets/release", 403),
        ("POST", "/v1/objects/fetch", 403),
        ("GET", "/v1/datasets", 404),
        ("GET", "/metrics", 404),
    ):
        answer = call_as(0, 0, status_sock, method, target, {"url": url, "owner": "cli-1"})
        assert answer["status"] == code, (method, target, answer)
    assert list(agent.client.status(url).owners) == ["cli-1"]


def test_an_open_socket_mode_is_refused(tmp_path, sock_dir):
    from agent_process import AGENT

    argv = [str(AGENT), "--cache-dir", str(tmp_path / "c"), "--socket", str(sock_dir / "a.sock")]
    for extra in (["--socket-mode", "666"], ["--status-socket", str(sock_dir / "b.sock")]):
        result = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "--socket-mode" in result.stderr or "--status-socket" in result.stderr
