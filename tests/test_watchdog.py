"""The blocking detector (``_kernel/_watchdog.py``): a step that blocks the
loop is reported while it blocks, with the line it is stuck on."""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
from pathlib import Path

import pytest
from _leaks import no_leaks

import yieldloop as yl
from yieldloop._kernel._watchdog import SlowStep, SlowStepWatchdog
from yieldloop.lowlevel import current_kernel
from yieldloop.testing import VirtualClock

pytestmark = pytest.mark.timeout(60)

HERE = os.path.abspath(__file__)


def line_of(marker: str) -> int:
    """The number of the line of this file that ends with ``marker``."""
    lines = Path(HERE).read_text().splitlines()
    hits = [i for i, line in enumerate(lines, 1) if line.rstrip().endswith(marker)]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "yieldloop-watchdog"]


async def blocker() -> None:
    await yl.sleep(0)
    time.sleep(0.5)  # BLOCKS THE LOOP
    await yl.sleep(0)


async def others(n: int) -> None:
    for _ in range(n):
        await yl.sleep(0)


def test_a_blocking_step_is_reported_while_it_runs_with_its_line():
    stream = io.StringIO()
    dog = SlowStepWatchdog(0.1, stream)

    async def main() -> None:
        async with yl.TaskGroup() as tg:
            tg.spawn(blocker, name="sleepy")
            tg.spawn(others, 20, name="bystander")

    with no_leaks(settle=0):  # the thread is joined by the time run() returns
        yl.run(main, instruments=[dog])
    assert watchdog_threads() == []
    [report] = dog.reports  # once for the step, not at every wake-up
    assert isinstance(report, SlowStep)
    assert report.task_name == "sleepy"
    assert report.elapsed >= 0.1
    assert report.duration is not None and report.duration >= 0.5
    assert report.duration > report.elapsed  # reported before the step ended
    where = report.stack[-1]
    assert (where.filename, where.lineno, where.name) == (HERE, line_of("# BLOCKS THE LOOP"),
                                                          "blocker")
    assert where.line == "time.sleep(0.5)  # BLOCKS THE LOOP"
    assert len(report.stack) == 1  # from the task's coroutine down: no kernel frames
    text = stream.getvalue()
    assert text.count("has been running for") == 1
    assert "task 'sleepy' has been running for" in text
    assert f'File "{HERE}", line {line_of("# BLOCKS THE LOOP")}, in blocker' in text
    assert "    time.sleep(0.5)" in text
    assert "task 'sleepy' returned to the loop after" in text
    # The report came first, the end of the step after it.
    assert text.index("has been running for") < text.index("returned to the loop")


def test_a_fast_program_reports_nothing():
    stream = io.StringIO()
    dog = SlowStepWatchdog(0.5, stream)

    async def main() -> None:
        lock = yl.Lock()

        async def worker() -> None:
            for _ in range(20):
                async with lock:
                    await yl.sleep(0)

        async with yl.TaskGroup() as tg:
            for _ in range(100):
                tg.spawn(worker)

    yl.run(main, instruments=[dog])
    assert dog.reports == []
    assert stream.getvalue() == ""
    assert watchdog_threads() == []


def test_each_slow_step_is_reported_once_and_by_its_task():
    stream = io.StringIO()
    dog = SlowStepWatchdog(0.05, stream)

    async def twice() -> None:
        time.sleep(0.3)  # FIRST SLOW STEP
        await yl.sleep(0)
        time.sleep(0.3)  # SECOND SLOW STEP

    @yl.coroutine
    def gen_blocker():
        yield from yl.sleep(0)
        time.sleep(0.3)  # GENERATOR BLOCKS

    async def main() -> None:
        async with yl.TaskGroup() as tg:
            tg.spawn(twice, name="twice")
            tg.spawn(gen_blocker, name="gen")

    yl.run(main, instruments=[dog])
    got = [(r.task_name, r.stack[-1].lineno) for r in dog.reports]
    assert got == [  # first in, first out: both tasks' second steps come last
        ("twice", line_of("# FIRST SLOW STEP")),
        ("twice", line_of("# SECOND SLOW STEP")),
        ("gen", line_of("# GENERATOR BLOCKS")),
    ]
    # Each stack starts at the task's own coroutine (or generator) frame.
    assert [[f.name for f in r.stack] for r in dog.reports] == [
        ["twice"], ["twice"], ["gen_blocker"]
    ]
    assert all(r.duration is not None and r.duration >= 0.3 for r in dog.reports)


def test_without_a_stream_reports_go_to_the_yieldloop_logger(caplog):
    dog = SlowStepWatchdog(0.1)
    with caplog.at_level(logging.WARNING, logger="yieldloop"):
        yl.run(blocker, instruments=[dog])
    records = [r for r in caplog.records if r.name == "yieldloop"]
    assert len(records) == 2
    assert records[0].levelno == logging.WARNING
    assert "task 'blocker' has been running for" in records[0].getMessage()
    assert f"line {line_of('# BLOCKS THE LOOP')}, in blocker" in records[0].getMessage()
    assert "returned to the loop after" in records[1].getMessage()


def test_real_time_is_watched_also_on_a_virtual_clock():
    stream = io.StringIO()
    dog = SlowStepWatchdog(0.1, stream)

    async def main() -> None:
        await yl.sleep(3600)  # virtual: takes no time
        await blocker()

    yl.run(main, clock=VirtualClock(), instruments=[dog])
    assert [r.stack[-1].lineno for r in dog.reports] == [line_of("# BLOCKS THE LOOP")]


def test_added_during_a_run_and_stopped_when_the_run_fails():
    stream = io.StringIO()
    dog = SlowStepWatchdog(0.1, stream)

    async def main() -> None:
        current_kernel().add_instrument(dog)
        await yl.sleep(0)
        assert len(watchdog_threads()) == 1
        await blocker()
        raise KeyError("boom")

    with no_leaks(settle=0), pytest.raises(KeyError, match="boom"):
        yl.run(main)
    assert len(dog.reports) == 1
    assert watchdog_threads() == []
    # The same watchdog serves a later run too.
    yl.run(blocker, instruments=[dog])
    assert len(dog.reports) == 2
    assert watchdog_threads() == []


def test_removed_during_a_run_then_closed():
    dog = SlowStepWatchdog(0.1, io.StringIO())

    async def main() -> None:
        kernel = current_kernel()
        kernel.add_instrument(dog)
        await yl.sleep(0)
        kernel.remove_instrument(dog)
        assert len(watchdog_threads()) == 1
        dog.close()
        assert watchdog_threads() == []
        dog.close()  # again: nothing happens
        await blocker()  # not watched any more

    yl.run(main)
    assert dog.reports == []


def test_a_broken_stream_does_not_break_the_run():
    stream = io.StringIO()
    stream.close()
    dog = SlowStepWatchdog(0.1, stream)
    yl.run(blocker, instruments=[dog])
    assert len(dog.reports) == 1  # still recorded
    assert watchdog_threads() == []


@pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan])
def test_bad_threshold_is_refused(bad):
    with pytest.raises(ValueError, match="threshold"):
        SlowStepWatchdog(bad)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="threshold"):
        SlowStepWatchdog("0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="threshold"):
        SlowStepWatchdog(True)
    with pytest.raises(TypeError, match="stream"):
        SlowStepWatchdog(0.1, stream="stderr")  # type: ignore[arg-type]
    assert "threshold=0.25 s" in repr(SlowStepWatchdog(0.25))
