"""`SHARDCACHE_MOUNTS`, parsed and resolved: plain values in, plain values out."""

from __future__ import annotations

import json

import pytest
from shardcache.client.mounts import Mount, Mounts, parse_mounts
from shardcache.errors import ConfigError
from shardcache.urls import parse_url

TWO = json.dumps({"gcs://bkt/imagenet": "/data/train/", "s3://bkt/imagenet/val/": "/data/val"})


@pytest.mark.parametrize("text", [None, "", "  "])
def test_unset_means_nothing_mounted(text: str | None) -> None:
    assert parse_mounts(text) == Mounts() and not parse_mounts(text)


def test_urls_and_paths_are_normalised() -> None:
    mounts = parse_mounts(TWO)
    assert mounts.mounts == (
        Mount(parse_url("s3://bkt/imagenet/val/"), "/data/val"),  # the deeper prefix first
        Mount(parse_url("gs://bkt/imagenet/"), "/data/train"),
    )


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("gs://bkt/imagenet/cat/1.jpg", "/data/train/cat/1.jpg"),
        ("gcs://bkt/imagenet/cat/", "/data/train/cat"),
        ("gs://bkt/imagenet/", "/data/train"),
        ("gs://bkt/imagenet", "/data/train"),  # `a/b` and `a/b/` name one dataset
        ("gs://bkt/imagenet-private/x", None),  # a longer name is not inside the prefix
        ("gs://bkt/other/x", None),
        ("gs://other-bkt/imagenet/x", None),
        ("s3://bkt/imagenet/cat/1.jpg", None),  # another store
        ("s3://bkt/imagenet/val/v.jpg", "/data/val/v.jpg"),
    ],
)
def test_path_of(url: str, path: str | None) -> None:
    assert parse_mounts(TWO).path_of(parse_url(url)) == path


def test_nested_datasets_resolve_to_the_inner_mount() -> None:
    mounts = parse_mounts(json.dumps({"s3://bk1/a/": "/outer", "s3://bk1/a/in/": "/inner"}))
    assert mounts.path_of(parse_url("s3://bk1/a/in/x")) == "/inner/x"
    assert mounts.path_of(parse_url("s3://bk1/a/x")) == "/outer/x"
    found = mounts.find(parse_url("s3://bk1/a/in/"))
    assert found is not None and found[1] == "" and found[0].path == "/inner"


def test_a_whole_bucket_mounted_at_the_root() -> None:
    mounts = parse_mounts('{"s3://bkt/": "/"}')
    assert mounts.path_of(parse_url("s3://bkt/a/b")) == "/a/b"
    assert mounts.path_of(parse_url("s3://bkt/")) == "/"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('["s3://bk1/p/"]', "JSON object"),
        ('{"s3://bk1/p/": "data"}', "must be absolute"),
        ('{"s3://bk1/p/": 3}', "must be absolute"),
        ('{"s3://bk1/p/": "/da\\u0000ta"}', "must be absolute"),
        ('{"no scheme": "/data"}', "not a dataset URL"),
        ('{"s3://bk1/../etc/": "/data"}', "path segment"),
        ('{"gs://bk1/p": "/a", "gcs://bk1/p/": "/b"}', "at both /a and /b"),
    ],
)
def test_bad_values_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_mounts(text)
    assert info.value.kind == "config"


def test_the_same_mount_twice_is_fine() -> None:
    assert len(parse_mounts('{"gs://bk1/p": "/a", "gcs://bk1/p/": "/a/"}').mounts) == 1
