"""Fixtures for the CSI plugin: the real `shardcache-agent` process in front of a moto S3
bucket, a plugin serving on a real unix socket, and a gRPC client; every mount made under the
test's directory is lazily unmounted at the end, whatever happened."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from agent.agent_process import AgentProcess
from shardcache.client.agent_client import AgentClient
from shardcache.store.layout import Layout
from shardcache.testkit.emulators import Bucket
from shardcache_cluster.policy import PolicySource, ReloadingPolicy
from shardcache_csi.mounter import MountError, unmount
from shardcache_csi.mountinfo import read_mountinfo
from shardcache_csi.node import NodeDriver
from shardcache_csi.proto import csi_pb2, csi_pb2_grpc
from shardcache_csi.server import build_server
from shardcache_csi.state import StateDir

#: a gRPC wait in a test never hangs the suite
RPC_TIMEOUT_S = 10.0
POD_UID = "1f2e3d4c-0000-4000-8000-00000000a001"
NAMESPACE = "team-a"
#: the dataset every test publishes, under the test's own bucket
PREFIX = "imagenet/"


def is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(
    not is_root(), reason="bind mounts need root (CAP_SYS_ADMIN); run the suite as root"
)


def lazy_unmount_under(root: str) -> None:
    """Finalizer: take down every mount below `root`, deepest first (umount -l)."""
    prefix = os.path.realpath(root) + "/"
    for entry in sorted(read_mountinfo(), key=lambda e: -len(e.mount_point)):
        if entry.mount_point.startswith(prefix):
            with contextlib.suppress(MountError):
                unmount(entry.mount_point, lazy=True)


def policy_for(namespace_prefixes: list[str]) -> dict[str, object]:
    return {"namespaces": {NAMESPACE: namespace_prefixes, "*": []}}


@dataclass
class Env:
    root: Path
    kubelet_dir: Path
    state_dir: Path
    endpoint: str
    agent: AgentProcess
    #: the plugin's policy; the agent has its own copy (agent_policy_file)
    policy_file: Path
    agent_policy_file: Path
    bucket: Bucket

    @property
    def dataset(self) -> str:
        return self.bucket.url(PREFIX)

    def owners(self, url: str | None = None) -> list[str]:
        return list(self.agent.client.status(url or self.dataset).owners)

    def registered(self) -> list[str]:
        return [str(d.url) for d in self.agent.client.datasets()]

    def target(self, pod_uid: str = POD_UID, volume: str = "data") -> str:
        """The path kubelet would pass, with its parent created as kubelet does."""
        parent = self.kubelet_dir / "pods" / pod_uid / "volumes" / "kubernetes.io~csi" / volume
        parent.mkdir(parents=True, exist_ok=True)
        return str(parent / "mount")

    def fill(self, files: dict[str, bytes], prefix: str = PREFIX) -> None:
        """Put objects in the bucket under `prefix`; the agent fetches them once registered."""
        self.bucket.put({prefix + name: data for name, data in files.items()})

    def wait_local(self, url: str | None = None) -> Path:
        """Wait until the agent has the whole dataset; its local directory."""
        doc = self.agent.wait_status(url or self.dataset, ("complete",))
        return doc.local_dir

    def restart_agent(self, policy: dict[str, object] | None = None) -> None:
        self.agent.terminate()
        if policy is not None:
            self.agent_policy_file.write_text(json.dumps(policy))
        self.agent.start()


@pytest.fixture
def env(s3_bucket: Bucket) -> Iterator[Env]:
    # Short paths under /tmp: a unix socket path must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="sc-csi-", dir="/tmp"))
    policy = json.dumps(policy_for([s3_bucket.url()]))
    policy_file, agent_policy_file = root / "policy.json", root / "agent-policy.json"
    policy_file.write_text(policy)
    agent_policy_file.write_text(policy)
    (root / "kubelet").mkdir()
    # the real agent, with the AWS_* variables s3_bucket set pointing it at moto
    agent = AgentProcess(
        root / "cache",
        root / "agent.sock",
        extra=["--policy-file", str(agent_policy_file)],
        log_path=root / "agent.log",
    )
    try:
        agent.start()
        yield Env(
            root,
            root / "kubelet",
            root / "state",
            f"unix://{root}/csi.sock",
            agent,
            policy_file,
            agent_policy_file,
            s3_bucket,
        )
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.kill()
        lazy_unmount_under(str(root))
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Client:
    identity: csi_pb2_grpc.IdentityStub
    node: csi_pb2_grpc.NodeStub
    channel: grpc.Channel
    driver: NodeDriver


def make_driver(env: Env, cache_dir: Path | None = None) -> NodeDriver:
    """The plugin's driver as main.build_driver makes it; the policy file is looked at on
    every publish (no interval), so a test's edit is seen by the next call."""
    state = StateDir(str(env.state_dir))
    state.prepare()
    return NodeDriver(
        agent=AgentClient(str(env.agent.socket), timeout_s=5.0),
        policy=ReloadingPolicy(PolicySource(env.policy_file, cluster=True, check_interval_s=0)),
        state=state,
        kubelet_dir=str(env.kubelet_dir),
        layout=Layout(cache_dir or env.agent.cache_dir),
    )


@pytest.fixture
def plugin(env: Env) -> Iterator[Client]:
    """The plugin, in this process, serving on a real unix socket; a real gRPC client."""
    driver = make_driver(env)
    driver.recover()
    server = build_server(driver, endpoint=env.endpoint, node_id="node-1", version="test")
    channel = grpc.insecure_channel(env.endpoint)
    try:
        yield Client(
            csi_pb2_grpc.IdentityStub(channel), csi_pb2_grpc.NodeStub(channel), channel, driver
        )
    finally:
        channel.close()
        server.stop(None).wait(5)


def publish_request(
    target: str,
    *,
    dataset: str | None,
    namespace: str = NAMESPACE,
    pod_uid: str = POD_UID,
    volume_id: str = "csi-0123abcd",
    readonly: bool = True,
    view: str | None = "bind",
    **extra: str,
) -> csi_pb2.NodePublishVolumeRequest:
    """What kubelet sends for an inline (ephemeral) volume with podInfoOnMount: true.

    The plugin tests here publish `view: bind` volumes (tests/view covers read-through)."""
    context = {
        "csi.storage.k8s.io/pod.name": "trainer-0",
        "csi.storage.k8s.io/pod.namespace": namespace,
        "csi.storage.k8s.io/pod.uid": pod_uid,
        "csi.storage.k8s.io/serviceAccount.name": "default",
        "csi.storage.k8s.io/ephemeral": "true",
        **extra,
    }
    if dataset is not None:
        context["dataset"] = dataset
    if view is not None:
        context["view"] = view
    mode = csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_id,
        target_path=target,
        volume_capability=csi_pb2.VolumeCapability(
            mount=csi_pb2.VolumeCapability.MountVolume(),
            access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
        ),
        readonly=readonly,
        volume_context=context,
    )
