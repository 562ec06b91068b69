"""`CACHE/status/DIGEST/status.json`: a dataset's progress, readable by the wait step.

The init container the webhook injects (`shardcache wait`) has no agent socket and no
credentials, so the agent leaves the progress where it can look: a small directory per dataset
beside the data tree (never inside it: a dataset's directory holds its objects and nothing
else, or a loader scanning it, like torchvision's `ImageFolder`, would take the status for
data). The CSI plugin bind-mounts that one directory read-only into the wait container
(volume attribute `view: status`). The file holds counts and a state only: no owners and no
error text, because every pod that mounts the dataset reads it, whichever tenant it belongs
to. It is replaced atomically (a temporary file renamed in the same directory, every
directory opened without following links), so a reader sees the old document or the new one,
never half of either; the directory itself is kept (a bind mount of it must keep seeing the
renames).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import uuid
from collections.abc import Mapping

from ..status import DatasetStatus
from ..urls import StoreURL
from .layout import Layout, open_dir, status_name

STATUS_NAME = "status.json"
#: fields copied from the status document; anything else stays inside the agent
FIELDS = ("url", "state", "objects_total", "objects_local", "bytes_total", "bytes_local")
#: of each share registered with a partition: `wait --partition I/N` reads its own
SHARE_FIELDS = (
    "partition",
    "listed",
    "objects_total",
    "objects_local",
    "bytes_total",
    "bytes_local",
)


def status_record(status: DatasetStatus, now: float) -> dict[str, object]:
    """The file's content from a status; `now` is wall-clock (epoch) seconds."""
    doc = status.as_json()
    record: dict[str, object] = {name: doc[name] for name in FIELDS}  # type: ignore[literal-required]
    record["updated_at"] = round(now, 3)
    if status.shares:
        record["shares"] = [
            {k: s.as_json()[k] for k in SHARE_FIELDS}  # type: ignore[literal-required]
            for s in status.shares
        ]
    return record


def parse_status_file(text: str, ds: StoreURL) -> tuple[DatasetStatus | None, str | None]:
    """The status in a status file's `text`, or why none could be taken from it.

    A file for another dataset is ignored (a mount of the wrong dataset must not start the pod
    early); the reason is for the warning at timeout.
    """
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        if doc.get("url") != str(ds):
            return None, f"the status file describes {doc.get('url')!r}, not {ds}"
        return DatasetStatus.from_json(doc), None
    except (ValueError, TypeError, KeyError) as e:  # half-written, damaged, or not ours
        return None, f"the status file is unreadable ({e})"


def _segments(layout: Layout, ds: StoreURL) -> list[str]:
    return [layout.status_root.name, status_name(ds)]


def write_status_file(layout: Layout, ds: StoreURL, record: Mapping[str, object]) -> None:
    """Blocking. Replace the dataset's status file with `record`."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    # unique per write: the registration and the periodic writer may write at the same moment
    tmp = f".{STATUS_NAME}.{uuid.uuid4().hex[:12]}.tmp"
    with open_dir(layout.root, _segments(layout, ds), create=True) as dir_fd:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o644, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
            os.fchmod(fd, 0o644)  # pods run as any uid; the umask must not hide progress
        finally:
            os.close(fd)
        try:
            os.replace(tmp, STATUS_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise


def remove_status_file(layout: Layout, ds: StoreURL) -> None:
    """Blocking. Forget the dataset's progress (it was evicted): a stale "complete" would
    let an init container start a pod on data that is gone. The directory stays: a pod may
    have it mounted, and must see the next registration's file appear there."""
    try:
        with open_dir(layout.root, _segments(layout, ds), create=False) as dir_fd:
            os.unlink(STATUS_NAME, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


#: where agents before the status/ directory kept the file: inside the dataset's directory,
#: where the bind view showed it and `ImageFolder` took it for a class
LEGACY_DIR = ".shardcache"


def sweep_legacy(layout: Layout, ds: StoreURL, known: set[str]) -> int:
    """Blocking. Remove the `.shardcache/` status directory an older agent left in the
    dataset's directory; `known` are the names the index holds in it (objects of a key
    `.shardcache/...`, which stay). Returns how many files were removed. The directory goes
    once it is empty, so neither view shows it any more."""
    segments = [*layout.dataset_segments(ds), LEGACY_DIR]
    removed = 0
    try:
        with open_dir(layout.data_dir, segments[:-1], create=False) as parent:
            with open_dir(layout.data_dir, segments, create=False) as dir_fd:
                for name in os.listdir(dir_fd):
                    if name not in known:
                        removed += _unlink_file(dir_fd, name)
            with contextlib.suppress(OSError):  # not empty: it holds objects of the dataset
                os.rmdir(LEGACY_DIR, dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return removed


def _unlink_file(dir_fd: int, name: str) -> int:
    """1 if `name` (not a directory) was removed here; the agent's full scan may remove the
    same stray at the same moment."""
    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return 0
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return 0
    return 1
