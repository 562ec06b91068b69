"""Capacity policy: how much may still be cached, and what may be evicted. Pure functions.

The policy is built for datasets larger than the cache under random shuffling, where LRU
thrashes: every epoch visits every object in a new order, so LRU evicts each object shortly
before it is needed again. Instead:

* an object of a dataset that is pinned (in use by a running pod) is never evicted;
* an object is never evicted to make room for another object of a dataset it belongs to, so
  what a dataset has cached stays cached ("sticky"), and the rest of that dataset is read
  through without churn; the hit rate then reaches cache/dataset, the bound for any policy that
  does not know the future order;
* everything else is evicted oldest first (by last use).

All byte accounting includes staging: a download reserves its size before its first byte is
written, and the reservation counts against the budget until the file is published or dropped.

The node's disk is shared with kubelet, images and every pod's writable layer: kubelet starts
evicting pods when the node file system falls under 10% free (nodefs) or the image file system
under 15% (imagefs), or under 5% of free inodes. The cache therefore keeps both shares above
those thresholds (`min_free_fraction`, 20% by default, and `min_free_inode_fraction`), and a
cache found over its budget at start-up (the budget was lowered, the disk filled up meanwhile)
is trimmed back (`trim`), pinned data excepted and reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    """A snapshot of what the cache holds and what the disk has, in bytes."""

    published: int
    reserved: int
    disk_free: int
    disk_total: int
    #: inodes free for unprivileged users and in all (0: unknown, as in pure tests)
    files_free: int = 0
    files_total: int = 0


@dataclass(frozen=True)
class Candidate:
    store: str
    key: str
    size: int
    atime: float


@dataclass(frozen=True)
class Protection:
    """Prefixes whose objects may not be evicted now: (store, prefix) pairs."""

    pinned: tuple[tuple[str, str], ...] = ()
    requester: tuple[tuple[str, str], ...] = ()

    def covers(self, store: str, key: str) -> bool:
        return any(s == store and key.startswith(p) for s, p in (*self.pinned, *self.requester))


def headroom(usage: Usage, max_bytes: int | None, min_free_fraction: float) -> int:
    """Bytes that may still be added to the cache without breaking the budget or the disk
    reserve. Negative when the cache is already over (after the budget was lowered)."""
    disk_room = usage.disk_free - int(min_free_fraction * usage.disk_total) - usage.reserved
    if max_bytes is None:
        return disk_room
    return min(max_bytes - usage.published - usage.reserved, disk_room)


def inode_room(inodes_free: int, inodes_total: int, min_free_inode_fraction: float) -> int:
    """Files that may still be created without breaking the inode reserve. A file system that
    reports no inode count (btrfs, some FUSE file systems) has no inode limit."""
    if inodes_total <= 0:
        return 1 << 62
    return inodes_free - int(min_free_inode_fraction * inodes_total)


def choose_victims(
    need: int,
    room: int,
    candidates: Iterable[Candidate],
    protection: Protection,
    files_short: int = 0,
) -> list[Candidate] | None:
    """Victims to evict so that `need` bytes fit, given `room` bytes free now, and (each
    eviction frees one inode) at least `files_short` files are freed.

    `candidates` come oldest first. Returns [] when it already fits, None when it cannot fit
    without evicting protected objects (the caller reads through instead).
    """
    if need <= room and files_short <= 0:
        return []
    victims: list[Candidate] = []
    for cand in candidates:
        if protection.covers(cand.store, cand.key):
            continue
        victims.append(cand)
        room += cand.size
        if need <= room and len(victims) >= files_short:
            return victims
    return None


@dataclass(frozen=True)
class Trim:
    """What start-up trimming evicts, and what stays over the budget because it is pinned."""

    victims: tuple[Candidate, ...]
    #: bytes (and files) still over the budget or the reserves after the victims are gone
    bytes_over: int
    files_over: int


def trim(
    room: int, files_room: int, candidates: Iterable[Candidate], protection: Protection
) -> Trim:
    """Bring a cache that is over its budget (`room` < 0) or its inode reserve (`files_room`
    < 0) back within them: evict unprotected objects oldest first. Unlike a reservation, no
    dataset is "sticky" here: the operator lowered the budget, and only pins (running pods)
    keep data above it."""
    victims: list[Candidate] = []
    for cand in candidates:
        if room >= 0 and files_room >= 0:
            break
        if protection.covers(cand.store, cand.key):
            continue
        victims.append(cand)
        room += cand.size
        files_room += 1
    return Trim(tuple(victims), max(0, -room), max(0, -files_room))
