from pathlib import Path

import pytest
from shardcache.config import Config, parse_size
from shardcache.errors import ConfigError, redact
from shardcache.urls import parse_url, require_cloud


@pytest.mark.parametrize(
    "text,expected",
    [
        ("20GiB", 20 * 1024**3),
        ("500MB", 500 * 10**6),
        ("1.5g", int(1.5 * 10**9)),
        ("1024", 1024),
        ("64 KiB", 65536),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "5 parsecs", "-1GiB"])
def test_parse_size_rejects_nonsense(text):
    with pytest.raises(ConfigError):
        parse_size(text)


def test_config_from_env_and_overrides(tmp_path):
    env = {"SHARDCACHE_CACHE_DIR": str(tmp_path), "SHARDCACHE_MAX_BYTES": "1GiB"}
    cfg = Config.from_env(env)
    assert cfg.cache_dir == tmp_path and cfg.max_bytes == 1024**3
    assert Config.from_env(env, max_bytes="2GiB").max_bytes == 2 * 1024**3


def test_default_cache_dir_is_xdg():
    assert Config.from_env({"XDG_CACHE_HOME": "/x"}).cache_dir == Path("/x/shardcache")


def test_config_validates():
    with pytest.raises(ConfigError):
        Config(cache_dir=Path("/tmp"), max_bytes=0)
    with pytest.raises(ConfigError):
        Config(cache_dir=Path("/tmp"), min_free_fraction=1.5)


@pytest.mark.parametrize(
    "url,scheme,bucket,prefix",
    [
        ("s3://bkt/a/b", "s3", "bkt", "a/b/"),
        ("gcs://bkt/a/", "gs", "bkt", "a/"),
        ("abfs://ctr@acct.dfs.core.windows.net/p", "az", "ctr", "p/"),
        ("s3://bkt", "s3", "bkt", ""),
        ("file:///tmp/x/y/", "file", "/tmp", "x/y/"),
    ],
)
def test_parse_url(url, scheme, bucket, prefix):
    parsed = parse_url(url)
    assert (parsed.scheme, parsed.bucket, parsed.prefix) == (scheme, bucket, prefix)


@pytest.mark.parametrize(
    "url",
    [
        "bucket/key",
        "ftp://x/y",
        "s3://../x",
        "s3://a\x00b/",
        "file://rel",
        "s3://bkt/../../etc/",
        "gs://bkt/a//b/",
        "file:///tmp/../etc/",
    ],
)
def test_parse_url_rejects(url):
    with pytest.raises(ConfigError):
        parse_url(url)


def test_pods_only_get_cloud_schemes():
    require_cloud(parse_url("s3://bkt/x/"))
    with pytest.raises(ConfigError):
        require_cloud(parse_url("file:///etc/"))


def test_redact_removes_credentials():
    text = (
        "GET https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef&X-Amz-Credential=AKIA/x "
        "AccountKey=c2VjcmV0;sig=zzz aws_secret_access_key=SECRET123"
    )
    red = redact(text)
    for secret in ("abcdef", "AKIA/x", "c2VjcmV0", "zzz", "SECRET123"):
        assert secret not in red
