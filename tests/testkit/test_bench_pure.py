"""The pure pieces of the benchmark kit: request plans, datasets, summaries, verdicts."""

from __future__ import annotations

from shardcache.testkit.datasets import generate, image_like, shard_like
from shardcache.testkit.readers import plan_requests


def test_whole_objects_are_one_request_each() -> None:
    assert plan_requests([("a", 10), ("b", 0)], None) == [(0, 0, 10), (1, 0, 0)]


def test_ranged_parts_cover_each_object_exactly() -> None:
    plan = plan_requests([("a", 25), ("b", 8)], 8)
    assert plan == [(0, 0, 8), (0, 8, 16), (0, 16, 24), (0, 24, 25), (1, 0, 8)]


def test_datasets_are_deterministic_and_sized_as_described() -> None:
    spec = image_like(30)
    first, second = generate(spec), generate(spec)
    assert first == second
    assert len(first) == 30
    assert all(90 * 1024 <= len(v) < 130 * 1024 for v in first.values())
    assert len(set(first.values())) == 30


def test_shards_have_the_requested_sizes() -> None:
    shards = generate(shard_like((1, 2)))
    assert sorted(map(len, shards.values())) == [2**20, 2 * 2**20]
