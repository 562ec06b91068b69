"""The mutation: from a pod (and the request's namespace) to the JSON patch it needs.

Pure and total: no I/O, no clock, never raises on odd input. Idempotence comes from
deterministic names — volume `shardcache-data` (or `shardcache-NAME`), its status volume
`status-shardcache-data` (or `status-shardcache-NAME`: any name of the form `shardcache-*`
could clash with some dataset NAME), init container `shardcache-wait[-NAME]` — and from adding
only what is missing, so a re-invocation (`reinvocationPolicy: IfNeeded`) or a re-sent review
yields an empty patch. Anything the user wrote themselves (a volume of the same name, a mount
at the same path, an env var) is left alone, with a warning where it means the dataset is not
mounted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shardcache.errors import OptInError
from shardcache.partition import ENV_PARTITION
from shardcache.store.layout import Layout
from shardcache.urls import StoreURL

from ..podspec import DRIVER_NAME, DatasetRequest, OptIn, is_enabled, read_opt_in
from ..policy import Policy
from .types import PatchOp

WAIT_CONTAINER = "shardcache-wait"
SOCKET_VOLUME = "shardcache-agent-socket"
#: a numeric non-root user for the init container, so `runAsNonRoot` holds whatever USER the
#: image declares (65532 is the conventional "nonroot" of distroless images)
WAIT_UID = 65532
#: where the wait container sees its dataset's status directory (SHARDCACHE_STATUS_DIR)
STATUS_MOUNT_PATH = "/run/shardcache-status"
#: JSON {dataset URL: mount path} of the datasets mounted in a container, for the client
MOUNTS_ENV = "SHARDCACHE_MOUNTS"

Mode = Literal["csi", "hostpath"]


@dataclass(frozen=True)
class Settings:
    """What the webhook's operator chose; fixed for the process's lifetime."""

    #: csi: an ephemeral inline CSI volume (no hostPath, passes Pod Security "restricted");
    #: hostpath: a read-only hostPath of the agent's dataset directory plus the agent socket,
    #: for clusters without the CSI plugin — any pod that may use hostPath can read the node
    mode: Mode = "csi"
    #: image of the wait init container: the one shardcache image
    image: str = "ghcr.io/shardcache/shardcache:0.1.0"
    #: the webhook's own namespace; never mutated, so it can always be repaired
    own_namespace: str = "shardcache-system"
    protected_namespaces: frozenset[str] = frozenset({"kube-system"})
    #: agent's cache dir on the node, and the directory of its read-only status socket
    #: (`shardcache-agent --status-socket /run/shardcache/status/agent.sock`), hostpath mode
    #: only: pods never see the directory of the agent's main socket
    host_cache_dir: str = "/var/lib/shardcache"
    host_socket_dir: str = "/run/shardcache/status"
    #: a pod that asks to wait without a timeout waits at most 10 minutes, then starts anyway
    default_wait_timeout_s: float = 600.0
    #: a day: longer is surely a typo, and would park a pod in Init for good
    max_wait_timeout_s: float = 86400.0


@dataclass(frozen=True)
class Outcome:
    """What the webhook answers: `patch` (maybe empty), or `deny` with a message."""

    kind: Literal["patch", "skip", "deny"]
    message: str = ""
    patch: tuple[PatchOp, ...] = ()
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Dataset:
    """A dataset the policy allowed, with the names the pod will see."""

    request: DatasetRequest
    url: StoreURL

    @property
    def volume(self) -> str:
        return f"shardcache-{self.request.name or 'data'}"

    @property
    def status_volume(self) -> str:
        return "status-" + self.volume

    @property
    def env_suffix(self) -> str:
        name = self.request.name
        return "" if name is None else "_" + name.upper().replace("-", "_")


def mutate(pod: Any, namespace: str, settings: Settings, policy: Policy) -> Outcome:
    """The whole decision for one pod CREATE in `namespace` (the request's, not the pod's)."""
    if namespace in settings.protected_namespaces or namespace == settings.own_namespace:
        return Outcome("skip", f"namespace {namespace!r} is never mutated")
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    if not is_enabled(metadata):
        return Outcome("skip", "pod has not opted in")
    try:
        opt_in = read_opt_in(
            metadata,
            settings.default_wait_timeout_s,
            settings.max_wait_timeout_s,
            complete_files_only=settings.mode == "hostpath",
        )
    except OptInError as e:
        return Outcome("deny", f"shardcache: {e}")
    if not opt_in.datasets:
        return Outcome("skip", "", warnings=("shardcache: pod is enabled but names no dataset",))
    datasets, denials = [], []
    for request in opt_in.datasets:
        decision = policy.check(namespace, request.url)
        if decision.allowed and decision.url is not None:
            datasets.append(Dataset(request, decision.url))
        else:
            denials.append(decision.reason)
    if denials:
        return Outcome("deny", "shardcache: " + "; ".join(denials))
    spec = pod.get("spec")
    if not isinstance(spec, dict) or not _all_dicts(spec.get("containers")):
        return Outcome("skip", "", warnings=("shardcache: pod spec is malformed; left alone",))
    patch, warnings = plan(spec, opt_in, tuple(datasets), settings)
    return Outcome("patch" if patch else "skip", "", tuple(patch), tuple(warnings))


def plan(
    spec: dict[str, Any], opt_in: OptIn, datasets: tuple[Dataset, ...], settings: Settings
) -> tuple[list[PatchOp], list[str]]:
    """The patch for a well-formed spec; the order keeps every index valid when applied."""
    ops = _Ops()
    warnings: list[str] = []
    existing = {_name(v): v for v in _dicts(spec.get("volumes"))}

    def claim(name: str, volume: dict[str, Any]) -> bool:
        """Add `volume` unless the pod has one of that name; False when the pod's own volume
        of that name is in the way (a re-invocation finds ours and keeps it)."""
        if name not in existing:
            ops.append(spec, "/spec/volumes", "volumes", volume)
            return True
        return _is_ours(existing[name], settings)

    usable = []
    for ds in datasets:
        if claim(ds.volume, _volume(ds, opt_in, settings)):
            usable.append(ds)
        else:
            warnings.append(
                f"shardcache: the pod already has a volume {ds.volume!r}; "
                f"{ds.request.url} is not mounted"
            )
    if not usable:
        return ops.ops, warnings
    waiting = []
    for ds in usable if opt_in.wait_fraction > 0 else []:
        if claim(ds.status_volume, _status_volume(ds, opt_in, settings)):
            waiting.append(ds)
        else:
            warnings.append(
                f"shardcache: the pod already has a volume {ds.status_volume!r}; "
                f"the pod does not wait for {ds.request.url}"
            )
    socket = settings.mode == "hostpath"
    if socket and SOCKET_VOLUME not in existing:
        ops.append(spec, "/spec/volumes", "volumes", _socket_volume(settings))
    for kind in ("containers", "initContainers"):
        containers = spec.get(kind)
        for i, container in enumerate(containers if isinstance(containers, list) else []):
            if not isinstance(container, dict) or str(container.get("name")).startswith(
                WAIT_CONTAINER
            ):
                continue
            base = f"/spec/{kind}/{i}"
            warnings += _add_to_container(ops, container, base, usable, socket, opt_in, settings)
    _add_wait_containers(ops, spec, opt_in, waiting, settings)
    return ops.ops, warnings


def _add_to_container(
    ops: _Ops,
    container: dict[str, Any],
    base: str,
    datasets: list[Dataset],
    socket: bool,
    opt_in: OptIn,
    settings: Settings,
) -> list[str]:
    if not isinstance(container.get("volumeMounts") or [], list) or not isinstance(
        container.get("env") or [], list
    ):
        return [f"shardcache: container {container.get('name')!r} is malformed; left alone"]
    mounts = _dicts(container.get("volumeMounts"))
    taken_paths = {str(m.get("mountPath", "")).rstrip("/") for m in mounts}
    taken_names = {_name(m): str(m.get("mountPath", "")) for m in mounts}
    env: list[tuple[str, str]] = []
    mounted: dict[str, str] = {}
    for ds in datasets:
        if ds.volume not in taken_names:
            if ds.request.mount_path in taken_paths:
                continue  # the user mounts something of their own there
            ops.append(
                container,
                base + "/volumeMounts",
                "volumeMounts",
                {"name": ds.volume, "mountPath": ds.request.mount_path, "readOnly": True},
            )
        mounted[str(ds.url)] = taken_names.get(ds.volume) or ds.request.mount_path
        env += [
            (f"SHARDCACHE_DATASET{ds.env_suffix}", str(ds.url)),
            (f"SHARDCACHE_DATA_DIR{ds.env_suffix}", ds.request.mount_path),
        ]
    if mounted:
        env.append((MOUNTS_ENV, json.dumps(mounted, sort_keys=True, separators=(",", ":"))))
    if (
        env
        and socket
        and (SOCKET_VOLUME in taken_names or settings.host_socket_dir not in taken_paths)
    ):
        if SOCKET_VOLUME not in taken_names:
            ops.append(
                container,
                base + "/volumeMounts",
                "volumeMounts",
                {"name": SOCKET_VOLUME, "mountPath": settings.host_socket_dir, "readOnly": True},
            )
        env.append(("SHARDCACHE_AGENT_SOCKET", settings.host_socket_dir + "/agent.sock"))
    if env and opt_in.partition is not None:
        # the same I/N the node prefetched, for `shardcache.client.partition_from_env()`
        env.append((ENV_PARTITION, str(opt_in.partition)))
    present = {_name(e) for e in _dicts(container.get("env"))}
    for name, value in env:
        if name not in present:
            ops.append(container, base + "/env", "env", {"name": name, "value": value})
    return []


def _add_wait_containers(
    ops: _Ops, spec: dict[str, Any], opt_in: OptIn, datasets: list[Dataset], settings: Settings
) -> None:
    if opt_in.wait_fraction <= 0:
        return
    present = {_name(c) for c in _dicts(spec.get("initContainers"))}
    new = [_wait_container(ds, opt_in, settings) for ds in datasets]
    new = [c for c in new if c["name"] not in present]
    if not new:
        return
    if not isinstance(spec.get("initContainers"), list):
        ops.ops.append({"op": "add", "path": "/spec/initContainers", "value": new})
        return
    # First, so that the user's own init containers already see warm data.
    for i, container in enumerate(new):
        ops.ops.append({"op": "add", "path": f"/spec/initContainers/{i}", "value": container})


def _wait_container(ds: Dataset, opt_in: OptIn, settings: Settings) -> dict[str, Any]:
    suffix = "" if ds.request.name is None else "-" + ds.request.name
    return {
        "name": WAIT_CONTAINER + suffix,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "shardcache",
            "wait",
            str(ds.url),
            "--fraction",
            f"{opt_in.wait_fraction:g}",
            "--timeout",
            f"{opt_in.wait_timeout_s:g}",
            # with a partition, the fraction is of this pod's share (docs/partitions.md)
            *(["--partition", str(opt_in.partition)] if opt_in.partition else []),
        ],
        # `shardcache wait` reads the status file the agent keeps for the dataset, in its own
        # volume (SHARDCACHE_STATUS_DIR/status.json): no socket, no network, no privilege, and
        # no dataset volume (waiting needs none)
        "env": [
            {"name": "SHARDCACHE_STATUS_DIR", "value": STATUS_MOUNT_PATH},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "volumeMounts": [
            {"name": ds.status_volume, "mountPath": STATUS_MOUNT_PATH, "readOnly": True}
        ],
        "resources": {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "256Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WAIT_UID,
            "runAsGroup": WAIT_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _volume(ds: Dataset, opt_in: OptIn, settings: Settings) -> dict[str, Any]:
    if settings.mode == "hostpath":
        host_dir = Layout(Path(settings.host_cache_dir)).dataset_dir(ds.url)
        return {"name": ds.volume, "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}}
    attributes = {"dataset": str(ds.url), "prefetch": opt_in.prefetch, "view": opt_in.view}
    if opt_in.partition is not None:
        # resolved: `index/N` never reaches the node, the CSI plugin sees plain `I/N`
        attributes["partition"] = str(opt_in.partition)
    return {
        "name": ds.volume,
        "csi": {"driver": DRIVER_NAME, "readOnly": True, "volumeAttributes": attributes},
    }


def _status_volume(ds: Dataset, opt_in: OptIn, settings: Settings) -> dict[str, Any]:
    """The dataset's status directory alone, for the wait container. It registers the
    dataset like the data volume does (same pod, same prefetch), so whichever kubelet
    publishes first, the agent knows the dataset and has written its status."""
    if settings.mode == "hostpath":
        host_dir = Layout(Path(settings.host_cache_dir)).status_dir(ds.url)
        return {
            "name": ds.status_volume,
            "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"},
        }
    attributes = {"dataset": str(ds.url), "prefetch": opt_in.prefetch, "view": "status"}
    if opt_in.partition is not None:
        # the same share as the data volume: the pod's registration must not widen to all
        attributes["partition"] = str(opt_in.partition)
    return {
        "name": ds.status_volume,
        "csi": {"driver": DRIVER_NAME, "readOnly": True, "volumeAttributes": attributes},
    }


def _socket_volume(settings: Settings) -> dict[str, Any]:
    return {
        "name": SOCKET_VOLUME,
        "hostPath": {"path": settings.host_socket_dir, "type": "Directory"},
    }


def _is_ours(volume: dict[str, Any], settings: Settings) -> bool:
    csi = volume.get("csi")
    if isinstance(csi, dict) and csi.get("driver") == DRIVER_NAME:
        return True
    host = volume.get("hostPath")
    root = settings.host_cache_dir.rstrip("/") + "/"
    return isinstance(host, dict) and str(host.get("path", "")).startswith(root)


class _Ops:
    """Collects JSON patch ops; the first item of a missing list creates the list."""

    def __init__(self) -> None:
        self.ops: list[PatchOp] = []
        self._created: set[str] = set()

    def append(self, parent: dict[str, Any], path: str, key: str, value: Any) -> None:
        if isinstance(parent.get(key), list) or path in self._created:
            self.ops.append({"op": "add", "path": path + "/-", "value": value})
        else:
            self._created.add(path)
            self.ops.append({"op": "add", "path": path, "value": [value]})


def _name(item: dict[str, Any]) -> str:
    """The `name` field as a string; hostile input may put anything there."""
    name = item.get("name")
    return name if isinstance(name, str) else ""


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _all_dicts(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
