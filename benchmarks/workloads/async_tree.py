"""async_tree: pyperformance's ``bm_async_tree``, on every runtime.

A tree 6 levels deep with 6 branches per node, built recursively: every
inner node runs its 6 children concurrently and waits for them, every leaf
does the variant's work. That is 6 + 6**2 + ... + 6**6 = 55,986 tasks (the
root is ``main`` itself) and 46,656 leaves. ops = tasks.

The variants, as in pyperformance:

* ``async_tree_none``: the leaves just return.
* ``async_tree_io``: every leaf sleeps 50 ms (all at once, so the run is
  50 ms of sleep and the rest is the runtime's time).
* ``async_tree_memoization``: every leaf draws a number from 1 to 100
  (``random.Random(0)``); numbers up to 90 are memoizable: a leaf whose
  number is already in the shared cache returns at once, otherwise it puts
  it there and sleeps 50 ms like an ``io`` leaf. The cache is a plain dict
  with no lock, exactly as pyperformance has it: the check and the store
  happen with no await between them, so no other task can interleave.
* ``async_tree_none_tg``: ``none`` built with task groups instead of
  ``gather`` (pyperformance's ``--task-groups``).

``--quick`` runs ``memoization`` and ``none_tg`` only, 4 levels deep (1,554
tasks): together they take every path of every implementation.

How each runtime builds a node, in its own idiom: ``asyncio.gather`` and
``yieldloop.gather`` (``asyncio.TaskGroup`` / ``yieldloop.TaskGroup`` for
``_tg``); trio, anyio and curio have no gather, so every variant is a
nursery / task group there; tinyio yields the list of child coroutines,
which is its gather. The leaf's mock I/O call is its own coroutine, awaited
from the leaf, as in pyperformance.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from typing import Any

from ..registry import Params, Workload, register

#: pyperformance's constants.
LEVELS = 6
BRANCHES = 6
IO_SLEEP = 0.05
MEMOIZABLE = 90
SEED = 0


def tasks_in_tree(levels: int, branches: int) -> int:
    """Tasks in a tree of ``levels`` below the root: branches + branches**2 + ..."""
    return sum(branches**i for i in range(1, levels + 1))


def _sizes(variant: str, style: str, levels: int) -> dict[str, Any]:
    return {
        "variant": variant,
        "style": style,
        "levels": levels,
        "branches": BRANCHES,
        "io_sleep": IO_SLEEP,
        "memoizable": MEMOIZABLE,
        "seed": SEED,
    }


_DESCRIPTIONS = {
    "none": "leaves return at once",
    "io": "leaves sleep({io_sleep:g})",
    "memoization": "leaves: {memoizable}% memoizable in a shared cache, else sleep({io_sleep:g})",
}


#: The variants ``--quick`` runs (small trees): between them they take every
#: path of every implementation - gather and task groups, the cache, the sleep.
QUICK = ("async_tree_memoization", "async_tree_none_tg")
QUICK_LEVELS = 4


def _register(variant: str, style: str) -> Workload:
    name = f"async_tree_{variant}" + ("_tg" if style == "tg" else "")
    how = "gather" if style == "gather" else "task groups"
    return register(
        Workload(
            name=name,
            description="pyperformance tree, depth {levels}, {branches} branches "
            f"({{ops:,}} tasks) through {how}; {_DESCRIPTIONS[variant]}",
            sizes=_sizes(variant, style, LEVELS),
            quick=_sizes(variant, style, QUICK_LEVELS) if name in QUICK else None,
            ops=lambda p: tasks_in_tree(p["levels"], p["branches"]),
            unit="tasks",
        )
    )


Leaf = Callable[[], Coroutine[Any, Any, Any]]


def _leaf_factory(p: Params, sleep: Callable[[float], Any]) -> Leaf:
    """The leaf's work for ``p["variant"]``, as an async function over ``sleep``."""
    variant = p["variant"]
    io_sleep = p["io_sleep"]

    async def mock_io_call() -> None:
        await sleep(io_sleep)

    if variant == "none":

        async def leaf() -> Any:
            return None

    elif variant == "io":

        async def leaf() -> Any:
            await mock_io_call()

    elif variant == "memoization":
        randint = random.Random(p["seed"]).randint
        memoizable = p["memoizable"]
        cache: dict[int, bool] = {}

        async def leaf() -> Any:
            data = randint(1, 100)
            if data <= memoizable:
                if cache.get(data):
                    return data
                cache[data] = True
            await mock_io_call()
            return data

    else:
        raise ValueError(f"unknown async_tree variant {variant!r}")
    return leaf


