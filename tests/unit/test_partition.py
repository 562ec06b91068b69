"""The split of a dataset into shares: the rule every node, CLI and training script shares."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shardcache.client import list_share, partition_from_env
from shardcache.client import partition as client_partition
from shardcache.errors import ConfigError
from shardcache.partition import Partition, parse_optional, partition, select_union, share_ranges

KEYS = st.lists(st.text(min_size=1, max_size=12), max_size=60)
MEMBERS = st.integers(min_value=1, max_value=70)


@given(KEYS, MEMBERS)
def test_shares_are_disjoint_and_their_union_is_the_manifest(keys, n):
    shares = [partition(keys, i, n) for i in range(n)]
    seen = [k for share in shares for k in share]
    assert len(seen) == len(set(seen))
    assert set(seen) == set(keys)


@given(KEYS, MEMBERS)
def test_shares_are_contiguous_runs_of_the_sorted_keys_in_member_order(keys, n):
    assert [k for i in range(n) for k in partition(keys, i, n)] == sorted(set(keys))


@given(KEYS, MEMBERS)
def test_shares_are_balanced_by_count(keys, n):
    sizes = [len(partition(keys, i, n)) for i in range(n)]
    assert max(sizes) - min(sizes) <= 1


@given(KEYS, MEMBERS, st.randoms(use_true_random=False))
def test_stable_under_relisting_an_unchanged_manifest(keys, n, rnd):
    relisted = keys + rnd.sample(keys, k=len(keys) // 2)  # another order, some repeated
    rnd.shuffle(relisted)
    for i in range(n):
        assert partition(relisted, i, n) == partition(keys, i, n)


@given(KEYS, MEMBERS, st.sampled_from(["", "train/", "/data/", "s3-bucket/prefix/"]))
def test_a_common_prefix_does_not_change_the_split(keys, n, prefix):
    for i in range(n):
        assert partition([prefix + k for k in keys], i, n) == [
            prefix + k for k in partition(keys, i, n)
        ]


@given(KEYS, st.lists(st.tuples(MEMBERS, st.integers(0, 69)), max_size=6))
def test_the_union_of_registered_shares_is_fetched_once(keys, specs):
    shares = [Partition(i % n, n) for n, i in specs]
    ordered = sorted(set(keys))
    union = select_union(ordered, shares)
    assert union == sorted(set().union(*(s.select(keys) for s in shares)))
    ranges = share_ranges(len(ordered), shares)
    assert all(a < b for a, b in ranges)
    assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(ranges))


def test_a_whole_dataset_registration_covers_everything():
    assert share_ranges(10, [Partition(1, 4), None]) == [(0, 10)]
    assert share_ranges(0, [None]) == []
    assert share_ranges(10, [Partition(0, 4), Partition(1, 4), Partition(3, 4)]) == [
        (0, 5),
        (7, 10),
    ]


def test_the_rule_by_example():
    keys = [f"shard-{j:02d}.tar" for j in range(10)]
    random.Random(1).shuffle(keys)
    assert partition(keys, 0, 3) == ["shard-00.tar", "shard-01.tar", "shard-02.tar"]
    assert partition(keys, 1, 3) == ["shard-03.tar", "shard-04.tar", "shard-05.tar"]
    assert partition(keys, 2, 3) == [f"shard-{j:02d}.tar" for j in range(6, 10)]
    assert partition(["a", "b"], 3, 4) == ["b"] and partition(["a", "b"], 0, 4) == []
    assert client_partition(keys, 2, 3) == partition(keys, 2, 3)


@pytest.mark.parametrize(
    ("text", "expected"), [("0/1", (0, 1)), ("3/8", (3, 8)), ("07/10", (7, 10))]
)
def test_parse(text, expected):
    p = Partition.parse(text)
    assert (p.index, p.count) == expected
    assert Partition.parse(str(p)) == p


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("4/4", "I must be between 0 and N-1 = 3"),
        ("0/0", "N must be between 1"),
        ("-1/4", "whole numbers"),
        ("a/4", "whole numbers"),
        ("1.0/4", "whole numbers"),
        (" 1/4", "whole numbers"),
        ("1/4/2", "whole numbers"),
        ("index/4", "whole numbers"),
        ("", "whole numbers"),
        ("1/99999999", "whole numbers"),
        ("1/2000000", "N must be between 1 and 1000000"),
    ],
)
def test_parse_refuses_bad_specs_with_a_reason(text, says):
    with pytest.raises(ConfigError, match=says):
        Partition.parse(text)


def test_optional_specs_and_the_environment():
    assert parse_optional(None) is None and parse_optional("") is None
    assert partition_from_env({}) is None
    assert partition_from_env({"SHARDCACHE_PARTITION": "2/5"}) == Partition(2, 5)
    with pytest.raises(ConfigError):
        partition_from_env({"SHARDCACHE_PARTITION": "5/5"})


def test_list_share_walks_a_dataset_directory(tmp_path):
    for rel in ["b/2.tar", "b/1.tar", "a.tar", "c/d/3.tar"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    every = ["a.tar", "b/1.tar", "b/2.tar", "c/d/3.tar"]
    assert list_share(tmp_path, 0, 1) == every
    assert list_share(tmp_path, 0, 2) + list_share(tmp_path, 1, 2) == every
    assert list_share(tmp_path, 1, 2) == partition(every, 1, 2)


def test_a_share_status_decides_a_wait_like_a_dataset():
    from shardcache.status import DatasetState, DatasetStatus, ShareStatus
    from shardcache.urls import parse_url
    from shardcache.waitloop import Decision, decide

    share = ShareStatus(
        Partition(1, 4), objects_total=2, objects_local=2, bytes_total=20, bytes_local=20
    )
    status = DatasetStatus(
        parse_url("s3://bkt/p/"),
        Path("/x"),
        DatasetState.PARTIAL,
        objects_total=8,
        objects_local=2,
        bytes_total=80,
        bytes_local=20,
        listed_at=1.0,
        shares=(share,),
    )
    assert DatasetStatus.from_json(status.as_json()) == status
    mine = status.for_share(Partition(1, 4))
    assert mine is not None and mine.fraction_local == 1.0
    assert decide(mine, 1.0, deadline=10.0, now=0.0) is Decision.REACHED
    assert decide(status, 1.0, deadline=10.0, now=0.0) is Decision.SETTLED
    early = ShareStatus(Partition(1, 4), listed=False)
    listing = DatasetStatus(status.url, status.local_dir, DatasetState.LISTING, shares=(early,))
    unknown = listing.for_share(Partition(1, 4))
    assert unknown is not None and unknown.fraction_local == 0.0  # an empty share, unlisted
    assert decide(unknown, 0.5, deadline=10.0, now=0.0) is Decision.WAIT
