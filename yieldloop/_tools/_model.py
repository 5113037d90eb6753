"""A trace file read back: groups, tasks, their slices and the wake-ups.

Layer 5 (tools). :func:`load_trace` reads the Chrome Trace Event / Perfetto
JSON that ``run(main, trace=path)`` writes (see
``yieldloop/_kernel/_trace.py``) into a :class:`Trace`: a :class:`Group` per
process (a group of tasks), a :class:`TaskTrack` per thread (a task) with its
lifetime and its :class:`Slice` objects, and a :class:`Flow` per wake-up
arrow. Every slice gets one of five :data:`STATES`; the terminal chart, the
summary and the HTML page all draw from this model.

The reader also takes traces of other producers as long as they use the
same shapes (``"B"``/``"E"`` lifetimes, ``"X"`` slices of category
``"step"`` or ``"wait"``, ``"s"``/``"f"`` flows); events it does not know
are skipped. Times stay in microseconds, as in the file.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "IO",
    "READY",
    "RUNNING",
    "SLEEP",
    "STATES",
    "STATE_LABELS",
    "WAIT",
    "Flow",
    "Group",
    "Slice",
    "TaskTotals",
    "TaskTrack",
    "Trace",
    "TraceError",
    "classify",
    "load_trace",
    "parse_trace",
]

# What a task does during a slice.
RUNNING = "running"  # a step: the task has the CPU
READY = "ready"  # in the ready queue, waiting for the CPU
SLEEP = "sleep"  # sleep(), sleep_until(), a timeout
IO = "io"  # waiting for a file descriptor
WAIT = "wait"  # waiting on a primitive (Event, Lock, Queue...) or a child task

#: The states, in the order legends list them.
STATES: tuple[str, ...] = (RUNNING, READY, SLEEP, IO, WAIT)

#: What each state means, for legends.
STATE_LABELS: dict[str, str] = {
    RUNNING: "running",
    READY: "ready (waiting for the CPU)",
    SLEEP: "sleeping",
    IO: "waiting on I/O",
    WAIT: "waiting on a primitive or a child",
}


class TraceError(ValueError):
    """The file cannot be read, is not JSON, or is not a trace."""


def classify(category: str, name: str) -> str | None:
    """The state of an ``"X"`` slice of ``category`` named ``name``, or None
    for a slice that is neither a step nor a wait."""
    if category == "step":
        return RUNNING
    if category != "wait":
        return None
    if name == "ready":
        return READY
    if name == "sleep":
        return SLEEP
    if name.startswith(("wait readable", "wait writable")):
        return IO
    return WAIT


@dataclass(frozen=True, slots=True)
class Slice:
    """A span of a task's life in one state; ``name`` is the file's name for
    it (``"run"``, ``"sleep"``, ``"Lock"``, ``"wait readable fd 7"``...)."""

    start: float
    end: float
    state: str
    name: str

    @property
    def duration(self) -> float:
        """``end - start``, in microseconds."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class TaskTotals:
    """What a task did over its life: microseconds per state, its steps
    (slices of running), how often another task woke it and how often it
    woke another."""

    time: dict[str, float]
    steps: int
    woken: int
    wakes: int

    @property
    def waiting(self) -> float:
        """Microseconds in every state but running."""
        return sum(t for s, t in self.time.items() if s != RUNNING)


@dataclass(eq=False)
class TaskTrack:
    """One task: its track in the file (``pid``, ``tid``), its name, its
    group, when it lived and what it did, slices sorted by start."""

    pid: int
    tid: int
    name: str
    group: Group
    begin: float = math.inf
    end: float = -math.inf
    slices: list[Slice] = field(default_factory=list)
    sort_index: float = 0.0
    woken: int = 0  # flows that end on this task
    wakes: int = 0  # flows that start on this task

    @property
    def steps(self) -> int:
        """How many times the task ran."""
        return sum(1 for s in self.slices if s.state == RUNNING)

    def totals(self) -> TaskTotals:
        """Time per state (every state present, 0.0 when unused), steps and
        wake-ups."""
        time = dict.fromkeys(STATES, 0.0)
        for s in self.slices:
            time[s.state] += s.duration
        return TaskTotals(time, self.steps, self.woken, self.wakes)

    def wait_names(self) -> Counter[str]:
        """How often the task waited on each thing (``"sleep"``, ``"Lock"``)."""
        return Counter(s.name for s in self.slices if s.state not in (RUNNING, READY))


