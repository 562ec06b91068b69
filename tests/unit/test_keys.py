import os
import posixpath

from hypothesis import given
from hypothesis import strategies as st
from shardcache import keys


def test_plain_keys_map_to_themselves():
    accepted, refused = keys.plan_paths(["a/b.txt", "ünï code/ spaced name", "x"])
    assert accepted == ["a/b.txt", "ünï code/ spaced name", "x"]
    assert refused == []


def test_traversal_absolute_nul_and_empty_segments_are_refused():
    bad = ["../etc/passwd", "a/../../b", "/abs", "a\x00b", "a//b", "./a", "a/./b", ""]
    accepted, refused = keys.plan_paths(bad)
    assert accepted == []
    assert sorted(r.key for r in refused) == sorted(bad)


def test_directory_markers_are_skipped_not_refused():
    accepted, refused = keys.plan_paths(["folder/", "folder/file"])
    assert accepted == ["folder/file"]
    assert refused == []


def test_file_directory_collisions_refuse_both():
    accepted, refused = keys.plan_paths(["a", "a/b", "c"])
    assert accepted == ["c"]
    assert {r.key for r in refused} == {"a", "a/b"}
    assert all("collides" in r.reason for r in refused)


def test_overlong_segment_refused():
    assert keys.check_key("a/" + "x" * 256) is not None
    assert keys.check_key("a/" + "x" * 255) is None


segment = st.text(min_size=0, max_size=20)
key_strategy = st.lists(
    st.one_of(segment, st.sampled_from(["..", ".", "", "/", "\x00"])), min_size=1, max_size=6
).map("/".join)


@given(st.lists(key_strategy, max_size=30))
def test_accepted_keys_never_escape_and_never_collide(raw_keys):
    accepted, refused = keys.plan_paths(raw_keys)
    root = "/cache/data/s3/bucket"
    paths = set()
    for key in accepted:
        full = posixpath.normpath(posixpath.join(root, key))
        assert full.startswith(root + "/")
        assert full == posixpath.join(root, key)  # no normalisation happened
        assert "\x00" not in key
        paths.add(full)
    assert len(paths) == len(set(accepted))
    for p in paths:  # no accepted path is a parent directory of another
        parent = os.path.dirname(p)
        while parent != root:
            assert parent not in paths
            parent = os.path.dirname(parent)
    assert len(accepted) + len(refused) <= len(raw_keys)
