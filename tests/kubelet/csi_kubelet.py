"""The kubelet's side of CSI: plugin registration, then NodePublishVolume for a pod.

Registration follows the kubelet's plugin watcher: a socket appears in
`/var/lib/kubelet/plugins_registry`; the kubelet calls GetInfo on it, accepts a `CSIPlugin`
that supports CSI 1.x and whose endpoint is a socket on the node, and answers
NotifyRegistrationStatus. From then on it reaches the plugin at that endpoint (a node path,
here below the fake node's root).

Publishing an inline ephemeral volume follows what the kubelet's CSI volume plugin sends with
`podInfoOnMount: true`: the volume handle `csi-<sha256(pod uid + volume name)>`, the target
`<pods dir>/<uid>/volumes/kubernetes.io~csi/<volume>/mount` (its parent created, the target
left to the plugin), the volume's attributes plus the pod's name, namespace, uid, service
account and `ephemeral: "true"`, a mount capability, SINGLE_NODE_WRITER, and `readonly`
from the volume.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from shardcache_csi.proto import csi_pb2, csi_pb2_grpc

from .kubeobj import PodFacts
from .proto import pluginregistration_pb2 as reg_pb2
from .proto import pluginregistration_pb2_grpc as reg_grpc
from .runtime import FakeNode

RPC_TIMEOUT_S = 30.0
POLL_S = 0.1


@dataclass(frozen=True)
class Registered:
    driver: str
    #: the endpoint as the plugin announced it (a node path)
    endpoint: str
    #: the same socket inside the fake node
    socket: Path
    registration_socket: Path


def wait_for_registration_socket(
    node: FakeNode, timeout_s: float, alive: Callable[[], bool] = lambda: True
) -> Path:
    """The first socket in the plugin registration dir, as the plugin watcher finds it;
    gives up early when `alive` says the container that would make it has exited."""
    registry = node.path("/var/lib/kubelet/plugins_registry")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        found = sorted(p for p in registry.iterdir() if p.is_socket())
        if found:
            return found[0]
        time.sleep(POLL_S)
    raise TimeoutError(f"no registration socket in {registry} (registrar running: {alive()})")


def accept(info: Any, node: FakeNode) -> str:
    """Why the kubelet would refuse this plugin, or "" when it registers it."""
    if info.type != "CSIPlugin":
        return f"type {info.type!r} is not CSIPlugin"
    if not any(v.split(".")[0] == "1" for v in info.supported_versions):
        return f"no CSI 1.x in {list(info.supported_versions)}"
    if not node.path(info.endpoint).is_socket():
        return f"endpoint {info.endpoint} is not a socket on the node"
    return ""


def register(node: FakeNode, registration_socket: Path) -> Registered:
    with grpc.insecure_channel(f"unix://{registration_socket}") as channel:
        stub = reg_grpc.RegistrationStub(channel)
        info = stub.GetInfo(reg_pb2.InfoRequest(), timeout=RPC_TIMEOUT_S)
        error = accept(info, node)
        stub.NotifyRegistrationStatus(
            reg_pb2.RegistrationStatus(plugin_registered=not error, error=error),
            timeout=RPC_TIMEOUT_S,
        )
    if error:
        raise RuntimeError(f"the kubelet refuses plugin {info.name}: {error}")
    return Registered(info.name, info.endpoint, node.path(info.endpoint), registration_socket)


def volume_handle(pod_uid: str, volume: str) -> str:
    return "csi-" + hashlib.sha256((pod_uid + volume).encode()).hexdigest()


def target_path(pods_dir: str, pod_uid: str, volume: str) -> str:
    return f"{pods_dir}/{pod_uid}/volumes/kubernetes.io~csi/{volume}/mount"


def publish_request(
    volume: dict[str, Any],
    pod: dict[str, Any],
    facts: PodFacts,
    pods_dir: str = "/var/lib/kubelet/pods",
) -> csi_pb2.NodePublishVolumeRequest:
    csi = volume["csi"]
    context = dict(csi.get("volumeAttributes") or {}) | {
        "csi.storage.k8s.io/pod.name": facts.name,
        "csi.storage.k8s.io/pod.namespace": facts.namespace,
        "csi.storage.k8s.io/pod.uid": facts.uid,
        "csi.storage.k8s.io/serviceAccount.name": pod["spec"].get("serviceAccountName", "default"),
        "csi.storage.k8s.io/ephemeral": "true",
    }
    mode = csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_handle(facts.uid, volume["name"]),
        target_path=target_path(pods_dir, facts.uid, volume["name"]),
        volume_capability=csi_pb2.VolumeCapability(
            mount=csi_pb2.VolumeCapability.MountVolume(fs_type=csi.get("fsType", "")),
            access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),
        ),
        readonly=bool(csi.get("readOnly")),
        volume_context=context,
    )


class CsiNode:
    """The kubelet's connection to a registered plugin."""

    def __init__(self, node: FakeNode, plugin: Registered) -> None:
        self.node = node
        self.channel = grpc.insecure_channel(f"unix://{plugin.socket}")
        self.identity = csi_pb2_grpc.IdentityStub(self.channel)
        self.stub = csi_pb2_grpc.NodeStub(self.channel)

    def node_id(self) -> str:
        return self.stub.NodeGetInfo(csi_pb2.NodeGetInfoRequest(), timeout=RPC_TIMEOUT_S).node_id

    def publish(self, volume: dict[str, Any], pod: dict[str, Any], facts: PodFacts) -> str:
        request = publish_request(volume, pod, facts)
        self.node.path(request.target_path).parent.mkdir(parents=True, exist_ok=True)
        self.stub.NodePublishVolume(request, timeout=RPC_TIMEOUT_S)
        return request.target_path

    def unpublish(self, volume: dict[str, Any], facts: PodFacts) -> None:
        self.stub.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(
                volume_id=volume_handle(facts.uid, volume["name"]),
                target_path=target_path("/var/lib/kubelet/pods", facts.uid, volume["name"]),
            ),
            timeout=RPC_TIMEOUT_S,
        )

    def close(self) -> None:
        self.channel.close()
