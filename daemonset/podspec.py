"""The pod-facing contract: the opt-in label and annotations, what they ask for, and the name
of the CSI driver whose volume carries a dataset into the pod.

Pure: a pod's metadata in, an `OptIn` (or a message saying exactly which annotation is wrong
and how to write it) out. The values are untrusted JSON, so every type is checked. It sits at
the root of `shardcache_cluster`, beside `policy`, because three components read it: the
webhook (which mutates the pod), the agent's pod watcher (which prefetches what the pod asked
for) and the CSI plugin (which serves the volume under `DRIVER_NAME`); none of them owns it.
"""

from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Literal

from shardcache.errors import ConfigError, OptInError
from shardcache.partition import Partition

#: the CSI driver of the pod's volume; the manifests (CSIDriver, the kubelet registration and
#: plugin paths of the DaemonSet) spell it too, and tests/deploy checks that they agree
DRIVER_NAME = "csi.shardcache.io"

LABEL_ENABLED = "shardcache.io/enabled"
ANN_DATASET = "shardcache.io/dataset"
ANN_DATASET_PREFIX = "shardcache.io/dataset."
ANN_MOUNT_PATH = "shardcache.io/mount-path"
ANN_PREFETCH = "shardcache.io/prefetch"
ANN_WAIT = "shardcache.io/wait"
ANN_WAIT_TIMEOUT = "shardcache.io/wait-timeout"
ANN_VIEW = "shardcache.io/view"
ANN_PARTITION = "shardcache.io/partition"
#: what the Job controller writes on every pod of an Indexed Job (annotation, and since
#: Kubernetes 1.28 also a label): the pod's completion index, 0 .. completions-1
JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

DEFAULT_MOUNT_PATH = "/data"
#: a named dataset becomes volume `shardcache-NAME` (volume names stop at 63 characters) and
#: env suffix `_NAME`; lower-case DNS labels keep both valid
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
#: more datasets than this on one pod is a mistake or an attack on the API server's patience
MAX_DATASETS = 16
MAX_MOUNT_PATH_CHARS = 1024

Prefetch = Literal["all", "none"]
#: read-through: the FUSE view (every object listed at once, a miss fetched on open);
#: bind: the plain bind mount of the local directory (complete files only; nodes without FUSE)
View = Literal["read-through", "bind"]


@dataclass(frozen=True)
class DatasetRequest:
    """One dataset a pod asked for, before the policy has looked at it."""

    #: None for `shardcache.io/dataset`, NAME for `shardcache.io/dataset.NAME`
    name: str | None
    url: str
    mount_path: str


@dataclass(frozen=True)
class OptIn:
    """Everything a pod's annotations ask of shardcache."""

    datasets: tuple[DatasetRequest, ...]
    prefetch: Prefetch
    #: share of the dataset's bytes that must be local before the main containers start;
    #: unless the pod says, 1.0 where the view shows complete files only, else 0
    wait_fraction: float
    wait_timeout_s: float
    view: View = "read-through"
    #: this pod's share of every dataset it names (`shardcache.io/partition`), None for all
    partition: Partition | None = None


def is_enabled(metadata: Any) -> bool:
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    return isinstance(labels, dict) and labels.get(LABEL_ENABLED) == "true"


def read_opt_in(
    metadata: Any,
    default_wait_timeout_s: float,
    max_wait_timeout_s: float,
    *,
    complete_files_only: bool = False,
) -> OptIn:
    """Parse the annotations of an opted-in pod; raise OptInError on the first bad one.

    `complete_files_only`: the volume will show only what is local whatever the view (the
    webhook's hostpath mode), so, like `view: bind`, the pod waits for all of it by default:
    a loader that scans the directory at start would otherwise train on a silent subset.
    """
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if annotations is None:
        annotations = {}
    if not isinstance(annotations, dict):
        raise OptInError("metadata.annotations is not a mapping")
    mount_path = _mount_path(annotations.get(ANN_MOUNT_PATH, DEFAULT_MOUNT_PATH))
    view = _view(annotations.get(ANN_VIEW, "read-through"))
    whole = complete_files_only or view == "bind"
    return OptIn(
        datasets=_datasets(annotations, mount_path),
        prefetch=_prefetch(annotations.get(ANN_PREFETCH, "all")),
        wait_fraction=_fraction(annotations.get(ANN_WAIT, "1" if whole else "0")),
        wait_timeout_s=_timeout(
            annotations.get(ANN_WAIT_TIMEOUT), default_wait_timeout_s, max_wait_timeout_s
        ),
        view=view,
        partition=_partition(annotations, metadata.get("labels")),
    )


