"""The `shardcache` fsspec protocol: `fsspec.open("shardcache::s3://bucket/key")`, or
`fsspec.filesystem("shardcache", target_protocol="s3")`.

A thin adapter over `Client`: reads are local hits opened directly, misses go through the
agent or the in-process engine (see client.py); `ls`, `info` and `find` answer from the
manifest of a known dataset, else from the store. Two fsspec habits are avoided on purpose:
the instance cache (`cachable = False`: an instance holds no connection and costs nothing to
build, and a cached one would outlive a `fork`) and the global event loop (this class is
synchronous; the client's loops are its own and rebuilt after `fork`).

Paths are `bucket/key` like s3fs's; full URLs (`s3://bucket/key`) are accepted too.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO, ClassVar

from fsspec.implementations.chained import ChainedFileSystem

from ..errors import ConfigError
from .api import client_for
from .client import Client, ClientStats

_OURS = ("shardcache::", "shardcache://")


class ShardcacheFileSystem(ChainedFileSystem):  # type: ignore[misc]
    """Read-only file system over cloud datasets, served from the node's cache."""

    protocol: ClassVar[str] = "shardcache"  # type: ignore[misc]
    root_marker = ""
    cachable = False

    def __init__(
        self,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        fo: str | None = None,
        cache_dir: str | None = None,
        agent_socket: str | None = None,
        client: Client | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.target_protocol = target_protocol
        self._client = client or client_for(
            target_protocol, target_options, cache_dir, agent_socket
        )

    # -- paths --------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        for ours in _OURS:
            if path.startswith(ours):
                path = path[len(ours) :]
        if "://" in path:
            path = path.split("://", 1)[1]
        return path.rstrip("/")

    @classmethod
    def _get_kwargs_from_urls(cls, path: str) -> dict[str, Any]:
        """`shardcache://s3://bucket/key` (one layer, cheaper to open than the chained
        `shardcache::s3://…`, which also loads the s3 file system class) names its target."""
        path = str(path)
        for ours in _OURS:
            if path.startswith(ours):
                path = path[len(ours) :]
        return {"target_protocol": path.split("://", 1)[0]} if "://" in path else {}

    def url(self, path: str) -> str:
        """The store URL of an fsspec path (`bucket/key`, or a full URL)."""
        path = str(path)
        for ours in _OURS:
            if path.startswith(ours):
                path = path[len(ours) :]
        if "://" in path:
            return path
        if not self.target_protocol:
            raise ConfigError(
                f"{path!r} has no scheme; use a chained URL like shardcache::s3://bucket/key or "
                "fsspec.filesystem('shardcache', target_protocol='s3')"
            )
        return f"{self.target_protocol}://{path.lstrip('/')}"

    # -- reading ------------------------------------------------------------------------
    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """Binary reads return the local file itself on a hit (no fsspec buffering layer)."""
        if mode == "rb":
            return self._client.open(self.url(path))
        if mode in ("r", "rt"):
            return io.TextIOWrapper(
                self._client.open(self.url(path)),
                encoding=kwargs.get("encoding"),
                errors=kwargs.get("errors"),
                newline=kwargs.get("newline"),
            )
        raise PermissionError(f"shardcache is read-only; cannot open {path} with mode {mode!r}")

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> BinaryIO:
        return self.open(path, mode="rb")  # type: ignore[no-any-return]

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        with self._client.open(self.url(path)) as f:
            if start is None and end is None:
                return f.read()
            size = f.seek(0, io.SEEK_END)
            lo = _bound(start or 0, size)
            hi = size if end is None else _bound(end, size)
            f.seek(lo)
            return f.read(max(0, hi - lo))

    # -- listing ------------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entries = self._client.ls(self.url(path))
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._client.info(self.url(path))

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        found = self._client.find(self.url(path), withdirs=withdirs)
        if maxdepth is not None:
            base = self._strip_protocol(path).count("/")
            found = {k: v for k, v in found.items() if k.count("/") - base <= maxdepth}
        return found if detail else list(found)

    # -- shardcache extras --------------------------------------------------------------
    def local_path(self, path: str) -> str:
        return str(self._client.local_path(self.url(path)))

    def stats(self) -> ClientStats:
        return self._client.stats()

    def _rm(self, path: str) -> None:
        raise PermissionError("shardcache is read-only")


def _bound(i: int, size: int) -> int:
    return max(0, size + i) if i < 0 else min(i, size)
