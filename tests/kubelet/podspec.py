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

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .kubeobj import (
    DEFAULT_CAPS,
    TOKEN_DIR,
    ContainerPlan,
    Identity,
    Image,
    Mount,
    Obj,
    PodFacts,
    Probe,
    SpecError,
    field_ref,
    object_data,
)
from .volumes import automount_token, mounts_of, token_for

__all__ = [
    "TOKEN_DIR",
    "ContainerPlan",
    "Identity",
    "Image",
    "Mount",
    "PodFacts",
    "Probe",
    "SpecError",
    "automount_token",
    "environment",
    "expand",
    "identity",
    "plan",
    "probe",
    "token_for",
]

# --- environment ---------------------------------------------------------------------------

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's $(VAR) expansion: `$$` is a literal `$`, an unknown $(VAR) stays as is."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(one, text)


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
        data = object_data(objects, kind, facts.namespace, ref["name"])
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
            return object_data(objects, kind, facts.namespace, ref["name"])[ref["key"]].decode()
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
