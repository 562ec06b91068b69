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
from typing import Any

from shardcache.keys import RESERVED_SEGMENT
from shardcache.store.layout import Layout, open_dir
from shardcache.urls import StoreURL

STATUS_NAME = "status.json"
#: fields copied from the API's status document; anything else stays inside the agent
FIELDS = ("url", "state", "objects_total", "objects_local", "bytes_total", "bytes_local")
#: while a prefetch runs, the file is rewritten at most this often: an init container polls it
#: about once a second, and a write per finished object would cost a rename per object
WRITE_INTERVAL_S = 1.0


def status_record(doc: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The file's content from an API status document; `now` is wall-clock (epoch) seconds."""
    record = {name: doc[name] for name in FIELDS}
    record["updated_at"] = round(now, 3)
    return record


def _segments(layout: Layout, ds: StoreURL) -> list[str]:
    return [*layout.store_segments(ds), *(p for p in ds.prefix.split("/") if p), RESERVED_SEGMENT]


def write_status_file(layout: Layout, ds: StoreURL, record: Mapping[str, Any]) -> None:
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
