"""Does waking or cancelling one waiter cost the same among 10 or 100,000?

``python -m benchmarks.waiters [--markdown PATH]`` parks N tasks on a lock
(or on a queue's ``get``), then times two operations against that crowd:

* cancel: K more tasks wait on the lock (behind the N), then each is
  cancelled; the time per cancellation, its wake-up included.
* wake: N + K tasks wait in ``queue.get()``; the first K are handed an item
  each; the time per ``put`` + wake-up.

For each runtime the cost at N = 100,000 is divided by the cost at N = 10:
1.0 means the operation does not depend on how many tasks wait.
Only the operations are timed (in-process ``perf_counter``), not the setup.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from .mdsection import update_section

K = 2000
SIZES = (10, 100_000)


def yieldloop_case(n: int) -> tuple[float, float]:
    import yieldloop

    async def main() -> tuple[float, float]:
        lock = yieldloop.Lock()
        await lock.acquire()
        q: yieldloop.Queue[int] = yieldloop.Queue()
        async with yieldloop.TaskGroup() as tg:
            for _ in range(n):
                tg.spawn(lock.acquire)
            probes = [tg.spawn(lock.acquire) for _ in range(K)]
            await yieldloop.sleep(0)
            gc.collect()
            t0 = time.perf_counter()
            for t in probes:
                t.cancel()
            await yieldloop.sleep(0)
            cancel = (time.perf_counter() - t0) / K
            for _ in range(n + K):
                tg.spawn(q.get)
            await yieldloop.sleep(0)
            gc.collect()
            t0 = time.perf_counter()
            for i in range(K):
                q.put_nowait(i)
            await yieldloop.sleep(0)
            wake = (time.perf_counter() - t0) / K
            tg.cancel_scope.cancel()
        return cancel, wake

    return yieldloop.run(main)  # type: ignore[no-any-return]


def asyncio_case(n: int, runner: Callable[[Any], Any] | None = None) -> tuple[float, float]:
    import asyncio

    async def main() -> tuple[float, float]:
        lock = asyncio.Lock()
        await lock.acquire()
        q: asyncio.Queue[int] = asyncio.Queue()
        tasks = [asyncio.create_task(lock.acquire()) for _ in range(n)]
        probes = [asyncio.create_task(lock.acquire()) for _ in range(K)]
        await asyncio.sleep(0)
        gc.collect()
        t0 = time.perf_counter()
        for t in probes:
            t.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        cancel = (time.perf_counter() - t0) / K
        getters = [asyncio.create_task(q.get()) for _ in range(n + K)]
        await asyncio.sleep(0)
        gc.collect()
        t0 = time.perf_counter()
        for i in range(K):
            q.put_nowait(i)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        wake = (time.perf_counter() - t0) / K
        for t in tasks + getters:
            t.cancel()
        await asyncio.gather(*tasks, *getters, *probes, return_exceptions=True)
        return cancel, wake

    return (runner or asyncio.run)(main())  # type: ignore[no-any-return]


def uvloop_case(n: int) -> tuple[float, float]:
    import uvloop

    return asyncio_case(n, uvloop.run)


def trio_case(n: int) -> tuple[float, float]:
    import trio

    async def main() -> tuple[float, float]:
        lock = trio.Lock()
        await lock.acquire()
        send, receive = trio.open_memory_channel[int](0)
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(lock.acquire)
            scopes = []

            async def probe() -> None:
                with trio.CancelScope() as cs:
                    scopes.append(cs)
                    await lock.acquire()

            for _ in range(K):
                nursery.start_soon(probe)
            while len(scopes) < K or lock.statistics().tasks_waiting < n + K:
                await trio.sleep(0.001)
            gc.collect()
            t0 = time.perf_counter()
            for cs in scopes:
                cs.cancel()
            await trio.sleep(0)
            cancel = (time.perf_counter() - t0) / K
            for _ in range(n + K):
                nursery.start_soon(receive.receive)
            while receive.statistics().tasks_waiting_receive < n + K:
                await trio.sleep(0.001)
            gc.collect()
            t0 = time.perf_counter()
            for i in range(K):
                send.send_nowait(i)
            await trio.sleep(0)
            wake = (time.perf_counter() - t0) / K
            nursery.cancel_scope.cancel()
        return cancel, wake

    return trio.run(main)  # type: ignore[no-any-return]


CASES: dict[str, Callable[[int], tuple[float, float]]] = {
    "yieldloop": yieldloop_case,
    "asyncio": asyncio_case,
    "uvloop": uvloop_case,
    "trio": trio_case,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.waiters", description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="write the table into PATH: replace its own section there, or append one",
    )
    args = parser.parse_args(argv)
    rows = []
    for name, case in CASES.items():
        try:
            costs = {n: [case(n) for _ in range(args.reps)] for n in SIZES}
        except ImportError:
            continue
        med = {
            n: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v))
            for n, v in costs.items()
        }
        small, big = med[SIZES[0]], med[SIZES[-1]]
        rows.append(
            f"| {name} | {small[0] * 1e9:,.0f} | {big[0] * 1e9:,.0f} | {big[0] / small[0]:.2f}x "
            f"| {small[1] * 1e9:,.0f} | {big[1] * 1e9:,.0f} | {big[1] / small[1]:.2f}x |"
        )
    table = "\n".join(
        [
            f"Cost per operation (ns, median of {args.reps}) with N tasks already waiting, "
            f"K = {K} operations:",
            "",
            "| runtime | cancel, N=10 | cancel, N=100,000 | ratio "
            "| wake, N=10 | wake, N=100,000 | ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(table)
    if args.markdown:
        section = (
            "## Waking and cancelling among many waiters\n\n"
            "`.venv/bin/python -m benchmarks.waiters`\n\n" + table
        )
        update_section(args.markdown, "python -m benchmarks.waiters", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
