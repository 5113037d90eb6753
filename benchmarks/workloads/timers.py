"""timers: 20,000 tasks, each sleeping a random 0-10 ms.

The delays come from a fixed seed, so every runtime sleeps exactly the same
ones. This measures the timer machinery (the heap, waking sleepers in
order) on top of spawning; all the sleeps overlap, so a run takes at least
10 ms, and the rest is the runtime's own time. ops = tasks.
"""

from __future__ import annotations

import random
from typing import Any

from ..registry import Params, Workload, register

timers = register(
    Workload(
        name="timers",
        description="{tasks:,} tasks each sleeping a random 0-{max_delay:.3f} s (seed {seed})",
        sizes={"tasks": 20_000, "max_delay": 0.010, "seed": 20240601},
        quick={"tasks": 5_000, "max_delay": 0.010, "seed": 20240601},
        ops=lambda p: p["tasks"],
        unit="tasks",
    )
)


def _delays(p: Params) -> list[float]:
    rng = random.Random(p["seed"])
    top = p["max_delay"]
    return [rng.uniform(0.0, top) for _ in range(p["tasks"])]


@timers.impl("yieldloop")
def _yieldloop(p: Params) -> Any:
    import yieldloop

    delays = _delays(p)
    sleep = yieldloop.sleep

    async def sleeper(delay: float, done: list[int]) -> None:
        await sleep(delay)
        done[0] += 1

    async def main() -> int:
        done = [0]
        async with yieldloop.TaskGroup() as tg:
            for delay in delays:
                tg.spawn(sleeper, delay, done)
        return done[0]

    return main


@timers.impl("asyncio")
def _asyncio(p: Params) -> Any:
    import asyncio

    delays = _delays(p)
    sleep = asyncio.sleep

    async def sleeper(delay: float, done: list[int]) -> None:
        await sleep(delay)
        done[0] += 1

    async def main() -> int:
        done = [0]
        async with asyncio.TaskGroup() as tg:
            for delay in delays:
                tg.create_task(sleeper(delay, done))
        return done[0]

    return main


@timers.impl("trio")
def _trio(p: Params) -> Any:
    import trio

    delays = _delays(p)
    sleep = trio.sleep

    async def sleeper(delay: float, done: list[int]) -> None:
        await sleep(delay)
        done[0] += 1

    async def main() -> int:
        done = [0]
        async with trio.open_nursery() as nursery:
            for delay in delays:
                nursery.start_soon(sleeper, delay, done)
        return done[0]

    return main


@timers.impl("curio")
def _curio(p: Params) -> Any:
    import curio

    delays = _delays(p)
    sleep = curio.sleep

    async def sleeper(delay: float, done: list[int]) -> None:
        await sleep(delay)
        done[0] += 1

    async def main() -> int:
        done = [0]
        async with curio.TaskGroup() as g:
            for delay in delays:
                await g.spawn(sleeper, delay, done)
        return done[0]

    return main


@timers.impl("anyio")
def _anyio(p: Params) -> Any:
    import anyio

    delays = _delays(p)
    sleep = anyio.sleep

    async def sleeper(delay: float, done: list[int]) -> None:
        await sleep(delay)
        done[0] += 1

    async def main() -> int:
        done = [0]
        async with anyio.create_task_group() as tg:
            for delay in delays:
                tg.start_soon(sleeper, delay, done)
        return done[0]

    return main


@timers.impl("tinyio")
def _tinyio(p: Params) -> Any:
    import tinyio

    delays = _delays(p)
    sleep = tinyio.sleep

    def sleeper(delay: float, done: list[int]) -> Any:
        yield sleep(delay)
        done[0] += 1

    def main() -> Any:
        done = [0]
        yield [sleeper(delay, done) for delay in delays]
        return done[0]

    return main
