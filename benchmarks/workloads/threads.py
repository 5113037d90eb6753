"""to_thread: ``calls`` sequential calls of a function that does nothing, each
in a worker thread, awaited one after the other. ops = calls.

What one call costs: hand a job to a thread, wake it, wake the loop with the
result, resume the task. A runtime that starts a thread per call pays for
starting (and joining) it every time; the others keep idle threads: asyncio's
default executor (``asyncio.to_thread``, also on uvloop), trio's thread cache
(``trio.to_thread.run_sync``), anyio (``anyio.to_thread.run_sync``, over
asyncio's) and yieldloop's pool (``yieldloop.to_thread``).
"""

from __future__ import annotations

from typing import Any

from ..registry import Params, Workload, register

to_thread = register(
    Workload(
        name="to_thread",
        description="{calls:,} sequential to_thread(f) calls, f does nothing",
        sizes={"calls": 2_000},
        quick={"calls": 500},
        ops=lambda p: p["calls"],
        unit="calls",
    )
)


def _nothing() -> None:
    return None


def _sequential(run: Any, calls: int) -> Any:
    """``main``: ``calls`` calls of ``run(_nothing)``, one after the other
    (every runtime's version is this loop over its own to_thread)."""

    async def main() -> int:
        done = 0
        for _ in range(calls):
            await run(_nothing)
            done += 1
        return done

    return main


@to_thread.impl("yieldloop")
def _yieldloop(p: Params) -> Any:
    import yieldloop

    return _sequential(yieldloop.to_thread, p["calls"])


@to_thread.impl("asyncio")
def _asyncio(p: Params) -> Any:
    import asyncio

    return _sequential(asyncio.to_thread, p["calls"])


@to_thread.impl("trio")
def _trio(p: Params) -> Any:
    import trio

    return _sequential(trio.to_thread.run_sync, p["calls"])


@to_thread.impl("anyio")
def _anyio(p: Params) -> Any:
    import anyio.to_thread

    return _sequential(anyio.to_thread.run_sync, p["calls"])
