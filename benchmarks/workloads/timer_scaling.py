"""timer_scaling: N tasks x 100 ``sleep(0.01)``, for N = 10, 100, 1,000, 10,000.

Every task sleeps 10 ms a hundred times in a row, so N timers are pending
at once and N of them fire every 10 ms. One workload per N, all in the
series ``timer_scaling``; ops = N x 100 sleeps.

A run can never take less than 100 x 10 ms = 1 s, so the rate can never
beat N / 0.01 s: at N = 10 every runtime is at that ceiling, and the rate
grows with N until the runtime's own cost per sleep (pushing a timer, popping
it when due, resuming the task) is what limits it. The report shows the rate
as a share of the ceiling, and the CPU time per sleep, which is the cost
itself and, for a heap of timers, should grow at most like log N.

``--quick`` runs N = 10 and 100 only, with 10 sleeps per task.
"""

from __future__ import annotations

from typing import Any

from ..registry import Params, Series, Workload, register, register_series

#: The sizes of the series.
TASKS = (10, 100, 1_000, 10_000)
#: The largest N that ``--quick`` runs, and its sleeps per task.
QUICK_MAX = 100
QUICK_ROUNDS = 10

series = register_series(
    Series(
        name="timer_scaling",
        title="N tasks, each doing sleep(0.01) in a loop (100 times; 10 with --quick)",
        axis="N (tasks sleeping at once)",
        note="Every task sleeps 0.01 s at a time, so the rate cannot pass N / 0.01 s "
        "(the ceiling; the share of it in brackets). The CPU time per sleep is the "
        "runtime's own cost; flat is ideal.",
        ideal=lambda p: p["tasks"] / p["delay"],
    )
)


def _register(n: int) -> Workload:
    return register(
        Workload(
            name=f"timer_scaling_{n}",
            description="{tasks:,} tasks x {rounds} sleep({delay:g}) each",
            sizes={"tasks": n, "rounds": 100, "delay": 0.01},
            quick={"tasks": n, "rounds": QUICK_ROUNDS, "delay": 0.01} if n <= QUICK_MAX else None,
            ops=lambda p: p["tasks"] * p["rounds"],
            unit="sleeps",
            series=series,
            x=n,
        )
    )


def _yieldloop(p: Params) -> Any:
    import yieldloop

    tasks, rounds, delay = p["tasks"], p["rounds"], p["delay"]
    sleep = yieldloop.sleep

    async def sleeper(done: list[int]) -> None:
        for _ in range(rounds):
            await sleep(delay)
        done[0] += rounds

    async def main() -> int:
        done = [0]
        async with yieldloop.TaskGroup() as tg:
            for _ in range(tasks):
                tg.spawn(sleeper, done)
        return done[0]

    return main


def _asyncio(p: Params) -> Any:
    import asyncio

    tasks, rounds, delay = p["tasks"], p["rounds"], p["delay"]
    sleep = asyncio.sleep

    async def sleeper(done: list[int]) -> None:
        for _ in range(rounds):
            await sleep(delay)
        done[0] += rounds

    async def main() -> int:
        done = [0]
        async with asyncio.TaskGroup() as tg:
            for _ in range(tasks):
                tg.create_task(sleeper(done))
        return done[0]

    return main


def _trio(p: Params) -> Any:
    import trio

    tasks, rounds, delay = p["tasks"], p["rounds"], p["delay"]
    sleep = trio.sleep

    async def sleeper(done: list[int]) -> None:
        for _ in range(rounds):
            await sleep(delay)
        done[0] += rounds

    async def main() -> int:
        done = [0]
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(sleeper, done)
        return done[0]

    return main


def _curio(p: Params) -> Any:
    import curio

    tasks, rounds, delay = p["tasks"], p["rounds"], p["delay"]
    sleep = curio.sleep

    async def sleeper(done: list[int]) -> None:
        for _ in range(rounds):
            await sleep(delay)
        done[0] += rounds

    async def main() -> int:
        done = [0]
        async with curio.TaskGroup() as g:
            for _ in range(tasks):
                await g.spawn(sleeper, done)
        return done[0]

    return main


def _anyio(p: Params) -> Any:
    import anyio

    tasks, rounds, delay = p["tasks"], p["rounds"], p["delay"]
    sleep = anyio.sleep

    async def sleeper(done: list[int]) -> None:
        for _ in range(rounds):
            await sleep(delay)
        done[0] += rounds

    async def main() -> int:
        done = [0]
        async with anyio.create_task_group() as tg:
            for _ in range(tasks):
                tg.start_soon(sleeper, done)
        return done[0]

    return main


def _tinyio(p: Params) -> Any:
    import tinyio

    tasks, rounds, delay = p["tasks"], p["rounds"], p["delay"]
    sleep = tinyio.sleep

    def sleeper(done: list[int]) -> Any:
        for _ in range(rounds):
            yield from sleep(delay)  # inline, as ``await sleep(delay)`` is
        done[0] += rounds

    def main() -> Any:
        done = [0]
        yield [sleeper(done) for _ in range(tasks)]
        return done[0]

    return main


for _n in TASKS:
    _w = _register(_n)
    _w.impl("yieldloop")(_yieldloop)
    _w.impl("asyncio")(_asyncio)
    _w.impl("trio")(_trio)
    _w.impl("curio")(_curio)
    _w.impl("anyio")(_anyio)
    _w.impl("tinyio")(_tinyio)
