"""Plain values the kubelet harness passes around, and reading the cluster's objects.

`PodFacts` is what only the node knows of a pod; `Image` what the harness knows of an image;
a `ContainerPlan` (argv, environment, `Mount`s, `Identity`, `Probe`s) is what `podspec.plan`
computes and `runtime.FakeNode.start` carries out. `field_ref` and `object_data` read the
downward API and Secrets/ConfigMaps as the kubelet does.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: capabilities a container runtime grants by default (containerd, CRI-O), before drop/add
DEFAULT_CAPS = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
)


class SpecError(ValueError):
    """The kubelet would refuse to start this container (CreateContainerConfigError)."""


@dataclass(frozen=True)
class PodFacts:
    name: str
    namespace: str
    uid: str
    node_name: str
    pod_ip: str
    host_ip: str


@dataclass(frozen=True)
class Image:
    """What the harness knows of an image: its entrypoint, environment and user."""

    entrypoint: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    uid: int
    gid: int


@dataclass(frozen=True)
class Mount:
    target: str
    #: "host": bind `source` (a path on the node); "files": bind a directory the kubelet
    #: writes (`files` holds its content); "csi": bind the volume's publish target
    kind: str
    source: str
    read_only: bool
    propagation: str = "None"
    files: tuple[tuple[str, bytes, int], ...] = ()
    host_type: str = ""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]
    no_new_privs: bool
    privileged: bool
    caps: tuple[str, ...]


@dataclass(frozen=True)
class Probe:
    kind: str  # httpGet | tcpSocket | exec | grpc
    port: int = 0
    path: str = "/"
    scheme: str = "HTTP"
    host: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    service: str = ""
    initial_delay_s: int = 0
    period_s: int = 10
    timeout_s: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    image: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    mounts: tuple[Mount, ...]
    identity: Identity
    read_only_root: bool
    working_dir: str
    probes: Mapping[str, Probe] = field(default_factory=dict)


def field_ref(path: str, pod: Obj, facts: PodFacts) -> str:
    simple = {
        "metadata.name": facts.name,
        "metadata.namespace": facts.namespace,
        "metadata.uid": facts.uid,
        "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.host_ip,
    }
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str(pod["metadata"].get(m.group(1), {}).get(m.group(2), ""))
    raise SpecError(f"fieldRef {path!r} is not one the downward API offers")


def object_data(objects: Sequence[Obj], kind: str, namespace: str, name: str) -> dict[str, bytes]:
    for o in objects:
        meta = o["metadata"]
        if o["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            if kind == "Secret":
                return {k: base64.b64decode(v) for k, v in (o.get("data") or {}).items()} | {
                    k: v.encode() for k, v in (o.get("stringData") or {}).items()
                }
            return {k: v.encode() for k, v in (o.get("data") or {}).items()}
    raise SpecError(f"{kind} {namespace}/{name} not found")
