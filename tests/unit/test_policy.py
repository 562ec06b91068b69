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
    cands = [
        Candidate("s3://a", "old", 5, 1),
        Candidate("s3://a", "mid", 5, 2),
        Candidate("s3://a", "new", 5, 3),
    ]
    assert [v.key for v in choose_victims(12, 3, cands, Protection())] == ["old", "mid"]


def test_pinned_and_requester_objects_are_never_victims():
    cands = [
        Candidate("s3://a", "pinned/x", 50, 1),
        Candidate("s3://a", "mine/y", 50, 2),
        Candidate("s3://a", "other/z", 5, 3),
    ]
    prot = Protection(pinned=(("s3://a", "pinned/"),), requester=(("s3://a", "mine/"),))
    assert [v.key for v in choose_victims(8, 3, cands, prot)] == ["other/z"]
    assert choose_victims(20, 3, cands, prot) is None


def test_same_prefix_in_another_store_is_not_protected():
    prot = Protection(pinned=(("s3://a", "p/"),))
    assert choose_victims(5, 0, [Candidate("gs://a", "p/x", 5, 0)], prot) is not None


def test_inodes_count_too():
    from shardcache.policy import inode_room

    assert inode_room(150, 1000, 0.1) == 50
    assert inode_room(90, 1000, 0.1) == -10
    assert inode_room(0, 0, 0.1) > 10**12  # no inode count reported: no inode limit
    cands = [Candidate("s3://a", f"k{i}", 1, i) for i in range(5)]
    # bytes fit, but 3 files must go to get back above the inode reserve
    assert [v.key for v in choose_victims(1, 100, cands, Protection(), files_short=3)] == [
        "k0",
        "k1",
        "k2",
    ]


def test_trim_brings_a_lowered_budget_back_except_pinned_data():
    from shardcache.policy import trim

    cands = [
        Candidate("s3://a", "ds/old", 40, 1),
        Candidate("s3://a", "pinned/x", 50, 2),
        Candidate("s3://a", "ds/new", 40, 3),
        Candidate("s3://a", "ds/newest", 40, 4),
    ]
    prot = Protection(pinned=(("s3://a", "pinned/"),))
    # 70 bytes over: the two oldest unpinned go, even though they are of one dataset
    t = trim(-70, 0, cands, prot)
    assert [v.key for v in t.victims] == ["ds/old", "ds/new"] and t.bytes_over == 0
    # over by more than everything unpinned: all of it goes, the pinned part is reported
    t = trim(-200, 0, cands, prot)
    assert [v.key for v in t.victims] == ["ds/old", "ds/new", "ds/newest"]
    assert t.bytes_over == 80
    assert trim(10, 5, cands, prot) == type(t)((), 0, 0)  # within budget: nothing
    assert [v.key for v in trim(0, -1, cands, prot).victims] == ["ds/old"]  # inodes
