"""Pod Security Standards, "baseline" and "restricted", as Pod Security admission checks a pod
before the kubelet ever sees it. Pure: `violations(pod_spec, level)` lists what the level
forbids in the spec, empty when the pod is admitted.

The rules are the published standard's (kubernetes.io, "Pod Security Standards", the controls
of both levels for Linux pods); written here because no Python package implements them. The
harness uses it for what an API server would refuse: the mutated training pod must pass the
"restricted" level its namespace enforces, and the namespace labels of shardcache-system must
admit the node pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Obj = dict[str, Any]
BASELINE_CAPS = frozenset(
    [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ]
)
RESTRICTED_VOLUMES = frozenset(
    [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ]
)
SAFE_SYSCTLS = frozenset(
    [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ]
)


def _containers(spec: Obj) -> Iterator[Obj]:
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(kind) or []


def _caps(container: Obj, key: str) -> set[str]:
    caps = (container.get("securityContext") or {}).get("capabilities") or {}
    return {c.upper().removeprefix("CAP_") for c in caps.get(key) or []}


def baseline(spec: Obj) -> list[str]:
    found = [f"{k} is set" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    found += [
        f"volume {v['name']} is a hostPath" for v in spec.get("volumes") or [] if "hostPath" in v
    ]
    psc = spec.get("securityContext") or {}
    found += [
        f"sysctl {s['name']} is not safe"
        for s in psc.get("sysctls") or []
        if s["name"] not in SAFE_SYSCTLS
    ]
    for c in _containers(spec):
        sc, name = c.get("securityContext") or {}, c["name"]
        if sc.get("privileged"):
            found.append(f"{name} is privileged")
        if extra := _caps(c, "add") - BASELINE_CAPS:
            found.append(f"{name} adds {sorted(extra)}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            found.append(f"{name} uses a hostPort")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{name} has procMount {sc['procMount']}")
    for owner, sc in [("pod", psc)] + [
        (c["name"], c.get("securityContext") or {}) for c in _containers(spec)
    ]:
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{owner} runs seccomp Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            found.append(f"{owner} runs AppArmor Unconfined")
    return found


def restricted(spec: Obj) -> list[str]:
    found = baseline(spec)
    found += [
        f"volume {v['name']} is of a type restricted forbids"
        for v in spec.get("volumes") or []
        if not (set(v) - {"name"}) <= RESTRICTED_VOLUMES
    ]
    psc = spec.get("securityContext") or {}
    for c in _containers(spec):
        sc, name = c.get("securityContext") or {}, c["name"]
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name} may escalate privileges")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            found.append(f"{name} does not set runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            found.append(f"{name} runs as uid 0")
        profile = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if profile not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name} has no RuntimeDefault or Localhost seccomp profile")
        if "ALL" not in _caps(c, "drop"):
            found.append(f"{name} does not drop ALL capabilities")
        if extra := _caps(c, "add") - {"NET_BIND_SERVICE"}:
            found.append(f"{name} adds {sorted(extra)}")
    return found


def violations(spec: Obj, level: str) -> list[str]:
    """What Pod Security admission at `level` (privileged, baseline, restricted) refuses."""
    return {"privileged": lambda s: [], "baseline": baseline, "restricted": restricted}[level](spec)
