"""Partitioned datasets: which objects are member I of N's share. Pure, no I/O.

A data-parallel job whose ranks read disjoint shards (WebDataset `split_by_node`, an Indexed
Job where pod i processes part i) needs each node to fetch only its rank's share. The split
must be one rule that the node agent, the CLI and the training script all compute the same
way from nothing but the dataset's keys, so it is written once, here:

    Sort the keys (code-point order, which is also S3's UTF-8 byte order), drop duplicates,
    and give member I of N the contiguous slice [floor(I*K/N), floor((I+1)*K/N)) of the K
    sorted keys.

Why contiguous ranges: shard files of one split (`train-000000.tar` … `train-000099.tar`)
stay together, and a share is two numbers, so the union of many shares on one node is a few
ranges, not a set of a million keys. Why balanced by count and not by bytes: a training
script can reproduce a count split from a directory listing alone (no sizes), and ranks of a
data-parallel job must see the same number of shards or the collective ops of the slower
rank hang; datasets meant for this (WebDataset, MosaicML shards) have shards of near-equal
size, so the byte imbalance is small (benchmarks/partition_sim.py reports it). Shares differ
by at most one key; with fewer keys than members some shares are empty.

The keys may be full object keys, keys relative to the dataset prefix, or paths under the
mount point: adding one common prefix to every key does not change their order, so every
caller computes the same shares.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import ConfigError

#: members of one job; Kubernetes caps an Indexed Job at 100,000 completions, and a bound keeps
#: hostile input from naming numbers no one can count to
MAX_MEMBERS = 1_000_000
#: the variable the webhook sets in every container of a pod with `shardcache.io/partition`,
#: read back by `shardcache.client.partition_from_env()`
ENV_PARTITION = "SHARDCACHE_PARTITION"
_SPEC_RE = re.compile(r"^(\d{1,7})/(\d{1,7})$")


@dataclass(frozen=True, order=True)
class Partition:
    """Member `index` of `count`: one rank's share of a dataset."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_MEMBERS:
            raise ConfigError(f"N must be between 1 and {MAX_MEMBERS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ConfigError(f"I must be between 0 and N-1 = {self.count - 1}, got {self.index}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Partition:
        """`"3/8"` -> Partition(3, 8); ConfigError names what is wrong otherwise."""
        match = _SPEC_RE.match(text) if isinstance(text, str) else None
        if match is None:
            shown = repr(text)[:40]
            raise ConfigError(f"expected I/N with whole numbers like 0/4, got {shown}")
        return cls(int(match.group(1)), int(match.group(2)))

    def bounds(self, total: int) -> tuple[int, int]:
        """[start, stop) of this share among `total` sorted keys."""
        return (self.index * total // self.count, (self.index + 1) * total // self.count)

    def select(self, keys: Iterable[str]) -> list[str]:
        """This member's keys, sorted; see the module docstring for the rule."""
        ordered = sorted(set(keys))
        start, stop = self.bounds(len(ordered))
        return ordered[start:stop]


def partition(keys: Iterable[str], i: int, n: int) -> list[str]:
    """The keys member `i` of `n` reads, sorted: the share the node prefetched for it.

    `keys` is every object of the dataset (in any order, relative or full keys, or paths
    under the mount point: a common prefix does not change the split).
    """
    return Partition(i, n).select(keys)


def parse_optional(text: str | None) -> Partition | None:
    """A spec that may be absent ("" or None means the whole dataset)."""
    return None if text is None or text == "" else Partition.parse(text)


def share_ranges(total: int, shares: Iterable[Partition | None]) -> list[tuple[int, int]]:
    """The union of several shares as merged, sorted [start, stop) ranges of the sorted keys.

    `None` stands for a registration of the whole dataset, which covers everything. This is
    how several pods of one job on one node are served by one fetch: the agent fetches the
    keys in these ranges once, whatever the number of pods or how their shares overlap.
    """
    spans = []
    for share in shares:
        if share is None:
            return [(0, total)] if total else []
        start, stop = share.bounds(total)
        if start < stop:
            spans.append((start, stop))
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    return merged


def select_union(sorted_keys: Sequence[str], shares: Iterable[Partition | None]) -> list[str]:
    """The keys of `sorted_keys` (already sorted and unique) in the union of `shares`."""
    return [k for a, b in share_ranges(len(sorted_keys), shares) for k in sorted_keys[a:b]]
