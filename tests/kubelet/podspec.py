"""What the kubelet makes of a pod spec, as plain values: the pure half of the harness.

Given a pod template, the facts only the node knows (its name, the pod's IP and uid) and the
cluster's objects (Secrets, ConfigMaps, ServiceAccounts), compute for each container the argv,
the environment, the mounts and the identity the kubelet and the container runtime would give
it, and the probes it would run. No I/O: `runtime.py` carries a plan out.

Written here rather than taken from a library: the kubelet's own code is Go, and no Python
package models these rules; they follow the Kubernetes API reference (EnvVar, EnvFromSource,
Volume, SecurityContext, Probe) and the kubelet's behaviour it documents ($(VAR) expansion,
the service-account token volume, configMap/secret volumes always read-only).
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


# --- environment ---------------------------------------------------------------------------

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's $(VAR) expansion: `$$` is a literal `$`, an unknown $(VAR) stays as is."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(one, text)


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


def _data(objects: Sequence[Obj], kind: str, namespace: str, name: str) -> dict[str, bytes]:
    for o in objects:
        meta = o["metadata"]
        if o["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            if kind == "Secret":
                return {k: base64.b64decode(v) for k, v in (o.get("data") or {}).items()} | {
                    k: v.encode() for k, v in (o.get("stringData") or {}).items()
                }
            return {k: v.encode() for k, v in (o.get("data") or {}).items()}
    raise SpecError(f"{kind} {namespace}/{name} not found")


def environment(
    container: Obj,
    pod: Obj,
    facts: PodFacts,
    objects: Sequence[Obj],
    image: Image,
    service_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The image's environment, the Services' variables, then envFrom, then env in order,
    each value expanded against what came before."""
    env = dict(image.env) | dict(service_env or {})
    for source in container.get("envFrom") or []:
        kind, ref = (
            ("Secret", source["secretRef"])
            if "secretRef" in source
            else ("ConfigMap", source["configMapRef"])
        )
        prefix = source.get("prefix", "")
        data = _data(objects, kind, facts.namespace, ref["name"])
        env |= {prefix + k: v.decode() for k, v in data.items()}
    for item in container.get("env") or []:
        env[item["name"]] = _env_value(item, env, pod, facts, objects)
    return env


def _env_value(
    item: Obj, env: Mapping[str, str], pod: Obj, facts: PodFacts, objects: Sequence[Obj]
) -> str:
    if "valueFrom" not in item:
        return expand(item.get("value", ""), env)
    source = item["valueFrom"]
    if "fieldRef" in source:
        return field_ref(source["fieldRef"]["fieldPath"], pod, facts)
    for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        if key in source:
            ref = source[key]
            return _data(objects, kind, facts.namespace, ref["name"])[ref["key"]].decode()
    raise SpecError(f"env {item['name']}: valueFrom {sorted(source)} is not implemented")


# --- identity ------------------------------------------------------------------------------


def identity(container: Obj, pod: Obj, image: Image) -> Identity:
    psc, csc = pod["spec"].get("securityContext") or {}, container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return csc.get(key, psc.get(key))

    uid = pick("runAsUser")
    # The runtime takes the group from the image's /etc/passwd for a uid the spec names;
    # python:3.11-slim lists none of the uids used here, so it is 0, as containerd does.
    gid = pick("runAsGroup")
    if gid is None:
        gid = image.gid if uid is None else 0
    uid = image.uid if uid is None else uid
    if pick("runAsNonRoot") and uid == 0:
        raise SpecError(f"container {container['name']}: runAsNonRoot and the user is root")
    groups = tuple(psc.get("supplementalGroups") or ()) + (
        (psc["fsGroup"],) if "fsGroup" in psc else ()
    )
    privileged = bool(csc.get("privileged"))
    caps = _caps(csc.get("capabilities") or {}, privileged)
    no_new_privs = csc.get("allowPrivilegeEscalation") is False and not privileged
    return Identity(uid, gid, groups, no_new_privs, privileged, caps)


