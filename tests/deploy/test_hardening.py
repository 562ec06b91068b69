"""Manifest-only hardening of issue 12: the certificate chain, priority and placement of the
node pods, service-account tokens only where used, and what the NetworkPolicies admit
(evaluated with tests/kubelet/netpol.py, since no CNI enforces them here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from kubelet.netpol import Source, admits
from kubelet.podspec import TOKEN_DIR
from kubelet.pss import violations
from kubelet.render import by_kind, one, render

DEPLOY = Path(__file__).resolve().parents[2] / "daemonset" / "deploy"
NS = "shardcache-system"
NODE_LABELS = {"app.kubernetes.io/name": "shardcache", "app.kubernetes.io/component": "node"}
WEBHOOK_LABELS = {"app.kubernetes.io/name": "shardcache", "app.kubernetes.io/component": "webhook"}
TENANT = Source("10.244.7.9", "ml-team", {"kubernetes.io/metadata.name": "ml-team"}, {"a": "b"})
SCRAPER = Source(
    "10.244.8.2",
    "monitoring",
    {"kubernetes.io/metadata.name": "monitoring", "shardcache.io/metrics-scraper": "true"},
    {"app.kubernetes.io/name": "prometheus"},
)
KUBELET = Source("10.0.0.7", own_node=True)
API_SERVER = Source("172.16.0.5")  # not a pod: the control plane's address
OTHER_NODE = Source("10.0.0.8")


def test_cert_manager_signs_the_serving_certificate_with_its_own_ca(rendered):
    objects = rendered.cert_manager
    certificates = {c["metadata"]["name"]: c["spec"] for c in by_kind(objects, "Certificate")}
    issuers = {i["metadata"]["name"]: i["spec"] for i in by_kind(objects, "Issuer")}
    leaf = certificates["shardcache-webhook"]
    ca_issuer = issuers[leaf["issuerRef"]["name"]]
    assert leaf["issuerRef"]["kind"] == "Issuer" and not leaf.get("isCA")
    # the leaf's issuer signs with the CA certificate's key...
    (ca_name,) = [
        n for n, c in certificates.items() if c["secretName"] == ca_issuer["ca"]["secretName"]
    ]
    ca = certificates[ca_name]
    assert ca["isCA"] is True
    assert "selfSigned" in issuers[ca["issuerRef"]["name"]]
    # ...and the API server trusts that CA, not the leaf: renewing the leaf (a new key each
    # time) leaves the caBundle unchanged; only the CA's renewal changes it
    config = one(objects, "MutatingWebhookConfiguration", "shardcache-webhook")
    inject = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert inject == f"{NS}/{ca_name}"
    assert leaf["privateKey"]["rotationPolicy"] == "Always"
    assert _hours(ca["duration"]) >= 20 * _hours(leaf["duration"])
    assert "server auth" in leaf["usages"]


def _hours(duration: str) -> int:
    assert duration.endswith("h")
    return int(duration[:-1])


def test_the_node_pods_are_node_critical_and_linux_only(rendered):
    daemonsets = by_kind(rendered.base, "DaemonSet")
    assert {d["metadata"]["name"] for d in daemonsets} >= {"shardcache-node"}
    for daemonset in daemonsets:
        pod = daemonset["spec"]["template"]["spec"]
        assert pod["priorityClassName"] == "system-node-critical", daemonset["metadata"]["name"]
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert not by_kind(rendered.base, "PriorityClass")  # nothing home-made left
    webhook = one(rendered.base, "Deployment", "shardcache-webhook")["spec"]["template"]["spec"]
    assert webhook["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_a_service_account_token_only_where_it_is_used(rendered):
    """Only the agent (its pod watcher) calls the API server: no other container, in no
    workload, gets a token, neither automounted nor by volume."""
    for kind in ("DaemonSet", "Deployment"):
        for workload in by_kind(rendered.base, kind):
            pod = workload["spec"]["template"]["spec"]
            assert pod["automountServiceAccountToken"] is False, workload["metadata"]["name"]
            token_volumes = {
                v["name"]
                for v in pod.get("volumes") or []
                for s in (v.get("projected") or {}).get("sources") or []
                if "serviceAccountToken" in s
            }
            for c in pod["containers"] + pod.get("initContainers", []):
                mounted = {m["name"] for m in c.get("volumeMounts") or []} & token_volumes
                paths = {m["mountPath"] for m in c.get("volumeMounts") or []}
                uses = c["name"] == "agent"
                assert bool(mounted) == uses and (TOKEN_DIR in paths) == uses, c["name"]
    for account in by_kind(rendered.base, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False, account["metadata"]["name"]


def test_agent_metrics_are_scraped_only_by_labelled_namespaces(rendered):
    """The metrics name tenants' datasets: a tenant's pod cannot read them; the labelled
    Prometheus namespace and the kubelet's probes can."""
    policies = by_kind(rendered.base, "NetworkPolicy")
    assert not admits(policies, NS, NODE_LABELS, TENANT, 9400)
    assert admits(policies, NS, NODE_LABELS, SCRAPER, 9400)
    assert admits(policies, NS, NODE_LABELS, KUBELET, 9400)
    assert not admits(policies, NS, NODE_LABELS, SCRAPER, 22)


