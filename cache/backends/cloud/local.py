"""`file://` and `memory://` through fsspec's own filesystems."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from ...config import Config
from ...errors import VersionChangedError
from ..base import ObjectInfo
from ._common import Guarded, clip


class LocalishBackend(Guarded):
    """`file://` (fsspec LocalFileSystem, in a thread) and `memory://` (MemoryFileSystem).

    Neither store versions objects, so the version is derived from metadata (inode, mtime,
    size for files; creation time and size in memory) and a read checks it before and
    after, so that a file rewritten during the read is reported, not mixed.
    """

    def __init__(self, scheme: str, bucket: str, config: Config) -> None:
        import fsspec

        super().__init__(bucket, config)
        self.scheme = scheme
        self._fs = fsspec.filesystem(scheme, skip_instance_cache=True)
        self._root = bucket if scheme == "file" else "/" + bucket

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args) if self.scheme == "file" else fn(*args)

    def _info(self, path: str, key: str) -> ObjectInfo:
        i = self._fs.info(path)
        if i["type"] != "file":
            raise FileNotFoundError(f"{path} is a directory")
        if self.scheme == "file":
            version = f"{i['ino']:x}-{i['mtime']!r}-{i['size']}"
        else:
            version = f"{i['created']!r}-{i['size']}"
        return ObjectInfo(key=key, size=int(i["size"]), version=version)

    def _list_sync(self, prefix: str) -> list[ObjectInfo]:
        if not self._fs.isdir(self._root):
            raise FileNotFoundError(f"{self._root} is not a directory")
        base = (self._root + "/" + prefix.rpartition("/")[0]).rstrip("/")
        if not self._fs.isdir(base):
            return []
        out = []
        for path in self._fs.find(base):
            key = path[len(self._root.rstrip("/")) + 1 :]
            if key.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):  # deleted while listing
                    out.append(self._info(path, key))
        return sorted(out, key=lambda i: i.key)

    def _check_version(self, path: str, info: ObjectInfo) -> None:
        found = self._info(path, info.key).version
        if found != info.version:
            raise VersionChangedError(
                f"{self.where(info.key)} changed: expected version {info.version}, "
                f"found {found}; list the dataset again to fetch the new version"
            )

    def _read_sync(self, info: ObjectInfo, start: int, end: int) -> bytes:
        path = f"{self._root}/{info.key}"
        self._check_version(path, info)
        data = bytes(self._fs.cat_file(path, start, end))
        self._check_version(path, info)  # a rewrite during the read is caught, not mixed
        return data

    async def list_objects(self, prefix: str) -> list[ObjectInfo]:
        async with self.guard(prefix):
            result: list[ObjectInfo] = await self._run(self._list_sync, prefix)
        return result

    async def stat(self, key: str) -> ObjectInfo:
        async with self.guard(key):
            result: ObjectInfo = await self._run(self._info, f"{self._root}/{key}", key)
        return result

    async def read(self, info: ObjectInfo, start: int, end: int) -> bytes:
        end = clip(info, start, end)
        if start >= end:
            return b""
        async with self.guard(info.key):
            data: bytes = await self._run(self._read_sync, info, start, end)
        return self.checked(info, start, data, end)

    async def close(self) -> None:
        return None