def _caps(spec: Obj, privileged: bool) -> tuple[str, ...]:
    if privileged:
        return ("ALL",)
    dropped = {c.upper().removeprefix("CAP_") for c in spec.get("drop") or []}
    caps = [] if "ALL" in dropped else [c for c in DEFAULT_CAPS if c not in dropped]
    caps += [c.upper().removeprefix("CAP_") for c in spec.get("add") or []]
    return tuple(dict.fromkeys(caps))


# --- volumes -------------------------------------------------------------------------------


def automount_token(pod: Obj, objects: Sequence[Obj], namespace: str) -> bool:
    """The pod's field wins over its ServiceAccount's; both absent: the token is mounted."""
    if "automountServiceAccountToken" in pod["spec"]:
        return bool(pod["spec"]["automountServiceAccountToken"])
    name = pod["spec"].get("serviceAccountName", "default")
    for o in objects:
        if (
            o["kind"] == "ServiceAccount"
            and o["metadata"]["name"] == name
            and (o["metadata"].get("namespace") == namespace)
        ):
            return bool(o.get("automountServiceAccountToken", True))
    return True


def token_for(service_account: str, facts: PodFacts, audience: str = "") -> bytes:
    """A stand-in for a token the API server would issue: nothing here can verify one."""
    return f"harness-token:{facts.namespace}:{service_account}:{audience or 'api'}".encode()


def _projected_files(
    sources: Sequence[Obj], pod: Obj, facts: PodFacts, objects: Sequence[Obj]
) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    account = pod["spec"].get("serviceAccountName", "default")
    for source in sources:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            files.append((token["path"], token_for(account, facts, token.get("audience", ""))))
        elif "downwardAPI" in source:
            for item in source["downwardAPI"]["items"]:
                value = field_ref(item["fieldRef"]["fieldPath"], pod, facts)
                files.append((item["path"], value.encode()))
        else:
            kind = "Secret" if "secret" in source else "ConfigMap"
            files += _keyed_files(
                source["secret" if kind == "Secret" else "configMap"], kind, facts, objects
            )
    return files


def _keyed_files(
    ref: Obj, kind: str, facts: PodFacts, objects: Sequence[Obj]
) -> list[tuple[str, bytes]]:
    name = ref.get("name") or ref.get("secretName")
    data = _data(objects, kind, facts.namespace, name)
    if ref.get("items"):
        return [(item["path"], data[item["key"]]) for item in ref["items"]]
    return sorted(data.items())


def volume_mount(
    volume: Obj, mount: Obj, pod: Obj, facts: PodFacts, objects: Sequence[Obj], pods_dir: str
) -> Mount:
    """One volumeMount of a container: where its content comes from and how it is bound."""
    target = mount["mountPath"]
    read_only = bool(mount.get("readOnly"))
    propagation = mount.get("mountPropagation", "None")
    name = volume["name"]
    if "hostPath" in volume:
        host = volume["hostPath"]
        return Mount(
            target, "host", host["path"], read_only, propagation, host_type=host.get("type", "")
        )
    if "emptyDir" in volume:
        source = f"{pods_dir}/{facts.uid}/volumes/kubernetes.io~empty-dir/{name}"
        return Mount(target, "host", source, read_only, propagation, host_type="EmptyDir")
    if "csi" in volume:
        source = f"{pods_dir}/{facts.uid}/volumes/kubernetes.io~csi/{name}/mount"
        return Mount(target, "csi", source, read_only, propagation)
    if "projected" in volume:
        files = _projected_files(volume["projected"]["sources"], pod, facts, objects)
        mode = volume["projected"].get("defaultMode", 0o644)
    elif "secret" in volume:
        files = _keyed_files(volume["secret"], "Secret", facts, objects)
        mode = volume["secret"].get("defaultMode", 0o644)
    elif "configMap" in volume:
        files = _keyed_files(volume["configMap"], "ConfigMap", facts, objects)
        mode = volume["configMap"].get("defaultMode", 0o644)
    else:
        raise SpecError(f"volume {name}: type {sorted(volume)} is not implemented")
    kind_dir = next(k for k in ("projected", "secret", "configMap") if k in volume)
    source = f"{pods_dir}/{facts.uid}/volumes/kubernetes.io~{kind_dir.lower()}/{name}"
    # the kubelet mounts these read-only whatever the volumeMount says (since 1.9.4)
    return Mount(
        target,
        "files",
        source,
        True,
        propagation,
        files=tuple((path, data, mode) for path, data in files),
    )


