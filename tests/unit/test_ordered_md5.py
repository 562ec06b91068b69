"""The in-order MD5 of parts that arrive in any order: the digest is the whole object's, parts
past the memory budget are read back once each, and nothing is read back within the budget."""

import hashlib
import os

from hypothesis import given
from hypothesis import strategies as st
from shardcache.engine.download import OrderedMD5, plan_parts

DATA = os.urandom(10 * 1000 + 7)
PARTS = plan_parts(len(DATA), 1000, 1000)  # 11 parts, the last one short


def hasher(budget: int, reads: list[tuple[int, int]]) -> OrderedMD5:
    def read_back(start: int, end: int) -> bytes:
        reads.append((start, end))
        return DATA[start:end]

    return OrderedMD5(PARTS, budget, read_back)


@given(order=st.permutations(range(len(PARTS))), budget=st.integers(0, len(DATA)))
def test_any_arrival_order_and_budget_gives_the_whole_objects_md5(order, budget):
    reads: list[tuple[int, int]] = []
    md5 = hasher(budget, reads)
    for i in order:
        start, end = PARTS[i]
        assert md5.hexdigest() is None
        md5.feed(start, memoryview(DATA)[start:end])
    assert md5.hexdigest() == hashlib.md5(DATA).hexdigest()
    # every read-back is of one part, each at most once, and the counter says how much
    assert len(set(reads)) == len(reads)
    assert all(p in PARTS for p in reads)
    assert md5.read_back_bytes == sum(e - s for s, e in reads)


def test_within_the_budget_nothing_is_read_back():
    reads: list[tuple[int, int]] = []
    md5 = hasher(len(DATA), reads)
    for start, end in reversed(PARTS):
        md5.feed(start, DATA[start:end])
    assert md5.hexdigest() == hashlib.md5(DATA).hexdigest()
    assert reads == []


def test_past_the_budget_early_parts_are_read_back_and_the_rest_waits_in_memory():
    reads: list[tuple[int, int]] = []
    md5 = hasher(3000, reads)  # room for three early parts
    for start, end in reversed(PARTS):  # 10, 9 and 8 wait in memory; 7 to 1 do not fit
        md5.feed(start, DATA[start:end])
    assert md5.hexdigest() == hashlib.md5(DATA).hexdigest()
    assert reads == PARTS[1:8]
