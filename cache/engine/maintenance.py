"""Status, verification and eviction of datasets: the operator's view of the cache."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CacheError
from ..keys import RESERVED_SEGMENT
from ..store import files
from ..store.layout import first_non_dir, open_dir
from ..urls import StoreURL, parse_url
from .adopt import scan_full
from .engine import Engine


@dataclass(frozen=True)
class DatasetStatus:
    url: str
    local_dir: Path
    state: str
    objects_total: int
    objects_local: int
    bytes_total: int
    bytes_local: int
    owners: list[str]
    errors: list[dict[str, str]]
    listed_at: float | None

    @property
    def fraction_local(self) -> float:
        if self.bytes_total == 0:
            return 1.0 if self.objects_local >= self.objects_total else 0.0
        return self.bytes_local / self.bytes_total

    def as_json(self) -> dict[str, object]:
        return {
            "url": self.url, "local_dir": str(self.local_dir), "state": self.state,
            "objects_total": self.objects_total, "objects_local": self.objects_local,
            "bytes_total": self.bytes_total, "bytes_local": self.bytes_local,
            "fraction_local": round(self.fraction_local, 6), "owners": self.owners,
            "errors": self.errors, "listed_at": self.listed_at,
        }


@dataclass
class VerifyReport:
    checked: int = 0
    ok: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.corrupt or self.missing or self.stray)


def statuses(engine: Engine, url: str | None) -> list[DatasetStatus]:
    """Blocking; run on the index thread."""
    idx = engine.index
    wanted = str(parse_url(url).as_dataset()) if url else None
    owners: dict[str, list[str]] = {}
    for u, owner in idx.pins():
        owners.setdefault(u, []).append(owner)
    out = []
    for row in idx.datasets():
        if wanted and row.url != wanted:
            continue
        n_local, b_local = idx.local_totals(row.url)
        out.append(DatasetStatus(
            url=row.url, local_dir=engine.layout.dataset_dir(parse_url(row.url)),
            state=row.state, objects_total=row.objects_total, objects_local=n_local,
            bytes_total=row.bytes_total, bytes_local=b_local, owners=owners.get(row.url, []),
            errors=row.errors, listed_at=row.listed_at))
    return out


def verify(engine: Engine, url: str | None, *, repair: bool = True) -> VerifyReport:
    """Check every published file of `url` (or of the whole cache) against the index:
    type, identity, size and MD5. With `repair`, damaged and stray files are removed so the
    next prefetch fetches exactly those again. Blocking; run on the index thread."""
    idx = engine.index
    report = VerifyReport()
    if url is None:
        scan = scan_full(engine.layout, idx, remove=repair)
        report.missing += scan.missing
        report.corrupt += scan.changed
        report.stray += scan.stray
        entries = idx.entries_batched()
    else:
        ds = parse_url(url).as_dataset()
        entries = idx.entries(ds.store, ds.prefix)
    damaged: list[tuple[str, str]] = []  # evicted after the walk: rows must not change under it
    for entry in entries:
        report.checked += 1
        target = parse_url(entry.store + "/")
        problem = _check_file(engine, target, entry.key, entry.size, entry.md5,
                              (entry.ino, entry.mtime_ns))
        if problem is None:
            report.ok += 1
            continue
        name = str(target.child(entry.key))
        (report.missing if problem == "missing" else report.corrupt).append(name)
        damaged.append((entry.store, entry.key))
    if repair:
        for store, key in damaged:
            engine._evict_one(store, key)
    if url is not None:
        _dataset_strays(engine, parse_url(url).as_dataset(), report, repair)
    return report


def _check_file(engine: Engine, url: StoreURL, key: str, size: int, md5: str | None,
                ident: tuple[int, int]) -> str | None:
    segments = engine.layout.store_segments(url)
    st = files.stat_published(engine.layout, segments, key)
    if st is None:
        return "missing"
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return "corrupt"
    if md5 is None:
        return None if (st.st_ino, st.st_mtime_ns) == ident else "corrupt"
    path = files.path_of(engine.layout, segments, key)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return "corrupt"
    try:
        return None if files.md5_of_fd(fd) == md5 else "corrupt"
    finally:
        os.close(fd)


def _dataset_strays(engine: Engine, ds: StoreURL, report: VerifyReport, repair: bool) -> None:
    """Files and links under the dataset's directory that the index does not know. Walked by
    descriptor without following links, so a planted link is reported and removed, and what
    it points to is never looked at."""
    data = engine.layout.data_dir
    segments = engine.layout.store_segments(ds) + [p for p in ds.prefix.split("/") if p]
    bad = first_non_dir(data, segments)
    if bad is not None:  # the dataset's directory (or one above it) is a link or a file
        report.stray.append(str(data.joinpath(*segments[: bad + 1])))
        if repair:
            with open_dir(data, segments[:bad], create=False) as parent:
                os.unlink(segments[bad], dir_fd=parent)
        return
    known = {e.key for e in engine.index.entries(ds.store, ds.prefix)}
    base = "/".join(segments[2:])
    try:
        with open_dir(data, segments, create=False) as top:
            for rel, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=top,
                                                              follow_symlinks=False):
                links = [d for d in dirnames if _is_link(dir_fd, d)]
                # the agent's status directory is not a stray (no key may use the name)
                dirnames[:] = [d for d in dirnames if d != RESERVED_SEGMENT or d in links]
                for name in filenames + links:
                    key = os.path.normpath(os.path.join(base, rel, name))
                    if key not in known:
                        report.stray.append(str(data.joinpath(*segments[:2], key)))
                        if repair:
                            os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return


def _is_link(dir_fd: int, name: str) -> bool:
    return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)


def evict(engine: Engine, url: str, *, force: bool = False) -> tuple[int, int]:
    """Remove a dataset's files and forget it. Refuses a pinned dataset unless `force`.
    Returns (objects, bytes) removed. Blocking; run on the index thread."""
    ds = parse_url(url).as_dataset()
    idx = engine.index
    idx.begin()
    try:
        owners = [o for u, o in idx.pins() if u == str(ds)]
        if owners and not force:
            raise CacheError(
                f"{ds} is in use by {', '.join(owners[:5])}; it is evicted once they release it "
                "(or pass --force)")
        removed = (0, 0)
        for entry in list(idx.entries(ds.store, ds.prefix)):
            engine._evict_one(entry.store, entry.key)
            removed = (removed[0] + 1, removed[1] + entry.size)
        idx.forget_dataset(str(ds))
        idx.commit()
    except BaseException:
        idx.rollback()
        raise
    return removed
