"""The harness's pure parts: what the kubelet makes of a pod spec, probe encodings, the CSI
request it sends. No namespaces, no processes."""

from __future__ import annotations

import base64

import pytest

from .csi_kubelet import publish_request, volume_handle
from .podspec import (
    TOKEN_DIR,
    Image,
    PodFacts,
    SpecError,
    automount_token,
    expand,
    identity,
    plan,
)
from .probes import budget_s, health_request, serving

FACTS = PodFacts("p-0", "team", "uid-1", "node-7", "10.244.3.2", "10.244.3.1")
IMAGE = Image(("/entry",), (("PATH", "/bin"),), 65532, 65532)
SECRET = {
    "kind": "Secret",
    "metadata": {"name": "s", "namespace": "team"},
    "data": {"KEY": base64.b64encode(b"secret-value").decode()},
}
CONFIGMAP = {
    "kind": "ConfigMap",
    "metadata": {"name": "c", "namespace": "team"},
    "data": {"policy.yaml": "namespaces: {}\n", "MODE": "csi"},
}


def pod(container: dict, **spec: object) -> dict:
    return {
        "metadata": {"name": "p-0", "labels": {"app": "x"}},
        "spec": {"containers": [container], **spec},
    }


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("$(A)-$(B)", "1-$(B)"),
        ("$$(A)", "$(A)"),
        ("cost $5", "cost $5"),
        ("$(A)$(A)", "11"),
    ],
)
def test_expansion_follows_the_kubelet(text, out):
    assert expand(text, {"A": "1"}) == out


def test_env_resolves_field_refs_secrets_configmaps_and_earlier_values():
    c = {
        "name": "c",
        "image": "i",
        "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "CM_"}],
        "env": [
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "KEY"}}},
            {"name": "ADDR", "value": "$(IP):9400"},
        ],
        "command": ["run", "--node", "$(NODE)", "--mode", "$(CM_MODE)"],
    }
    p = plan(c, pod(c, automountServiceAccountToken=False), FACTS, [SECRET, CONFIGMAP], IMAGE)
    env = dict(p.env)
    assert env["NODE"] == "node-7" and env["NS"] == "team" and env["APP"] == "x"
    assert env["TOKEN"] == "secret-value" and env["ADDR"] == "10.244.3.2:9400"
    assert env["PATH"] == "/bin"  # the image's environment stays under the container's
    assert p.argv == ("run", "--node", "node-7", "--mode", "csi")


def test_a_missing_secret_stops_the_container():
    c = {"name": "c", "image": "i", "envFrom": [{"secretRef": {"name": "nope"}}]}
    with pytest.raises(SpecError, match="Secret team/nope"):
        plan(c, pod(c), FACTS, [], IMAGE)


def test_args_without_command_follow_the_image_entrypoint():
    c = {"name": "c", "image": "i", "args": ["--x"]}
    p = pod(c, automountServiceAccountToken=False)
    assert plan(c, p, FACTS, [], IMAGE).argv == ("/entry", "--x")


def test_identity_merges_pod_and_container_and_refuses_root_when_asked():
    c = {
        "name": "c",
        "securityContext": {
            "runAsUser": 0,
            "capabilities": {"drop": ["ALL"]},
            "allowPrivilegeEscalation": False,
        },
    }
    ident = identity(c, pod(c, securityContext={"runAsGroup": 5}), IMAGE)
    assert (ident.uid, ident.gid, ident.caps, ident.no_new_privs) == (0, 5, (), True)
    assert identity({"name": "d"}, pod({}), IMAGE).uid == 65532  # the image's USER
    privileged = identity({"name": "p", "securityContext": {"privileged": True}}, pod({}), IMAGE)
    assert privileged.caps == ("ALL",) and not privileged.no_new_privs
    with pytest.raises(SpecError, match="runAsNonRoot"):
        identity(c, pod(c, securityContext={"runAsNonRoot": True}), IMAGE)


