"""One small JSON record per published target, so the plugin remembers across restarts.

A bind mount survives the plugin's restart; the plugin's memory does not. Without a record,
a restarted plugin could not tell which dataset and which pod (the agent's owner) a target
belongs to, and NodeUnpublishVolume could not release the pod's pin. A record is written
before the mount is made and removed after the pin is released, each write atomic (a
temporary file, fsync, rename, fsync of the directory), so a crash at any point leaves either
the old record or the new one, never half of one.

Files are named by a hash of the target path: the path is kubelet's, and the name must not
depend on escaping it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardcache.errors import CacheStateError, ConfigError

from .targets import PublishSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    spec: PublishSpec
    #: the dataset's directory on the node, as the agent answered
    local_dir: str
    #: unmounted, but the agent did not answer the release yet: retry it later
    release_pending: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_json(),
            "local_dir": self.local_dir,
            "release_pending": self.release_pending,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Record:
        if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
            raise ConfigError("not a publication record")
        return cls(
            PublishSpec.from_json(doc["spec"]),
            str(doc.get("local_dir", "")),
            bool(doc.get("release_pending", False)),
        )


class StateDir:
    """The records of one plugin, in `--state-dir`."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise CacheStateError(f"cannot create the state dir {self.root}: {e}") from e

    def _file(self, target_path: str) -> Path:
        digest = hashlib.sha256(os.fsencode(target_path)).hexdigest()[:40]
        return self.root / f"{digest}.json"

    def get(self, target_path: str) -> Record | None:
        try:
            record = Record.from_json(json.loads(self._file(target_path).read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, ConfigError) as e:
            raise CacheStateError(f"the record of {target_path} is corrupt: {e}") from e
        return record if record.spec.target_path == target_path else None

    def put(self, record: Record) -> None:
        data = json.dumps(record.to_json(), sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._file(record.spec.target_path))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._sync_dir()

    def remove(self, target_path: str) -> None:
        self._file(target_path).unlink(missing_ok=True)
        self._sync_dir()

    def all(self) -> list[Record]:
        """Every readable record; corrupt ones are logged and skipped, not fatal at start."""
        records = []
        for path in sorted(self.root.glob("*.json")):
            try:
                records.append(Record.from_json(json.loads(path.read_bytes())))
            except (OSError, ValueError, TypeError, ConfigError) as e:
                log.warning("skipping unreadable record %s: %s", path, e)
        return records

    def _sync_dir(self) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
