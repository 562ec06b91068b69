"""The engine against the in-memory store: publication, re-runs, versions, capacity."""

import asyncio
import os
import stat

import pytest
from shardcache.backends.faults import ThrottledBackend
from shardcache.urls import parse_url
from support import open_engine, run, tree

URL = "memory://bkt/ds/"


def fill(store, n=20, size=3000, prefix="ds/"):
    data = {}
    for i in range(n):
        key = f"{prefix}f{i:03}"
        data[key] = os.urandom(size + i)
        store.put(key, data[key])
    return data


def test_round_trip_is_byte_exact_with_odd_keys(store, config):
    data = {
        "ds/plain.bin": os.urandom(100),
        "ds/ünïcödé/名前.txt": "héllo".encode(),
        "ds/with space/and  two.txt": b"spaces",
        "ds/empty": b"",
        "ds/big.bin": os.urandom(5 * 1024 * 1024 + 7),  # 6 ranged parts
    }
    for k, v in data.items():
        store.put(k, v)

    async def go():
        async with open_engine(config, store) as engine:
            report = await engine.prefetch(parse_url(URL))
            assert report.ok and report.objects_downloaded == len(data)
            return report.local_dir

    local = run(go())
    assert tree(local) == {k.removeprefix("ds/"): v for k, v in data.items()}
    for dirpath, _, names in os.walk(local):
        for name in names:
            mode = os.stat(os.path.join(dirpath, name)).st_mode
            assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_unsafe_keys_are_refused_and_nothing_escapes(store, config, tmp_path):
    store.put("ds/ok", b"fine")
    store.put("ds/../../escape", b"evil")
    store.put("ds/a", b"file")
    store.put("ds/a/b", b"under a file")

    async def go():
        async with open_engine(config, store) as engine:
            return await engine.prefetch(parse_url(URL))

    report = run(go())
    assert {r.key for r in report.refused} == {"ds/../../escape", "ds/a", "ds/a/b"}
    assert tree(report.local_dir) == {"ok": b"fine"}
    outside = [p for p in tmp_path.rglob("*") if "escape" in p.name]
    assert outside == []


def test_rerun_downloads_nothing_and_a_changed_object_alone_is_refetched(store, config):
    data = fill(store)

    async def go():
        async with open_engine(config, store) as engine:
            await engine.prefetch(parse_url(URL))
            reads = store.stats().read_requests
            again = await engine.prefetch(parse_url(URL))
            assert again.objects_downloaded == 0 and again.objects_already_local == len(data)
            assert store.stats().read_requests == reads
            store.put("ds/f003", b"new bytes")
            third = await engine.prefetch(parse_url(URL), refresh=True)  # the saved listing
            # would stand in for a new one for `listing_max_age_s`
            assert third.objects_downloaded == 1
            assert store.stats().read_requests == reads + 1
            return third.local_dir

    local = run(go())
    assert (local / "f003").read_bytes() == b"new bytes"


def test_rerun_after_restart_downloads_nothing(store, config):
    fill(store)

    async def once():
        async with open_engine(config, store) as engine:
            return await engine.prefetch(parse_url(URL))

    run(once())
    reads = store.stats().read_requests
    second = run(once())
    assert second.objects_downloaded == 0
    assert store.stats().read_requests == reads


def test_objects_deleted_remotely_leave_the_mirror(store, config):
    fill(store, n=3)

    async def go():
        async with open_engine(config, store) as engine:
            await engine.prefetch(parse_url(URL))
            store.delete("ds/f001")
            return await engine.prefetch(parse_url(URL), refresh=True)

    report = run(go())
    assert sorted(tree(report.local_dir)) == ["f000", "f002"]


def test_concurrent_fetches_of_one_object_download_once(store, config):
    store.put("ds/shared", os.urandom(3 * 1024 * 1024))  # multipart: 3 parts

    async def go():
        async with open_engine(config, ThrottledBackend(store, 0.05, None)) as engine:
            results = await asyncio.gather(
                *(engine.fetch(parse_url("memory://bkt/ds/shared")) for _ in range(16))
            )
            return results

    results = run(go())
    assert sum(r.downloaded for r in results) == 1
    assert store.stats().read_requests == 3
    assert len({r.path for r in results}) == 1


def test_budget_holds_while_many_downloads_run(store, config):
    fill(store, n=40, size=100_000)
    budget = 1_000_000
    cfg = config.with_(max_bytes=budget, max_concurrency=16)
    samples = []

    def used_bytes():
        # A staging file may be renamed into data/ between the listing and its lstat; such a
        # sample is taken again, since skipping the file would under-count the bytes on disk.
        while True:
            try:
                return _walk_bytes()
            except FileNotFoundError:
                continue

    def _walk_bytes():
        total = 0
        for dirpath, _, names in os.walk(cfg.cache_dir):
            if "index.sqlite3" in names:
                names = [n for n in names if not n.startswith("index.sqlite3")]
            total += sum(
                os.lstat(os.path.join(dirpath, n)).st_size
                for n in names
                if n not in ("locks", "FORMAT")
            )
        return total

    async def go():
        async with open_engine(cfg, ThrottledBackend(store, 0.01, 20e6)) as engine:
            task = asyncio.create_task(engine.prefetch(parse_url(URL)))
            while not task.done():
                samples.append(used_bytes())
                await asyncio.sleep(0.005)
            return await task

    report = run(go())
    assert max(samples) <= budget
    assert len(report.not_cached) > 0 and report.objects_downloaded > 0
    assert report.objects_downloaded + len(report.not_cached) == 40
    assert used_bytes() <= budget


