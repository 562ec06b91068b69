"""The rendered manifests, run the way a kubelet runs them (see docs/install.md, "What the
kubelet-in-a-box test checks"): every container of the node DaemonSet and of the webhook
Deployment starts in its own namespaces with only its declared volumes; every probe passes;
the CSI plugin registers through the registrar's socket; a volume published for a pod that
the real webhook mutated serves the dataset to that pod's non-root process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trustme
import yaml
from shardcache.client.agent_client import AgentClient

from . import admission, box
from .apiserver import PodNetworkApiServer
from .csi_kubelet import CsiNode, register, wait_for_registration_socket
from .podspec import TOKEN_DIR, Probe, token_for
from .probes import Outcome, run_once
from .pss import violations
from .render import by_kind, one, render
from .runtime import Container, FakeNode, is_mount_point, work_dir

pytestmark = [
    pytest.mark.mounts,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root"),
]

DATASET = {f"train/shard-{i:02d}.bin": os.urandom(4096 + i) for i in range(12)}
NAMESPACE = "shardcache-system"
#: the registrar stand-in announces itself once the plugin answers; bound for a busy machine
REGISTER_TIMEOUT_S = 60.0
POD_EXIT_TIMEOUT_S = 120.0
#: the watcher imports the kubernetes client before its first request: seconds on a busy box
WATCHER_TIMEOUT_S = 60.0
#: the wait init container's timeout (annotation): it gives up after this and the pod starts
WAIT_TIMEOUT_S = 10
READER = """
import hashlib, json, os
root = os.environ["SHARDCACHE_DATA_DIR"]
files = {}
for d, dirs, names in os.walk(root):
    dirs[:] = [x for x in dirs if not x.startswith(".")]
    for n in names:
        p = os.path.join(d, n)
        with open(p, "rb") as f:
            files[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
try:
    open(os.path.join(root, "written-by-pod"), "w").close()
    write = "allowed"
except OSError as e:
    write = e.strerror
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "files": files, "write": write}))
"""


@dataclass
class Box:
    node: FakeNode
    rendered: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    #: one pod per DaemonSet and Deployment of the rendered manifests, by workload name
    pods: dict[str, box.RunningPod]
    outcomes: dict[tuple[str, str], Outcome]
    api: PodNetworkApiServer

    @property
    def node_pod(self) -> box.RunningPod:
        return self.pods["shardcache-node"]

    @property
    def webhook_pod(self) -> box.RunningPod:
        return self.pods["shardcache-webhook"]

    def containers(self) -> dict[str, Container]:
        return {n: c for p in self.pods.values() for n, c in p.containers.items()}

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} (running={c.running()}):\n{c.log_tail(1500)}"
            for name, c in self.containers().items()
        )


def workloads(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every DaemonSet (the node pod first: the others' order does not matter), then the
    Deployments: one pod of each runs on the fake node."""
    daemonsets = sorted(
        by_kind(rendered, "DaemonSet"), key=lambda d: d["metadata"]["name"] != "shardcache-node"
    )
    return daemonsets + by_kind(rendered, "Deployment")


@pytest.fixture(scope="module")
def kbox() -> Iterator[Box]:
    work = work_dir()
    node = FakeNode(work / "node")
    moto = api = None
    pods: dict[str, box.RunningPod] = {}
    try:
        rendered = render(box.harness_overlay(work))
        cluster_ca = trustme.CA()
        objects = box.cluster_objects(rendered, cluster_ca.cert_pem.bytes().decode())
        for workload in workloads(rendered):
            name = workload["metadata"]["name"]
            pod = box.pod_from_template(workload["spec"]["template"], f"{name}-x7k2p", NAMESPACE)
            pods[name] = box.new_pod(node, pod)
            if name == "shardcache-node":
                # the node pod's network holds the "cloud" and the API server it reaches
                sandbox = pods[name].sandbox
                moto = box.start_moto(node, sandbox, work / "moto.log")
                box.seed(f"http://{sandbox.pod_ip}:{box.MOTO_PORT}", DATASET)
                api = PodNetworkApiServer(sandbox.netns, cluster_ca)
                api.start()
            assert api is not None
            box.start_containers(node, pods[name], objects, service_env=api.service_env())
        outcomes = {k: o for p in pods.values() for k, o in box.wait_probes(p).items()}
        assert api is not None
        yield Box(node, rendered, objects, pods, outcomes, api)
    finally:
        if api is not None:
            api.stop()
        if moto is not None:
            moto.kill()
            moto.wait(10)
        node.close()
        shutil.rmtree(work, ignore_errors=True)


def test_every_container_of_every_workload_is_started(kbox: Box) -> None:
    declared = {
        c["name"]
        for w in workloads(kbox.rendered)
        for c in w["spec"]["template"]["spec"]["containers"]
    }
    assert declared == set(kbox.containers())
    assert {"agent", "csi", "node-driver-registrar", "liveness-probe", "webhook"} <= declared


def test_every_container_keeps_running(kbox: Box) -> None:
    stopped = [n for n, c in kbox.containers().items() if not c.running()]
    assert not stopped, kbox.logs()


