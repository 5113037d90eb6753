"""The blocking detector: report a task step that keeps the loop busy too long.

Layer 1 (an :class:`Instrument`, only kernel concepts). A task that calls
``time.sleep(0.5)``, reads a file synchronously or computes for a while
without awaiting stops every other task for that long. A
:class:`SlowStepWatchdog` notes the start of every step (``before_task_step``)
and its end (``after_task_step``); a daemon thread of its own wakes every
``threshold / 4`` seconds and, when the current step has run longer than
``threshold``, reports it *while it is still running*, once per step: the
task's name, how long so far, and where the loop thread is right now (its
stack, from the task's coroutine down to the line it is stuck on). When
such a step ends, a second line tells how long it took in all.

Reports go to ``stream`` if one is given, else to the ``"yieldloop"``
logger (level WARNING); every report is also kept in
:attr:`SlowStepWatchdog.reports`. Time is real time (``time.monotonic``),
also on a virtual clock: a blocked loop blocks the real world. The thread
starts at the first hook and stops when the run finishes (or at
:meth:`SlowStepWatchdog.close`).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ._instruments import Instrument

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["SlowStep", "SlowStepWatchdog"]

logger = logging.getLogger("yieldloop")

_MAX_FRAMES = 1024


@dataclass
class SlowStep:
    """One report of :class:`SlowStepWatchdog`: a step that ran too long."""

    #: The task's name.
    task_name: str
    #: Seconds the step had been running when it was reported.
    elapsed: float
    #: The loop thread's stack at that moment, outermost frame first (from
    #: the task's coroutine down; the whole stack if that frame was not found).
    stack: traceback.StackSummary
    #: Seconds the whole step took; None until it ends.
    duration: float | None = None

    def format(self) -> str:
        """The report as text: a headline, then the stack like a traceback."""
        head = (
            f"yieldloop: task {self.task_name!r} has been running for {self.elapsed:.3f} s "
            "without returning to the loop (nothing else runs meanwhile); it is at:\n"
        )
        return head + "".join(self.stack.format())


class SlowStepWatchdog(Instrument):
    """Report every task step that runs longer than ``threshold`` seconds,
    while it runs (see the module docstring).

    ``yieldloop.run(main, instruments=[SlowStepWatchdog(0.1)])`` or, during
    a run, ``current_kernel().add_instrument(SlowStepWatchdog(0.1))``.
    ``stream`` is a text stream (``sys.stderr``...) to write reports to;
    None logs them to the ``"yieldloop"`` logger instead. If it is removed
    from a run before the end, call :meth:`close` to stop its thread.
    """

    def __init__(self, threshold: float = 0.1, stream: TextIO | None = None) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a number of seconds, got {threshold!r}")
        if not (threshold > 0 and math.isfinite(threshold)):
            raise ValueError(f"threshold must be > 0 seconds and finite, got {threshold!r}")
        if stream is not None and not callable(getattr(stream, "write", None)):
            raise TypeError(f"stream must be a text stream (with write()) or None, got {stream!r}")
        #: Seconds a step may run before it is reported.
        self.threshold = float(threshold)
        #: Where reports are written (None: the ``"yieldloop"`` logger).
        self.stream = stream
        #: Every report so far, oldest first.
        self.reports: list[SlowStep] = []
        # The step running now: (task, start time, serial number), or None.
        # Written by the loop thread only, read by the watchdog thread (one
        # attribute: always a whole tuple or None).
        self._step: tuple[Task[Any], float, int] | None = None
        self._serial = 0
        self._reported: tuple[int, SlowStep] | None = None  # (serial, report)
        self._loop_ident: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._write_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SlowStepWatchdog threshold={self.threshold:g} s, {len(self.reports)} reports>"

    # ------------------------------------------------------------ control

    def start(self) -> None:
        """Start the watchdog thread, watching the calling thread's loop
        (called by the first hook; call it yourself only from the loop thread)."""
        if self._thread is not None:
            return
        self._loop_ident = threading.get_ident()
        self._stop.clear()
        thread = threading.Thread(target=self._watch, name="yieldloop-watchdog", daemon=True)
        self._thread = thread
        thread.start()

    def close(self) -> None:
        """Stop the watchdog thread (and wait for it). Safe to call again."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._thread = None
        self._step = None

    # ------------------------------------------------------------ hooks

    def task_spawned(self, task: Task[Any]) -> None:
        """Start the thread at the run's first hook."""
        if self._thread is None:
            self.start()

    def before_task_step(self, task: Task[Any]) -> None:
        """A step starts: note the task and the time."""
        if self._thread is None:
            self.start()
        self._serial += 1
        self._step = (task, time.monotonic(), self._serial)

    def after_task_step(self, task: Task[Any], request: Any) -> None:
        """The step ended; if it was reported, report how long it took."""
        step = self._step
        self._step = None
        reported = self._reported
        if reported is not None and step is not None and reported[0] == step[2]:
            self._reported = None
            report = reported[1]
            report.duration = time.monotonic() - step[1]
            self._emit(
                f"yieldloop: task {report.task_name!r} returned to the loop after "
                f"{report.duration:.3f} s\n"
            )

    def run_finished(self) -> None:
        """Stop the thread."""
        self.close()

    # ------------------------------------------------------------ thread

    def _watch(self) -> None:
        interval = self.threshold / 4
        stop = self._stop
        while not stop.wait(interval):
            step = self._step
            if step is None:
                continue
            task, start, serial = step
            reported = self._reported
            if reported is not None and reported[0] == serial:
                continue
            elapsed = time.monotonic() - start
            if elapsed < self.threshold:
                continue
            try:
                report = self._make_report(task, elapsed, step)
            except Exception as exc:  # never let the watchdog die or disturb the run
                logger.debug("the yieldloop watchdog could not read the stack: %s", exc)
                continue
            if report is None:
                continue  # the step ended while we looked
            self._reported = (serial, report)
            self.reports.append(report)
            self._emit(report.format())

    def _make_report(
        self, task: Task[Any], elapsed: float, step: tuple[Task[Any], float, int]
    ) -> SlowStep | None:
        ident = self._loop_ident
        if ident is None:
            return None
        frame = sys._current_frames().get(ident)
        frames: list[types.FrameType] = []
        while frame is not None and len(frames) < _MAX_FRAMES:
            frames.append(frame)
            frame = frame.f_back
        frames.reverse()
        coro = task._coro
        top = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        for i, f in enumerate(frames):
            if f is top:
                frames = frames[i:]
                break
        lines = [(f, f.f_lineno or f.f_code.co_firstlineno) for f in frames]
        if self._step is not step:  # the step ended meanwhile: these may be the next one's
            return None
        stack = traceback.StackSummary.extract(lines)
        return SlowStep(task_name=task.name, elapsed=elapsed, stack=stack)

    def _emit(self, text: str) -> None:
        stream = self.stream
        if stream is None:
            logger.warning("%s", text.rstrip("\n"))
            return
        try:
            with self._write_lock:
                stream.write(text)
                stream.flush()
        except Exception as exc:  # a closed stream must not break the run
            logger.debug("the yieldloop watchdog could not write its report: %s", exc)
