"""`DATASET_DIR/.shardcache/status.json`: a dataset's progress, readable through the mount.

The init container the webhook injects (`shardcache wait`) sees only the dataset's read-only
volume, not the agent's socket, so the agent leaves the progress where it can look. The file
holds counts and a state only: no owners and no error text, because every pod that mounts the
dataset reads it, whichever tenant it belongs to. It is replaced atomically (a temporary file
renamed in the same directory, every directory opened without following links), so a reader
sees the old document or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Mapping

from ..keys import RESERVED_SEGMENT
from ..status import DatasetStatus
from ..urls import StoreURL
from .layout import Layout, open_dir

STATUS_NAME = "status.json"
#: where the file is, relative to the dataset's directory
RELATIVE_PATH = os.path.join(RESERVED_SEGMENT, STATUS_NAME)
#: fields copied from the status document; anything else stays inside the agent
FIELDS = ("url", "state", "objects_total", "objects_local", "bytes_total", "bytes_local")


def status_record(status: DatasetStatus, now: float) -> dict[str, object]:
    """The file's content from a status; `now` is wall-clock (epoch) seconds."""
    doc = status.as_json()
    record: dict[str, object] = {name: doc[name] for name in FIELDS}  # type: ignore[literal-required]
    record["updated_at"] = round(now, 3)
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
    return [*layout.dataset_segments(ds), RESERVED_SEGMENT]


def write_status_file(layout: Layout, ds: StoreURL, record: Mapping[str, object]) -> None:
    """Blocking. Replace the dataset's status file with `record`."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    # unique per write: the registration and the periodic writer may write at the same moment
    tmp = f".{STATUS_NAME}.{uuid.uuid4().hex[:12]}.tmp"
    with open_dir(layout.data_dir, _segments(layout, ds), create=True) as dir_fd:
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
    let an init container start a pod on data that is gone."""
    try:
        with open_dir(layout.data_dir, _segments(layout, ds), create=False) as dir_fd:
            os.unlink(STATUS_NAME, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
