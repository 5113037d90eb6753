"""switch: many tasks taking turns. 100 tasks x 2000 ``sleep(0)`` each.

This is the cost of one trip through the scheduler: a task yields, the loop
picks the next ready one and resumes it. ops = tasks x switches.

tinyio has no ``sleep(0)``; its documented way to cede control is a bare
``yield``, which is what its version uses. The ``bare`` reference is the
smallest possible scheduler: a deque of plain generators, ``next()`` on each
in turn. No runtime can be faster than that loop; it shows how much of each
runtime's time is the runtime.
"""

from __future__ import annotations

from typing import Any

from ..registry import Params, Workload, register

switch = register(
    Workload(
        name="switch",
        description="{tasks:,} tasks x {switches:,} sleep(0) each",
        sizes={"tasks": 100, "switches": 2000},
        quick={"tasks": 100, "switches": 500},
        ops=lambda p: p["tasks"] * p["switches"],
        unit="switches",
    )
)


@switch.impl("yieldloop")
def _yieldloop(p: Params) -> Any:
    import yieldloop

    tasks, switches = p["tasks"], p["switches"]
    sleep = yieldloop.sleep

    async def worker(done: list[int]) -> None:
        for _ in range(switches):
            await sleep(0)
        done[0] += switches

    async def main() -> int:
        done = [0]
        async with yieldloop.TaskGroup() as tg:
            for _ in range(tasks):
                tg.spawn(worker, done)
        return done[0]

    return main


@switch.impl("asyncio")
def _asyncio(p: Params) -> Any:
    import asyncio

    tasks, switches = p["tasks"], p["switches"]
    sleep = asyncio.sleep

    async def worker(done: list[int]) -> None:
        for _ in range(switches):
            await sleep(0)
        done[0] += switches

    async def main() -> int:
        done = [0]
        async with asyncio.TaskGroup() as tg:
            for _ in range(tasks):
                tg.create_task(worker(done))
        return done[0]

    return main


@switch.impl("trio")
def _trio(p: Params) -> Any:
    import trio

    tasks, switches = p["tasks"], p["switches"]
    sleep = trio.sleep

    async def worker(done: list[int]) -> None:
        for _ in range(switches):
            await sleep(0)
        done[0] += switches

    async def main() -> int:
        done = [0]
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(worker, done)
        return done[0]

    return main


@switch.impl("curio")
def _curio(p: Params) -> Any:
    import curio

    tasks, switches = p["tasks"], p["switches"]
    sleep = curio.sleep

    async def worker(done: list[int]) -> None:
        for _ in range(switches):
            await sleep(0)
        done[0] += switches

    async def main() -> int:
        done = [0]
        async with curio.TaskGroup() as g:
            for _ in range(tasks):
                await g.spawn(worker, done)
        return done[0]

    return main


@switch.impl("anyio")
def _anyio(p: Params) -> Any:
    import anyio

    tasks, switches = p["tasks"], p["switches"]
    sleep = anyio.sleep

    async def worker(done: list[int]) -> None:
        for _ in range(switches):
            await sleep(0)
        done[0] += switches

    async def main() -> int:
        done = [0]
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(worker, done)
        return done[0]

    return main


@switch.impl("tinyio")
def _tinyio(p: Params) -> Any:
    tasks, switches = p["tasks"], p["switches"]

    def worker(done: list[int]) -> Any:
        for _ in range(switches):
            yield
        done[0] += switches

    def main() -> Any:
        done = [0]
        yield [worker(done) for _ in range(tasks)]
        return done[0]

    return main


@switch.impl("bare")
def _bare(p: Params) -> Any:
    from collections import deque

    tasks, switches = p["tasks"], p["switches"]

    def worker() -> Any:
        for _ in range(switches):
            yield

    def main() -> int:
        ready = deque(worker() for _ in range(tasks))
        popleft, append = ready.popleft, ready.append
        done = 0
        while ready:
            gen = popleft()
            try:
                next(gen)
            except StopIteration:
                done += switches
            else:
                append(gen)
        return done

    return main