def test_larger_than_budget_dataset_stays_cached_without_churn(store, config):
    fill(store, n=30, size=10_000)
    cfg = config.with_(max_bytes=150_000)

    async def go():
        async with open_engine(cfg, store) as engine:
            first = await engine.prefetch(parse_url(URL))
            cached = set(tree(first.local_dir))
            second = await engine.prefetch(parse_url(URL))
            assert set(tree(second.local_dir)) == cached  # nothing evicted for its own misses
            assert second.objects_downloaded == 0
            assert engine.stats().evictions == 0
            return first, cached

    first, cached = run(go())
    assert 10 <= len(cached) <= 15
    assert len(first.not_cached) == 30 - len(cached)


def test_other_unpinned_datasets_are_evicted_but_pinned_ones_never(store, config):
    fill(store, n=10, size=10_000, prefix="old/")
    fill(store, n=10, size=10_000, prefix="pinned/")
    fill(store, n=10, size=10_000, prefix="new/")
    cfg = config.with_(max_bytes=215_000)

    async def go():
        async with open_engine(cfg, store) as engine:
            await engine.prefetch(parse_url("memory://bkt/old/"))
            await engine.prefetch(parse_url("memory://bkt/pinned/"), owner="pod-1")
            new = await engine.prefetch(parse_url("memory://bkt/new/"))
            assert new.objects_downloaded == 10 and not new.not_cached
            statuses = {str(s.url): s for s in await engine.statuses()}
            return statuses, engine.stats().evictions

    statuses, evictions = run(go())
    assert statuses["memory://bkt/pinned/"].objects_local == 10
    assert statuses["memory://bkt/new/"].objects_local == 10
    assert statuses["memory://bkt/old/"].objects_local < 10
    assert evictions == 10 - statuses["memory://bkt/old/"].objects_local


def test_verify_finds_and_next_prefetch_repairs_exactly_the_damaged(store, config):
    fill(store, n=5)

    async def go():
        async with open_engine(config, store) as engine:
            report = await engine.prefetch(parse_url(URL))
            local = report.local_dir
            target = local / "f001"
            os.chmod(target, 0o644)
            raw = bytearray(target.read_bytes())
            raw[10] ^= 0xFF
            st = os.stat(target)
            target.write_bytes(bytes(raw))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the change from stat
            os.unlink(local / "f002")
            (local / "stray.txt").write_bytes(b"not ours")
            verify = await engine.verify(parse_url(URL))
            assert verify.corrupt == ["memory://bkt/ds/f001"]
            assert verify.missing == ["memory://bkt/ds/f002"]
            assert [os.path.basename(s) for s in verify.stray] == ["stray.txt"]
            reads = store.stats().read_requests
            again = await engine.prefetch(parse_url(URL))
            assert again.objects_downloaded == 2
            assert store.stats().read_requests == reads + 2
            clean = await engine.verify(parse_url(URL))
            assert clean.clean and clean.ok == 5

    run(go())


def test_evict_refuses_pinned_unless_forced(store, config):
    fill(store, n=3)

    async def go():
        async with open_engine(config, store) as engine:
            await engine.prefetch(parse_url(URL), owner="pod-a")
            with pytest.raises(Exception, match="in use by pod-a"):
                await engine.evict(parse_url(URL))
            await engine.unpin(parse_url(URL), "pod-a")
            removed = await engine.evict(parse_url(URL))
            assert removed.objects_removed == 3
            assert (await engine.usage()).published == 0
            return engine.local_path

    run(go())


def test_cache_root_symlink_is_refused(store, config, tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    from shardcache.errors import CacheStateError

    async def go():
        async with open_engine(config.with_(cache_dir=link), store):
            pass

    with pytest.raises(CacheStateError, match="symbolic link"):
        run(go())
    assert list(real.iterdir()) == []


def test_symlink_planted_in_the_tree_is_not_written_through(store, config, tmp_path):
    store.put("ds/sub/file", b"data")
    outside = tmp_path / "outside"
    outside.mkdir()

    async def go():
        async with open_engine(config, store) as engine:
            ds_dir = engine.local_path(parse_url(URL))
            ds_dir.mkdir(parents=True)
            (ds_dir / "sub").symlink_to(outside)
            return await engine.prefetch(parse_url(URL))

    report = run(go())
    assert report.failed and report.failed[0].key == "ds/sub/file"
    assert list(outside.iterdir()) == []
