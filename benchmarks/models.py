"""Cache policies as simulation models, driven access by access (R5, `hitrate.py`).

`StickyCacheModel` is the engine's admission rule (`shardcache.policy.choose_victims`) for one
dataset; `LRUCacheModel` is the policy it is compared with. They live with the benchmarks
because nothing in the product runs them.
"""

from __future__ import annotations

from collections import OrderedDict

from shardcache.policy import Protection, choose_victims


class StickyCacheModel:
    """The engine's admission policy for one dataset, as a model for simulations (R5).

    A miss is admitted while it fits and never evicts another object of the same dataset.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.used = 0
        self.items: set[str] = set()

    def access(self, key: str, size: int) -> bool:
        if key in self.items:
            return True
        room = self.capacity - self.used
        victims = choose_victims(size, room, [], Protection())
        if victims is not None:  # fits without evicting anything
            self.items.add(key)
            self.used += size
        return False


class LRUCacheModel:
    """Plain LRU over the same accesses, for comparison."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.used = 0
        self.items: OrderedDict[str, int] = OrderedDict()

    def access(self, key: str, size: int) -> bool:
        if key in self.items:
            self.items.move_to_end(key)
            return True
        while self.items and self.used + size > self.capacity:
            _, old = self.items.popitem(last=False)
            self.used -= old
        if size <= self.capacity:
            self.items[key] = size
            self.used += size
        return False
