"""live_*: the cost of an operation while L other tasks are alive but idle.

L = 1,000, 10,000 and 100,000 tasks are parked on one event (the crowd a
server with many quiet connections has). Then a small, fixed set of busy
tasks runs, and only that part is timed (the workloads are self-timed:
spawning the crowd and letting it go are setup, not the operation). A
runtime whose scheduler does work per live task - scanning them, or a
garbage collector walking them - gets slower as L grows; ideally the rate
is the same at every L. Two series:

* ``live_sleep0``: 10 busy tasks x 50,000 ``sleep(0)`` each, the switch
  workload's operation. ops = 500,000 switches.
* ``live_switch``: 5 pairs of tasks waking each other 20,000 times through
  events (the event_pingpong workload's operation: a park and a reschedule
  per wake-up). ops = 200,000 wake-ups.

The crowd is made before the clock starts: every parked task counts itself
just before it waits, ``main`` checkpoints until all of them have, then
collects garbage, so every runtime starts the timed part from the same
state. After it, the event is set and the crowd finishes.

yieldloop, asyncio (and uvloop), trio and anyio only: spawning is quadratic
on curio and tinyio while asserts are on (see ``benchmarks/runtimes.py``),
which makes a crowd of 100,000 take minutes there. ``--quick`` runs
L = 1,000 only, with a tenth of the operations.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from ..registry import Params, Series, Workload, register, register_series

#: The sizes of the crowd.
LIVE = (1_000, 10_000, 100_000)
#: The largest crowd that ``--quick`` runs.
QUICK_MAX = 1_000

_NOTE = (
    "The busy tasks' rate and CPU time per operation with L idle tasks alive; the "
    "last column divides the value at the largest L by the value at the smallest. "
    "1.00 means idle tasks cost nothing; the goal is a rate ratio >= 0.67 (CPU "
    "ratio <= 1.5: an operation costs at most 1.5x as much among 100,000 idle "
    "tasks as among 1,000). The CPU time is the steadier of the two on a busy machine."
)

sleep0_series = register_series(
    Series(
        name="live_sleep0",
        title="10 busy tasks doing sleep(0) in a loop, with L idle tasks alive",
        axis="L (idle tasks alive)",
        note=_NOTE,
        chart="cpu",
    )
)
switch_series = register_series(
    Series(
        name="live_switch",
        title="5 pairs of tasks waking each other through events, with L idle tasks alive",
        axis="L (idle tasks alive)",
        note=_NOTE,
        chart="cpu",
    )
)


def _ops(p: Params) -> int:
    if p["kind"] == "sleep0":
        return int(p["tasks"] * p["rounds"])
    return int(2 * p["tasks"] * p["rounds"])


def _register(series: Series, kind: str, live: int) -> Workload:
    if kind == "sleep0":
        description = "{tasks} busy tasks x {rounds:,} sleep(0), {live:,} idle tasks alive"
        tasks, rounds = 10, 50_000
    else:
        description = (
            "{tasks} pairs x {rounds:,} event wake-ups each way, {live:,} idle tasks alive"
        )
        tasks, rounds = 5, 20_000
    return register(
        Workload(
            name=f"{series.name}_{live}",
            description=description,
            sizes={"kind": kind, "live": live, "tasks": tasks, "rounds": rounds},
            quick=(
                {"kind": kind, "live": live, "tasks": tasks, "rounds": rounds // 10}
                if live <= QUICK_MAX
                else None
            ),
            ops=_ops,
            unit="switches" if kind == "sleep0" else "wake-ups",
            series=series,
            x=live,
            self_timed=True,
        )
    )


def _yieldloop(p: Params) -> Any:
    import yieldloop

    kind, live, tasks, rounds = p["kind"], p["live"], p["tasks"], p["rounds"]
    sleep, Event, TaskGroup = yieldloop.sleep, yieldloop.Event, yieldloop.TaskGroup
    perf_counter, process_time = time.perf_counter, time.process_time

    async def main() -> tuple[int, float, float]:
        crowd = Event()
        parked = [0]
        done = [0]

        async def idle() -> None:
            parked[0] += 1
            await crowd.wait()

        async def sleeper() -> None:
            for _ in range(rounds):
                await sleep(0)
            done[0] += rounds

        async def pair() -> None:
            ping = [Event()]
            pong = [Event()]

            async def a() -> None:
                for _ in range(rounds):
                    ping[0].set()
                    await pong[0].wait()
                    pong[0] = Event()
                done[0] += rounds

            async def b() -> None:
                for _ in range(rounds):
                    await ping[0].wait()
                    ping[0] = Event()
                    pong[0].set()
                done[0] += rounds

            async with TaskGroup() as tg:
                tg.spawn(a)
                tg.spawn(b)

        busy = sleeper if kind == "sleep0" else pair
        async with TaskGroup() as crowd_group:
            for _ in range(live):
                crowd_group.spawn(idle)
            while parked[0] < live:
                await sleep(0)
            gc.collect()
            t0, c0 = perf_counter(), process_time()
            async with TaskGroup() as tg:
                for _ in range(tasks):
                    tg.spawn(busy)
            seconds, cpu = perf_counter() - t0, process_time() - c0
            crowd.set()
        return done[0], seconds, cpu

    return main


def _asyncio(p: Params) -> Any:
    import asyncio

    kind, live, tasks, rounds = p["kind"], p["live"], p["tasks"], p["rounds"]
    sleep, Event, TaskGroup = asyncio.sleep, asyncio.Event, asyncio.TaskGroup
    perf_counter, process_time = time.perf_counter, time.process_time

    async def main() -> tuple[int, float, float]:
        crowd = Event()
        parked = [0]
        done = [0]

        async def idle() -> None:
            parked[0] += 1
            await crowd.wait()

        async def sleeper() -> None:
            for _ in range(rounds):
                await sleep(0)
            done[0] += rounds

        async def pair() -> None:
            ping = Event()
            pong = Event()

            async def a() -> None:
                for _ in range(rounds):
                    ping.set()
                    await pong.wait()
                    pong.clear()
                done[0] += rounds

            async def b() -> None:
                for _ in range(rounds):
                    await ping.wait()
                    ping.clear()
                    pong.set()
                done[0] += rounds

            async with TaskGroup() as tg:
                tg.create_task(a())
                tg.create_task(b())

        busy = sleeper if kind == "sleep0" else pair
        async with TaskGroup() as crowd_group:
            for _ in range(live):
                crowd_group.create_task(idle())
            while parked[0] < live:
                await sleep(0)
            gc.collect()
            t0, c0 = perf_counter(), process_time()
            async with TaskGroup() as tg:
                for _ in range(tasks):
                    tg.create_task(busy())
            seconds, cpu = perf_counter() - t0, process_time() - c0
            crowd.set()
        return done[0], seconds, cpu

    return main


def _trio(p: Params) -> Any:
    import trio

    kind, live, tasks, rounds = p["kind"], p["live"], p["tasks"], p["rounds"]
    sleep, Event, open_nursery = trio.sleep, trio.Event, trio.open_nursery
    perf_counter, process_time = time.perf_counter, time.process_time

    async def main() -> tuple[int, float, float]:
        crowd = Event()
        parked = [0]
        done = [0]

        async def idle() -> None:
            parked[0] += 1
            await crowd.wait()

        async def sleeper() -> None:
            for _ in range(rounds):
                await sleep(0)
            done[0] += rounds

        async def pair() -> None:
            ping = [Event()]
            pong = [Event()]

            async def a() -> None:
                for _ in range(rounds):
                    ping[0].set()
                    await pong[0].wait()
                    pong[0] = Event()
                done[0] += rounds

            async def b() -> None:
                for _ in range(rounds):
                    await ping[0].wait()
                    ping[0] = Event()
                    pong[0].set()
                done[0] += rounds

            async with open_nursery() as nursery:
                nursery.start_soon(a)
                nursery.start_soon(b)

        busy = sleeper if kind == "sleep0" else pair
        async with open_nursery() as crowd_nursery:
            for _ in range(live):
                crowd_nursery.start_soon(idle)
            while parked[0] < live:
                await sleep(0)
            gc.collect()
            t0, c0 = perf_counter(), process_time()
            async with open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(busy)
            seconds, cpu = perf_counter() - t0, process_time() - c0
            crowd.set()
        return done[0], seconds, cpu

    return main


def _anyio(p: Params) -> Any:
    import anyio

    kind, live, tasks, rounds = p["kind"], p["live"], p["tasks"], p["rounds"]
    sleep, Event, create_task_group = anyio.sleep, anyio.Event, anyio.create_task_group
    perf_counter, process_time = time.perf_counter, time.process_time

    async def main() -> tuple[int, float, float]:
        crowd = Event()
        parked = [0]
        done = [0]

        async def idle() -> None:
            parked[0] += 1
            await crowd.wait()

        async def sleeper() -> None:
            for _ in range(rounds):
                await sleep(0)
            done[0] += rounds

        async def pair() -> None:
            ping = [Event()]
            pong = [Event()]

            async def a() -> None:
                for _ in range(rounds):
                    ping[0].set()
                    await pong[0].wait()
                    pong[0] = Event()
                done[0] += rounds

            async def b() -> None:
                for _ in range(rounds):
                    await ping[0].wait()
                    ping[0] = Event()
                    pong[0].set()
                done[0] += rounds

            async with create_task_group() as tg:
                tg.start_soon(a)
                tg.start_soon(b)

        busy = sleeper if kind == "sleep0" else pair
        async with create_task_group() as crowd_group:
            for _ in range(live):
                crowd_group.start_soon(idle)
            while parked[0] < live:
                await sleep(0)
            gc.collect()
            t0, c0 = perf_counter(), process_time()
            async with create_task_group() as tg:
                for _ in range(tasks):
                    tg.start_soon(busy)
            seconds, cpu = perf_counter() - t0, process_time() - c0
            crowd.set()
        return done[0], seconds, cpu

    return main


for _series, _kind in ((sleep0_series, "sleep0"), (switch_series, "switch")):
    for _live in LIVE:
        _w = _register(_series, _kind, _live)
        _w.impl("yieldloop")(_yieldloop)
        _w.impl("asyncio")(_asyncio)
        _w.impl("trio")(_trio)
        _w.impl("anyio")(_anyio)