@pytest.fixture(scope="module")
def apiserver_only(tmp_path_factory):
    """An operator's overlay: cert-manager plus components/webhook-from-apiserver."""
    root = tmp_path_factory.mktemp("np")
    shutil.copytree(DEPLOY, root / "deploy")
    overlay = root / "deploy" / "overlays" / "mine"
    overlay.mkdir()
    kustomization = {
        "resources": ["../cert-manager"],
        "components": ["../../components/webhook-from-apiserver"],
        "configMapGenerator": [
            {
                "name": "shardcache-network",
                "literals": ["apiServerCIDR=172.16.0.0/28"],
                "options": {
                    "disableNameSuffixHash": True,
                    "annotations": {"config.kubernetes.io/local-config": "true"},
                },
            }
        ],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render(overlay)


def test_the_webhook_admits_only_the_api_server_once_its_cidr_is_named(rendered, apiserver_only):
    base = by_kind(rendered.cert_manager, "NetworkPolicy")
    # without a CIDR, no NetworkPolicy can tell the API server from a pod: only the port
    assert admits(base, NS, WEBHOOK_LABELS, TENANT, 8443)
    assert not admits(base, NS, WEBHOOK_LABELS, TENANT, 9400)
    policies = by_kind(apiserver_only, "NetworkPolicy")
    assert admits(policies, NS, WEBHOOK_LABELS, API_SERVER, 8443)
    assert not admits(policies, NS, WEBHOOK_LABELS, TENANT, 8443)
    assert not admits(policies, NS, WEBHOOK_LABELS, OTHER_NODE, 8443)
    assert admits(policies, NS, WEBHOOK_LABELS, KUBELET, 8443)  # its probes
    # the ConfigMap that carries the CIDR is local to kustomize, never applied
    assert not by_kind(apiserver_only, "ConfigMap", "shardcache-network")
    # everything else is the cert-manager overlay, unchanged
    rest = [o for o in apiserver_only if o["kind"] != "NetworkPolicy"]
    assert rest == [o for o in rendered.cert_manager if o["kind"] != "NetworkPolicy"]


def test_the_system_namespace_admits_what_runs_there_and_no_less(rendered):
    """The node pod needs "privileged" (its CSI container, its hostPaths); the webhook would
    pass "restricted" anywhere."""
    namespace = one(rendered.base, "Namespace", NS)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    node = one(rendered.base, "DaemonSet", "shardcache-node")["spec"]["template"]["spec"]
    found = " ".join(violations(node, "baseline"))
    assert "csi is privileged" in found and "hostPath" in found
    webhook = one(rendered.base, "Deployment", "shardcache-webhook")["spec"]["template"]["spec"]
    assert violations(webhook, "restricted") == []
