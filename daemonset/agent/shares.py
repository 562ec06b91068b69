"""Which part of each dataset the owners on this node asked for: pure bookkeeping.

Each registration may name the owner's share of a dataset (`I/N`, docs/partitions.md) or
none (the whole dataset). The node fetches the union of what its owners asked for, once:
`union` is what the next prefetch plans, `widens` whether a registration that arrived while
one ran asks for something it did not plan. Kept in memory: after an agent restart the pod
watcher registers its pods again, each with its share.
"""

from __future__ import annotations

from shardcache.partition import Partition
from shardcache.urls import StoreURL

#: a union is a sorted tuple of shares; (None,) is the whole dataset
Union = tuple[Partition | None, ...]
WHOLE: Union = (None,)


class Shares:
    def __init__(self) -> None:
        self._by_ds: dict[StoreURL, dict[str, Partition | None]] = {}

    def add(self, ds: StoreURL, owner: str, share: Partition | None) -> None:
        """`owner` wants `share` of `ds` (None: all of it); a later call replaces it."""
        self._by_ds.setdefault(ds, {})[owner] = share

    def drop(self, ds: StoreURL, owner: str) -> None:
        """`owner` released `ds`: its share no longer counts for what is fetched next."""
        owners = self._by_ds.get(ds, {})
        owners.pop(owner, None)
        if not owners:
            self._by_ds.pop(ds, None)

    def union(self, ds: StoreURL) -> Union:
        """What to fetch of `ds`. A dataset nobody registered with a share (the CLI without
        `--partition`, an agent restart before the pod watcher's resync) is fetched whole."""
        shares = set(self._by_ds.get(ds, {}).values()) or {None}
        if None in shares:
            return WHOLE
        return tuple(sorted(p for p in shares if p is not None))

    def widens(self, ds: StoreURL, planned: Union) -> bool:
        """Whether the shares registered now ask for more than `planned` covered."""
        return planned != WHOLE and bool(set(self.union(ds)) - set(planned))

    def partitions(self, ds: StoreURL) -> list[Partition]:
        """The distinct shares registered for `ds`, to report each one's progress."""
        return sorted({p for p in self._by_ds.get(ds, {}).values() if p is not None})