def token_volume(pod: Obj, facts: PodFacts, objects: Sequence[Obj]) -> Obj:
    """The projected volume the ServiceAccount admission plugin adds when the token is
    automounted: a bound token, the cluster's CA and the namespace."""
    return {
        "name": "kube-api-access-harness",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def mounts_of(
    container: Obj, pod: Obj, facts: PodFacts, objects: Sequence[Obj], pods_dir: str
) -> tuple[Mount, ...]:
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts = []
    for m in container.get("volumeMounts") or []:
        if m["name"] not in volumes:
            raise SpecError(f"container {container['name']}: no volume {m['name']!r}")
        mounts.append(volume_mount(volumes[m["name"]], m, pod, facts, objects, pods_dir))
    taken = {m.target.rstrip("/") for m in mounts}
    if automount_token(pod, objects, facts.namespace) and TOKEN_DIR not in taken:
        mount = {"name": "kube-api-access-harness", "mountPath": TOKEN_DIR, "readOnly": True}
        mounts.append(
            volume_mount(token_volume(pod, facts, objects), mount, pod, facts, objects, pods_dir)
        )
    return tuple(mounts)


# --- probes and the whole container --------------------------------------------------------


def probe(spec: Obj | None, container: Obj) -> Probe | None:
    if not spec:
        return None
    ports = {p["name"]: p["containerPort"] for p in container.get("ports") or [] if "name" in p}
    timing = {
        "initial_delay_s": spec.get("initialDelaySeconds", 0),
        "period_s": spec.get("periodSeconds", 10),
        "timeout_s": spec.get("timeoutSeconds", 1),
        "failure_threshold": spec.get("failureThreshold", 3),
    }

    def port(value: int | str) -> int:
        return ports[value] if isinstance(value, str) else int(value)

    if "httpGet" in spec:
        h = spec["httpGet"]
        headers = tuple((x["name"], x["value"]) for x in h.get("httpHeaders") or [])
        return Probe(
            "httpGet",
            port(h["port"]),
            h.get("path", "/"),
            h.get("scheme", "HTTP"),
            h.get("host", ""),
            headers,
            **timing,
        )
    if "tcpSocket" in spec:
        return Probe(
            "tcpSocket",
            port(spec["tcpSocket"]["port"]),
            host=spec["tcpSocket"].get("host", ""),
            **timing,
        )
    if "grpc" in spec:
        return Probe(
            "grpc", int(spec["grpc"]["port"]), service=spec["grpc"].get("service", ""), **timing
        )
    if "exec" in spec:
        return Probe("exec", command=tuple(spec["exec"]["command"]), **timing)
    raise SpecError(f"probe {sorted(spec)} is not one the kubelet runs")


def plan(
    container: Obj,
    pod: Obj,
    facts: PodFacts,
    objects: Sequence[Obj],
    image: Image,
    pods_dir: str = "/var/lib/kubelet/pods",
    service_env: Mapping[str, str] | None = None,
) -> ContainerPlan:
    """`service_env`: what the kubelet adds for Services (at least `kubernetes`)."""
    env = environment(container, pod, facts, objects, image, service_env)
    command = container.get("command")
    args = container.get("args")
    argv = [*(image.entrypoint if command is None else command), *(args or [])]
    if not argv:
        raise SpecError(f"container {container['name']}: nothing to run")
    probes = {
        kind: p
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if (p := probe(container.get(kind), container)) is not None
    }
    csc = container.get("securityContext") or {}
    return ContainerPlan(
        name=container["name"],
        image=container["image"],
        argv=tuple(expand(a, env) for a in argv),
        env=tuple(env.items()),
        mounts=mounts_of(container, pod, facts, objects, pods_dir),
        identity=identity(container, pod, image),
        read_only_root=bool(csc.get("readOnlyRootFilesystem")),
        working_dir=container.get("workingDir", "/"),
        probes=probes,
    )