@dataclass(eq=False)
class Group:
    """A group of tasks (a process in the file): the tasks spawned into one
    task group, named after the task that spawned them."""

    pid: int
    name: str
    sort_index: float = 0.0
    tasks: list[TaskTrack] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Flow:
    """A wake-up: ``source`` (in a step, at ``source_ts``) made ``target``
    ready; ``target`` ran next at ``target_ts``."""

    source: TaskTrack
    source_ts: float
    target: TaskTrack
    target_ts: float


@dataclass(eq=False)
class Trace:
    """A whole trace: groups in display order, each with its tasks in display
    order; ``tasks`` is every task in that order. ``start`` and ``end`` (µs)
    bound every event; ``source`` names where it came from."""

    source: str
    groups: list[Group]
    flows: list[Flow]
    start: float
    end: float
    producer: str | None = None

    @property
    def tasks(self) -> list[TaskTrack]:
        """Every task, group by group."""
        return [t for g in self.groups for t in g.tasks]

    @property
    def span(self) -> float:
        """``end - start`` in microseconds (at least 1, so scales never divide
        by zero)."""
        return max(self.end - self.start, 1.0)


# ===================================================================== read


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Read the trace file at ``path``. Raises :class:`TraceError`, with a
    message fit for a user, when the file is missing or unreadable, is not
    JSON, or is JSON but not a trace."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise TraceError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{name}: is a directory, not a trace file") from None
    except OSError as exc:
        raise TraceError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TraceError(f"{name} is not a JSON trace: it is not UTF-8 text") from None
    if not text.strip():
        raise TraceError(f"{name} is not a JSON trace: the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{name} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise TraceError(f"{name} is not a JSON trace: it is nested too deeply") from None
    return parse_trace(data, name)


def parse_trace(data: Any, source: str = "<trace>") -> Trace:
    """Build a :class:`Trace` from decoded JSON: the object form
    (``{"traceEvents": [...]}``) or the bare list of events. Raises
    :class:`TraceError` when it is not a trace."""
    producer: str | None = None
    if isinstance(data, dict):
        if "traceEvents" not in data:
            raise TraceError(
                f"{source} is JSON but not a trace: it has no \"traceEvents\" "
                f"(its keys: {_keys(data)})"
            )
        events = data["traceEvents"]
        other = data.get("otherData")
        if isinstance(other, dict) and isinstance(other.get("producer"), str):
            producer = other["producer"]
    elif isinstance(data, list):
        events = data
    else:
        raise TraceError(
            f"{source} is JSON but not a trace: expected an object with \"traceEvents\" "
            f"or a list of events, got {_json_type(data)}"
        )
    if not isinstance(events, list):
        raise TraceError(
            f"{source} is JSON but not a trace: \"traceEvents\" is {_json_type(events)}, "
            "not a list"
        )
    return _Builder(source).build(events, producer)


def _keys(d: dict[Any, Any]) -> str:
    keys = [repr(k) for k in list(d)[:5]]
    if len(d) > 5:
        keys.append("...")
    return ", ".join(keys) if keys else "none"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class _Builder:
    """Turns the event list into groups, tracks, slices and flows."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.groups: dict[int, Group] = {}
        self.tracks: dict[tuple[int, int], TaskTrack] = {}
        self.thread_names: dict[tuple[int, int], str] = {}
        self.thread_sort: dict[tuple[int, int], float] = {}
        self.process_names: dict[int, str] = {}
        self.process_sort: dict[int, float] = {}
        # (category, id) -> ((pid, tid), ts); tracks are looked up at the end
        self.flow_starts: dict[tuple[str, Any], tuple[tuple[int, int], float]] = {}
        self.flow_ends: dict[tuple[str, Any], tuple[tuple[int, int], float]] = {}
        self.start = math.inf
        self.end = -math.inf

    def fail(self, index: int, problem: str) -> TraceError:
        return TraceError(f"{self.source} is not a valid trace: event {index} {problem}")

    def number(self, event: dict[str, Any], key: str, index: int) -> float:
        value = event.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(index, f"({event.get('ph')!r}) has no number {key!r}: {value!r}")
        if not math.isfinite(value):
            raise self.fail(index, f"({event.get('ph')!r}) has {key!r} {value!r}")
        return float(value)

    def ident(self, event: dict[str, Any], key: str, index: int) -> int:
        value = event.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(index, f"({event.get('ph')!r}) has a {key!r} that is not an integer: "
                            f"{value!r}")
        return value

    def track(self, pid: int, tid: int) -> TaskTrack:
        track = self.tracks.get((pid, tid))
        if track is None:
            group = self.groups.get(pid)
            if group is None:
                group = self.groups[pid] = Group(pid, "")
            track = self.tracks[(pid, tid)] = TaskTrack(pid, tid, "", group)
            group.tasks.append(track)
        return track

    def build(self, events: list[Any], producer: str | None) -> Trace:
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise self.fail(index, f"is {_json_type(event)}, not an object")
            ph = event.get("ph")
            if not isinstance(ph, str):
                raise self.fail(index, f"has no phase (\"ph\"): {ph!r}")
            if ph in ("B", "E", "X", "s", "f", "M"):
                self.event(index, ph, event)
        if not self.tracks:
            raise TraceError(
                f"{self.source} is JSON but holds no task tracks (no \"B\"/\"E\" or \"X\" "
                "events): is it a trace written by yieldloop.run(main, trace=...)?"
            )
        return self.finish(producer)

    def event(self, index: int, ph: str, event: dict[str, Any]) -> None:
        pid = self.ident(event, "pid", index)
        tid = self.ident(event, "tid", index)
        if ph == "M":
            self.meta(index, event, pid, tid)
            return
        ts = self.number(event, "ts", index)
        if ph in ("s", "f"):
            cat = event.get("cat")
            key = (cat if isinstance(cat, str) else "", event.get("id"))
            if not isinstance(key[1], (int, str)):
                raise self.fail(index, f"(a flow) has no \"id\": {key[1]!r}")
            (self.flow_starts if ph == "s" else self.flow_ends)[key] = ((pid, tid), ts)
            return
        track = self.track(pid, tid)
        if ph == "B":
            track.begin = min(track.begin, ts)
        elif ph == "E":
            track.end = max(track.end, ts)
        else:  # "X"
            dur = self.number(event, "dur", index)
            if dur < 0:
                raise self.fail(index, f"(a slice) has a negative duration: {dur!r}")
            name = event.get("name")
            cat = event.get("cat")
            state = classify(cat if isinstance(cat, str) else "", str(name))
            if state is not None:
                track.slices.append(Slice(ts, ts + dur, state, str(name)))
            self.end = max(self.end, ts + dur)
        self.start = min(self.start, ts)
        self.end = max(self.end, ts)

    def meta(self, index: int, event: dict[str, Any], pid: int, tid: int) -> None:
        args = event.get("args")
        if not isinstance(args, dict):
            return
        kind = event.get("name")
        if kind == "thread_name" and isinstance(args.get("name"), str):
            self.thread_names[(pid, tid)] = args["name"]
        elif kind == "process_name" and isinstance(args.get("name"), str):
            self.process_names[pid] = args["name"]
        elif kind in ("thread_sort_index", "process_sort_index"):
            value = args.get("sort_index")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if kind == "thread_sort_index":
                    self.thread_sort[(pid, tid)] = float(value)
                else:
                    self.process_sort[pid] = float(value)

    def finish(self, producer: str | None) -> Trace:
        for (pid, tid), track in self.tracks.items():
            track.name = self.thread_names.get((pid, tid), f"thread {tid}")
            track.sort_index = self.thread_sort.get((pid, tid), tid)
            track.slices.sort(key=lambda s: (s.start, s.end))
            if track.slices:
                track.begin = min(track.begin, track.slices[0].start)
                track.end = max(track.end, *(s.end for s in track.slices))
            if track.begin == math.inf:
                track.begin = self.start
            if track.end == -math.inf:  # never ended: it lived to the end of the trace
                track.end = self.end
        flows = []
        for key, (source_key, source_ts) in self.flow_starts.items():
            end = self.flow_ends.get(key)
            if end is None:
                continue
            target_key, target_ts = end
            source = self.tracks.get(source_key)
            target = self.tracks.get(target_key)
            if source is None or target is None:  # an arrow from or to no task
                continue
            flows.append(Flow(source, source_ts, target, target_ts))
            source.wakes += 1
            target.woken += 1
        flows.sort(key=lambda f: f.source_ts)
        for pid, group in self.groups.items():
            group.name = self.process_names.get(pid, f"process {pid}")
            group.sort_index = self.process_sort.get(pid, pid)
            group.tasks.sort(key=lambda t: (t.sort_index, t.tid))
        groups = sorted(self.groups.values(), key=lambda g: (g.sort_index, g.pid))
        return Trace(self.source, groups, flows, self.start, self.end, producer)
