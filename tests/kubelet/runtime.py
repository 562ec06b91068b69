"""The imperative half of the harness: a fake node, pod network namespaces, containers.

A `FakeNode` is a directory standing for the node's root file system: hostPath volumes
resolve below it, and its `var/lib/kubelet/pods` is made a shared mount (the host's mounts
are private here), so that what the CSI plugin mounts with Bidirectional propagation inside
its container appears on the "node", where the kubelet binds it into the next pod.

A `PodSandbox` is what the pause container holds: a network namespace with loopback up and
`eth0`, one end of a veth pair, carrying the pod's IP; the other end stays in the harness's
namespace with the /30's other address, so the harness (the kubelet) reaches the pod IP. The
pod has no default route. The addresses are drawn from 10.244.0.0/16 at random and checked
against the routes already present, so that parallel runs on one machine do not collide;
they exist only on these veths.

`FakeNode.start` carries out a `ContainerPlan` with `enter.py`. Everything made here is
undone by `FakeNode.close()` (processes killed, mounts lazily unmounted deepest first,
namespaces deleted), also after a failed test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .kubeobj import ContainerPlan, Mount

ENTER = Path(__file__).with_name("enter.py")
#: one `ip` or `mount` call; a busy machine answers within this
CMD_TIMEOUT_S = 30.0
#: SIGTERM, then this long before SIGKILL (the manifests' grace periods are longer: the
#: harness does not measure shutdown)
STOP_GRACE_S = 5.0


def sh(*argv: str) -> str:
    return subprocess.run(
        argv, check=True, capture_output=True, text=True, timeout=CMD_TIMEOUT_S
    ).stdout


@dataclass
class Container:
    plan: ContainerPlan
    proc: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout_s)


@dataclass
class PodSandbox:
    name: str
    netns: str
    pod_ip: str
    gateway: str
    uid: str
    containers: list[Container] = field(default_factory=list)


class FakeNode:
    def __init__(self, root: Path, name: str = "node-1") -> None:
        self.root, self.name = root, name
        self.pods: list[PodSandbox] = []
        self._subnet = _free_subnet()
        self.pods_dir = self.path("/var/lib/kubelet/pods")
        for d in (
            "/var/lib/kubelet/pods",
            "/var/lib/kubelet/plugins_registry",
            "/var/lib/kubelet/plugins",
        ):
            self.path(d).mkdir(parents=True, exist_ok=True)
        sh("mount", "--bind", str(self.pods_dir), str(self.pods_dir))
        sh("mount", "--make-shared", str(self.pods_dir))

    def path(self, node_path: str) -> Path:
        """A path of the node's file system, inside the fake node."""
        return self.root / node_path.lstrip("/")

    # --- pods --------------------------------------------------------------------------

    def sandbox(self, name: str, uid: str) -> PodSandbox:
        n = len(self.pods)
        # the harness's pid in the names: sweep_stale() knows whose they are
        netns, host_if = f"sck{os.getpid()}-{n}", f"sckh{os.getpid()}-{n}"
        gateway, pod_ip = f"10.244.{self._subnet}.{4 * n + 1}", f"10.244.{self._subnet}.{4 * n + 2}"
        sh("ip", "netns", "add", netns)
        pod = PodSandbox(name, netns, pod_ip, gateway, uid)
        self.pods.append(pod)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "addr", "add", f"{gateway}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        inside = ["ip", "-n", netns]
        sh(*inside, "link", "set", "lo", "up")
        sh(*inside, "addr", "add", f"{pod_ip}/30", "dev", "eth0")
        sh(*inside, "link", "set", "eth0", "up")
        # No default route: a pod reaches its own loopback and the harness's end of the veth,
        # nothing else, so no test traffic can ever leave the machine.
        return pod

    def start(self, pod: PodSandbox, plan: ContainerPlan, image_dirs: list[str]) -> Container:
        """Start one container of `pod` as `plan` says; returns at once (no readiness)."""
        base = self.root / "containers" / f"{pod.name}-{plan.name}"
        rootfs = base / "rootfs"
        rootfs.mkdir(parents=True, exist_ok=True)
        (base / "layers").mkdir(exist_ok=True)
        mounts = [self._prepare(m) for m in plan.mounts]
        spec = {
            "rootfs": str(rootfs),
            "layers": str(base / "layers"),
            "image_dirs": image_dirs,
            "mounts": mounts,
            "read_only_root": plan.read_only_root,
            "working_dir": plan.working_dir,
            "identity": asdict(plan.identity),
            "argv": list(plan.argv),
            "env": [list(kv) for kv in plan.env],
        }
        (base / "spec.json").write_text(json.dumps(spec, indent=1))
        log = base / "log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{pod.netns}",
                    "--",
                    "unshare",
                    "--mount",
                    "--propagation",
                    "unchanged",
                    "--",
                    sys.executable,
                    str(ENTER),
                    str(base / "spec.json"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        container = Container(plan, proc, log)
        pod.containers.append(container)
        return container

    def _prepare(self, mount: Mount) -> dict[str, object]:
        """What the kubelet does before the runtime binds a volume: write a configMap's or
        secret's files, make an emptyDir, check or create a hostPath."""
        source = self.path(mount.source)
        if mount.kind == "files":
            source.mkdir(parents=True, exist_ok=True)
            for rel, data, mode in mount.files:
                (source / rel).parent.mkdir(parents=True, exist_ok=True)
                (source / rel).write_bytes(data)
                (source / rel).chmod(mode)
        elif mount.host_type in ("EmptyDir", "EmptyDirMemory"):
            if not source.is_dir():
                source.mkdir(parents=True)
                if mount.host_type == "EmptyDirMemory":
                    sh("mount", "-t", "tmpfs", "tmpfs", str(source))
            source.chmod(0o777)  # as the kubelet makes an emptyDir: any user may write
        elif mount.host_type == "DirectoryOrCreate":
            source.mkdir(parents=True, exist_ok=True)
        elif mount.host_type == "Directory" and not source.is_dir():
            raise FileNotFoundError(f"hostPath {mount.source} (type Directory) does not exist")
        return {
            "source": str(source),
            "target": mount.target,
            "read_only": mount.read_only,
            "propagation": mount.propagation,
        }

    # --- teardown ------------------------------------------------------------------------

    def stop(self, container: Container) -> None:
        if container.running():
            container.proc.send_signal(signal.SIGTERM)
            try:
                container.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                container.proc.kill()
                container.proc.wait(STOP_GRACE_S)

    def close(self) -> None:
        for pod in self.pods:
            for container in pod.containers:
                with contextlib.suppress(Exception):
                    self.stop(container)
        _unmount_under(self.root)
        for pod in self.pods:
            _delete_netns(pod.netns)
        self.pods.clear()


WORK_PREFIX = "sck-"


def work_dir() -> Path:
    """A fresh directory for one harness run, named after this process (short: unix socket
    paths below it must fit in 108 bytes)."""
    sweep_stale()
    return Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir="/tmp"))


