"""`SHARDCACHE_MOUNTS`: the datasets this container sees as mounted views, and where.

In a pod, the webhook sets `SHARDCACHE_MOUNTS` in every container to a JSON object
`{dataset URL: mount path}` of the shardcache volumes mounted in that container. The client
then serves those datasets from the mount: an object is a file under the mount path (a miss
blocks in the read-through view until the node has it), so the pod needs no credentials, no
agent socket, and never makes a second copy. Pure: the text is parsed once into a frozen
value, which maps URLs to paths.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from ..errors import ConfigError
from ..urls import StoreURL, parse_url

MOUNTS_ENV = "SHARDCACHE_MOUNTS"


@dataclass(frozen=True)
class Mount:
    #: a dataset (prefix "" or ending in "/")
    dataset: StoreURL
    #: absolute, normalised, without a trailing "/"
    path: str


@dataclass(frozen=True)
class Mounts:
    """The mounted datasets, the deepest prefix first (nested datasets: the inner one wins)."""

    mounts: tuple[Mount, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.mounts)

    def find(self, url: StoreURL) -> tuple[Mount, str] | None:
        """The mount holding `url` (an object, a directory or the dataset itself) and the
        path inside it ("" for the dataset's root); None when no mount holds it."""
        for mount in self.mounts:
            ds = mount.dataset
            if url.store != ds.store:
                continue
            # `url.prefix`: "a/b" and "a/b/" both name the dataset `a/b/` itself
            if url.prefix.startswith(ds.prefix):
                return mount, url.path[len(ds.prefix) :].rstrip("/")
        return None

    def path_of(self, url: StoreURL) -> str | None:
        """The local path of `url` under its mount, or None when no mount holds it."""
        found = self.find(url)
        if found is None:
            return None
        mount, inside = found
        return posixpath.join(mount.path, inside) if inside else mount.path


def parse_mounts(text: str | None) -> Mounts:
    """The value of SHARDCACHE_MOUNTS ("" or unset: nothing mounted). ConfigError names the
    variable and what is wrong: a pod whose mounts cannot be read must not quietly fall back
    to reading the store (it has no credentials, and would make a second copy)."""
    if not text or not text.strip():
        return Mounts()
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{MOUNTS_ENV} is not JSON ({e}); expected {_EXAMPLE}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"{MOUNTS_ENV} must be a JSON object like {_EXAMPLE}")
    seen: dict[StoreURL, str] = {}
    for url, path in doc.items():
        ds = parse_url(url).as_dataset()
        where = _mount_path(url, path)
        if seen.get(ds, where) != where:
            raise ConfigError(f"{MOUNTS_ENV} mounts {ds} at both {seen[ds]} and {where}")
        seen[ds] = where
    ordered = sorted(seen.items(), key=lambda item: (-len(item[0].prefix), str(item[0])))
    return Mounts(tuple(Mount(ds, path) for ds, path in ordered))


_EXAMPLE = '{"s3://bucket/prefix/": "/data"}'


def _mount_path(url: str, path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise ConfigError(f"{MOUNTS_ENV}: the mount path of {url} must be absolute, got {path!r}")
    normal = posixpath.normpath(path)
    return "/" if normal == "/" else normal.rstrip("/")
