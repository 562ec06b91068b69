"""Listing a prefix in parallel: which key range to ask for next (pure, no I/O).

One LIST stream is a chain of dependent requests (each page names where the next starts), so
a million keys at 1,000 per page are 1,000 round trips in a row. Object stores serve many
streams at once, so the prefix is cut into key ranges listed side by side:

- a range is `(after, upto]`: the keys `k` under the prefix with `after < k <= upto` (`upto`
  None: to the end of the prefix). It is listed with `StartAfter=after` (a plain key, unlike a
  continuation token, so any range can start anywhere), and its pages are cut at `upto`;
- the first cut comes from the store's own directories: a delimiter listing of the prefix
  names its sub-prefixes, and ranges start at their boundaries (`seed_ranges`);
- work stealing: a worker that runs out of ranges takes the upper half of the range with the
  most key space left, split at a key half-way between that range's last listed key and its
  end (`midpoint`), so a skewed prefix (one huge directory, or none at all) still fans out.

Every key is listed exactly once: the ranges partition the key space, a page's keys past its
range's `upto` are dropped (the next range lists them), and a split moves `upto` of the old
range to exactly the `after` of the new one. Written here rather than taken from a library:
the object-store clients we use (aiobotocore, obstore) list one stream at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: split keys are made of bytes below this: ASCII, so a split point is always valid UTF-8
#: (and `_ascii` keeps only printable ones)
_TOP = 0x7F


@dataclass(frozen=True)
class Range:
    """Keys `k` with `after < k <= upto` (`upto` None: the rest of the prefix)."""

    after: str
    upto: str | None


def utf8(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def midpoint(low: str, high: str | None, prefix: str) -> str | None:
    """A key strictly between `low` and `high` (None: the end of `prefix`), about half-way
    through the key space between them; None when no ASCII key lies between."""
    lo = utf8(low)
    hi = utf8(high) if high is not None else utf8(prefix) + bytes([_TOP])
    if lo >= hi:
        return None
    i = 0
    while i < len(lo) and i < len(hi) and lo[i] == hi[i]:
        i += 1
    a = lo[i] if i < len(lo) else -1  # -1: `lo` ends here, so any byte after it is above
    b = hi[i] if i < len(hi) else 0
    if b - a >= 2:
        return _ascii(lo[:i] + bytes([(a + b) // 2]))
    if a < 0:  # lo == hi[:i] and hi[i] == 0: only keys made of NUL bytes lie between
        return None
    # hi[i] == lo[i] + 1: go half-way between the rest of `lo` and the top of the alphabet
    j = i + 1
    while j < len(lo) and lo[j] >= _TOP - 1:
        j += 1
    c = lo[j] if j < len(lo) else -1
    return _ascii(lo[:j] + bytes([(c + _TOP + 1) // 2]))


def _ascii(candidate: bytes) -> str | None:
    """Printable ASCII only: a control character in `StartAfter` is refused by some stores."""
    if all(0x20 <= c < 0x7F for c in candidate):
        return candidate.decode("ascii")
    return None


def seed_ranges(prefix: str, boundaries: Sequence[str], max_ranges: int) -> list[Range]:
    """Ranges that start at the first `max_ranges` sub-prefixes a delimiter listing named
    (spread evenly over them when there are more), covering the whole prefix."""
    cuts = sorted(b for b in set(boundaries) if b > prefix)
    if len(cuts) > max_ranges - 1 > 0:
        step = len(cuts) / (max_ranges - 1)
        cuts = [cuts[int(i * step)] for i in range(max_ranges - 1)]
    elif max_ranges <= 1:
        cuts = []
    # each cut is both one range's `upto` (inclusive) and the next one's `after` (exclusive)
    afters = [prefix, *cuts]
    uptos: list[str | None] = [*cuts, None]
    return [Range(a, u) for a, u in zip(afters, uptos, strict=True)]


@dataclass
class _Active:
    range: Range
    #: the last key listed so far in this range (its `after` before the first page)
    pos: str
    busy: bool = False
    done: bool = False
    #: pages recorded; only a range known to go on (a full page seen) is worth splitting
    pages: int = 0


class ListingPlan:
    """The state of one parallel listing: which ranges are waiting, running or done.

    Used from one event loop by several workers: `take()` gives a worker its next request
    (`(range id, start after)`), `record()` takes the page's keys and says which belong to
    the range; a worker with nothing to take while others run may `steal()`. Nothing here
    waits or talks to a store.
    """

    def __init__(self, prefix: str, ranges: Sequence[Range]) -> None:
        self.prefix = prefix
        self._ranges: list[_Active] = [_Active(r, r.after) for r in ranges]
        #: requests planned (pages asked for), for the benchmark's request count
        self.requests = 0
        self.steals = 0

    def take(self) -> tuple[int, str] | None:
        """The next idle range and the key to start after, or None."""
        for i, r in enumerate(self._ranges):
            if not r.busy and not r.done:
                r.busy = True
                self.requests += 1
                return i, r.pos
        return None

    def resume(self, rid: int) -> str | None:
        """The key to start the range's next page after, or None when the range is done."""
        r = self._ranges[rid]
        if r.done:
            r.busy = False
            return None
        self.requests += 1
        return r.pos

    def record(
        self, rid: int, keys: Sequence[str], truncated: bool, last_key: str | None = None
    ) -> list[int]:
        """Positions in `keys` (one page, ascending) that belong to the range; marks the
        range done at its end (past `upto`, or the last page of the prefix). `last_key` is
        the last key the store returned when it dropped some (placeholders): the next page
        starts after it."""
        r = self._ranges[rid]
        upto = r.range.upto
        keep = [i for i, k in enumerate(keys) if upto is None or k <= upto]
        r.pages += 1
        if keep:
            r.pos = keys[keep[-1]]
        if last_key is not None and (upto is None or last_key <= upto) and last_key > r.pos:
            r.pos = last_key
        past = len(keep) < len(keys) or (
            upto is not None and last_key is not None and last_key > upto
        )
        if not truncated or past or (upto is not None and r.pos >= upto):
            r.done = True
        return keep

    def steal(self) -> tuple[int, str] | None:
        """Split the running range with the most key space left; the new upper half is
        taken at once (returned like `take()`); None when nothing can be split."""
        best: tuple[int, str] | None = None
        for i, r in enumerate(self._ranges):
            if r.done or not r.busy or not r.pages:
                continue
            cut = midpoint(r.pos, r.range.upto, self.prefix)
            if cut is None or cut <= r.pos:
                continue
            if best is None or _wider(r, cut, self._ranges[best[0]], best[1]):
                best = (i, cut)
        if best is None:
            return None
        i, cut = best
        old = self._ranges[i]
        new = _Active(Range(cut, old.range.upto), cut, busy=True)
        old.range = Range(old.range.after, cut)
        self._ranges.append(new)
        self.steals += 1
        self.requests += 1
        return len(self._ranges) - 1, cut

    def finished(self) -> bool:
        return all(r.done for r in self._ranges)

    def ranges(self) -> list[Range]:
        """The current partition (for tests: it always covers the prefix without overlap)."""
        return [r.range for r in self._ranges]


def _wider(a: _Active, cut_a: str, b: _Active, cut_b: str) -> bool:
    """Whether range `a` has more key space left than `b`, judged by how early the two keys
    differ (an earlier difference is a wider gap) and then by how far apart they are."""
    return _gap(a.pos, cut_a) > _gap(b.pos, cut_b)


def _gap(low: str, cut: str) -> tuple[int, int]:
    lo, c = utf8(low), utf8(cut)
    i = 0
    while i < len(lo) and i < len(c) and lo[i] == c[i]:
        i += 1
    a = lo[i] if i < len(lo) else -1
    b = c[i] if i < len(c) else -1
    return (-i, b - a)
