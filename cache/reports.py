"""The engine's answers besides a dataset's status: what `verify` found, what `evict` removed,
a page of a dataset's manifest, and the engine's counters. Pure frozen values with their JSON,
as the agent serves them and its client reads them back (split from status.py, which holds the
status document itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from .urls import StoreURL, parse_url


def json_number(doc: Mapping[str, object], name: str) -> float:
    value = doc.get(name) or 0
    if not isinstance(value, int | float | str):
        raise TypeError(f"{name} must be a number")
    return float(value)


def json_int(doc: Mapping[str, object], name: str) -> int:
    return int(json_number(doc, name))


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found: files checked and ok, and the names of the damaged (corrupt),
    missing and stray ones (removed when it repaired)."""

    checked: int = 0
    ok: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.corrupt or self.missing or self.stray)

    def as_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "corrupt": self.corrupt,
            "missing": self.missing,
            "stray": self.stray,
            "clean": self.clean,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> VerifyReport:
        return cls(
            json_int(doc, "checked"),
            json_int(doc, "ok"),
            _names(doc, "corrupt"),
            _names(doc, "missing"),
            _names(doc, "stray"),
        )


@dataclass(frozen=True)
class Evicted:
    """What `evict` removed."""

    url: StoreURL
    objects_removed: int
    bytes_removed: int

    def as_json(self) -> dict[str, object]:
        return {
            "url": str(self.url),
            "objects_removed": self.objects_removed,
            "bytes_removed": self.bytes_removed,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> Evicted:
        return cls(
            parse_url(str(doc["url"])),
            json_int(doc, "objects_removed"),
            json_int(doc, "bytes_removed"),
        )


def _names(doc: Mapping[str, object], name: str) -> list[str]:
    value = doc.get(name) or []
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list")
    return [str(v) for v in value]


@dataclass(frozen=True)
class ManifestPage:
    """Part of a dataset's manifest: (key relative to the prefix, size) in key order; `next`
    is the key to continue after, None on the last page."""

    url: StoreURL
    objects_total: int
    objects: tuple[tuple[str, int], ...]
    next: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "url": str(self.url),
            "objects_total": self.objects_total,
            "objects": [list(o) for o in self.objects],
            "next": self.next,
        }


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of one engine's counters since it opened (the agent's metrics, and
    `prefetch --output json` under `counters`)."""

    objects_downloaded: int = 0
    bytes_downloaded: int = 0
    evictions: int = 0
    evicted_bytes: int = 0
    #: requests whose bytes did not add up, and whole objects that did not match
    integrity_failures: int = 0
    #: objects not cached for lack of room, to be read through
    read_through: int = 0
    object_retries: int = 0
    version_restarts: int = 0
    objects_failed: int = 0
    disk_full: int = 0
    #: bytes received from stores, and requests retried
    bytes_read: int = 0
    retries: int = 0
    #: objects still to do in the prefetches running now
    objects_queued: int = 0

    def as_json(self) -> dict[str, int]:
        return asdict(self)