def _partition(annotations: dict[str, Any], labels: Any) -> Partition | None:
    """`I/N`, or `index/N` with I the pod's Indexed Job completion index."""
    value = annotations.get(ANN_PARTITION)
    if value is None:
        return None
    usage = (
        f'{ANN_PARTITION} must be "I/N" (member I of N, 0 <= I < N, like "0/4") '
        'or "index/N" in an Indexed Job'
    )
    if not isinstance(value, str):
        raise OptInError(f"{usage}; got {value!r:.80}")
    text = value.strip()
    if text.startswith("index/"):
        index = _completion_index(annotations, labels)
        if index is None:
            raise OptInError(
                f"{ANN_PARTITION} {text!r:.40} takes I from the Indexed Job completion index, "
                f"but the pod is not part of an Indexed Job (no {JOB_COMPLETION_INDEX} "
                'annotation); write "I/N" instead, or run it as a Job with completionMode: Indexed'
            )
        text = f"{index}/{text[len('index/') :]}"
    try:
        return Partition.parse(text)
    except ConfigError as e:
        raise OptInError(f"{usage}; {e}") from None


def _completion_index(annotations: dict[str, Any], labels: Any) -> str | None:
    found = annotations.get(JOB_COMPLETION_INDEX)
    if found is None and isinstance(labels, dict):
        found = labels.get(JOB_COMPLETION_INDEX)
    return found if isinstance(found, str) else None


def _datasets(annotations: dict[str, Any], mount_path: str) -> tuple[DatasetRequest, ...]:
    named = sorted(k for k in annotations if k.startswith(ANN_DATASET_PREFIX))
    if ANN_DATASET in annotations and named:
        # A read-only volume at /data cannot hold the mount points of /data/NAME.
        raise OptInError(
            f"use either {ANN_DATASET} or {ANN_DATASET_PREFIX}NAME annotations, not both"
        )
    if len(named) > MAX_DATASETS:
        raise OptInError(f"at most {MAX_DATASETS} datasets per pod, got {len(named)}")
    if ANN_DATASET in annotations:
        return (DatasetRequest(None, _url(annotations[ANN_DATASET], ANN_DATASET), mount_path),)
    requests = []
    for key in named:
        name = key[len(ANN_DATASET_PREFIX) :]
        if not _NAME_RE.match(name):
            raise OptInError(
                f"{key}: NAME must be a lower-case DNS label of at most 40 characters, "
                "like shardcache.io/dataset.train"
            )
        path = posixpath.join(mount_path, name)
        requests.append(DatasetRequest(name, _url(annotations[key], key), path))
    return tuple(requests)


def _url(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OptInError(f"{key} must be a dataset URL like s3://bucket/prefix/")
    return value.strip()


def _mount_path(value: Any) -> str:
    example = "an absolute directory like /data"
    if not isinstance(value, str) or not value.startswith("/"):
        raise OptInError(f"{ANN_MOUNT_PATH} must be {example}, got {value!r:.80}")
    if len(value) > MAX_MOUNT_PATH_CHARS or any(ord(c) < 0x20 for c in value) or ":" in value:
        raise OptInError(f"{ANN_MOUNT_PATH} must be {example} without control characters or `:`")
    segments = value.strip("/").split("/")
    if value.strip("/") == "" or any(s in ("", ".", "..") for s in segments):
        raise OptInError(f"{ANN_MOUNT_PATH} must be {example}, not / and without . or ..")
    return "/" + "/".join(segments)


def _prefetch(value: Any) -> Prefetch:
    if value == "all":
        return "all"
    if value == "none":
        return "none"
    raise OptInError(f"{ANN_PREFETCH} must be `all` or `none`, got {value!r:.80}")


def _view(value: Any) -> View:
    if value == "read-through":
        return "read-through"
    if value == "bind":
        return "bind"
    raise OptInError(
        f"{ANN_VIEW} must be `read-through` (the default) or `bind` (nodes without FUSE), "
        f"got {value!r:.80}"
    )


def _fraction(value: Any) -> float:
    number = _number(value, ANN_WAIT, "a fraction between 0 and 1, like 0.9")
    if not 0.0 <= number <= 1.0:
        raise OptInError(f"{ANN_WAIT} must be a fraction between 0 and 1, got {value!r:.80}")
    return number


def _timeout(value: Any, default_s: float, max_s: float) -> float:
    if value is None:
        return default_s
    number = _number(value, ANN_WAIT_TIMEOUT, "a number of seconds, like 600")
    if not 0 < number <= max_s:
        raise OptInError(f"{ANN_WAIT_TIMEOUT} must be between 0 and {max_s:g} seconds")
    return number


def _number(value: Any, key: str, expected: str) -> float:
    try:
        number = float(value) if isinstance(value, str) and len(value) <= 32 else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise OptInError(f"{key} must be {expected}, got {value!r:.80}")
    return number
