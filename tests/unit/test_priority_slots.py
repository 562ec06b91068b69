"""The engine's request slots: on-demand reads never wait behind a busy prefetch."""

from __future__ import annotations

import asyncio

from shardcache.engine.locks import PrioritySemaphore

ON_DEMAND, PREFETCH = 0, 1


async def _taken(sem: PrioritySemaphore, priority: int) -> asyncio.Task[None]:
    task = asyncio.create_task(sem.acquire(priority))
    await asyncio.sleep(0)
    return task


def test_prefetch_leaves_the_reserve_free_for_an_on_demand_read():
    async def main():
        sem = PrioritySemaphore(3, reserve=1)
        first, second = await _taken(sem, PREFETCH), await _taken(sem, PREFETCH)
        third = await _taken(sem, PREFETCH)
        assert first.done() and second.done() and not third.done()
        miss = await _taken(sem, ON_DEMAND)
        assert miss.done()  # the reserved slot, while the prefetch holds all of its own
        sem.release()  # the miss is done: its slot is the reserve again, not the prefetch's
        await asyncio.sleep(0)
        assert not third.done()
        sem.release()  # a prefetch request ended
        await asyncio.sleep(0)
        assert third.done()

    asyncio.run(main())


def test_waiting_on_demand_reads_go_first_then_fifo():
    async def main():
        sem = PrioritySemaphore(2, reserve=1)
        await _taken(sem, ON_DEMAND)
        await _taken(sem, ON_DEMAND)
        order: list[str] = []

        async def take(name: str, priority: int) -> None:
            await sem.acquire(priority)
            order.append(name)

        tasks = [
            asyncio.create_task(take(n, p))
            for n, p in [("p1", PREFETCH), ("d1", ON_DEMAND), ("p2", PREFETCH), ("d2", ON_DEMAND)]
        ]
        await asyncio.sleep(0)
        for _ in range(4):
            sem.release()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert order[:2] == ["d1", "d2"]
        sem.release()
        sem.release()
        await asyncio.gather(*tasks)
        assert order == ["d1", "d2", "p1", "p2"]

    asyncio.run(main())


def test_a_cancelled_waiter_passes_its_slot_on():
    async def main():
        sem = PrioritySemaphore(1)
        await _taken(sem, PREFETCH)
        waiter = await _taken(sem, PREFETCH)
        nxt = await _taken(sem, PREFETCH)
        waiter.cancel()
        sem.release()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert waiter.cancelled() and nxt.done()

    asyncio.run(main())
