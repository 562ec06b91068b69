
from shardcache.policy import (
    Candidate,
    Protection,
    Usage,
    choose_victims,
    headroom,
)


def test_headroom_is_budget_minus_published_and_reserved():
    usage = Usage(published=60, reserved=10, disk_free=10_000, disk_total=100_000)
    assert headroom(usage, max_bytes=100, min_free_fraction=0.0) == 30


def test_headroom_respects_the_disk_reserve():
    usage = Usage(published=0, reserved=0, disk_free=1_000, disk_total=5_000)
    # 10% of the disk (500) must stay free
    assert headroom(usage, max_bytes=None, min_free_fraction=0.1) == 500
    assert headroom(usage, max_bytes=10_000, min_free_fraction=0.1) == 500


def test_no_eviction_when_it_fits():
    assert choose_victims(10, 10, [Candidate("s", "k", 5, 0)], Protection()) == []


def test_oldest_unprotected_are_evicted_first():
    cands = [Candidate("s3://a", "old", 5, 1), Candidate("s3://a", "mid", 5, 2),
             Candidate("s3://a", "new", 5, 3)]
    assert [v.key for v in choose_victims(12, 3, cands, Protection())] == ["old", "mid"]


def test_pinned_and_requester_objects_are_never_victims():
    cands = [Candidate("s3://a", "pinned/x", 50, 1), Candidate("s3://a", "mine/y", 50, 2),
             Candidate("s3://a", "other/z", 5, 3)]
    prot = Protection(pinned=(("s3://a", "pinned/"),), requester=(("s3://a", "mine/"),))
    assert [v.key for v in choose_victims(8, 3, cands, prot)] == ["other/z"]
    assert choose_victims(20, 3, cands, prot) is None


def test_same_prefix_in_another_store_is_not_protected():
    prot = Protection(pinned=(("s3://a", "p/"),))
    assert choose_victims(5, 0, [Candidate("gs://a", "p/x", 5, 0)], prot) is not None