def _yieldloop(p: Params) -> Any:
    import yieldloop

    levels, branches = p["levels"], p["branches"]
    leaf = _leaf_factory(p, yieldloop.sleep)
    gather, TaskGroup = yieldloop.gather, yieldloop.TaskGroup
    count = [0]

    async def recurse_with_gather(level: int) -> None:
        count[0] += 1
        if level == 0:
            await leaf()
            return
        await gather(*[recurse_with_gather(level - 1) for _ in range(branches)])

    async def recurse_with_task_group(level: int) -> None:
        count[0] += 1
        if level == 0:
            await leaf()
            return
        async with TaskGroup() as tg:
            for _ in range(branches):
                tg.spawn(recurse_with_task_group, level - 1)

    recurse = recurse_with_gather if p["style"] == "gather" else recurse_with_task_group

    async def main() -> int:
        await recurse(levels)
        return count[0] - 1  # the root is main's own call, not a task

    return main


def _asyncio(p: Params) -> Any:
    import asyncio

    levels, branches = p["levels"], p["branches"]
    leaf = _leaf_factory(p, asyncio.sleep)
    gather, TaskGroup = asyncio.gather, asyncio.TaskGroup
    count = [0]

    async def recurse_with_gather(level: int) -> None:
        count[0] += 1
        if level == 0:
            await leaf()
            return
        await gather(*[recurse_with_gather(level - 1) for _ in range(branches)])

    async def recurse_with_task_group(level: int) -> None:
        count[0] += 1
        if level == 0:
            await leaf()
            return
        async with TaskGroup() as tg:
            for _ in range(branches):
                tg.create_task(recurse_with_task_group(level - 1))

    recurse = recurse_with_gather if p["style"] == "gather" else recurse_with_task_group

    async def main() -> int:
        await recurse(levels)
        return count[0] - 1

    return main


def _trio(p: Params) -> Any:
    import trio

    levels, branches = p["levels"], p["branches"]
    leaf = _leaf_factory(p, trio.sleep)
    open_nursery = trio.open_nursery
    count = [0]

    async def recurse(level: int) -> None:
        count[0] += 1
        if level == 0:
            await leaf()
            return
        async with open_nursery() as nursery:
            for _ in range(branches):
                nursery.start_soon(recurse, level - 1)

    async def main() -> int:
        await recurse(levels)
        return count[0] - 1

    return main


def _anyio(p: Params) -> Any:
    import anyio

    levels, branches = p["levels"], p["branches"]
    leaf = _leaf_factory(p, anyio.sleep)
    create_task_group = anyio.create_task_group
    count = [0]

    async def recurse(level: int) -> None:
        count[0] += 1
        if level == 0:
            await leaf()
            return
        async with create_task_group() as tg:
            for _ in range(branches):
                tg.start_soon(recurse, level - 1)

    async def main() -> int:
        await recurse(levels)
        return count[0] - 1

    return main


def _curio(p: Params) -> Any:
    import curio

    levels, branches = p["levels"], p["branches"]
    leaf = _leaf_factory(p, curio.sleep)
    TaskGroup = curio.TaskGroup
    count = [0]

    async def recurse(level: int) -> None:
        count[0] += 1
        if level == 0:
            await leaf()
            return
        async with TaskGroup() as g:
            for _ in range(branches):
                await g.spawn(recurse, level - 1)

    async def main() -> int:
        await recurse(levels)
        return count[0] - 1

    return main


def _tinyio(p: Params) -> Any:
    import tinyio

    levels, branches = p["levels"], p["branches"]
    variant, io_sleep = p["variant"], p["io_sleep"]
    sleep = tinyio.sleep
    randint = random.Random(p["seed"]).randint
    memoizable = p["memoizable"]
    cache: dict[int, bool] = {}
    count = [0]

    def mock_io_call() -> Any:
        yield from sleep(io_sleep)

    def leaf() -> Any:
        if variant == "io":
            yield from mock_io_call()
        elif variant == "memoization":
            data = randint(1, 100)
            if data <= memoizable:
                if cache.get(data):
                    return data
                cache[data] = True
            yield from mock_io_call()
            return data
        return None

    def recurse(level: int) -> Any:
        count[0] += 1
        if level == 0:
            yield from leaf()
            return
        yield [recurse(level - 1) for _ in range(branches)]

    def main() -> Any:
        yield from recurse(levels)
        return count[0] - 1

    return main


for _variant, _style in (
    ("none", "gather"),
    ("io", "gather"),
    ("memoization", "gather"),
    ("none", "tg"),
):
    _w = _register(_variant, _style)
    _w.impl("yieldloop")(_yieldloop)
    _w.impl("asyncio")(_asyncio)
    _w.impl("trio")(_trio)
    _w.impl("anyio")(_anyio)
    _w.impl("curio")(_curio)
    _w.impl("tinyio")(_tinyio)
