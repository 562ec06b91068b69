"""The parallel-listing planner against an in-memory sorted key list (pure, no I/O).

Workers are simulated one page at a time in a random interleaving; whatever the order, the
keys listed must be exactly the keys under the prefix, each once.
"""

from __future__ import annotations

import bisect
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from shardcache.listing_plan import ListingPlan, Range, midpoint, seed_ranges, utf8

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
any_key = st.text(
    st.characters(min_codepoint=1, max_codepoint=0x2FF, blacklist_categories=("Cs",)),
    min_size=1,
    max_size=10,
)


@given(printable, printable)
def test_midpoint_lies_strictly_between(a: str, b: str) -> None:
    lo, hi = sorted((a, b))
    m = midpoint(lo, hi, "")
    if m is not None:
        assert utf8(lo) < utf8(m) < utf8(hi)


def test_midpoint_splits_wide_gaps_and_refuses_empty_ones() -> None:
    assert midpoint("a", "c", "") == "b"
    assert midpoint("img/000/x", None, "img/") is not None
    assert midpoint("b", "b", "") is None
    assert midpoint("b", "a", "") is None
    m = midpoint("img/0999", "img/1", "img/")
    assert m is not None and "img/0999" < m < "img/1"


def test_seed_ranges_partition_the_prefix() -> None:
    ranges = seed_ranges("p/", ["p/b/", "p/a/", "p/c/", "p/a/"], 8)
    assert ranges == [
        Range("p/", "p/a/"),
        Range("p/a/", "p/b/"),
        Range("p/b/", "p/c/"),
        Range("p/c/", None),
    ]
    assert len(seed_ranges("p/", [f"p/{i:03}/" for i in range(100)], 8)) == 8
    assert seed_ranges("p/", ["p/a/"], 1) == [Range("p/", None)]


def page(keys: list[str], prefix: str, after: str, size: int) -> tuple[list[str], bool]:
    """What a store answers: keys under `prefix` after `after`, `size` at most."""
    start = (
        bisect.bisect_right(keys, after) if after != prefix else bisect.bisect_left(keys, prefix)
    )
    out = []
    for k in keys[start:]:
        if not k.startswith(prefix):
            break
        out.append(k)
        if len(out) == size + 1:
            break
    return out[:size], len(out) > size


def simulate(
    keys: list[str], prefix: str, workers: int, size: int, seed: int, bounds: list[str]
) -> tuple[list[str], ListingPlan]:
    rng = random.Random(seed)
    keys = sorted(keys, key=utf8)
    plan = ListingPlan(prefix, seed_ranges(prefix, bounds, workers))
    running: dict[int, str] = {}
    listed: list[str] = []
    for _ in range(100_000):
        if plan.finished():
            break
        idle = workers - len(running)
        if idle and rng.random() < 0.5:
            job = plan.take() or plan.steal()
            if job is not None:
                running[job[0]] = job[1]
                continue
        if not running:
            continue
        rid = rng.choice(sorted(running))
        got, more = page(keys, prefix, running[rid], size)
        listed += [got[i] for i in plan.record(rid, got, more)]
        after = plan.resume(rid)
        if after is None:
            del running[rid]
        else:
            running[rid] = after
    assert plan.finished()
    return listed, plan


@settings(max_examples=200, deadline=None)
@given(
    st.lists(any_key, max_size=300, unique=True),
    st.integers(1, 8),
    st.integers(1, 20),
    st.integers(0, 10**6),
    st.sampled_from(["", "a", "b/"]),
)
def test_any_interleaving_lists_every_key_once(
    keys: list[str], workers: int, size: int, seed: int, prefix: str
) -> None:
    keys = [prefix + k for k in keys] + ["zz-outside"]
    rng = random.Random(seed)
    bounds = rng.sample(keys, min(len(keys), 5))
    listed, _ = simulate(keys, prefix, workers, size, seed, bounds)
    expected = sorted((k for k in keys if k.startswith(prefix)), key=utf8)
    assert sorted(listed, key=utf8) == expected
    assert len(listed) == len(set(listed))


def test_a_flat_prefix_fans_out_by_stealing() -> None:
    keys = [f"s/sample-{i:06}.jpg" for i in range(20_000)]
    listed, plan = simulate(keys, "s/", 16, 100, 1, [])
    assert sorted(listed) == keys
    assert plan.steals > 8
    assert len(plan.ranges()) > 8