def test_every_probe_passes_as_the_kubelet_runs_it(kbox: Box) -> None:
    failed = {k: o.detail for k, o in kbox.outcomes.items() if not o.ok}
    assert not failed, f"{failed}\n{kbox.logs()}"
    # every container that declares a probe had each of its probes run
    declared = {(n, k) for n, c in kbox.containers().items() for k in c.plan.probes}
    assert declared == set(kbox.outcomes)


def in_container(container: Container, command: str) -> str:
    """`sh -c command` in the container's mount namespace and root, as root."""
    argv = [
        "nsenter",
        f"--target={container.proc.pid}",
        "--mount",
        "--root",
        "--",
        "sh",
        "-c",
        command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout


def test_only_declared_volumes_are_seen_and_the_root_is_read_only(kbox: Box) -> None:
    agent = kbox.node_pod.containers["agent"]
    out = in_container(agent, "touch /w 2>&1; ls /var/lib/kubelet 2>&1; ls /run/shardcache")
    assert "Read-only file system" in out
    assert "No such file or directory" in out  # the agent does not mount the kubelet's dir
    assert "agent.sock" in out


@pytest.mark.parametrize("name", ["agent", "csi", "node-driver-registrar", "liveness-probe"])
def test_only_the_agent_has_a_service_account_token(kbox: Box, name: str) -> None:
    container = kbox.node_pod.containers[name]
    listing = in_container(container, f"ls {TOKEN_DIR} 2>/dev/null | sort | tr '\\n' ' '")
    assert listing == ("ca.crt namespace token " if name == "agent" else "")


def sample_pod() -> dict[str, Any]:
    """The example training Job's pod, reading every file and reporting what it saw."""
    docs = list(yaml.safe_load_all((box.DEPLOY / "examples" / "training-job.yaml").read_text()))
    job = next(d for d in docs if d and d["kind"] == "Job")
    pod = box.pod_from_template(job["spec"]["template"], "resnet-train-0", "ml-team")
    pod["metadata"]["annotations"]["shardcache.io/wait"] = "1"  # all local: a fixed answer
    # the example waits up to 900 s; a wait that never sees progress must not hold CI that long
    pod["metadata"]["annotations"]["shardcache.io/wait-timeout"] = str(WAIT_TIMEOUT_S)
    pod["spec"]["containers"][0]["args"] = [READER]
    return pod


@pytest.fixture(scope="module")
def training(kbox: Box) -> Iterator[dict[str, Any]]:
    """The kubelet's work for the sample pod: register the plugin, publish the volume the
    webhook added, run the init containers to completion, then the training container."""
    registrar = kbox.node_pod.containers["node-driver-registrar"]
    socket = wait_for_registration_socket(kbox.node, REGISTER_TIMEOUT_S, registrar.running)
    plugin = register(kbox.node, socket)
    csi = CsiNode(kbox.node, plugin)
    config = one(kbox.rendered, "MutatingWebhookConfiguration", "shardcache-webhook")
    port = box.webhook_port(kbox.rendered)
    mutated = admission.mutate(config, kbox.webhook_pod.sandbox.pod_ip, port, sample_pod())
    pod = box.new_pod(kbox.node, mutated)
    # scheduled and running, as the agent's pod watcher sees it in the API
    listed = mutated | {
        "spec": mutated["spec"] | {"nodeName": kbox.node.name},
        "status": {"phase": "Running"},
    }
    listed["metadata"] = mutated["metadata"] | {"uid": pod.facts.uid}
    kbox.api.fake.add(listed)
    volumes = [v for v in mutated["spec"]["volumes"] if "csi" in v]
    try:
        targets = [csi.publish(v, mutated, pod.facts) for v in volumes]
        services = kbox.api.service_env()
        inits = box.start_containers(kbox.node, pod, kbox.objects, "initContainers", services)
        for init in inits:
            assert init.wait(POD_EXIT_TIMEOUT_S) == 0, init.log_tail()
        (main,) = box.start_containers(kbox.node, pod, kbox.objects, service_env=services)
        assert main.wait(POD_EXIT_TIMEOUT_S) == 0, main.log_tail()
        yield {
            "plugin": plugin,
            "node_id": csi.node_id(),
            "mutated": mutated,
            "targets": targets,
            "plan": main.plan,
            "facts": pod.facts,
            "init_logs": {c.plan.name: c.log_tail() for c in inits},
            "report": json.loads(main.log_tail().strip().splitlines()[-1]),
        }
    finally:
        for v in volumes:
            csi.unpublish(v, pod.facts)
        csi.close()


def test_the_plugin_registers_through_the_registrar_socket(kbox: Box, training: dict) -> None:
    plugin = training["plugin"]
    assert plugin.driver == "csi.shardcache.io"
    assert plugin.endpoint == "/var/lib/kubelet/plugins/csi.shardcache.io/csi.sock"
    assert plugin.registration_socket.name == "csi.shardcache.io-reg.sock"
    assert training["node_id"] == kbox.node.name  # --node-id $(NODE_NAME) from spec.nodeName


def test_a_non_root_training_pod_reads_the_published_dataset(training: dict) -> None:
    report = training["report"]
    expected = {k: hashlib.sha256(v).hexdigest() for k, v in DATASET.items()}
    assert report["files"] == expected
    assert report["write"] == "Read-only file system"
    ident = training["plan"].identity
    assert (report["uid"], ident.uid) == (10001, 10001)
    assert ident.no_new_privs and ident.caps == ()
    assert training["plan"].read_only_root


def test_the_wait_init_container_sees_the_dataset_become_local(training: dict) -> None:
    (log,) = training["init_logs"].values()
    assert "starting anyway" not in log, log


def test_the_webhook_added_a_csi_volume_with_pod_info(training: dict) -> None:
    volumes = [v for v in training["mutated"]["spec"]["volumes"] if "csi" in v]
    assert {v["csi"]["driver"] for v in volumes} == {"csi.shardcache.io"}
    # the dataset's view, and the wait step's status volume beside it
    (volume,) = [v for v in volumes if v["csi"]["volumeAttributes"].get("view") != "status"]
    (status,) = [v for v in volumes if v["csi"]["volumeAttributes"].get("view") == "status"]
    assert status["csi"]["volumeAttributes"]["dataset"] == f"s3://{box.BUCKET}/{box.PREFIX}"
    assert volume["csi"]["volumeAttributes"]["dataset"] == f"s3://{box.BUCKET}/{box.PREFIX}"
    assert all(t.endswith("/mount") for t in training["targets"])
    assert TOKEN_DIR not in {m.target for m in training["plan"].mounts}


def test_the_mutated_pod_passes_the_pod_security_level_of_its_namespace(training: dict) -> None:
    """What Pod Security admission would check before the kubelet runs the pod: the example's
    namespace enforces "restricted", and the webhook's volume and init container keep it."""
    docs = yaml.safe_load_all((box.DEPLOY / "examples" / "training-job.yaml").read_text())
    namespace = next(d for d in docs if d and d["kind"] == "Namespace")
    level = namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
    assert level == "restricted"
    assert violations(training["mutated"]["spec"], level) == []


def test_the_agent_watches_pods_with_the_token_the_kubelet_mounted(kbox: Box, training) -> None:
    """In cluster mode (the kubelet's KUBERNETES_SERVICE_* variables), the agent's pod
    watcher reaches the API server with the projected token and CA of its own volume."""
    expected = "bearer " + token_for("shardcache-agent", kbox.node_pod.facts).decode()
    seen = kbox.api.wait_requests(WATCHER_TIMEOUT_S)
    assert seen and {s.lower() for s in seen} == {expected}, kbox.logs()
    assert kbox.api.fake.count("list") >= 1


def test_exec_probes_run_inside_the_container(kbox: Box) -> None:
    """No manifest uses an exec probe today; the harness runs one as the kubelet would, so a
    manifest that adds one is checked too."""
    agent = kbox.node_pod.containers["agent"]
    ip = kbox.node_pod.sandbox.pod_ip
    assert run_once(
        Probe("exec", command=("test", "-S", "/run/shardcache/agent.sock")), ip, agent
    ).ok
    assert not run_once(Probe("exec", command=("test", "-e", "/var/lib/kubelet")), ip, agent).ok


def test_the_next_node_pod_unpublishes_what_the_previous_one_published(
    kbox: Box, training: dict
) -> None:
    """A rolling update (maxSurge 0): the node pod is stopped, the dataset stays mounted in
    the training pod, and the new node pod's plugin, finding the records in its state
    directory (a hostPath: an emptyDir would have gone with the old pod), unpublishes it.
    Runs last: it replaces the module's node pod."""
    node = kbox.node
    target = node.path(training["targets"][0])
    assert is_mount_point(target)
    for container in kbox.node_pod.containers.values():
        node.stop(container)
    assert is_mount_point(target)  # Bidirectional: the mount lives on the node, not the pod
    template = one(kbox.rendered, "DaemonSet", "shardcache-node")["spec"]["template"]
    new = box.new_pod(node, box.pod_from_template(template, "shardcache-node-9f3kq", NAMESPACE))
    box.start_containers(node, new, kbox.objects, service_env=kbox.api.service_env())
    failed = {k: o.detail for k, o in box.wait_probes(new).items() if not o.ok}
    assert not failed
    registrar = new.containers["node-driver-registrar"]
    plugin = register(
        node, wait_for_registration_socket(node, REGISTER_TIMEOUT_S, registrar.running)
    )
    csi = CsiNode(node, plugin)
    try:
        for volume in [v for v in training["mutated"]["spec"]["volumes"] if "csi" in v]:
            csi.unpublish(volume, training["facts"])
    finally:
        csi.close()
    assert not is_mount_point(target)
    assert not list(node.path("/var/lib/shardcache-csi").iterdir())  # every record settled
    # the pod's pin is released: the record named the owner, which the new plugin never saw
    agent = AgentClient(str(node.path("/run/shardcache/agent.sock")), timeout_s=10.0)
    owners = agent.status(f"s3://{box.BUCKET}/{box.PREFIX}").owners
    assert training["facts"].uid not in owners
