"""A kubelet in a box: the rendered manifests run on a fake node, pod by pod.

The "image" of every container is this machine's Python with the project installed (the
interpreter's directory, the repository with its virtualenv, /usr and /etc, each an overlay);
the Dockerfile is checked apart (hadolint). The CSI sidecars' images are replaced by the
stand-ins of `sidecars.py`. The object store is moto, run inside the node pod's network
namespace (the pod reaches it on its own loopback; the harness seeds it through the pod IP),
its endpoint and keys handed to the agent the way the manifest says an operator would: an
overlay adding an `envFrom` Secret.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import probes
from .podspec import ContainerPlan, Image, PodFacts, plan
from .render import write_self_signed_files
from .runtime import Container, FakeNode, PodSandbox

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "daemonset" / "deploy"
SIDECARS = Path(__file__).with_name("sidecars.py")
MOTO_PORT = 5000
BUCKET, PREFIX = "example-datasets", "imagenet/"
#: a readiness wait for a container without liveness probe (the kubelet would wait forever)
READY_FLOOR_S = 60.0
CLOUD = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def image_dirs() -> list[str]:
    dirs = ["/usr", "/etc"]
    for d in (sys.base_prefix, str(REPO), sys.prefix):
        if not any(d == x or d.startswith(x + "/") for x in dirs):
            dirs.append(d)
    return dirs


def images() -> dict[str, Image]:
    system = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    path = f"{Path(sys.executable).parent}:{system}"
    env = (("PATH", path), ("PYTHONDONTWRITEBYTECODE", "1"), ("PYTHONUNBUFFERED", "1"))
    # the interpreter as the harness runs it, PYTHONPATH included
    env += tuple((k, v) for k, v in os.environ.items() if k == "PYTHONPATH")

    def sidecar(which: str) -> Image:
        return Image((sys.executable, str(SIDECARS), which), env, 0, 0)

    return {
        # Dockerfile: USER 65532:65532, ENTRYPOINT []
        "ghcr.io/shardcache/shardcache": Image((), env, 65532, 65532),
        "registry.k8s.io/sig-storage/csi-node-driver-registrar": sidecar("registrar"),
        "registry.k8s.io/sig-storage/livenessprobe": sidecar("livenessprobe"),
        # the example training Job's image: root by default
        "python": Image((), env, 0, 0),
    }


def image_of(name: str) -> Image:
    return images()[name.rsplit(":", 1)[0]]


def harness_overlay(work: Path) -> Path:
    """The deploy tree copied (self-signed certificates generated) plus the harness's own
    overlay on top of overlays/self-signed: the agent's cloud endpoint as an envFrom Secret."""
    shutil.copytree(DEPLOY, work / "deploy")
    write_self_signed_files(work / "deploy" / "overlays" / "self-signed")
    overlay = work / "harness"
    overlay.mkdir()
    literals = [f"{k}={v}" for k, v in CLOUD.items()]
    literals.append(f"AWS_ENDPOINT_URL=http://127.0.0.1:{MOTO_PORT}")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../deploy/overlays/self-signed"],
        "secretGenerator": [
            {
                "name": "harness-cloud",
                "namespace": "shardcache-system",
                "literals": literals,
                "options": {"disableNameSuffixHash": True},
            }
        ],
        "patches": [{"path": "agent-cloud.yaml"}],
    }
    patch = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "shardcache-node", "namespace": "shardcache-system"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "agent", "envFrom": [{"secretRef": {"name": "harness-cloud"}}]}
                    ]
                }
            }
        },
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    (overlay / "agent-cloud.yaml").write_text(yaml.safe_dump(patch))
    return overlay


def cluster_objects(rendered: list[dict[str, Any]], ca_pem: str) -> list[dict[str, Any]]:
    """`ca_pem`: the cluster CA, which signs the API server's certificate."""
    """The rendered objects plus what the control plane puts in every namespace."""
    extra = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": ns},
            "data": {"ca.crt": ca_pem},
        }
        for ns in ("shardcache-system", "ml-team")
    ]
    return rendered + extra


@dataclass
class RunningPod:
    sandbox: PodSandbox
    facts: PodFacts
    pod: dict[str, Any]
    containers: dict[str, Container] = field(default_factory=dict)

    def plans(self) -> dict[str, ContainerPlan]:
        return {name: c.plan for name, c in self.containers.items()}


def pod_from_template(template: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    metadata = dict(template.get("metadata") or {}) | {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def new_pod(node: FakeNode, pod: dict[str, Any]) -> RunningPod:
    uid = str(uuid.uuid4())
    sandbox = node.sandbox(pod["metadata"]["name"], uid)
    meta = pod["metadata"]
    facts = PodFacts(
        meta["name"], meta["namespace"], uid, node.name, sandbox.pod_ip, sandbox.gateway
    )
    return RunningPod(sandbox, facts, pod)


def start_containers(
    node: FakeNode,
    running: RunningPod,
    objects: list[dict[str, Any]],
    kind: str = "containers",
    service_env: dict[str, str] | None = None,
) -> list[Container]:
    started = []
    for spec in running.pod["spec"].get(kind) or []:
        image = image_of(spec["image"])
        p = plan(spec, running.pod, running.facts, objects, image, service_env=service_env)
        container = node.start(running.sandbox, p, image_dirs())
        running.containers[spec["name"]] = container
        started.append(container)
    return started


def start_moto(node: FakeNode, sandbox: PodSandbox, log: Path) -> subprocess.Popen[bytes]:
    """moto inside the pod's network namespace, as the "cloud" the agent reaches on
    127.0.0.1; seeded by the harness through the pod IP."""
    moto = Path(sys.executable).parent / "moto_server"
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{sandbox.netns}",
                "--",
                str(moto),
                "-H",
                "0.0.0.0",
                "-p",
                str(MOTO_PORT),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def seed(endpoint: str, objects: dict[str, bytes], timeout_s: float = 60.0) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        **{
            "aws_access_key_id": CLOUD["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CLOUD["AWS_SECRET_ACCESS_KEY"],
            "region_name": CLOUD["AWS_DEFAULT_REGION"],
        },
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 1}),
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    for key, data in objects.items():
        client.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=data)


def webhook_port(rendered: list[dict[str, Any]]) -> int:
    """The container port behind the webhook Service's targetPort (the pod IP is dialled
    directly: no Service proxy here)."""
    service = next(
        o
        for o in rendered
        if o["kind"] == "Service" and o["metadata"]["name"] == "shardcache-webhook"
    )
    target = service["spec"]["ports"][0]["targetPort"]
    if isinstance(target, int):
        return target
    deployment = next(o for o in rendered if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == target)


def wait_probes(running: RunningPod) -> dict[tuple[str, str], probes.Outcome]:
    """Every probe of every container, as the kubelet would run them: readiness (and
    startup) until success within the time the liveness probe allows, then liveness once."""
    outcomes = {}
    for name, container in running.containers.items():
        plan_probes = container.plan.probes
        live = plan_probes.get("livenessProbe")
        floor = probes.budget_s(live) if live else READY_FLOOR_S
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind not in plan_probes:
                continue
            p = plan_probes[kind]
            if kind == "livenessProbe":
                if container.running():
                    outcome = probes.run_once(p, running.sandbox.pod_ip, container)
                else:
                    outcome = probes.Outcome(False, f"exited {container.proc.returncode}")
            else:
                outcome = probes.wait_success(
                    p, running.sandbox.pod_ip, container, budget_s=max(floor, probes.budget_s(p))
                )
            outcomes[(name, kind)] = outcome
    return outcomes
