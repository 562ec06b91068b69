"""Fixtures for the read-through view: the real agent (a child process) in front of moto behind
the cloud-like proxy (slowed, so a prefetch takes seconds), the view keeper and the view server
as child processes, and the CSI plugin serving real gRPC in this process. Every mount under
the test's directory is lazily unmounted at the end, whatever happened."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from agent.agent_process import AgentProcess
from csi.conftest import NAMESPACE, POD_UID, lazy_unmount_under, policy_for, publish_request
from shardcache.client.agent_client import AgentClient
from shardcache.status import DatasetStatus
from shardcache.store.layout import Layout
from shardcache.testkit.emulators import Bucket
from shardcache.testkit.proxy_rules import ProxyConfig
from shardcache.testkit.proxyproc import ProxyProcess
from shardcache_cluster.policy import load_policy
from shardcache_csi.node import NodeDriver
from shardcache_csi.proto import csi_pb2, csi_pb2_grpc
from shardcache_csi.server import build_server
from shardcache_csi.state import StateDir
from shardcache_csi.view.client import ViewClient

RPC_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0
PREFIX = "ds/"
#: each GET waits this long for its first byte, two at a time: ~10 objects a second
SLOW = ProxyConfig(first_byte_delay_s=0.1, bandwidth_bytes_per_s=0)
SLOW_CONCURRENCY = "2"

needs_fuse = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
    reason="FUSE mounts need root and /dev/fuse",
)


def make_objects(n: int, seed: int, max_bytes: int = 48 * 1024) -> dict[str, bytes]:
    """`n` objects of random sizes in a few class directories, like an image folder."""
    rng = random.Random(seed)
    return {
        f"class-{i % 5}/{i:04d}.bin": rng.randbytes(rng.randint(1, max_bytes)) for i in range(n)
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Proc:
    cmd: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(self.cmd, stdout=f, stderr=f)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class ViewEnv:
    root: Path
    bucket: Bucket
    agent: AgentProcess
    keeper: Proc
    server: Proc
    view_socket: Path
    driver: NodeDriver
    node: csi_pb2_grpc.NodeStub
    objects: dict[str, bytes] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.bucket.url(PREFIX)

    def target(self, pod_uid: str = POD_UID) -> str:
        parent = self.root / "kubelet" / "pods" / pod_uid / "volumes" / "kubernetes.io~csi" / "data"
        parent.mkdir(parents=True, exist_ok=True)
        return str(parent / "mount")

    def fill(self, objects: dict[str, bytes]) -> None:
        self.objects.update(objects)
        self.bucket.put({PREFIX + k: v for k, v in objects.items()})

    def publish(self, target: str, **attrs: str) -> None:
        req = publish_request(target, dataset=self.dataset, view="read-through", **attrs)
        self.node.NodePublishVolume(req, timeout=RPC_TIMEOUT_S)

    def unpublish(self, target: str) -> None:
        self.node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="csi-0123abcd", target_path=target),
            timeout=RPC_TIMEOUT_S,
        )

    def status(self) -> DatasetStatus:
        return self.agent.client.status(self.dataset)

    def wait_view_server(self, *, ours: bool = True) -> None:
        """Until the view server answers; `ours`: the fixture's, which must not die."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                ViewClient(str(self.view_socket), timeout_s=2.0).status()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise AssertionError(self.server.log.read_text()[-4000:]) from None
                if ours:
                    assert self.server.proc is not None and self.server.proc.poll() is None, (
                        self.server.log.read_text()[-4000:]
                    )
                time.sleep(0.05)

    def restart_server(self) -> None:
        self.server.start()
        self.wait_view_server()


def view_cmd(role: str, root: Path, agent_socket: Path, miss_timeout_s: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "shardcache_csi.view.main",
        role,
        "--socket",
        str(root / "view.sock"),
        "--keeper-socket",
        str(root / "keeper.sock"),
        "--agent-socket",
        str(agent_socket),
        "--state-dir",
        str(root / "view-state"),
        "--kubelet-dir",
        str(root / "kubelet"),
        "--miss-timeout-s",
        str(miss_timeout_s),
        "--log-level",
        "DEBUG",
    ]


@pytest.fixture
def view_env(s3_server, s3_bucket: Bucket) -> Iterator[ViewEnv]:  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="sc-view-", dir="/tmp"))
    root.chmod(0o755)  # the non-root reader must reach the target below it
    (root / "kubelet").mkdir()
    policy = root / "policy.json"
    policy.write_text(json.dumps(policy_for([s3_bucket.url()])))
    started: list[Proc] = []
    channel = None
    server = None
    with ProxyProcess(s3_server.endpoint_url, SLOW) as proxy:
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": proxy.url,
            "SHARDCACHE_MAX_CONCURRENCY": SLOW_CONCURRENCY,
        }
        agent = AgentProcess(
            root / "cache",
            root / "agent.sock",
            env=env,
            extra=["--policy-file", str(policy)],
            log_path=root / "agent.log",
        )
        try:
            agent.start()
            keeper = Proc(view_cmd("keeper", root, agent.socket, 15.0), root / "keeper.log")
            view = Proc(view_cmd("serve", root, agent.socket, 15.0), root / "view.log")
            started += [keeper, view]
            keeper.start()
            state = StateDir(str(root / "state"))
            state.prepare()
            driver = NodeDriver(
                agent=AgentClient(str(agent.socket), timeout_s=10.0),
                policy=load_policy(policy),
                state=state,
                kubelet_dir=str(root / "kubelet"),
                layout=Layout(root / "cache"),
                view=ViewClient(str(root / "view.sock")),
            )
            endpoint = f"unix://{root}/csi.sock"
            server = build_server(driver, endpoint=endpoint, node_id="node-1", version="test")
            channel = grpc.insecure_channel(endpoint)
            ve = ViewEnv(
                root,
                s3_bucket,
                agent,
                keeper,
                view,
                root / "view.sock",
                driver,
                csi_pb2_grpc.NodeStub(channel),
            )
            time.sleep(0.2)  # the keeper binds its socket; the server retries below if not
            ve.restart_server()
            yield ve
        finally:
            if channel is not None:
                channel.close()
            if server is not None:
                server.stop(None).wait(5)
            lazy_unmount_under(str(root))
            for p in reversed(started):
                p.kill()
            if agent.proc is not None and agent.proc.poll() is None:
                agent.kill()
            shutil.rmtree(root, ignore_errors=True)


__all__ = ["NAMESPACE", "PREFIX", "ViewEnv", "make_objects", "needs_fuse", "sha"]
