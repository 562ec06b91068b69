"""Whether the NetworkPolicies of a namespace admit one connection: a pure reading of the
networking.k8s.io/v1 semantics, so that tests can ask "may a tenant's pod scrape the agent?"
of the rendered manifests. No CNI runs here to enforce them (docs/install.md says so).

The rules, from the API reference: a pod selected by no Ingress policy admits everything; a
selected pod admits a connection that some rule of some selecting policy admits; a rule
admits when its `ports` (none: all) include the port and its `from` (none: everyone) has a
matching peer; a `podSelector`-only peer means pods of the policy's namespace; an `ipBlock`
peer matches by address (for pod sources, whether ipBlock applies is up to the CNI: the
tests only use it for sources that are not pods). Traffic from the pod's own node (the
kubelet's probes) is always admitted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Source:
    ip: str
    #: None: not a pod (the API server, another node, anything outside the pod network)
    namespace: str | None = None
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    #: the node the target pod runs on (the kubelet)
    own_node: bool = False


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _peer(peer: Obj, source: Source, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(source.ip)
        block = peer["ipBlock"]
        inside = ip in ipaddress.ip_network(block["cidr"])
        return inside and not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if source.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], source.namespace_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), source.pod_labels)


def _rule(rule: Obj, source: Source, port: int, protocol: str, namespace: str) -> bool:
    ports = rule.get("ports")
    if ports and not any(
        p.get("protocol", "TCP") == protocol and p.get("port") in (None, port) for p in ports
    ):
        return False
    peers = rule.get("from")
    return not peers or any(_peer(p, source, namespace) for p in peers)


def admits(
    policies: Sequence[Obj],
    namespace: str,
    pod_labels: Mapping[str, str],
    source: Source,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """May `source` open `port` on a pod with `pod_labels` in `namespace`?"""
    if source.own_node:
        return True
    selecting = [
        p
        for p in policies
        if p["kind"] == "NetworkPolicy"
        and p["metadata"].get("namespace") == namespace
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"].get("podSelector"), pod_labels)
    ]
    if not selecting:
        return True
    return any(
        _rule(rule, source, port, protocol, namespace)
        for p in selecting
        for rule in p["spec"].get("ingress") or []
    )
