"""The typed values the engine hands out: a dataset's status, a prefetch's progress and the
engine's counters. Pure: no I/O, so the agent, the CLI, the client and the status file read
and write one document with one meaning.

The status document is `DatasetStatus`; `as_json()` is the JSON of docs/agent-api.md (the
agent leaves out `listed_at`), `from_json()` reads it back from the agent's answer or from a
dataset's status file. `fraction_local` is computed here and nowhere else.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NotRequired, TypedDict

from .partition import Partition
from .reports import json_int, json_number
from .urls import StoreURL, parse_url


class DatasetState(enum.StrEnum):
    """Where a dataset's prefetch stands.

    Transitions (a prefetch run drives them; nothing else does)::

        (not known) ─┐
        any settled ─┴─> LISTING ──> DOWNLOADING ──> COMPLETE | PARTIAL | FAILED
                                          └────────> INTERRUPTED  (cancelled: SIGTERM, abandoned)

    - LISTING exists only while a run lists (it is live progress, never stored);
    - DOWNLOADING is stored with the manifest, in the same transaction, so the index never has
      a listed dataset without a state;
    - COMPLETE: every listed object is local; PARTIAL: some keys were refused as unsafe or not
      cached for lack of room (or the run only listed); FAILED: some object failed (see
      `errors`); INTERRUPTED: the run was cancelled;
    - IDLE: known but nothing runs and the run did not finish: a DOWNLOADING left behind by a
      process that was killed reads as IDLE once no run is going on (the agent knows; the
      in-process engine shows what the index says, since another process may be running);
      a dataset accepted by the agent but not listed yet is IDLE too.

    Settled states (COMPLETE, PARTIAL, FAILED, INTERRUPTED, IDLE) go back to LISTING with the
    next run; `evict` forgets the dataset.
    """

    LISTING = "listing"
    DOWNLOADING = "downloading"
    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    IDLE = "idle"

    @classmethod
    def parse(cls, text: object) -> DatasetState:
        """The state of a stored or received string; anything unknown reads as IDLE."""
        try:
            return cls(str(text))
        except ValueError:
            return cls.IDLE

    @property
    def listed(self) -> bool:
        """Whether a state implies that the dataset's listing is known."""
        return self not in (DatasetState.LISTING, DatasetState.IDLE)

    @property
    def settled(self) -> bool:
        """Nothing is working on the dataset (done, partly done, failed or left)."""
        return self not in (DatasetState.LISTING, DatasetState.DOWNLOADING)


def fraction_local(
    bytes_local: int, bytes_total: int, objects_local: int, objects_total: int, listed: bool
) -> float:
    """The share of a dataset that is local, in [0, 1]: THE rule, used by every reader.

    By bytes. An empty dataset (0 bytes) counts as wholly local once its listing is known and
    every listed object is local (zero-byte objects are objects too); before that, nothing is
    known to be local and the fraction is 0 (an unlisted dataset must never release a wait).
    """
    if bytes_total > 0:
        return min(1.0, max(0, bytes_local) / bytes_total)
    return 1.0 if listed and objects_local >= objects_total else 0.0


@dataclass(frozen=True)
class Failure:
    """One object (or a whole run, key "") that failed: what status shows in `errors`."""

    key: str
    kind: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"key": self.key, "kind": self.kind, "message": self.message}

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> Failure:
        return cls(str(doc.get("key", "")), str(doc.get("kind", "")), str(doc.get("message", "")))


@dataclass(frozen=True)
class ViewCounts:
    """Opens through a dataset's read-through views since the agent started: a hit found the
    file local, a miss was fetched on open, a failed open answered EIO. Bytes are the opened
    files' sizes (reads themselves go from the kernel to the cached file, unseen)."""

    hit_opens: int = 0
    hit_bytes: int = 0
    miss_opens: int = 0
    miss_bytes: int = 0
    failed_opens: int = 0

    @property
    def opens(self) -> int:
        return self.hit_opens + self.miss_opens + self.failed_opens

    def as_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> ViewCounts:
        return cls(**{k: json_int(doc, k) for k in cls.__dataclass_fields__})