def test_volumes_map_to_node_paths_and_files():
    c = {
        "name": "c",
        "image": "i",
        "volumeMounts": [
            {"name": "cache", "mountPath": "/var/lib/x"},
            {
                "name": "pods",
                "mountPath": "/var/lib/kubelet/pods",
                "mountPropagation": "Bidirectional",
            },
            {"name": "policy", "mountPath": "/etc/p", "readOnly": False},
            {"name": "scratch", "mountPath": "/tmp"},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }
    volumes = [
        {"name": "cache", "hostPath": {"path": "/var/lib/x", "type": "DirectoryOrCreate"}},
        {"name": "pods", "hostPath": {"path": "/var/lib/kubelet/pods", "type": "Directory"}},
        {
            "name": "policy",
            "configMap": {"name": "c", "items": [{"key": "policy.yaml", "path": "policy.yaml"}]},
        },
        {"name": "scratch", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory"}},
    ]
    p = plan(
        c, pod(c, volumes=volumes, automountServiceAccountToken=False), FACTS, [CONFIGMAP], IMAGE
    )
    by_target = {m.target: m for m in p.mounts}
    assert by_target["/var/lib/x"].source == "/var/lib/x"
    assert by_target["/var/lib/kubelet/pods"].propagation == "Bidirectional"
    policy = by_target["/etc/p"]
    assert policy.read_only  # configMap volumes are read-only whatever the mount says
    assert policy.files == (("policy.yaml", b"namespaces: {}\n", 0o644),)
    assert by_target["/tmp"].source.endswith("/uid-1/volumes/kubernetes.io~empty-dir/scratch")
    assert (by_target["/tmp"].host_type, by_target["/dev/shm"].host_type) == (
        "EmptyDir",
        "EmptyDirMemory",
    )
    assert TOKEN_DIR not in by_target


def test_the_token_is_mounted_unless_the_pod_or_its_account_says_no():
    account = {
        "kind": "ServiceAccount",
        "metadata": {"name": "quiet", "namespace": "team"},
        "automountServiceAccountToken": False,
    }
    assert automount_token(pod({}), [], "team")
    assert not automount_token(pod({}, serviceAccountName="quiet"), [account], "team")
    assert automount_token(
        pod({}, serviceAccountName="quiet", automountServiceAccountToken=True), [account], "team"
    )
    c = {"name": "c", "image": "i"}
    root_ca = {
        "kind": "ConfigMap",
        "metadata": {"name": "kube-root-ca.crt", "namespace": "team"},
        "data": {"ca.crt": "CA"},
    }
    (token,) = plan(c, pod(c), FACTS, [root_ca], IMAGE).mounts
    assert token.target == TOKEN_DIR and token.read_only
    assert {f[0] for f in token.files} == {"token", "ca.crt", "namespace"}


def test_probes_resolve_named_ports_and_keep_their_budget():
    c = {
        "name": "c",
        "image": "i",
        "ports": [{"name": "metrics", "containerPort": 9400}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}},
        "livenessProbe": {
            "tcpSocket": {"port": 9400},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }
    p = plan(c, pod(c, automountServiceAccountToken=False), FACTS, [], IMAGE)
    assert p.probes["readinessProbe"].port == 9400
    assert p.probes["readinessProbe"].path == "/readyz"
    assert budget_s(p.probes["livenessProbe"]) == 70  # what the issue saw: a restart per 70 s


def test_grpc_health_messages():
    assert health_request("") == b""
    assert health_request("csi") == b"\x0a\x03csi"
    assert serving(b"\x08\x01") and not serving(b"\x08\x02") and not serving(b"")


def test_publish_request_carries_the_pod_info_of_pod_info_on_mount():
    volume = {
        "name": "shardcache-data",
        "csi": {
            "driver": "csi.shardcache.io",
            "readOnly": True,
            "volumeAttributes": {"dataset": "s3://b/p/"},
        },
    }
    request = publish_request(volume, pod({}, serviceAccountName="trainer"), FACTS)
    assert request.volume_id == volume_handle("uid-1", "shardcache-data")
    assert request.volume_id.startswith("csi-") and len(request.volume_id) == 68
    assert request.target_path == (
        "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/shardcache-data/mount"
    )
    assert request.readonly
    assert dict(request.volume_context) == {
        "dataset": "s3://b/p/",
        "csi.storage.k8s.io/pod.name": "p-0",
        "csi.storage.k8s.io/pod.namespace": "team",
        "csi.storage.k8s.io/pod.uid": "uid-1",
        "csi.storage.k8s.io/serviceAccount.name": "trainer",
        "csi.storage.k8s.io/ephemeral": "true",
    }
