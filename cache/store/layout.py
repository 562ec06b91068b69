"""Where things live under the cache root, and safe file-system steps inside it.

    ROOT/
      FORMAT                  on-disk format version (JSON)
      index.sqlite3           the index of published objects, datasets, pins, reservations
      locks                   byte-range lock file for cross-process single flight
      staging/                files being downloaded (never visible in data/)
      data/SCHEME/BUCKET/KEY  published, read-only files: the dataset mirrors
      status/DIGEST/          a dataset's progress for pods (the agent's status.json), one
                              directory per dataset, apart from data/ so that a dataset's
                              directory holds its objects and nothing else

Every directory below the root is opened component by component with O_NOFOLLOW relative to
its parent's descriptor, so a symlink planted anywhere in the tree is never followed and
nothing is ever created or renamed outside the root.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import CacheStateError
from ..urls import StoreURL

FORMAT_VERSION = 1
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Layout:
    """Paths of one cache root. Pure except for `prepare()` and the dir-fd helpers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.data_dir = self.root / "data"
        self.status_root = self.root / "status"
        self.staging_dir = self.root / "staging"
        self.index_path = self.root / "index.sqlite3"
        self.lock_path = self.root / "locks"
        self.format_path = self.root / "FORMAT"

    def store_segments(self, url: StoreURL) -> list[str]:
        """Directory segments of a store under data/: scheme, then bucket."""
        return [url.scheme, url.bucket.strip("/")]

    def dataset_segments(self, url: StoreURL) -> list[str]:
        """Directory segments of a dataset's directory under data/ (the one place that says
        where a dataset lives; `dataset_dir` is the same as a path)."""
        return [*self.store_segments(url), *(p for p in url.prefix.split("/") if p)]

    def dataset_dir(self, url: StoreURL) -> Path:
        return self.data_dir.joinpath(*self.dataset_segments(url))

    @classmethod
    def of_dataset_dir(cls, dataset_dir: Path, url: StoreURL) -> Layout | None:
        """The layout in which `dataset_dir` is the directory of `url` (None if it cannot be):
        how a process that was told where a dataset lives (the CSI plugin, by the agent) finds
        the rest of that cache, its status directory included."""
        parts = ["data", *cls(Path("/")).dataset_segments(url)]
        if dataset_dir.parts[-len(parts) :] != tuple(parts):
            return None
        return cls(dataset_dir.parents[len(parts) - 1])

    def status_dir(self, url: StoreURL) -> Path:
        """The directory of a dataset's status file. Flat and named by a digest of the
        dataset URL: nested datasets (`s3://b/a/`, `s3://b/a/b/`) get separate directories, so
        a bind mount of one never shows another's, and any prefix length fits in one name."""
        return self.status_root / status_name(url)

    def object_path(self, url: StoreURL) -> Path:
        return self.data_dir.joinpath(*self.store_segments(url), url.path)

    def local_path(self, url: StoreURL) -> Path:
        """The directory of a dataset URL (ending in / or naming a whole bucket), else the file
        of an object key."""
        if not url.path or url.path.endswith("/"):
            return self.dataset_dir(url)
        return self.object_path(url)

    def prepare(self) -> None:
        """Create the root and its fixed entries; refuse a root that is a symlink."""
        _refuse_symlink(self.root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o755)
        _refuse_symlink(self.root)
        for sub in (self.data_dir, self.staging_dir):
            _refuse_symlink(sub)
            sub.mkdir(exist_ok=True, mode=0o755)
        for path in (self.format_path, self.index_path, self.lock_path):
            _refuse_symlink(path)
        self._check_format()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        os.close(fd)

    def _check_format(self) -> None:
        try:
            found = json.loads(_read_nofollow(self.format_path))["format"]
        except FileNotFoundError:
            # FORMAT is written before the index is created, so an index without FORMAT is
            # foreign, unless another process opening this fresh cache wrote FORMAT since we
            # looked (checked in that order: index first, then FORMAT)
            if self.index_path.exists() and not self.format_path.exists():
                raise CacheStateError(
                    f"{self.root} has an index but no FORMAT file, so its on-disk format is "
                    "unknown; remove the cache directory to start afresh"
                ) from None
            if self.format_path.exists():
                return self._check_format()  # the other process's: check what it says
            _write_format(self.root, self.format_path)
            return
        except (ValueError, KeyError, TypeError) as e:
            raise CacheStateError(
                f"{self.format_path} is unreadable; remove the cache directory {self.root} "
                "to start afresh"
            ) from e
        if found != FORMAT_VERSION:
            raise CacheStateError(
                f"the cache at {self.root} has on-disk format {found}, this shardcache "
                f"understands {FORMAT_VERSION}; remove the directory or use a matching version"
            )


def _write_format(root: Path, target: Path) -> None:
    """Write FORMAT atomically. The temporary name is unique to this writer: two processes
    opening a fresh cache at once both write it (the same content), and with a shared name
    one of them renamed the other's file away and then failed to find its own."""
    tmp = root / f".FORMAT.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(json.dumps({"format": FORMAT_VERSION}) + "\n")
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise


def status_name(url: StoreURL) -> str:
    """The directory name of a dataset's status under status/ (128 bits of SHA-256)."""
    return hashlib.sha256(str(url.as_dataset()).encode()).hexdigest()[:32]


def _read_nofollow(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read(4096)


def _refuse_symlink(path: Path) -> None:
    if path.is_symlink():
        raise CacheStateError(
            f"{path} is a symbolic link; shardcache refuses to use a cache directory that "
            "could point elsewhere. Remove the link or choose another --cache-dir"
        )


@contextmanager
def open_dir(root: Path, segments: list[str], *, create: bool) -> Iterator[int]:
    """Yield a descriptor of ROOT/SEGMENTS…, opened without following any symlink.

    With `create`, missing directories are made. A symlink (or a file) where a directory
    should be raises NotADirectoryError / OSError(ELOOP) and nothing is created below it.
    """
    fd = os.open(root, _DIR_FLAGS)
    try:
        for seg in segments:
            if create:
                with suppress(FileExistsError):
                    os.mkdir(seg, 0o755, dir_fd=fd)
            child = os.open(seg, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def first_non_dir(root: Path, segments: list[str]) -> int | None:
    """How many of SEGMENTS are plain directories before the first that is not (a symlink,
    a file), or None when all are directories or the path stops existing first."""
    for i in range(len(segments)):
        try:
            with open_dir(root, segments[: i + 1], create=False):
                pass
        except FileNotFoundError:
            return None
        except OSError:
            return i
    return None
