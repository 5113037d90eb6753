"""Memory per parked task: N tasks all waiting on one event.

``python -m benchmarks.memory [--n 100000] [--markdown PATH]`` runs each
runtime in its own process: it starts N tasks that wait on one event, and
reports the growth of the resident set size (``/proc/self/statm``) divided
by N, measured after the tasks have parked and after a ``gc.collect()``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

from .mdsection import update_section

RUNTIMES = ("yieldloop", "asyncio", "uvloop", "trio")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _child(runtime: str, n: int) -> float:
    import gc

    if runtime == "yieldloop":
        import yieldloop

        async def main_yl() -> float:
            ev = yieldloop.Event()
            gc.collect()
            r0 = _rss()
            async with yieldloop.TaskGroup() as tg:
                for _ in range(n):
                    tg.spawn(ev.wait)
                await yieldloop.sleep(0)
                gc.collect()
                r1 = _rss()
                ev.set()
            return (r1 - r0) / n

        return yieldloop.run(main_yl)  # type: ignore[no-any-return]
    if runtime == "trio":
        import trio

        async def main_trio() -> float:
            ev = trio.Event()
            gc.collect()
            r0 = _rss()
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(ev.wait)
                await trio.sleep(0.01)
                gc.collect()
                r1 = _rss()
                ev.set()
            return (r1 - r0) / n

        return trio.run(main_trio)  # type: ignore[no-any-return]
    import asyncio

    async def main_aio() -> float:
        ev = asyncio.Event()
        gc.collect()
        r0 = _rss()
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(ev.wait())
            await asyncio.sleep(0)
            gc.collect()
            r1 = _rss()
            ev.set()
        return (r1 - r0) / n

    if runtime == "uvloop":
        import uvloop

        return uvloop.run(main_aio())  # type: ignore[no-any-return]
    return asyncio.run(main_aio())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        help="write the table into PATH: replace its own section there, or append one",
    )
    parser.add_argument("--child", nargs=2, metavar=("RUNTIME", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]))))
        return 0
    results: dict[str, float] = {}
    for runtime in RUNTIMES:
        values: list[float] = []
        for _ in range(args.reps):
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.memory", "--child", runtime, str(args.n)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                break
            values.append(json.loads(proc.stdout))
        if values:
            results[runtime] = statistics.median(values)
    base: Any = results.get("asyncio")
    lines = [
        f"Bytes of RSS per task parked on one event (N = {args.n:,}, median of {args.reps}):",
        "",
        "| runtime | bytes per parked task | vs asyncio |",
        "|---|---:|---:|",
    ]
    for runtime, value in results.items():
        ratio = f"{value / base:.2f}x" if base else "-"
        lines.append(f"| {runtime} | {value:,.0f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        section = "## Memory per parked task\n\n`.venv/bin/python -m benchmarks.memory`\n\n" + table
        update_section(args.markdown, "python -m benchmarks.memory", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
