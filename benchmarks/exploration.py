"""What exploring schedules costs: the same run under the kernel's own FIFO
loop and under the test schedulers of :mod:`yieldloop.testing`.

    python -m benchmarks.exploration [--reps 7]

Each row is a program of T tasks switching with ``sleep(0)`` (T = 100: the
switch workload of the suite; T = 3 and 10: closer to a unit test), run on a
:class:`VirtualClock`. Runs are interleaved (every scheduler once, then
again) in one process; the table shows the median time and the ratio to the
plain FIFO run. The target: a run under ``RandomScheduler`` costs at most 2x
a plain run.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import yieldloop as yl
from yieldloop.testing import PCTScheduler, RandomScheduler, Scheduler, VirtualClock

SWITCHES = 200_000


def program(tasks: int) -> Callable[[], object]:
    per_task = SWITCHES // tasks

    async def worker() -> None:
        for _ in range(per_task):
            await yl.sleep(0)

    async def main() -> None:
        async with yl.TaskGroup() as tg:
            for _ in range(tasks):
                tg.spawn(worker)

    return main


SCHEDULERS: dict[str, Callable[[], Scheduler | None]] = {
    "fifo (no scheduler)": lambda: None,
    "Scheduler() (fifo hook)": Scheduler,
    "RandomScheduler": lambda: RandomScheduler(1),
    "PCTScheduler": lambda: PCTScheduler(1, steps=SWITCHES),
}


def main() -> None:
    """Run the comparison and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    print(f"{SWITCHES:,} switches per run, median of {args.reps} interleaved runs\n")
    print("| tasks | scheduler | median s | ratio to fifo |")
    print("|---:|---|---:|---:|")
    for tasks in (3, 10, 100):
        prog = program(tasks)
        times: dict[str, list[float]] = {name: [] for name in SCHEDULERS}
        for _ in range(args.reps):
            for name, make in SCHEDULERS.items():
                sched = make()
                gc.collect()
                t0 = time.perf_counter()
                yl.run(prog, clock=VirtualClock(), scheduler=sched)
                times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["fifo (no scheduler)"])
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"| {tasks} | {name} | {med:.3f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
