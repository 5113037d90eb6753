"""Units, axis ticks and names shared by the terminal chart and the HTML page.

Layer 5 (tools). Trace times are microseconds; :func:`pick_unit` chooses the
unit an axis is labelled in, :func:`ticks` round tick positions,
:func:`format_duration` a short human duration, and :func:`display_names`
the name each task is shown with.
"""

from __future__ import annotations

import math
from collections import Counter

from ._model import Group, TaskTrack, Trace

__all__ = [
    "display_names",
    "group_names",
    "format_duration",
    "format_number",
    "pick_unit",
    "shorten",
    "short_name",
    "ticks",
]

_UNITS = ((1e6, "s"), (1e3, "ms"), (1.0, "µs"))


def pick_unit(span_us: float) -> tuple[float, str]:
    """``(microseconds per unit, unit name)`` for an axis ``span_us`` long:
    seconds from 2 s, milliseconds from 2 ms, else microseconds."""
    for size, name in _UNITS:
        if span_us >= 2 * size:
            return size, name
    return 1.0, "µs"


def format_number(value: float) -> str:
    """A tick label: ``10``, ``2.5``, ``0.25`` (no float noise)."""
    return f"{round(value, 9):g}"


def format_duration(us: float, ascii_only: bool = False) -> str:
    """``us`` microseconds as ``"850 µs"``, ``"12.3 ms"`` or ``"1.25 s"``
    (three significant digits); ``"0"`` for nothing."""
    if us <= 0:
        return "0"
    for size, name in _UNITS:
        if us >= size or size == 1.0:
            value = us / size
            text = f"{value:.3g}" if value < 1000 else f"{value:.0f}"
            unit = "us" if name == "µs" and ascii_only else name
            return f"{text} {unit}"
    raise AssertionError("unreachable")


def ticks(span: float, max_ticks: int) -> tuple[float, int]:
    """A round tick step (1, 2 or 5 times a power of ten, in the units of
    ``span``) and the number of steps that cover ``span`` with at most
    ``max_ticks`` steps (at least one)."""
    max_ticks = max(1, max_ticks)
    span = span if span > 0 else 1.0
    exp = math.floor(math.log10(span / max_ticks))
    while True:
        for mult in (1, 2, 5):
            step = mult * 10.0**exp
            if span / step <= max_ticks:
                return step, max(1, math.floor(span / step + 1e-9))
        exp += 1


def short_name(name: str) -> str:
    """A task's name without the function it was defined in: the qualified
    name ``test_x.<locals>.worker`` reads as ``worker``."""
    marker = ".<locals>."
    if marker in name:
        tail = name.rsplit(marker, 1)[1]
        if tail:
            return tail
    return name


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with ``…`` where it was cut.
    A dotted name keeps its end (``….worker``), anything else its start."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    if "." in text:
        parts = text.split(".")
        tail = ""
        for part in reversed(parts):
            candidate = f"{part}.{tail}" if tail else part
            if len(candidate) + 2 > width:
                break
            tail = candidate
        if tail and len(tail) >= width // 2:
            return f"….{tail}"
    return text[: width - 1] + "…"


def display_names(trace: Trace) -> dict[TaskTrack, str]:
    """The name every task is shown with: its :func:`short_name`, numbered
    (``worker #1``, ``worker #2``) when a group has several tasks of that
    name."""
    names: dict[TaskTrack, str] = {}
    for group in trace.groups:
        counts = Counter(short_name(t.name) for t in group.tasks)
        seen: Counter[str] = Counter()
        for task in group.tasks:
            name = short_name(task.name)
            if counts[name] > 1:
                seen[name] += 1
                name = f"{name} #{seen[name]}"
            names[task] = name
    return names


def group_names(trace: Trace) -> dict[Group, str]:
    """The name every group is shown with: its name in the file, numbered
    (``tasks of main #2``) when several groups share it - a task that opens
    two task groups one after the other, or one inside the other."""
    counts = Counter(g.name for g in trace.groups)
    seen: Counter[str] = Counter()
    names: dict[Group, str] = {}
    for group in trace.groups:
        name = group.name
        if counts[name] > 1:
            seen[name] += 1
            if seen[name] > 1:
                name = f"{name} #{seen[name]}"
        names[group] = name
    return names
