"""gather: 10,000 trivial coroutines through ``gather``.

``asyncio.gather`` and ``yieldloop.gather`` where the runtime has one; trio
and anyio have no gather, so theirs is the idiomatic equivalent: a nursery
(task group) whose tasks store their results into a list by index. curio
uses a TaskGroup and its ``results``, tinyio yields the list of coroutines
(which is its gather). Each coroutine returns 1 and ``main`` returns the sum
of the results, so a lost result shows as a failed run. ops = coroutines.
"""

from __future__ import annotations

from typing import Any

from ..registry import Params, Workload, register

gather = register(
    Workload(
        name="gather",
        description="{coros:,} trivial coroutines through gather",
        sizes={"coros": 10_000},
        quick={"coros": 2_500},
        ops=lambda p: p["coros"],
        unit="coroutines",
    )
)


async def _one() -> int:
    return 1


@gather.impl("yieldloop")
def _yieldloop(p: Params) -> Any:
    import yieldloop

    n = p["coros"]

    async def main() -> int:
        results = await yieldloop.gather(*[_one() for _ in range(n)])
        return sum(results)

    return main


@gather.impl("asyncio")
def _asyncio(p: Params) -> Any:
    import asyncio

    n = p["coros"]

    async def main() -> int:
        results = await asyncio.gather(*[_one() for _ in range(n)])
        return sum(results)

    return main


@gather.impl("trio")
def _trio(p: Params) -> Any:
    import trio

    n = p["coros"]

    async def store(results: list[Any], i: int) -> None:
        results[i] = await _one()

    async def main() -> int:
        results: list[Any] = [None] * n
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(store, results, i)
        return sum(results)

    return main


@gather.impl("anyio")
def _anyio(p: Params) -> Any:
    import anyio

    n = p["coros"]

    async def store(results: list[Any], i: int) -> None:
        results[i] = await _one()

    async def main() -> int:
        results: list[Any] = [None] * n
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(store, results, i)
        return sum(results)

    return main


@gather.impl("curio")
def _curio(p: Params) -> Any:
    import curio

    n = p["coros"]

    async def main() -> int:
        async with curio.TaskGroup() as g:
            for _ in range(n):
                await g.spawn(_one)
        return sum(g.results)

    return main


@gather.impl("tinyio")
def _tinyio(p: Params) -> Any:
    n = p["coros"]

    def one() -> Any:
        return 1
        yield  # a generator function: tinyio's kind of coroutine

    def main() -> Any:
        results = yield [one() for _ in range(n)]
        return sum(results)

    return main
