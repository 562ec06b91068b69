"""Pure decisions of the node plugin: what a request means, whether it is valid, what to do.

Nothing here touches the file system, the agent or the kernel, so every rule is tested with
plain values (tests/csi/test_targets.py). The imperative shell (node.py) asks these functions
and then performs what they decided.

kubelet publishes a CSI volume at `<kubelet-dir>/pods/<pod-uid>/volumes/kubernetes.io~csi/
<volume-name>/mount`. The plugin refuses any other target path: a bind mount onto an arbitrary
path chosen by whoever reaches the socket (`/etc`, another pod's directory) would be a way out
of the pod, and a path that `normpath` would change is one that a prefix check misjudges.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from shardcache.errors import CacheStateError, ConfigError
from shardcache.partition import Partition
from shardcache_cluster.policy import validate_pod_url

POD_NAMESPACE = "csi.storage.k8s.io/pod.namespace"
POD_NAME = "csi.storage.k8s.io/pod.name"
POD_UID = "csi.storage.k8s.io/pod.uid"
SERVICE_ACCOUNT = "csi.storage.k8s.io/serviceAccount.name"
EPHEMERAL = "csi.storage.k8s.io/ephemeral"
#: kubelet's own keys all start with this; any of them we do not read is ignored (some, like
#: serviceAccount.tokens, hold credentials and must never be logged or stored)
KUBELET_PREFIX = "csi.storage.k8s.io/"
#: the attributes a user writes in the volume (or the webhook writes for them)
USER_KEYS = frozenset({"dataset", "prefetch", "view", "partition"})
#: `read-through` (the default): the FUSE view, listing the whole dataset and fetching misses
#: on open; `bind`: a read-only bind mount of the local directory (complete files only);
#: `status`: a read-only bind mount of the dataset's status directory alone (the webhook's
#: `shardcache wait` init container reads its status.json: no data, no socket)
VIEWS = ("read-through", "bind", "status")

MAX_VOLUME_ID_CHARS = 256
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAMESPACE_RE = re.compile(rf"^{_LABEL}$")
_SUBDOMAIN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
#: pod UIDs are UUIDs, static pods' a hex hash; neither holds `.` or `/`
_UID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
REQUIRED_OPTIONS = frozenset({"ro", "nosuid", "nodev"})


@dataclass(frozen=True)
class PublishSpec:
    """Everything that identifies one publication; two requests are "the same" when equal."""

    volume_id: str
    target_path: str
    #: canonical dataset URL (`scheme://bucket/prefix/`), as the agent knows it
    dataset: str
    namespace: str
    pod_name: str
    pod_uid: str
    service_account: str
    ephemeral: bool
    readonly: bool
    prefetch: str
    view: str = "read-through"
    #: the pod's share `I/N` (canonical), or "" for the whole dataset
    partition: str = ""

    @property
    def owner(self) -> str:
        """The agent pins the dataset for this owner: the pod, by UID (names are reused)."""
        return self.pod_uid

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> PublishSpec:
        fields = cls.__dataclass_fields__
        # records written before views existed describe bind mounts, before partitions the
        # whole dataset
        doc = {"view": "bind", "partition": "", **doc}
        missing = set(fields) - set(doc)
        if missing:
            raise ConfigError(f"publication record lacks {sorted(missing)}")
        return cls(**{name: doc[name] for name in fields})


def parse_target_path(path: str, kubelet_dir: str) -> tuple[str, str]:
    """(pod UID, volume name) of a kubelet CSI target path; ConfigError for anything else."""
    if not path:
        raise ConfigError("target_path is required")
    if "\x00" in path or not os.path.isabs(path) or os.path.normpath(path) != path:
        raise ConfigError(f"target_path {path!r} must be an absolute, normalised path")
    base = os.path.normpath(kubelet_dir) + "/pods/"
    rest = path[len(base) :].split("/") if path.startswith(base) else []
    if len(rest) != 5 or rest[1:3] != ["volumes", "kubernetes.io~csi"] or rest[4] != "mount":
        raise ConfigError(
            f"target_path {path!r} is not a kubelet CSI volume path "
            f"({base}<pod-uid>/volumes/kubernetes.io~csi/<volume>/mount)"
        )
    uid, volume = rest[0], rest[3]
    if not _UID_RE.match(uid) or not _VOLUME_NAME_RE.match(volume):
        raise ConfigError(f"target_path {path!r} holds an invalid pod UID or volume name")
    return uid, volume


def check_volume_id(volume_id: str) -> None:
    if not volume_id:
        raise ConfigError("volume_id is required")
    if len(volume_id) > MAX_VOLUME_ID_CHARS or any(ord(c) < 0x20 for c in volume_id):
        raise ConfigError("volume_id is longer than 256 characters or holds control characters")


def validate_publish(
    volume_id: str,
    target_path: str,
    context: Mapping[str, str],
    *,
    capability: str,
    readonly: bool,
    kubelet_dir: str,
) -> PublishSpec:
    """Check a NodePublishVolume request; ConfigError (INVALID_ARGUMENT) says what is wrong.

    `capability` is "mount", "block" or "" (missing), from the request's volume_capability.
    The volume is always mounted read-only whatever `readonly` says; `readonly` is kept only
    so that a repeated request with a different value counts as different arguments.
    """
    check_volume_id(volume_id)
    path_uid, _ = parse_target_path(target_path, kubelet_dir)
    if capability != "mount":
        raise ConfigError(
            "volume_capability is missing"
            if not capability
            else "block volumes are not supported; shardcache volumes are directories"
        )
    unknown = sorted(k for k in context if k not in USER_KEYS and not k.startswith(KUBELET_PREFIX))
    if unknown:
        raise ConfigError(
            f"unknown volume attributes {unknown}; shardcache reads "
            "'dataset' (a URL), 'prefetch' (all|none), 'view' (read-through|bind|status) and "
            "'partition' (I/N)"
        )
    if "dataset" not in context or not context["dataset"].strip():
        raise ConfigError("volume attribute 'dataset' (like s3://bucket/prefix/) is required")
    dataset = str(validate_pod_url(context["dataset"]))
    return PublishSpec(
        volume_id=volume_id,
        target_path=target_path,
        dataset=dataset,
        namespace=_pod_namespace(context),
        pod_name=_checked(context, POD_NAME, _SUBDOMAIN_RE, required=True),
        pod_uid=_pod_uid(context, path_uid),
        service_account=_checked(context, SERVICE_ACCOUNT, _SUBDOMAIN_RE, required=False),
        ephemeral=_flag(context, EPHEMERAL),
        readonly=readonly,
        prefetch=_prefetch(context),
        view=_view(context),
        partition=_partition(context),
    )


def _pod_namespace(context: Mapping[str, str]) -> str:
    if POD_NAMESPACE not in context:
        raise ConfigError(
            f"volume_context lacks {POD_NAMESPACE}; the CSIDriver object for this driver must "
            "set podInfoOnMount: true (the namespace decides which datasets are allowed)"
        )
    return _checked(context, POD_NAMESPACE, _NAMESPACE_RE, required=True)


def _pod_uid(context: Mapping[str, str], path_uid: str) -> str:
    uid = context.get(POD_UID, path_uid)
    if uid != path_uid:
        raise ConfigError(f"{POD_UID} {uid!r} is not the pod UID in target_path {path_uid!r}")
    return uid


def _checked(
    context: Mapping[str, str], key: str, pattern: re.Pattern[str], *, required: bool
) -> str:
    value = context.get(key, "")
    if not value and not required:
        return ""
    if not pattern.match(value):
        raise ConfigError(f"volume attribute {key} = {value[:80]!r} is not a valid name")
    return value


def _flag(context: Mapping[str, str], key: str) -> bool:
    value = context.get(key, "false")
    if value not in ("true", "false"):
        raise ConfigError(f"volume attribute {key} must be 'true' or 'false', not {value[:20]!r}")
    return value == "true"


def _prefetch(context: Mapping[str, str]) -> str:
    value = context.get("prefetch", "all")
    if value not in ("all", "none"):
        raise ConfigError(f"volume attribute prefetch must be 'all' or 'none', not {value[:20]!r}")
    return value


def _view(context: Mapping[str, str]) -> str:
    value = context.get("view", VIEWS[0])
    if value not in VIEWS:
        raise ConfigError(
            f"volume attribute view must be 'read-through', 'bind' or 'status', not {value[:20]!r}"
        )
    return value


def _partition(context: Mapping[str, str]) -> str:
    """The share as canonical `I/N`; `index/N` is the webhook's to resolve, never ours."""
    value = context.get("partition", "")
    if value == "":
        return ""
    try:
        return str(Partition.parse(value))
    except ConfigError as e:
        raise ConfigError(
            f"volume attribute partition must be I/N with 0 <= I < N, like 0/4 (the webhook "
            f"resolves shardcache.io/partition: index/N before the pod reaches the node): {e}"
        ) from None


