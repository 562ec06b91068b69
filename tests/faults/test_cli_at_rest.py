"""The CLI against a damaged, full or booby-trapped cache directory, and with secrets in the
environment: what it refuses, repairs and never prints."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shardcache.testkit.proxy import CloudProxy, ProxyConfig
from support import tree

SHARDCACHE = [sys.executable, "-m", "shardcache.cli.main"]
MiB = 1024 * 1024


def cli(*args, env=None, timeout=120):
    return subprocess.run(
        [*SHARDCACHE, *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ, SHARDCACHE_FSYNC="0"),
        timeout=timeout,
    )


def prefetch_json(bucket, cache, *extra, env=None):
    result = cli(
        "prefetch",
        bucket.url("ds/"),
        "--cache-dir",
        str(cache),
        "--output",
        "json",
        *extra,
        env=env,
    )
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def writable(path):
    os.chmod(path, 0o644)
    return path


def test_damage_at_rest_is_named_by_verify_and_repaired_exactly(s3_bucket, tmp_path):
    objects = {f"ds/f{i}": os.urandom(4000 + i) for i in range(6)}
    s3_bucket.put(objects)
    cache = tmp_path / "c"
    _, first = prefetch_json(s3_bucket, cache)
    local = Path(first["local_dir"])
    with open(writable(local / "f0"), "r+b") as f:  # flipped byte, same size and mtime class
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 1]))
    os.truncate(writable(local / "f1"), 100)
    (local / "f2").unlink()
    (local / "stray.txt").write_bytes(b"not ours")
    verify = cli("verify", s3_bucket.url("ds/"), "--cache-dir", str(cache))
    assert verify.returncode == 1
    assert "3 damaged" not in verify.stdout
    for name in ("f0", "f1"):
        assert (
            f"damaged (removed; the next prefetch fetches it again): s3://{s3_bucket.name}"
            f"/ds/{name}" in verify.stdout
        )
    assert (
        f"missing (the next prefetch fetches it again): s3://{s3_bucket.name}/ds/f2"
        in verify.stdout
    )
    assert "stray.txt" in verify.stdout
    again, report = prefetch_json(s3_bucket, cache)
    assert again.returncode == 0, again.stderr
    assert report["objects_downloaded"] == 3 and report["objects_already_local"] == 3
    assert tree(local) == {k[3:]: v for k, v in objects.items()}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda c: (c / "FORMAT").write_text('{"format": 0}\n'), "format 0"),
        (lambda c: (c / "FORMAT").write_text("garbage"), "unreadable"),
        (lambda c: (c / "FORMAT").unlink(), "no FORMAT"),
        (lambda c: (c / "index.sqlite3").write_bytes(b"\0" * 4096), "damaged"),
    ],
)
def test_start_up_refuses_what_it_cannot_check(tmp_path, damage, message):
    cache = tmp_path / "c"
    assert cli("status", "--cache-dir", str(cache)).returncode == 0
    for leftover in cache.glob("index.sqlite3-*"):
        leftover.unlink()
    damage(cache)
    result = cli("status", "--cache-dir", str(cache))
    assert result.returncode == 1
    assert message in result.stderr and "remove" in result.stderr
    assert "Traceback" not in result.stderr


def test_planted_symlinks_are_never_followed(s3_bucket, tmp_path):
    s3_bucket.put({"ds/sub/file": b"data", "ds/x": b"x-bytes"})
    cache = tmp_path / "c"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep me")
    cli("status", "--cache-dir", str(cache))
    ds = cache / "data" / "s3" / s3_bucket.name / "ds"
    ds.parent.mkdir(parents=True)

    # the dataset's own directory: refused with a clear message; verify removes the link
    ds.symlink_to(outside)
    result, _ = prefetch_json(s3_bucket, cache)
    assert result.returncode == 1 and "symbolic link" in result.stderr
    verify = cli("verify", s3_bucket.url("ds/"), "--cache-dir", str(cache))
    assert verify.returncode == 1 and str(ds) in verify.stdout
    assert not ds.is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]

    # a subdirectory and a file position: the key under the link is refused and named, the
    # file position is replaced by the real file (rename replaces the link, not its target)
    ds.mkdir()
    (ds / "sub").symlink_to(outside)
    (ds / "x").symlink_to(outside / "victim")
    result, report = prefetch_json(s3_bucket, cache)
    assert result.returncode == 1
    assert [f["key"] for f in report["failed"]] == ["ds/sub/file"]
    assert (ds / "x").read_bytes() == b"x-bytes" and not (ds / "x").is_symlink()
    assert (outside / "victim").read_bytes() == b"keep me"
    assert cli("verify", "--cache-dir", str(cache)).returncode == 1
    result, report = prefetch_json(s3_bucket, cache)
    assert result.returncode == 0, result.stderr
    assert tree(ds) == {"sub/file": b"data", "x": b"x-bytes"}
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]

    # the staging directory: refused at start-up, nothing written through it
    staging = cache / "staging"
    os.rmdir(staging)
    staging.symlink_to(outside)
    result = cli("prefetch", s3_bucket.url("ds/"), "--cache-dir", str(cache))
    assert result.returncode == 1 and "symbolic link" in result.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_keeps_what_fits_and_cleans_staging(s3_server, s3_bucket, small_fs):
    small = {f"ds/s{i}": os.urandom(10_000) for i in range(5)}
    big = {"ds/big1": os.urandom(3 * MiB), "ds/big2": os.urandom(3 * MiB)}
    s3_bucket.put({**small, **big})
    cache = small_fs / "cache"
    filler = small_fs / "filler"
    # at 1.5 MB/s per connection the big objects arrive after another tenant filled the disk
    slow = ProxyConfig(first_byte_delay_s=0.0, bandwidth_bytes_per_s=1.5e6)
    with CloudProxy(s3_server.endpoint_url, slow) as proxy:
        env = dict(
            os.environ,
            AWS_ENDPOINT_URL=proxy.url,
            SHARDCACHE_FSYNC="0",
            SHARDCACHE_MIN_FREE_FRACTION="0",
        )
        proc = subprocess.Popen(
            [
                *SHARDCACHE,
                "prefetch",
                s3_bucket.url("ds/"),
                "--cache-dir",
                str(cache),
                "--output",
                "json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        local = cache / "data" / "s3" / s3_bucket.name / "ds"
        while proc.poll() is None and len(list(local.glob("s*"))) < 5:
            time.sleep(0.01)
        with open(filler, "wb") as f:  # fill the file system to the last block
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err, err
    assert out, err
    report = json.loads(out)
    # each object that did not fit is named; the index itself may be too full to record the
    # dataset's state, which is then reported under the dataset's URL
    failed = {f["key"]: f for f in report["failed"]}
    assert set(failed) - {s3_bucket.url("ds/")} == set(big)
    assert all(
        f["kind"] == "over_capacity" and "disk holding the cache is full" in f["message"]
        for f in failed.values()
    ), failed
    assert tree(local) == {k[3:]: v for k, v in small.items()}
    assert list((cache / "staging").iterdir()) == []
    filler.unlink()
    budget = cli(
        "prefetch",
        s3_bucket.url("ds/"),
        "--cache-dir",
        str(cache),
        "--max-bytes",
        "4MiB",
        "--output",
        "json",
        env=dict(env, AWS_ENDPOINT_URL=s3_server.endpoint_url),
    )
    assert budget.returncode == 0, budget.stderr
    after = json.loads(budget.stdout)
    assert after["objects_downloaded"] == 1 and len(after["not_cached"]) == 1
    assert all(tree(local)[k[3:]] == v for k, v in {**small, **big}.items() if k[3:] in tree(local))
