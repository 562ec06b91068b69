"""Status, verification and eviction of datasets: the operator's view of the cache, as
blocking functions over a `Store` (the engine runs them on the store's thread)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from ..errors import CacheError
from ..reports import VerifyReport
from ..status import DatasetState, DatasetStatus, Failure
from ..urls import StoreURL, parse_url
from . import files
from .adopt import scan_full
from .layout import first_non_dir, open_dir
from .store import Store


@dataclass
class _Found:
    """What a verification has found so far (its result is the frozen `VerifyReport`)."""

    checked: int = 0
    ok: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)


def statuses(store: Store, ds: StoreURL | None) -> list[DatasetStatus]:
    """What the index says of `ds` (or of every dataset). Blocking; run on the store's thread."""
    idx = store.index
    wanted = str(ds) if ds is not None else None
    owners: dict[str, list[str]] = {}
    for u, owner in idx.pins():
        owners.setdefault(u, []).append(owner)
    out = []
    for row in idx.datasets():
        if wanted and row.url != wanted:
            continue
        n_local, b_local = idx.local_totals(row.url)
        url = parse_url(row.url)
        out.append(
            DatasetStatus(
                url=url,
                local_dir=store.layout.dataset_dir(url),
                state=DatasetState.parse(row.state),
                objects_total=row.objects_total,
                objects_local=n_local,
                bytes_total=row.bytes_total,
                bytes_local=b_local,
                owners=tuple(owners.get(row.url, ())),
                errors=tuple(Failure.from_json(e) for e in row.errors),
                listed_at=row.listed_at,
            )
        )
    return out


def verify(store: Store, ds: StoreURL | None, repair: bool = True) -> VerifyReport:
    """Check every published file of `url` (or of the whole cache) against the index:
    type, identity, size and MD5. With `repair`, damaged and stray files are removed so the
    next prefetch fetches exactly those again. Blocking; run on the store's thread."""
    idx = store.index
    report = _Found()
    if ds is None:
        scan = scan_full(store.layout, idx, remove=repair)
        report.missing += scan.missing
        report.corrupt += scan.changed
        report.stray += scan.stray
        entries = idx.entries_batched()
    else:
        entries = idx.entries(ds.store, ds.prefix)
    damaged: list[tuple[str, str]] = []  # evicted after the walk: rows must not change under it
    for entry in entries:
        report.checked += 1
        target = parse_url(entry.store + "/")
        problem = _check_file(
            store, target, entry.key, entry.size, entry.md5, (entry.ino, entry.mtime_ns)
        )
        if problem is None:
            report.ok += 1
            continue
        name = str(target.child(entry.key))
        (report.missing if problem == "missing" else report.corrupt).append(name)
        damaged.append((entry.store, entry.key))
    if repair:
        for name, key in damaged:
            store.evict_object(name, key)
    if ds is not None:
        _dataset_strays(store, ds, report, repair)
    return VerifyReport(report.checked, report.ok, report.corrupt, report.missing, report.stray)


def _check_file(
    store: Store, url: StoreURL, key: str, size: int, md5: str | None, ident: tuple[int, int]
) -> str | None:
    segments = store.layout.store_segments(url)
    st = files.stat_published(store.layout, segments, key)
    if st is None:
        return "missing"
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return "corrupt"
    if md5 is None:
        return None if (st.st_ino, st.st_mtime_ns) == ident else "corrupt"
    path = files.path_of(store.layout, segments, key)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return "corrupt"
    try:
        return None if files.md5_of_fd(fd) == md5 else "corrupt"
    finally:
        os.close(fd)


def _dataset_strays(store: Store, ds: StoreURL, report: _Found, repair: bool) -> None:
    """Files and links under the dataset's directory that the index does not know. Walked by
    descriptor without following links, so a planted link is reported and removed, and what
    it points to is never looked at."""
    data = store.layout.data_dir
    segments = store.layout.dataset_segments(ds)
    bad = first_non_dir(data, segments)
    if bad is not None:  # the dataset's directory (or one above it) is a link or a file
        report.stray.append(str(data.joinpath(*segments[: bad + 1])))
        if repair:
            with open_dir(data, segments[:bad], create=False) as parent:
                os.unlink(segments[bad], dir_fd=parent)
        return
    known = {e.key for e in store.index.entries(ds.store, ds.prefix)}
    base = "/".join(segments[2:])
    try:
        with open_dir(data, segments, create=False) as top:
            for rel, dirnames, filenames, dir_fd in os.fwalk(
                ".", dir_fd=top, follow_symlinks=False
            ):
                links = [d for d in dirnames if _is_link(dir_fd, d)]
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


def evict(store: Store, ds: StoreURL, force: bool = False) -> tuple[int, int]:
    """Remove a dataset's files and forget it. Refuses a pinned dataset unless `force`.
    Returns (objects, bytes) removed. Blocking; run on the store's thread."""
    with store.transaction() as idx:
        owners = [o for u, o in idx.pins() if u == str(ds)]
        if owners and not force:
            raise CacheError(
                f"{ds} is in use by {', '.join(owners[:5])}; it is evicted once they release it "
                "(or pass --force)"
            )
        removed = (0, 0)
        for entry in list(idx.entries(ds.store, ds.prefix)):
            store.evict_object(entry.store, entry.key)
            removed = (removed[0] + 1, removed[1] + entry.size)
        idx.forget_dataset(str(ds))
    return removed
