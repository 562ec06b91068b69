"""Dataset and object URLs: parsing, normalising, and which schemes pods may use.

`s3://bucket/prefix/`, `gs://` (`gcs://`), `az://` (`abfs://`), `file:///abs/dir/`,
`memory://bucket/prefix/`. A dataset is every object whose key starts with its prefix; a
prefix is always treated as a directory (`a/b` and `a/b/` name the same dataset, which does not
contain `a/bc`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError

#: user-facing scheme -> canonical scheme
SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "abfs": "az",
    "abfss": "az",
    "file": "file",
    "memory": "memory",
}
#: schemes a pod (webhook, CSI plugin, pod watcher) may ask for; the rest are for the
#: embedded mode and tests only
CLOUD_SCHEMES = frozenset({"s3", "gs", "az"})

# Conservative bucket/container names: what S3, GCS and Azure all accept, plus `_` (GCS).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$")


@dataclass(frozen=True, order=True)
class StoreURL:
    """A parsed location: a store (scheme + bucket) and a key or prefix inside it."""

    scheme: str
    bucket: str
    #: key of an object, or a prefix ending in "/" (or "" for the whole bucket)
    path: str

    @property
    def store(self) -> str:
        """`scheme://bucket`, the identity of one object store namespace."""
        return f"{self.scheme}://{self.bucket}"

    @property
    def prefix(self) -> str:
        """The path as a directory prefix: "" or ending in "/"."""
        if not self.path or self.path.endswith("/"):
            return self.path
        return self.path + "/"

    def as_dataset(self) -> StoreURL:
        return StoreURL(self.scheme, self.bucket, self.prefix)

    def child(self, key: str) -> StoreURL:
        return StoreURL(self.scheme, self.bucket, key)

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file://{self.bucket}/{self.path}"
        return f"{self.scheme}://{self.bucket}/{self.path}"

    @property
    def is_cloud(self) -> bool:
        return self.scheme in CLOUD_SCHEMES


def parse_url(url: str) -> StoreURL:
    """Parse a user-supplied URL; raise ConfigError saying what is wrong and how to fix it."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"{url!r} is not a dataset URL; expected s3://bucket/prefix/, gs://, az://, "
            "file:///path/ or memory://bucket/prefix/"
        )
    if "\x00" in url:
        raise ConfigError("dataset URL contains a NUL byte")
    raw_scheme, rest = url.split("://", 1)
    scheme = SCHEMES.get(raw_scheme.lower())
    if scheme is None:
        raise ConfigError(
            f"unsupported scheme {raw_scheme!r} in {url!r}; use one of "
            + ", ".join(sorted(SCHEMES))
        )
    if scheme == "file":
        return _parse_file(rest, url)
    bucket, _, path = rest.partition("/")
    if scheme == "az" and "@" in bucket:  # abfs://container@account.dfs.core.windows.net/
        bucket = bucket.split("@", 1)[0]
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(f"{bucket!r} in {url!r} is not a valid bucket or container name")
    path = path.lstrip("/") if scheme == "memory" else path
    _check_path(path, url)
    return StoreURL(scheme, bucket, path)


def _check_path(path: str, url: str) -> None:
    # The path becomes part of a local path: refuse what keys.check_key refuses (`..`, `//`,
    # NUL...), so a URL can never name a directory outside its store's mirror.
    from .keys import check_key

    trimmed = path[:-1] if path.endswith("/") else path
    if trimmed and (reason := check_key(trimmed)) is not None:
        raise ConfigError(f"{url!r} cannot be cached: its path has {reason}")


def _parse_file(rest: str, url: str) -> StoreURL:
    # file:///abs/dir/ -> bucket "" would lose the root; use the first path component as the
    # "bucket" so that the cache layout stays scheme/bucket/key for every scheme.
    if not rest.startswith("/"):
        raise ConfigError(f"{url!r}: file URLs must be absolute, like file:///data/set/")
    parts = rest.lstrip("/").split("/", 1)
    if not parts[0] or parts[0] in (".", ".."):
        raise ConfigError(f"{url!r}: file URLs need at least one directory below /")
    path = parts[1] if len(parts) > 1 else ""
    _check_path(path, url)
    return StoreURL("file", "/" + parts[0], path)


def require_cloud(url: StoreURL) -> None:
    """Refuse `file://` and `memory://` where a pod asked (they would expose the node)."""
    if not url.is_cloud:
        raise ConfigError(
            f"{url.scheme}:// is only for the embedded mode and tests; pods may use "
            "s3://, gs:// or az://"
        )
