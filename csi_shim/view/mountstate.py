"""What a view server keeps on disk per mount, so that its successor can take the mount over:

    STATE_DIR/views/ID/meta.json        target, dataset, local dir (written once, atomically)
    STATE_DIR/views/ID/manifest.jsonl   the manifest the mount shows, frozen at mount time
    STATE_DIR/views/ID/init.json        the outcome of INIT (passthrough or not)
    STATE_DIR/views/ID/backing.log      "nodeid backing-id" lines, appended as ids are made

The manifest is frozen so that node ids (assigned from it) mean the same nodes to the kernel
after a restart, even if the agent re-listed the dataset meanwhile. Nothing here is fsynced
except meta and manifest: the other two only matter while the kernel connection lives, and a
node crash ends that connection anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class MountMeta:
    target: str
    dataset: str
    local_dir: str

    @property
    def ident(self) -> str:
        return mount_id(self.target)


def mount_id(target: str) -> str:
    return hashlib.sha256(os.fsencode(target)).hexdigest()[:24]


class MountDir:
    def __init__(self, state_dir: str, ident: str) -> None:
        self.path = Path(state_dir) / "views" / ident

    def create(self, meta: MountMeta, objects: Iterable[tuple[str, int]]) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, mode=0o700)
        _atomic(
            self.path / "manifest.jsonl",
            b"".join(json.dumps([k, s]).encode() + b"\n" for k, s in objects),
        )
        _atomic(self.path / "meta.json", json.dumps(asdict(meta)).encode())

    def meta(self) -> MountMeta:
        doc = json.loads((self.path / "meta.json").read_bytes())
        return MountMeta(str(doc["target"]), str(doc["dataset"]), str(doc["local_dir"]))

    def objects(self) -> Iterator[tuple[str, int]]:
        with open(self.path / "manifest.jsonl", "rb") as f:
            for line in f:
                key, size = json.loads(line)
                yield str(key), int(size)

    def save_init(self, passthrough: bool) -> None:
        _atomic(
            self.path / "init.json", json.dumps({"passthrough": passthrough}).encode(), sync=False
        )

    def load_init(self) -> bool | None:
        try:
            return bool(json.loads((self.path / "init.json").read_bytes())["passthrough"])
        except FileNotFoundError:
            return None

    def append_backing(self, ino: int, backing_id: int) -> None:
        with open(self.path / "backing.log", "a") as f:
            f.write(f"{ino} {backing_id}\n")

    def load_backing(self) -> dict[int, int]:
        try:
            text = (self.path / "backing.log").read_text()
        except FileNotFoundError:
            return {}
        out: dict[int, int] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2:  # a torn last line (killed mid-write) is skipped
                out[int(parts[0])] = int(parts[1])
        return out

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