def sweep_stale() -> None:
    """Undo what a killed harness run left (its finalizers never ran): network namespaces
    and work directories named after a process that no longer exists."""
    for name in sh("ip", "netns", "list").split():
        m = re.fullmatch(r"sck(\d+)-\d+", name)
        if m and not _alive(int(m.group(1))):
            _delete_netns(name)
    for path in Path("/tmp").glob(f"{WORK_PREFIX}*-*"):
        m = re.fullmatch(rf"{WORK_PREFIX}(\d+)-.*", path.name)
        if m and not _alive(int(m.group(1))):
            _unmount_under(path)
            shutil.rmtree(path, ignore_errors=True)


def _delete_netns(name: str) -> None:
    """Kill what still runs in the namespace (a container whose harness died, moto), then
    delete it; its veth pair goes with it."""
    listed = subprocess.run(
        ["ip", "netns", "pids", name],
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT_S,
        check=False,
    )
    for pid in listed.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(
        ["ip", "netns", "del", name], capture_output=True, timeout=CMD_TIMEOUT_S, check=False
    )


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _unmount_under(root: Path) -> None:
    prefix = str(root.resolve()) + "/"
    for _ in range(3):
        points = [p for p in _mount_points() if p.startswith(prefix)]
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(
                ["umount", "-l", point], capture_output=True, timeout=CMD_TIMEOUT_S, check=False
            )


def is_mount_point(path: Path) -> bool:
    """From mountinfo: os.path.ismount misses a bind mount from the same file system."""
    return str(path.resolve()) in _mount_points()


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        points.append(point.encode().decode("unicode_escape"))
    return points


def _free_subnet() -> int:
    """A third octet of 10.244.X.0/24 that no route of this machine uses yet."""
    routes = sh("ip", "-4", "-o", "route", "show", "table", "all")
    used = {int(p.split(".")[2]) for p in routes.split() if p.startswith("10.244.")}
    free = [x for x in range(1, 255) if x not in used]
    return random.choice(free)
