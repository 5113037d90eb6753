"""The terminal Gantt chart of a trace, and the per-task summary table.

Layer 5 (tools). :func:`render_chart` draws a row per task, grouped under
its group, with time across the width: the run is cut into as many time
buckets as there are columns, and each cell shows the state the task spent
most of that bucket in (:func:`bucket_states`), drawn with a glyph and, on a
terminal, a colour. :func:`render_summary` lists per task how long it ran
and waited in each state, and how many steps it took. Both return lines of
text; :class:`ChartStyle` decides colour and glyphs (ASCII when the output's
encoding has no block characters).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TextIO

from ._model import IO, READY, RUNNING, SLEEP, STATE_LABELS, STATES, WAIT, TaskTrack, Trace
from ._units import (
    display_names,
    format_duration,
    format_number,
    group_names,
    pick_unit,
    shorten,
    ticks,
)

__all__ = [
    "ALIVE",
    "MIN_WIDTH",
    "ChartStyle",
    "bucket_states",
    "choose_style",
    "occupancy",
    "render_chart",
    "render_summary",
]

#: A bucket in which the task was alive but no slice says what it did.
ALIVE = "alive"

#: The narrowest chart (in columns) that still shows something.
MIN_WIDTH = 30

_GLYPHS_UNICODE = {RUNNING: "█", READY: "▒", SLEEP: "·", IO: "≈", WAIT: "░", ALIVE: "?"}
_GLYPHS_ASCII = {RUNNING: "#", READY: "+", SLEEP: ".", IO: "~", WAIT: "=", ALIVE: "?"}
_BOX_UNICODE = ("│", "└", "─", "┴", "…")
_BOX_ASCII = ("|", "+", "-", "+", "~")

# ANSI SGR codes.
_SGR = {
    RUNNING: "32",  # green
    READY: "33",  # yellow
    SLEEP: "34",  # blue
    IO: "36",  # cyan
    WAIT: "35",  # magenta
    ALIVE: "2",
    "heading": "1",
    "dim": "2",
}


@dataclass(frozen=True)
class ChartStyle:
    """Colour (ANSI escapes) or not, block characters or ASCII."""

    colour: bool = False
    unicode: bool = True

    def paint(self, text: str, what: str) -> str:
        """``text`` in the colour for ``what`` (a state, ``"heading"`` or
        ``"dim"``); unchanged without colour."""
        if not self.colour or not text:
            return text
        return f"\x1b[{_SGR[what]}m{text}\x1b[0m"

    def glyph(self, state: str) -> str:
        """The character that draws ``state`` (or :data:`ALIVE`)."""
        return (_GLYPHS_UNICODE if self.unicode else _GLYPHS_ASCII)[state]

    @property
    def box(self) -> tuple[str, str, str, str, str]:
        """(row border, axis corner, axis line, tick, ellipsis)."""
        return _BOX_UNICODE if self.unicode else _BOX_ASCII

    def text(self, text: str) -> str:
        """``text`` as this style can print it (``µ`` → ``u``, ``…`` → ``~``)."""
        if self.unicode:
            return text
        return text.replace("µ", "u").replace("…", "~").encode("ascii", "replace").decode()


def _supports(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return False
    return True


def choose_style(stream: TextIO, colour: str = "auto") -> ChartStyle:
    """The style for ``stream``: colour when it is a terminal (``colour``
    ``"auto"``) unless ``NO_COLOR`` is set or ``TERM=dumb``, always or never
    with ``"always"``/``"never"``; block characters only when the stream's
    encoding has them."""
    if colour not in ("auto", "always", "never"):
        raise ValueError(f"colour must be 'auto', 'always' or 'never', got {colour!r}")
    if colour == "always":
        use_colour = True
    elif colour == "never":
        use_colour = False
    else:
        isatty = getattr(stream, "isatty", None)
        use_colour = (
            bool(isatty and isatty())
            and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb"
        )
    glyphs = "".join(_GLYPHS_UNICODE.values()) + "".join(_BOX_UNICODE) + "µ"
    return ChartStyle(colour=use_colour, unicode=_supports(stream, glyphs))


# ================================================================= buckets


def occupancy(task: TaskTrack, start: float, per_bucket: float, n: int) -> dict[str, list[float]]:
    """How much of each of ``n`` buckets (bucket ``i`` covers
    ``start + i * per_bucket`` up to the next one, in µs) ``task`` spent in
    each state, as fractions of a bucket."""
    if per_bucket <= 0 or n <= 0:
        raise ValueError(f"need positive buckets, got {n} of {per_bucket!r} µs")
    occ = {state: [0.0] * n for state in STATES}
    for sl in task.slices:
        a = (sl.start - start) / per_bucket
        b = (sl.end - start) / per_bucket
        if b <= 0 or a >= n or b <= a:
            continue
        a = max(a, 0.0)
        b = min(b, float(n))
        row = occ[sl.state]
        i = int(a)
        while i < b:
            row[i] += min(b, i + 1) - max(a, i)
            i += 1
    return occ


def bucket_states(task: TaskTrack, start: float, per_bucket: float, n: int) -> list[str | None]:
    """For each of ``n`` buckets: the state ``task`` spent most of it in
    (ties go to the state listed first in :data:`STATES`), :data:`ALIVE`
    when it was alive but no slice covers the bucket, None when it was not
    alive."""
    occ = occupancy(task, start, per_bucket, n)
    first = max(0, min(n - 1, int((task.begin - start) / per_bucket)))
    last = max(first + 1, min(n, math.ceil((task.end - start) / per_bucket)))
    cells: list[str | None] = [None] * n
    for i in range(first, last):
        best = max(STATES, key=lambda s: occ[s][i])
        cells[i] = best if occ[best][i] > 0 else ALIVE
    return cells


# =================================================================== chart


def _label_width(names: list[str], width: int) -> int:
    longest = max((len(n) for n in names), default=4)
    return max(8, min(longest + 3, width // 3))


def render_chart(trace: Trace, width: int = 100, style: ChartStyle | None = None) -> list[str]:
    """The trace as a Gantt chart at most ``width`` columns wide: a header,
    a row per task under its group's name, a time axis and a legend."""
    if width < MIN_WIDTH:
        raise ValueError(f"the chart needs at least {MIN_WIDTH} columns, got {width}")
    style = style or ChartStyle()
    border, corner, line, tick, _ = style.box
    names = display_names(trace)
    groups = group_names(trace)
    label_width = _label_width(list(names.values()), width)
    columns = width - label_width - 1
    per_col = trace.span / columns
    unit_size, unit = pick_unit(trace.span)

    out = [style.paint(style.text(shorten(_headline(trace), width)), "heading"), ""]
    used: set[str] = set()
    for group in trace.groups:
        count = len(group.tasks)
        title = f"{groups[group]} ({count} task{'s' if count != 1 else ''})"
        out.append(style.paint(style.text(shorten(title, width)), "heading"))
        for task in group.tasks:
            label = "  " + shorten(names[task], label_width - 3)
            cells = bucket_states(task, trace.start, per_col, columns)
            used.update(c for c in cells if c is not None)
            out.append(style.text(label.ljust(label_width)) + border + _row(cells, style))
    # The axis: the corner is time 0; tick k sits at column round(t_k / per_col).
    step, nsteps = ticks(trace.span / unit_size, max(1, columns // 8))
    marks = {round(k * step * unit_size / per_col): k for k in range(1, nsteps + 1)}
    axis = "".join(tick if p in marks else line for p in range(1, columns + 1))
    out.append(" " * label_width + style.paint(corner + axis, "dim"))
    under = style.text(f"{unit} ".rjust(label_width))
    for p, k in sorted({0: 0, **marks}.items()):
        label = format_number(k * step)
        at = label_width + p
        if len(under) <= at and at + len(label) <= width:
            under = under.ljust(at) + label
    out.append(under)
    out.append("")
    out.extend(_legend(style, [*STATES, ALIVE] if ALIVE in used else list(STATES), width))
    return out


def _headline(trace: Trace) -> str:
    tasks = trace.tasks
    ngroups = len(trace.groups)
    steps = sum(t.steps for t in tasks)
    return (
        f"{os.path.basename(trace.source)}: {len(tasks)} task{'s' if len(tasks) != 1 else ''} "
        f"in {ngroups} group{'s' if ngroups != 1 else ''}, "
        f"{format_duration(trace.span)}, {steps} steps, {len(trace.flows)} wake-ups"
    )


def _row(cells: list[str | None], style: ChartStyle) -> str:
    parts = []
    i = 0
    while i < len(cells):
        j = i
        while j < len(cells) and cells[j] == cells[i]:
            j += 1
        state = cells[i]
        if state is None:
            parts.append(" " * (j - i))
        else:
            parts.append(style.paint(style.glyph(state) * (j - i), state))
        i = j
    return "".join(parts).rstrip()


def _legend(style: ChartStyle, states: list[str], width: int) -> list[str]:
    items = []
    for state in states:
        label = STATE_LABELS.get(state, "alive, nothing recorded")
        items.append((style.paint(style.glyph(state), state) + " " + label, len(label) + 2))
    lines = []
    current, length = "", 0
    for text, n in items:
        if current and length + 3 + n > width:
            lines.append(current)
            current, length = "", 0
        if current:
            current += "   "
            length += 3
        current += text
        length += n
    if current:
        lines.append(current)
    return lines


# ================================================================= summary

_COLUMNS = (("life", 9), (RUNNING, 9), (READY, 9), (SLEEP, 9), (IO, 9), (WAIT, 9),
            ("steps", 7), ("woken", 7))
_HEADINGS = {"life": "lifetime", RUNNING: "running", READY: "ready", SLEEP: "sleep", IO: "I/O",
             WAIT: "wait", "steps": "steps", "woken": "woken"}


def render_summary(trace: Trace, width: int = 100, style: ChartStyle | None = None) -> list[str]:
    """A table: per task (under its group) its lifetime, the time it spent
    in each state, its steps and how many times another task woke it; then
    the totals of every task, and how busy the CPU was."""
    style = style or ChartStyle()
    names = display_names(trace)
    groups = group_names(trace)
    ascii_only = not style.unicode
    rest = sum(w for _, w in _COLUMNS)
    name_width = max(12, min(max((len(n) for n in names.values()), default=4) + 3, width - rest))

    def dur(us: float) -> str:
        return format_duration(us, ascii_only)

    def row(label: str, values: list[str]) -> str:
        cells = "".join(v.rjust(w) for v, (_, w) in zip(values, _COLUMNS, strict=True))
        return style.text(label.ljust(name_width)) + cells

    out = [style.paint(style.text(shorten(_headline(trace), width)), "heading"), ""]
    out.append(style.paint(row("task", [_HEADINGS[k] for k, _ in _COLUMNS]), "heading"))
    totals = dict.fromkeys(STATES, 0.0)
    steps = woken = 0
    for group in trace.groups:
        out.append(style.paint(style.text(shorten(groups[group], width)), "dim"))
        for task in group.tasks:
            t = task.totals()
            for s in STATES:
                totals[s] += t.time[s]
            steps += t.steps
            woken += t.woken
            values = [dur(task.end - task.begin), *(dur(t.time[s]) for s in STATES),
                      str(t.steps), str(t.woken)]
            out.append(row("  " + shorten(names[task], name_width - 3), values))
    n = len(trace.tasks)
    out.append(row(f"all {n} task{'s' if n != 1 else ''}",
                   ["", *(dur(totals[s]) for s in STATES), str(steps), str(woken)]))
    busy = totals[RUNNING] / trace.span * 100
    out.append("")
    out.append(style.text(
        f"The tasks ran for {dur(totals[RUNNING])} of the {dur(trace.span)} the trace "
        f"covers ({busy:.1f}% of one CPU)."
    ))
    return out
