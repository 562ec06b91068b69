"""What the pods on this node ask of the agent: pure, from pod JSON and the policy.

A pod opts in with the label `shardcache.io/enabled: "true"` and names datasets in its
annotations (read by `shardcache_cluster.podspec`, as the webhook reads them). A pod that
uses a `csi.shardcache.io` volume counts too, labelled or not: whoever wrote the volume by hand
(or a webhook that was down) still reads the dataset, so it stays pinned while the pod runs.
Each URL goes through the namespace policy; a refused one becomes a `Refusal` to report, never
a registration. `plan` compares what the pods want with the pins in the index: the pod watcher
is this module plus I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shardcache.errors import ConfigError, OptInError
from shardcache.partition import Partition, parse_optional

from ..podspec import DRIVER_NAME, is_enabled, read_opt_in
from ..policy import Policy

#: pod phases after which no container of the pod runs again
FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
#: owners the watcher manages are pod UIDs; other owners (cli-PID, CSI volumes of pods on
#: other paths) are left alone by the reconcile
_UID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: the wait timeouts do not matter to the agent; these only satisfy the parser
_ANY_TIMEOUT_S = (600.0, 1e9)


@dataclass(frozen=True)
class Want:
    owner: str
    url: str
    namespace: str
    prefetch: str
    #: the pod's share (`shardcache.io/partition`, resolved), None for the whole dataset
    partition: Partition | None = None


@dataclass(frozen=True)
class Refusal:
    owner: str
    namespace: str
    pod: str
    url: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {
            "pod": f"{self.namespace}/{self.pod}",
            "uid": self.owner,
            "url": self.url,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PodView:
    uid: str
    namespace: str
    name: str
    active: bool
    wants: tuple[Want, ...] = ()
    refusals: tuple[Refusal, ...] = ()


@dataclass(frozen=True)
class Plan:
    register: tuple[Want, ...]
    release: tuple[tuple[str, str], ...]  # (url, owner)


def is_pod_uid(owner: str) -> bool:
    return bool(_UID_RE.match(owner))


def view(pod: Any, policy: Policy) -> PodView | None:
    """The datasets a pod wants: from its opt-in annotations and its shardcache CSI volumes;
    None for pods that have neither."""
    meta = pod.get("metadata") if isinstance(pod, Mapping) else None
    if not isinstance(meta, dict):
        return None
    volumes = csi_volumes(pod)
    if not is_enabled(meta) and not volumes:
        return None
    uid, ns, name = (str(meta.get(k) or "") for k in ("uid", "namespace", "name"))
    if not uid:
        return None
    phase = (pod.get("status") or {}).get("phase")
    active = phase not in FINISHED_PHASES
    requests: list[tuple[str, str, Partition | None]] = list(volumes)
    refusals: list[Refusal] = []
    if is_enabled(meta):
        try:
            opt = read_opt_in(meta, *_ANY_TIMEOUT_S)
        except OptInError as e:
            refusals.append(Refusal(uid, ns, name, "", str(e)))
        else:
            requests += [(req.url, opt.prefetch, opt.partition) for req in opt.datasets]
    wants: dict[str, Want] = {}
    for url, prefetch, share in requests:
        decision = policy.check(ns, url)
        if decision.allowed and decision.url is not None:
            key = str(decision.url)
            if key not in wants or prefetch == "all":
                wants[key] = Want(uid, key, ns, prefetch, share)
        else:
            refusals.append(Refusal(uid, ns, name, url, decision.reason))
    return PodView(uid, ns, name, active, tuple(wants.values()), tuple(refusals))


def csi_volumes(pod: Mapping[str, Any]) -> list[tuple[str, str, Partition | None]]:
    """(dataset URL, prefetch, share) of every inline `csi.shardcache.io` volume of a pod (a
    share the plugin would refuse counts as the whole dataset: nothing is mounted for it)."""
    spec = pod.get("spec")
    volumes = spec.get("volumes") if isinstance(spec, Mapping) else None
    found: list[tuple[str, str, Partition | None]] = []
    for volume in volumes if isinstance(volumes, list) else []:
        csi = volume.get("csi") if isinstance(volume, Mapping) else None
        if not isinstance(csi, Mapping) or csi.get("driver") != DRIVER_NAME:
            continue
        attributes = csi.get("volumeAttributes")
        attributes = attributes if isinstance(attributes, Mapping) else {}
        url = attributes.get("dataset")
        prefetch = attributes.get("prefetch", "all")
        found.append(
            (
                url if isinstance(url, str) else "",
                prefetch if prefetch == "none" else "all",
                _share(attributes.get("partition")),
            )
        )
    return found


def plan(pods: Iterable[PodView], pins: Iterable[tuple[str, str]]) -> Plan:
    """From a full list: register every want of a running pod (idempotent, and it restarts
    the prefetch after an agent restart); release pod-UID pins whose pod is gone or done."""
    pods = list(pods)
    active = {p.uid for p in pods if p.active}
    register = tuple(w for p in pods if p.active for w in p.wants)
    release = tuple(
        (url, owner) for url, owner in pins if is_pod_uid(owner) and owner not in active
    )
    return Plan(register, release)


def event_body(refusal: Refusal, node: str, now_iso: str) -> dict[str, Any]:
    """A core/v1 Event on the pod saying why a dataset was refused (no credentials: URLs and
    policy text only)."""
    return _event(
        refusal.namespace,
        refusal.pod,
        refusal.owner,
        "ShardcacheDatasetRefused",
        (f"dataset {refusal.url} not cached: " if refusal.url else "") + refusal.reason[:900],
        node,
        now_iso,
    )


def open_failure_event_body(
    namespace: str,
    pod: str,
    uid: str,
    url: str,
    failure: Mapping[str, str],
    node: str,
    now_iso: str,
) -> dict[str, Any]:
    """A core/v1 Event on the pod whose read-through view failed an open with EIO (the
    message was redacted by whoever reported it)."""
    message = (
        f"opening {url}{failure.get('key', '')} through the view failed "
        f"({failure.get('kind', '')}): {failure.get('message', '')}"
    )
    return _event(namespace, pod, uid, "ShardcacheOpenFailed", message[:1000], node, now_iso)


def _event(
    namespace: str, pod: str, uid: str, reason: str, message: str, node: str, now_iso: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "generateName": f"{pod or 'pod'}.shardcache-",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod,
            "namespace": namespace,
            "uid": uid,
        },
        "reason": reason,
        "type": "Warning",
        "message": message,
        "source": {"component": "shardcache-agent", "host": node},
        "reportingComponent": "shardcache.io/agent",
        "reportingInstance": node,
        "firstTimestamp": now_iso,
        "lastTimestamp": now_iso,
        "count": 1,
    }


def _share(text: object) -> Partition | None:
    try:
        return parse_optional(text) if isinstance(text, str) else None
    except ConfigError:
        return None
