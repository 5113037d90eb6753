"""spawn: 50,000 trivial tasks spawned and joined in one group.

The task is an async function that returns at once, so this measures the
cost of a task's life: create it, schedule it, run it one step, report its
end to the group, and the group's join. ops = tasks.

The ``bare`` reference is the least any runtime must do: make the coroutine
object, queue it, resume it once and catch its ``StopIteration``, in a
deque - no task object, no context copy, no group. It shows how much of
each runtime's time is the runtime, and the ceiling for all of them.
"""

from __future__ import annotations

from typing import Any

from ..registry import Params, Workload, register

spawn = register(
    Workload(
        name="spawn",
        description="{tasks:,} trivial tasks spawned and joined in one group",
        sizes={"tasks": 50_000},
        quick={"tasks": 10_000},
        ops=lambda p: p["tasks"],
        unit="tasks",
    )
)


async def _trivial() -> None:
    return None


@spawn.impl("yieldloop")
def _yieldloop(p: Params) -> Any:
    import yieldloop

    n = p["tasks"]

    async def main() -> int:
        async with yieldloop.TaskGroup() as tg:
            for _ in range(n):
                tg.spawn(_trivial)
        return n

    return main


@spawn.impl("asyncio")
def _asyncio(p: Params) -> Any:
    import asyncio

    n = p["tasks"]

    async def main() -> int:
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(_trivial())
        return n

    return main


@spawn.impl("trio")
def _trio(p: Params) -> Any:
    import trio

    n = p["tasks"]

    async def main() -> int:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(_trivial)
        return n

    return main


@spawn.impl("curio")
def _curio(p: Params) -> Any:
    import curio

    n = p["tasks"]

    async def main() -> int:
        async with curio.TaskGroup() as g:
            for _ in range(n):
                await g.spawn(_trivial)
        return n

    return main


@spawn.impl("anyio")
def _anyio(p: Params) -> Any:
    import anyio

    n = p["tasks"]

    async def main() -> int:
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(_trivial)
        return n

    return main


@spawn.impl("tinyio")
def _tinyio(p: Params) -> Any:
    n = p["tasks"]

    def trivial() -> Any:
        return None
        yield  # a generator function: tinyio's kind of coroutine

    def main() -> Any:
        yield [trivial() for _ in range(n)]
        return n

    return main


@spawn.impl("bare")
def _bare(p: Params) -> Any:
    from collections import deque

    n = p["tasks"]

    def main() -> int:
        ready: deque[Any] = deque()
        append = ready.append
        for _ in range(n):
            append(_trivial())
        popleft = ready.popleft
        done = 0
        while ready:
            coro = popleft()
            try:
                coro.send(None)
            except StopIteration:
                done += 1
        return done

    return main