class PublishAction(enum.Enum):
    NOTHING = "nothing"  # already published exactly like this
    MOUNT = "mount"  # register, bind-mount, remount read-only
    REMOUNT = "remount"  # the bind mount exists but lacks ro,nosuid,nodev: finish it
    CONFLICT = "conflict"  # the target holds something else: ALREADY_EXISTS


def decide_publish(
    recorded: PublishSpec | None, mount_options: frozenset[str] | None, wanted: PublishSpec
) -> PublishAction:
    """What NodePublishVolume must do, given the stored record and the target's mount.

    `mount_options` is None when nothing is mounted on the target. A record without a mount
    is a publication that crashed half-way (or whose target was cleaned up): mounting again
    is correct. A mount without a record is not ours to take over.
    """
    if recorded is not None and recorded != wanted:
        return PublishAction.CONFLICT
    if mount_options is None:
        return PublishAction.MOUNT
    if recorded is None:
        return PublishAction.CONFLICT
    if not mount_options >= REQUIRED_OPTIONS:
        return PublishAction.REMOUNT
    return PublishAction.NOTHING


def should_release(spec: PublishSpec, others: Iterable[PublishSpec]) -> bool:
    """Release the pod's pin on the dataset unless another of its volumes still uses it."""
    return not any(
        o.owner == spec.owner and o.dataset == spec.dataset and o.target_path != spec.target_path
        for o in others
    )


def check_local_dir(dataset: str, reported: object, expected: str) -> None:
    """The agent's answer must name the very directory the plugin computed for the dataset
    (the engine's layout under the plugin's own cache root); anything else is never mounted.

    A confused or compromised agent could otherwise have the plugin bind any directory of the
    node (`/`, another tenant's dataset, a kubelet secret) into a pod.
    """
    if reported != expected:
        raise CacheStateError(
            f"the agent placed {dataset} at {str(reported)[:300]!r}, but its directory under "
            f"the cache root is {expected!r}; nothing is mounted. Check that the plugin's "
            "--cache-dir (SHARDCACHE_CACHE_DIR) is the agent's"
        )