class ShareJSON(TypedDict):
    partition: str
    listed: bool
    objects_total: int
    objects_local: int
    bytes_total: int
    bytes_local: int
    fraction_local: float


@dataclass(frozen=True)
class ShareStatus:
    """How much of one member's share of a partitioned dataset is local (docs/partitions.md):
    what `wait --partition` compares and `status` shows beside the whole dataset's counts."""

    partition: Partition
    objects_total: int = 0
    objects_local: int = 0
    bytes_total: int = 0
    bytes_local: int = 0
    #: False until the dataset is listed (the counts are 0 then and mean nothing yet)
    listed: bool = True

    @property
    def fraction_local(self) -> float:
        return fraction_local(
            self.bytes_local, self.bytes_total, self.objects_local, self.objects_total, self.listed
        )

    def as_json(self) -> ShareJSON:
        return ShareJSON(
            partition=str(self.partition),
            listed=self.listed,
            objects_total=self.objects_total,
            objects_local=self.objects_local,
            bytes_total=self.bytes_total,
            bytes_local=self.bytes_local,
            fraction_local=round(self.fraction_local, 6),
        )

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> ShareStatus:
        return cls(
            Partition.parse(str(doc.get("partition"))),
            objects_total=json_int(doc, "objects_total"),
            objects_local=json_int(doc, "objects_local"),
            bytes_total=json_int(doc, "bytes_total"),
            bytes_local=json_int(doc, "bytes_local"),
            listed=doc.get("listed", True) is not False,
        )


class StatusJSON(TypedDict):
    url: str
    local_dir: str
    state: str
    objects_total: int
    objects_local: int
    bytes_total: int
    bytes_local: int
    fraction_local: float
    rate_bytes_per_s: float
    eta_s: float | None
    owners: list[str]
    errors: list[dict[str, str]]
    listed_at: NotRequired[float | None]
    view: NotRequired[dict[str, int]]
    open_failures: NotRequired[list[dict[str, str]]]
    shares: NotRequired[list[ShareJSON]]


