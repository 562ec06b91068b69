"""Start-up recovery: make the index and the files agree again after any crash.

`adopt_quick` runs at every open and costs time proportional to what was in flight, not to the
size of the cache: it drops reservations of dead processes, settles `pending` rows (the only
rows a crash can leave ambiguous), and removes staging files no live process holds. Files
already published keep being checked one by one as they are used (`Store.is_local` compares
inode, size and mtime), and `scan_full` checks everything (the agent runs it in the background,
`shardcache verify` runs it with checksums).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..urls import parse_url
from . import files
from .index import Index
from .layout import Layout, open_dir


@dataclass
class AdoptReport:
    pending_adopted: int = 0
    pending_dropped: int = 0
    staging_removed: int = 0
    reservations_dropped: int = 0
    #: filled by scan_full
    adopted: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)


def adopt_quick(layout: Layout, index: Index) -> AdoptReport:
    report = AdoptReport()
    with index.transaction():
        report.reservations_dropped = index.drop_dead_reservations()
        for entry in index.pending():
            url = parse_url(entry.store + "/")
            st = files.stat_published(layout, layout.store_segments(url), entry.key)
            if st is not None and st.st_ino == entry.ino and st.st_size == entry.size:
                index.mark_ready(entry.store, entry.key)
                report.pending_adopted += 1
            else:
                index.remove(entry.store, entry.key)
                report.pending_dropped += 1
    report.staging_removed = files.clean_staging(layout)
    return report


def scan_full(layout: Layout, index: Index, *, remove: bool) -> AdoptReport:
    """Compare every index row with its file and every file with the index (stat only).

    With `remove`, rows whose file is missing or changed are dropped along with the file, and
    stray files (in data/ but not in the index, or symlinks) are deleted: nothing that cannot be
    checked is ever served. Memory stays bounded with a million objects: rows are read in
    batches, and files are matched with the index one directory at a time.
    """
    report = AdoptReport()
    bad: list[tuple[str, str]] = []
    for entry in index.entries_batched():
        if entry.state != "ready":
            # adopt_quick settled every pending row at open; one seen now is a download being
            # published at this moment (the agent scans while it serves): not ours to judge
            continue
        url = parse_url(entry.store + "/")
        st = files.stat_published(layout, layout.store_segments(url), entry.key)
        if st is None:
            report.missing.append(str(url.child(entry.key)))
        elif not stat.S_ISREG(st.st_mode) or (st.st_ino, st.st_size, st.st_mtime_ns) != (
            entry.ino,
            entry.size,
            entry.mtime_ns,
        ):
            report.changed.append(str(url.child(entry.key)))
        else:
            report.adopted += 1
            continue
        bad.append((entry.store, entry.key))
    if remove:
        for store, key in bad:
            files.unlink_published(layout, layout.store_segments(parse_url(store + "/")), key)
            index.remove(store, key)
    for parts, names in _walk_dirs(layout):
        known = _known_names(index, parts)
        for name in names:
            if name not in known:
                rel = "/".join([*parts, name])
                report.stray.append(rel)
                if remove:
                    _remove_stray(layout, rel)
    return report


def _known_names(index: Index, parts: list[str]) -> set[str]:
    """Names of the indexed files directly in data/PARTS (scheme, bucket, directories)."""
    if len(parts) < 2:
        return set()  # nothing is published above data/SCHEME/BUCKET/
    scheme, bucket, *dirs = parts
    store = f"file:///{bucket}" if scheme == "file" else f"{scheme}://{bucket}"
    return index.child_names(store, "".join(d + "/" for d in dirs))


def _walk_dirs(layout: Layout) -> Iterator[tuple[list[str], list[str]]]:
    """(directory as parts below data/, names of the files and links in it), one at a time."""
    root = str(layout.data_dir)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        parts = [] if rel_dir == "." else rel_dir.split(os.sep)
        # os.walk lists symlinks to directories among dirnames, never entering them
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        if filenames or links:
            yield parts, filenames + links


def _remove_stray(layout: Layout, rel: str) -> None:
    *dirs, base = rel.split("/")
    try:
        with open_dir(layout.data_dir, dirs, create=False) as parent:
            os.unlink(base, dir_fd=parent)
    except OSError:
        pass
