"""After `fork`, a child never reuses its parent's loop, thread or engine: it rebuilds them.

A forked child that touched the parent's loop would hang (its thread did not survive the
fork); each check here runs in a real forked process with a bounded join.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading

import pytest
from shardcache.client._loop import LoopThread

pytestmark = pytest.mark.timeout(120)


async def _where() -> tuple[int, int]:
    await asyncio.sleep(0)
    return os.getpid(), threading.get_ident()


def _in_child(fn, *args):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()

    def target() -> None:
        try:
            queue.put(("ok", fn(*args)))
        except BaseException as e:  # report, do not hang the parent
            queue.put(("error", repr(e)))

    proc = ctx.Process(target=target)
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0, f"child exit code {proc.exitcode}"
    status, value = queue.get()
    assert status == "ok", value
    return value


def test_a_loop_thread_is_rebuilt_in_a_forked_child():
    loop = LoopThread("test-loop")
    try:
        parent = loop.run(_where, 10)
        assert parent[0] == os.getpid()
        child = _in_child(lambda: (loop.forked, loop.run(_where, 10), loop.forked))
        assert child[0] is True and child[2] is False
        assert child[1][0] != parent[0]
        assert loop.run(_where, 10) == parent  # the parent's loop is untouched
    finally:
        loop.close()


def test_a_client_used_before_fork_works_in_the_child(bucket, objects, client):
    assert client.cat(bucket.url("ds/a.bin")) == objects["ds/a.bin"]  # engine now running

    def child_work():
        data = client.cat(bucket.url("ds/sub/b.bin"))  # a miss: a new engine in the child
        hit = client.cat(bucket.url("ds/a.bin"))
        s = client.stats()
        client.close()
        return data == objects["ds/sub/b.bin"], hit == objects["ds/a.bin"], (s.hits, s.misses)

    assert _in_child(child_work) == (True, True, (1, 1))
    assert client.cat(bucket.url("ds/sub/deeper/d.bin")) == objects["ds/sub/deeper/d.bin"]
    assert client.stats().misses == 2