@dataclass(frozen=True)
class DatasetStatus:
    """One dataset as the engine (and, with rate and ETA, the agent) sees it."""

    url: StoreURL
    local_dir: Path
    state: DatasetState
    objects_total: int = 0
    objects_local: int = 0
    bytes_total: int = 0
    bytes_local: int = 0
    owners: tuple[str, ...] = ()
    errors: tuple[Failure, ...] = ()
    #: wall-clock time of the last listing; None while never listed
    listed_at: float | None = None
    #: bytes per second over the agent's recent window; 0 outside the agent
    rate_bytes_per_s: float = 0.0
    eta_s: float | None = None
    #: the agent's: opens through read-through views, and the last opens that failed
    view: ViewCounts | None = None
    open_failures: tuple[Failure, ...] = ()
    #: the shares registered with a partition, each with its own progress (the agent's)
    shares: tuple[ShareStatus, ...] = ()

    @property
    def listed(self) -> bool:
        return self.listed_at is not None or self.state.listed

    @property
    def fraction_local(self) -> float:
        return fraction_local(
            self.bytes_local, self.bytes_total, self.objects_local, self.objects_total, self.listed
        )

    def as_json(self, *, listed_at: bool = True) -> StatusJSON:
        doc = StatusJSON(
            url=str(self.url),
            local_dir=str(self.local_dir),
            state=self.state.value,
            objects_total=self.objects_total,
            objects_local=self.objects_local,
            bytes_total=self.bytes_total,
            bytes_local=self.bytes_local,
            fraction_local=round(self.fraction_local, 6),
            rate_bytes_per_s=round(self.rate_bytes_per_s, 1),
            eta_s=self.eta_s,
            owners=list(self.owners),
            errors=[e.as_json() for e in self.errors],
        )
        if listed_at:
            doc["listed_at"] = self.listed_at
        if self.view is not None:
            doc["view"] = self.view.as_json()
        if self.open_failures:
            doc["open_failures"] = [f.as_json() for f in self.open_failures]
        if self.shares:
            doc["shares"] = [s.as_json() for s in self.shares]
        return doc

    def for_share(self, share: Partition) -> DatasetStatus | None:
        """This status as one member sees it: its share's counts (so `fraction_local` and the
        wait decision are the share's) with the dataset's state; None when that share is not
        among `shares`."""
        found = [s for s in self.shares if s.partition == share]
        if not found:
            return None
        s = found[0]
        mine = replace(
            self,
            objects_total=s.objects_total,
            objects_local=s.objects_local,
            bytes_total=s.bytes_total,
            bytes_local=s.bytes_local,
            shares=(),
        )
        # a share that is not known yet must never release a wait
        return mine if s.listed else replace(mine, listed_at=None, state=DatasetState.LISTING)

    @classmethod
    def from_json(cls, doc: Mapping[str, object]) -> DatasetStatus:
        """From the agent's answer or a status file (which has only the counts and the
        state). Raises ValueError / TypeError on a document that is not a status."""
        errors = doc.get("errors") or []
        owners = doc.get("owners") or []
        if not isinstance(errors, list) or not isinstance(owners, list):
            raise TypeError("errors and owners must be lists")
        listed_at = doc.get("listed_at")
        eta = doc.get("eta_s")
        view, open_failures = doc.get("view"), doc.get("open_failures") or []
        if not isinstance(open_failures, list):
            raise TypeError("open_failures must be a list")
        shares = doc.get("shares") or []
        if not isinstance(shares, list):
            raise TypeError("shares must be a list")
        return cls(
            url=parse_url(str(doc["url"])),
            local_dir=Path(str(doc.get("local_dir") or "")),
            state=DatasetState.parse(doc.get("state")),
            objects_total=json_int(doc, "objects_total"),
            objects_local=json_int(doc, "objects_local"),
            bytes_total=json_int(doc, "bytes_total"),
            bytes_local=json_int(doc, "bytes_local"),
            owners=tuple(str(o) for o in owners),
            errors=tuple(Failure.from_json(e) for e in errors if isinstance(e, Mapping)),
            listed_at=float(listed_at) if isinstance(listed_at, int | float) else None,
            rate_bytes_per_s=float(json_number(doc, "rate_bytes_per_s")),
            eta_s=float(eta) if isinstance(eta, int | float) else None,
            view=ViewCounts.from_json(view) if isinstance(view, Mapping) else None,
            open_failures=tuple(
                Failure.from_json(f) for f in open_failures if isinstance(f, Mapping)
            ),
            shares=tuple(ShareStatus.from_json(s) for s in shares if isinstance(s, Mapping)),
        )


@dataclass(frozen=True)
class Progress:
    """A running prefetch, as it advances (newer than the index, which learns of an object
    only once it is published)."""

    url: str
    objects_total: int
    bytes_total: int
    objects_done: int = 0
    bytes_done: int = 0
    objects_failed: int = 0
    started_at: float = 0.0
    #: False until the listing is known (the totals are then 0)
    listed: bool = True

    def add(self, objects: int = 0, nbytes: int = 0, failed: int = 0) -> Progress:
        return replace(
            self,
            objects_done=self.objects_done + objects,
            bytes_done=self.bytes_done + nbytes,
            objects_failed=self.objects_failed + failed,
        )


def with_progress(status: DatasetStatus, live: Progress) -> DatasetStatus:
    """`status` as seen while the run that reports `live` is going on. While it lists, a
    dataset listed before keeps its counts (and reads as downloading: its files are there)."""
    if not live.listed:
        listed = status.listed_at is not None
        return replace(status, state=DatasetState.DOWNLOADING if listed else DatasetState.LISTING)
    return replace(
        status,
        state=DatasetState.DOWNLOADING,
        objects_total=live.objects_total,
        bytes_total=live.bytes_total,
        objects_local=max(status.objects_local, live.objects_done),
        bytes_local=max(status.bytes_local, live.bytes_done),
    )
