"""The client's pure decisions, tested on plain values."""

from __future__ import annotations

from shardcache.client import listing
from shardcache.client.listing import Entry
from shardcache.store.readonly import covering

ENTRIES = [Entry("ds/a", 1), Entry("ds/sub/b", 2), Entry("ds/sub/deep/c", 3), Entry("dsx/y", 4)]


def test_children_synthesise_directories_and_respect_the_prefix_boundary():
    assert listing.children("bkt", "ds/", ENTRIES) == [
        {"name": "bkt/ds/a", "size": 1, "type": "file"},
        {"name": "bkt/ds/sub", "size": 0, "type": "directory"},
    ]
    assert [i["name"] for i in listing.children("bkt", "", ENTRIES)] == ["bkt/ds", "bkt/dsx"]
    assert listing.children("bkt", "nope/", ENTRIES) == []


def test_find_lists_files_recursively_and_directories_on_request():
    assert list(listing.find_infos("bkt", "ds/", ENTRIES, False)) == [
        "bkt/ds/a",
        "bkt/ds/sub/b",
        "bkt/ds/sub/deep/c",
    ]
    assert list(listing.find_infos("bkt", "ds/", ENTRIES, True)) == [
        "bkt/ds/a",
        "bkt/ds/sub",
        "bkt/ds/sub/b",
        "bkt/ds/sub/deep",
        "bkt/ds/sub/deep/c",
    ]


def test_as_prefix():
    assert [listing.as_prefix(p) for p in ("", "/", "a", "a/b/")] == ["", "", "a/", "a/b/"]


def test_the_longest_covering_dataset_wins():
    known = [("s3://b/ds/", "ds/"), ("s3://b/ds/sub/", "ds/sub/"), ("s3://b/", "")]
    assert covering(known, "ds/sub/x") == "s3://b/ds/sub/"
    assert covering(known, "ds/a") == "s3://b/ds/"
    assert covering(known[:2], "other/") is None
