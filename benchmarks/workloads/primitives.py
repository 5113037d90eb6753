"""The primitives: a queue, a lock ring and an event ping-pong.

* queue: one producer puts ``items`` integers through a queue of capacity
  100, one consumer gets them. ops = items. trio has no queue: its version is
  a memory channel with a buffer of 100, trio's idiom for the same job.
* lock_ring: ``tasks`` tasks each take the same lock ``rounds`` times and
  hold it across a ``sleep(0)``, so every acquisition is a hand-off to the
  next task in line. ops = tasks x rounds acquisitions.
* event_pingpong: two tasks wake each other ``rounds`` times through events.
  asyncio clears its events; trio and yieldloop events are one-shot (no
  ``clear``), so theirs make a fresh event for each round. ops = 2 x rounds
  wake-ups.
"""

from __future__ import annotations

from typing import Any

from ..registry import Params, Workload, register

queue = register(
    Workload(
        name="queue",
        description="{items:,} items producer -> consumer through a queue of 100",
        sizes={"items": 1_000_000},
        quick={"items": 100_000},
        ops=lambda p: p["items"],
        unit="items",
    )
)

lock_ring = register(
    Workload(
        name="lock_ring",
        description="{tasks} tasks x {rounds:,} lock hand-offs",
        sizes={"tasks": 10, "rounds": 10_000},
        quick={"tasks": 10, "rounds": 2_000},
        ops=lambda p: p["tasks"] * p["rounds"],
        unit="acquisitions",
    )
)

event_pingpong = register(
    Workload(
        name="event_pingpong",
        description="2 tasks waking each other {rounds:,} times through events",
        sizes={"rounds": 100_000},
        quick={"rounds": 20_000},
        ops=lambda p: 2 * p["rounds"],
        unit="wake-ups",
    )
)


# ---------------------------------------------------------------- queue


@queue.impl("yieldloop")
def _queue_yieldloop(p: Params) -> Any:
    import yieldloop

    n = p["items"]

    async def main() -> int:
        q: yieldloop.Queue[int] = yieldloop.Queue(100)
        got = [0]

        async def producer() -> None:
            put = q.put
            for i in range(n):
                await put(i)

        async def consumer() -> None:
            get = q.get
            for _ in range(n):
                await get()
            got[0] = n

        async with yieldloop.TaskGroup() as tg:
            tg.spawn(producer)
            tg.spawn(consumer)
        return got[0]

    return main


@queue.impl("asyncio")
def _queue_asyncio(p: Params) -> Any:
    import asyncio

    n = p["items"]

    async def main() -> int:
        q: asyncio.Queue[int] = asyncio.Queue(100)
        got = [0]

        async def producer() -> None:
            put = q.put
            for i in range(n):
                await put(i)

        async def consumer() -> None:
            get = q.get
            for _ in range(n):
                await get()
            got[0] = n

        async with asyncio.TaskGroup() as tg:
            tg.create_task(producer())
            tg.create_task(consumer())
        return got[0]

    return main


@queue.impl("trio")
def _queue_trio(p: Params) -> Any:
    import trio

    n = p["items"]

    async def main() -> int:
        send, receive = trio.open_memory_channel[int](100)
        got = [0]

        async def producer() -> None:
            put = send.send
            for i in range(n):
                await put(i)

        async def consumer() -> None:
            get = receive.receive
            for _ in range(n):
                await get()
            got[0] = n

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            nursery.start_soon(consumer)
        return got[0]

    return main


# ------------------------------------------------------------ lock ring


@lock_ring.impl("yieldloop")
def _lock_yieldloop(p: Params) -> Any:
    import yieldloop

    tasks, rounds = p["tasks"], p["rounds"]
    sleep = yieldloop.sleep

    async def main() -> int:
        lock = yieldloop.Lock()
        done = [0]

        async def worker() -> None:
            for _ in range(rounds):
                async with lock:
                    await sleep(0)
            done[0] += rounds

        async with yieldloop.TaskGroup() as tg:
            for _ in range(tasks):
                tg.spawn(worker)
        return done[0]

    return main


@lock_ring.impl("asyncio")
def _lock_asyncio(p: Params) -> Any:
    import asyncio

    tasks, rounds = p["tasks"], p["rounds"]
    sleep = asyncio.sleep

    async def main() -> int:
        lock = asyncio.Lock()
        done = [0]

        async def worker() -> None:
            for _ in range(rounds):
                async with lock:
                    await sleep(0)
            done[0] += rounds

        async with asyncio.TaskGroup() as tg:
            for _ in range(tasks):
                tg.create_task(worker())
        return done[0]

    return main


@lock_ring.impl("trio")
def _lock_trio(p: Params) -> Any:
    import trio

    tasks, rounds = p["tasks"], p["rounds"]
    sleep = trio.sleep

    async def main() -> int:
        lock = trio.Lock()
        done = [0]

        async def worker() -> None:
            for _ in range(rounds):
                async with lock:
                    await sleep(0)
            done[0] += rounds

        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker)
        return done[0]

    return main


# ------------------------------------------------------- event ping-pong


@event_pingpong.impl("yieldloop")
def _event_yieldloop(p: Params) -> Any:
    import yieldloop

    rounds = p["rounds"]
    Event = yieldloop.Event

    async def main() -> int:
        ping = [Event()]
        pong = [Event()]
        count = [0]

        async def a() -> None:
            for _ in range(rounds):
                ping[0].set()
                await pong[0].wait()
                pong[0] = Event()
                count[0] += 1

        async def b() -> None:
            for _ in range(rounds):
                await ping[0].wait()
                ping[0] = Event()
                pong[0].set()
                count[0] += 1

        async with yieldloop.TaskGroup() as tg:
            tg.spawn(a)
            tg.spawn(b)
        return count[0]

    return main


@event_pingpong.impl("asyncio")
def _event_asyncio(p: Params) -> Any:
    import asyncio

    rounds = p["rounds"]

    async def main() -> int:
        ping = asyncio.Event()
        pong = asyncio.Event()
        count = [0]

        async def a() -> None:
            for _ in range(rounds):
                ping.set()
                await pong.wait()
                pong.clear()
                count[0] += 1

        async def b() -> None:
            for _ in range(rounds):
                await ping.wait()
                ping.clear()
                pong.set()
                count[0] += 1

        async with asyncio.TaskGroup() as tg:
            tg.create_task(a())
            tg.create_task(b())
        return count[0]

    return main


@event_pingpong.impl("trio")
def _event_trio(p: Params) -> Any:
    import trio

    rounds = p["rounds"]
    Event = trio.Event

    async def main() -> int:
        ping = [Event()]
        pong = [Event()]
        count = [0]

        async def a() -> None:
            for _ in range(rounds):
                ping[0].set()
                await pong[0].wait()
                pong[0] = Event()
                count[0] += 1

        async def b() -> None:
            for _ in range(rounds):
                await ping[0].wait()
                ping[0] = Event()
                pong[0].set()
                count[0] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(a)
            nursery.start_soon(b)
        return count[0]

    return main
