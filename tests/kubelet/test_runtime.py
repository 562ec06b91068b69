"""The container runtime of the harness on its own: one small pod, two containers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .box import image_dirs, images
from .kubeobj import PodFacts
from .podspec import plan
from .runtime import FakeNode, work_dir

pytestmark = [
    pytest.mark.mounts,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root"),
]
EXIT_TIMEOUT_S = 60.0


@pytest.fixture
def node() -> Iterator[FakeNode]:
    work = work_dir()
    node = FakeNode(work / "node")
    try:
        yield node
    finally:
        node.close()
        shutil.rmtree(work, ignore_errors=True)


def run(node: FakeNode, pod: dict, objects: list | None = None) -> dict[str, tuple[int, str]]:
    meta = pod["metadata"]
    sandbox = node.sandbox(meta["name"], "uid-r1")
    facts = PodFacts(meta["name"], "ns", "uid-r1", node.name, sandbox.pod_ip, sandbox.gateway)
    image = images()["python"]
    results = {}
    for spec in pod["spec"]["containers"]:  # one after the other: the second reads the first
        container = node.start(sandbox, plan(spec, pod, facts, objects or [], image), image_dirs())
        results[spec["name"]] = (container.wait(EXIT_TIMEOUT_S), container.log_tail())
    return results


def test_identity_read_only_root_ip_and_a_shared_memory_empty_dir(node: FakeNode) -> None:
    script = (
        "id -u; id -g; hostname -I 2>/dev/null || ip -4 -o addr show eth0; "
        "stat -f -c %T /scratch; touch /scratch/from-writer; touch /root-write"
    )
    pod = {
        "metadata": {"name": "p"},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 1234, "runAsGroup": 2345},
            "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
            "containers": [
                {
                    "name": "writer",
                    "image": "python",
                    "command": ["sh", "-c", script],
                    "securityContext": {"readOnlyRootFilesystem": True},
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                },
                {
                    "name": "reader",
                    "image": "python",
                    "command": ["ls", "/scratch"],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                },
            ],
        },
    }
    results = run(node, pod)
    code, out = results["writer"]
    assert code != 0  # the last command wrote to the read-only root
    lines = out.splitlines()
    assert lines[:2] == ["1234", "2345"]
    assert node.pods[0].pod_ip in out
    assert "tmpfs" in lines
    assert "Read-only file system" in out
    assert results["reader"] == (0, "from-writer\n")


def test_a_missing_host_path_directory_stops_the_pod(node: FakeNode) -> None:
    pod = {
        "metadata": {"name": "q"},
        "spec": {
            "automountServiceAccountToken": False,
            "volumes": [{"name": "h", "hostPath": {"path": "/nope", "type": "Directory"}}],
            "containers": [
                {
                    "name": "c",
                    "image": "python",
                    "command": ["true"],
                    "volumeMounts": [{"name": "h", "mountPath": "/h"}],
                }
            ],
        },
    }
    with pytest.raises(FileNotFoundError, match="hostPath /nope"):
        run(node, pod)
