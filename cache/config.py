"""The one frozen configuration object, built at the edge and passed down.

Nothing here reads the environment at import time: `Config.from_env()` is called by the CLI,
the agent or the client when they start, and the resulting value is handed to the engine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .retry import Retry

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "gi": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
    "ti": 1024**4,
    "p": 1000**5,
    "pb": 1000**5,
    "pib": 1024**5,
    "pi": 1024**5,
}


def parse_size(text: str) -> int:
    """Parse `20GiB`, `500MB`, `1.5g` or a plain byte count into bytes."""
    match = _SIZE_RE.match(str(text))
    if not match:
        raise ConfigError(f"cannot read {text!r} as a size; use bytes or a suffix like 20GiB")
    number, unit = match.group(1), (match.group(2) or "").lower()
    if unit not in _UNITS:
        raise ConfigError(f"unknown size unit in {text!r}; use B, KiB, MiB, GiB, TiB or kB, MB…")
    return int(float(number) * _UNITS[unit])


def format_size(n: float) -> str:
    """Human-readable binary size, e.g. `1.5 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """`$XDG_CACHE_HOME/shardcache`, else `~/.cache/shardcache`, as the XDG spec says."""
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "shardcache"


@dataclass(frozen=True)
class Config:
    """Everything the engine needs to know, fixed for its lifetime."""

    #: the cache root; holds the index, the staging area and the dataset mirrors
    cache_dir: Path
    #: byte budget for published and staging bytes together; None means "the disk", bounded
    #: only by `min_free_fraction`
    max_bytes: int | None = None
    #: share of the file system that is always left free, so that a full cache never fills the
    #: node's disk for other tenants: kubelet evicts pods below 10% free on the node file system
    #: and 15% on the image file system (often the same disk), so 20% keeps a margin above both
    min_free_fraction: float = 0.20
    #: share of the file system's inodes always left free: kubelet evicts pods below 5% free
    #: inodes, and a dataset of many small objects runs out of inodes before bytes
    min_free_inode_fraction: float = 0.10
    #: concurrent requests to the object store across all objects and parts; S3 serves far
    #: more per prefix, and 64 keeps a 10-25 Gbit NIC busy with 8 MiB parts at 20 ms latency
    max_concurrency: int = 64
    #: objects larger than this are fetched as parallel ranged parts
    multipart_threshold_bytes: int = 16 * 1024 * 1024
    #: size of one ranged part. At S3's ~20 ms to first byte and ~90 MB/s per connection, a
    #: 16 MiB part keeps a connection transferring ~90% of the time (8 MiB, the SDKs' default:
    #: ~82%). Memory in flight is at most (max_concurrency + 8 on-demand slots) x part_size_bytes.
    part_size_bytes: int = 16 * 1024 * 1024
    #: seconds to wait for a connection or for the first byte of a response
    connect_timeout_s: float = 10.0
    #: seconds a single request (one object or one part) may take end to end
    read_timeout_s: float = 120.0
    #: fsync files and directories before publishing: a crash never exposes a torn file
    fsync: bool = True
    #: a prefetch reuses the dataset's saved listing (no LIST request) while it is younger
    #: than this; 0 lists every time. Pods of one job and the restarts of a crashing one
    #: (kubelet's back-off tops out at 5 minutes) arrive within minutes, and a listing of a
    #: million keys costs ~1,000 requests and tens of seconds; a dataset is rarely changed in
    #: place, and a changed object is still caught at download (its version is checked), so
    #: the bound only delays seeing added or deleted keys, by at most 10 minutes.
    #: `shardcache prefetch --refresh` lists at once.
    listing_max_age_s: float = 600.0
    #: the retry budgets of one download (requests, object rounds, version restarts)
    retry: Retry = field(default_factory=Retry)
    #: backend options keyed by normalised scheme ("s3", "gs", "az"), passed to the adapter
    backend_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ConfigError(f"max_bytes must be positive, got {self.max_bytes}")
        if not 0.0 <= self.min_free_fraction < 1.0:
            raise ConfigError(f"min_free_fraction must be in [0, 1), got {self.min_free_fraction}")
        if not 0.0 <= self.min_free_inode_fraction < 1.0:
            raise ConfigError(
                f"min_free_inode_fraction must be in [0, 1), got {self.min_free_inode_fraction}"
            )
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.part_size_bytes < 1024 * 1024:
            raise ConfigError("part_size_bytes must be at least 1 MiB")
        if not self.listing_max_age_s >= 0:  # NaN too
            raise ConfigError(f"listing_max_age_s must be >= 0, got {self.listing_max_age_s}")

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Config:
        """Build from `SHARDCACHE_*` variables; explicit `overrides` (CLI flags) win."""
        values: dict[str, Any] = {}
        values["cache_dir"] = Path(env.get("SHARDCACHE_CACHE_DIR") or default_cache_dir(env))
        if env.get("SHARDCACHE_MAX_BYTES"):
            values["max_bytes"] = parse_size(env["SHARDCACHE_MAX_BYTES"])
        if env.get("SHARDCACHE_MIN_FREE_FRACTION"):
            values["min_free_fraction"] = _float(env, "SHARDCACHE_MIN_FREE_FRACTION")
        if env.get("SHARDCACHE_MIN_FREE_INODE_FRACTION"):
            values["min_free_inode_fraction"] = _float(env, "SHARDCACHE_MIN_FREE_INODE_FRACTION")
        if env.get("SHARDCACHE_MAX_CONCURRENCY"):
            values["max_concurrency"] = int(_float(env, "SHARDCACHE_MAX_CONCURRENCY"))
        if env.get("SHARDCACHE_LISTING_MAX_AGE_S"):
            values["listing_max_age_s"] = _float(env, "SHARDCACHE_LISTING_MAX_AGE_S")
        if env.get("SHARDCACHE_FSYNC"):
            values["fsync"] = env["SHARDCACHE_FSYNC"].strip().lower() not in ("0", "false", "no")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("max_bytes"), str):
            values["max_bytes"] = parse_size(values["max_bytes"])
        values["cache_dir"] = Path(values["cache_dir"]).expanduser()
        return cls(**values)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _float(env: Mapping[str, str], name: str) -> float:
    try:
        return float(str(env[name]))
    except ValueError as e:
        raise ConfigError(f"{name}={env[name]!r} is not a number") from e
