"""Blocking file steps of a download, run in worker threads: staging, verify, publish.

A staging file is created exclusively in staging/ and held under an exclusive flock for its
whole life; start-up removes only staging files whose lock it can take, so a concurrent process's
download in progress is never deleted, and a killed process's leftovers always are.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .layout import Layout, open_dir

_CHUNK = 1024 * 1024


@dataclass
class Staging:
    """An open staging file. `lock` orders writes against `close`: a write still running in a
    worker thread when its download is cancelled must never land on a descriptor number that
    `close` has freed and the process has reused for another file."""

    fd: int
    name: str
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class Finished:
    md5: str
    ino: int
    mtime_ns: int
    size: int


def create_staging(layout: Layout) -> Staging:
    name = f"{uuid.uuid4().hex}.part"
    fd = os.open(
        layout.staging_dir / name,
        os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return Staging(fd, name)


def write_at(fd: int, offset: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def write_part(staging: Staging, offset: int, data: bytes | memoryview) -> None:
    """Write into a staging file unless it was closed meanwhile (its download was cancelled)."""
    with staging.lock:
        if staging.fd < 0:
            raise FileNotFoundError(f"staging file {staging.name} was discarded")
        write_at(staging.fd, offset, data)


def read_part(staging: Staging, start: int, end: int) -> bytes:
    """Bytes [start, end) of a staging file unless it was closed meanwhile (see `write_part`)."""
    with staging.lock:
        if staging.fd < 0:
            raise FileNotFoundError(f"staging file {staging.name} was discarded")
        data = os.pread(staging.fd, end - start, start)
        while len(data) < end - start and (
            more := os.pread(staging.fd, end - start - len(data), start + len(data))
        ):
            data += more
    return data


def write_whole(staging: Staging, data: bytes | memoryview, fsync: bool) -> Finished:
    """Write a whole small object and finish it, in one trip to a worker thread; its MD5 is
    hashed from memory (no read-back)."""
    write_part(staging, 0, data)
    return finish(staging, hashlib.md5(data, usedforsecurity=False).hexdigest(), fsync)


def md5_of_fd(fd: int) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    offset = 0
    while chunk := os.pread(fd, _CHUNK * 4, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def finish(staging: Staging, md5: str | None, fsync: bool) -> Finished:
    """Make the staging file durable and read-only; return its identity for the index.
    Without `md5` (a later round of a download, which kept parts it did not hash), the file
    is read back."""
    if md5 is None:
        md5 = md5_of_fd(staging.fd)
    os.fchmod(staging.fd, 0o444)
    if fsync:
        os.fsync(staging.fd)
    st = os.fstat(staging.fd)
    return Finished(md5=md5, ino=st.st_ino, mtime_ns=st.st_mtime_ns, size=st.st_size)


def discard(layout: Layout, staging: Staging) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(layout.staging_dir / staging.name)
    close(staging)


def close(staging: Staging) -> None:
    with staging.lock:
        if staging.fd >= 0:
            os.close(staging.fd)
            staging.fd = -1


def publish(layout: Layout, staging: Staging, segments: list[str], key: str) -> None:
    """Rename the staging file to data/SEGMENTS/KEY atomically, never through a symlink.

    The directory is not fsynced: the file's bytes were (in `finish`), so after a power cut the
    rename is either there with whole contents or not there at all; a lost rename only means
    the index's row no longer matches a file, which every lookup checks (inode, size, mtime),
    so the object is downloaded again. Durability of the rename is therefore not needed for
    correctness, and a second fsync per object is not paid for it (fsyncs together cost about
    a tenth of a small-object prefetch's throughput on the benchmark machine).

    Raises OSError (ELOOP/ENOTDIR/EISDIR) when something other than a plain directory tree is
    in the way; the staging file is then left for the caller to discard.
    """
    *dirs, base = key.split("/")
    with (
        open_dir(layout.data_dir, segments + dirs, create=True) as parent,
        open_dir(layout.staging_dir, [], create=False) as staging_dir,
    ):
        os.rename(staging.name, base, src_dir_fd=staging_dir, dst_dir_fd=parent)
    close(staging)


def unlink_published(layout: Layout, segments: list[str], key: str) -> bool:
    """Remove a published file (never following links); False when it was not there."""
    *dirs, base = key.split("/")
    try:
        with open_dir(layout.data_dir, segments + dirs, create=False) as parent:
            os.unlink(base, dir_fd=parent)
            return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:
        if e.errno == 40:  # ELOOP: a symlink where a directory was; nothing of ours below it
            return False
        raise


def stat_published(layout: Layout, segments: list[str], key: str) -> os.stat_result | None:
    *dirs, base = key.split("/")
    try:
        with open_dir(layout.data_dir, segments + dirs, create=False) as parent:
            return os.stat(base, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return None


def clean_staging(layout: Layout) -> int:
    """Remove staging files no live process holds. Returns how many were removed."""
    removed = 0
    for entry in os.scandir(layout.staging_dir):
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)  # a symlink or something odd: not ours
            removed += 1
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live download
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed += 1
    return removed


def path_of(layout: Layout, segments: list[str], key: str) -> Path:
    return layout.data_dir.joinpath(*segments, key)
