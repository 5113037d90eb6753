"""Trace recording: a run as a Chrome Trace Event / Perfetto JSON file.

Layer 1 (an :class:`Instrument`, only kernel concepts). ``run(main,
trace="trace.json")`` or the environment variable ``YIELDLOOP_TRACE=path``
installs a :class:`TraceRecorder`; open the file in https://ui.perfetto.dev
or ``chrome://tracing``, or draw it in the terminal with ``python -m
yieldloop trace trace.json``.

What the file holds (the Trace Event Format's JSON object form):

* a *process* per group of tasks - the tasks spawned into one task group
  (named after the task that spawned them) - and a *thread* (track) per
  task, named after the task;
* on each task's track, a slice for its whole life, and inside it, one after
  the other, a slice per step (``"run"``) and a slice per wait, named after
  what the task waited on (``"sleep"``, ``"wait readable fd 7"``, ``"Lock"``,
  ``"ready"`` for the time spent in the ready queue);
* flow arrows from the step of a task that woke another (set an event,
  released a lock, spawned it) to the first step of the task it woke.

Times are microseconds since the run started, from :func:`time.perf_counter`
(real time, also under a virtual clock: the trace shows where the run spent
its time).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from ._instruments import Instrument

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._task import Task

__all__ = ["TraceRecorder"]


def _what(kernel: Kernel, task: Task[Any], request: Any) -> str:
    """A short name for the wait that follows a step."""
    if task._next is None:
        return "exit"
    if task._abort is None:
        return "ready"
    info = task._wait_info
    if task._abort == kernel._abort_sleep_fn:
        return "sleep"
    if task._abort == kernel._abort_fd_fn:
        kind, fd = info[0], info[1]
        return f"wait {'readable' if kind == 'wait_readable' else 'writable'} fd {fd}"
    if info is None:
        return "park"
    if hasattr(info, "name") and type(info).__name__ == "Task":
        return f"join {info.name}"
    return type(info).__name__.lstrip("_")


class TraceRecorder(Instrument):
    """Records a run; writes the JSON to ``path`` when the run finishes.
    ``events`` holds the trace events (also before it is written)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()
        self._tids: dict[Task[Any], tuple[int, int]] = {}  # task -> (pid, tid)
        self._pids: dict[int, int] = {}  # id(owner) -> pid
        self._wait: dict[Task[Any], tuple[float, str]] = {}  # task -> (since, what)
        self._step: dict[Task[Any], float] = {}
        self._flows: dict[Task[Any], list[int]] = {}
        self._flow_id = 0
        self._kernel: Kernel | None = None
        self.events.append(_meta("process_name", 1, 0, name="yieldloop run"))

    def _now(self) -> float:
        return (time.perf_counter() - self._t0) * 1e6

    def _ids(self, task: Task[Any]) -> tuple[int, int]:
        ids = self._tids.get(task)
        if ids is None:
            ids = self._register(task, None)
        return ids

    def _register(self, task: Task[Any], spawner: Task[Any] | None) -> tuple[int, int]:
        owner = task._owner
        pid = self._pids.get(id(owner))
        if pid is None:
            pid = self._pids[id(owner)] = len(self._pids) + 1
            if pid > 1:
                label = f"tasks of {spawner.name}" if spawner is not None else "tasks"
                self.events.append(_meta("process_name", pid, 0, name=label))
                self.events.append(_meta("process_sort_index", pid, 0, sort_index=pid))
        tid = len(self._tids) + 1
        self._tids[task] = (pid, tid)
        self.events.append(_meta("thread_name", pid, tid, name=task.name))
        self.events.append(_meta("thread_sort_index", pid, tid, sort_index=tid))
        self.events.append(
            {"ph": "B", "name": task.name, "cat": "task", "ts": self._now(), "pid": pid,
             "tid": tid}
        )
        return pid, tid

    # ------------------------------------------------------------ hooks

    def task_spawned(self, task: Task[Any]) -> None:
        """Open the task's track and its lifetime slice."""
        kernel = task._kernel
        self._kernel = kernel
        spawner = kernel.current_task if kernel is not None else None
        self._register(task, spawner)
        self._wait[task] = (self._now(), "ready")

    def task_woken(self, waker: Task[Any] | None, wakee: Task[Any]) -> None:
        """Start a flow arrow in the waker's current step."""
        if waker is None:
            return
        pid, tid = self._ids(waker)
        self._flow_id += 1
        self.events.append(
            {"ph": "s", "name": "wake", "cat": "wake", "id": self._flow_id, "ts": self._now(),
             "pid": pid, "tid": tid}
        )
        self._flows.setdefault(wakee, []).append(self._flow_id)

    def task_scheduled(self, task: Task[Any]) -> None:
        """End the task's wait; it now waits in the ready queue."""
        self._close_wait(task)
        self._wait[task] = (self._now(), "ready")

    def before_task_step(self, task: Task[Any]) -> None:
        """End the wait; the step starts; flows from its wakers end here."""
        self._close_wait(task)
        now = self._now()
        self._step[task] = now
        flows = self._flows.pop(task, None)
        if flows:
            pid, tid = self._ids(task)
            for fid in flows:
                self.events.append(
                    {"ph": "f", "bp": "e", "name": "wake", "cat": "wake", "id": fid, "ts": now,
                     "pid": pid, "tid": tid}
                )

    def after_task_step(self, task: Task[Any], request: Any) -> None:
        """Record the step's slice; a wait slice starts."""
        start = self._step.pop(task, None)
        now = self._now()
        pid, tid = self._ids(task)
        if start is not None:
            self.events.append(
                {"ph": "X", "name": "run", "cat": "step", "ts": start,
                 "dur": max(now - start, 0.0), "pid": pid, "tid": tid}
            )
        kernel = task._kernel
        if task._next is not None and kernel is not None:
            self._wait[task] = (now, _what(kernel, task, request))

    def task_exited(self, task: Task[Any]) -> None:
        """Close the task's lifetime slice."""
        self._wait.pop(task, None)
        pid, tid = self._ids(task)
        self.events.append(
            {"ph": "E", "name": task.name, "cat": "task", "ts": self._now(), "pid": pid,
             "tid": tid}
        )

    def run_finished(self) -> None:
        """Close what is still open and write the file."""
        now = self._now()
        for task in list(self._wait):
            self._close_wait(task)
        for task, (pid, tid) in self._tids.items():
            if task._next is not None:  # never finished (the run was torn down)
                self.events.append(
                    {"ph": "E", "name": task.name, "cat": "task", "ts": now, "pid": pid,
                     "tid": tid}
                )
        if self.path is not None:
            with open(self.path, "w") as f:
                json.dump(self.to_json(), f)

    def to_json(self) -> dict[str, Any]:
        """The trace as a JSON-able object."""
        return {"traceEvents": self.events, "displayTimeUnit": "ms",
                "otherData": {"producer": "yieldloop"}}

    def _close_wait(self, task: Task[Any]) -> None:
        entry = self._wait.pop(task, None)
        if entry is None:
            return
        since, what = entry
        now = self._now()
        if now <= since:
            return
        pid, tid = self._ids(task)
        self.events.append(
            {"ph": "X", "name": what, "cat": "wait", "ts": since, "dur": now - since,
             "pid": pid, "tid": tid}
        )


def _meta(kind: str, pid: int, tid: int, **args: Any) -> dict[str, Any]:
    return {"ph": "M", "name": kind, "pid": pid, "tid": tid, "args": args}
