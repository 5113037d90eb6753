"""The timeline of a trace as one self-contained HTML page.

Layer 5 (tools). :func:`render_html` returns a page with inline CSS and an
inline SVG - no scripts, fonts or anything else fetched over the network:

* a lane per task, under a band per group, named on the left;
* in each lane, the state the task spent most of each pixel's worth of time
  in (the same reckoning as the terminal chart, one bucket per pixel): tall
  bars for running, thinner ones for the waits, a grey line for its life,
  and marks above the bar where it ran too briefly to win a pixel;
* arrows from the step of a task that woke another to the step it woke
  (a checkbox hides them), a time axis with grid lines, and a legend;
* below, the per-task totals as a table.

Every bar, mark and arrow has a ``<title>``: the browser shows it on hover.
Lanes get lower as tasks get more numerous, so a run of 3 tasks and one of
200 both stay readable.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TypeVar

from ._model import IO, READY, RUNNING, SLEEP, STATE_LABELS, STATES, WAIT, Slice, TaskTrack, Trace
from ._timeline import ALIVE, bucket_states, occupancy
from ._units import (
    display_names,
    format_duration,
    format_number,
    group_names,
    pick_unit,
    shorten,
    ticks,
)

__all__ = ["COLOURS", "MAX_FLOWS", "render_html"]

#: The fill of each state (and of :data:`~._timeline.ALIVE`).
COLOURS: dict[str, str] = {
    RUNNING: "#2f9e44",
    READY: "#f59f00",
    SLEEP: "#7fb2e5",
    IO: "#0c8599",
    WAIT: "#b86bd6",
    ALIVE: "#ced4da",
}
_FLOW = "#343a40"
_DASH = "\u2013"  # en dash, between two times
_TIMES = "\u00d7"  # multiplication sign: "sleep x3"
_SHORT = {RUNNING: "running", READY: "ready", SLEEP: "sleeping", IO: "I/O",
          WAIT: "primitive / child"}

#: At most this many wake-up arrows are drawn (spread evenly over the run).
MAX_FLOWS = 1500

_T = TypeVar("_T")

_WIDTH = 1360  # the SVG's width in its own units
_LABELS = 230  # the name column
_X0 = _LABELS + 14  # where time starts
_RIGHT = 28
_CHART = _WIDTH - _X0 - _RIGHT  # one time bucket per unit
_AXIS = 30  # room for the axis above the lanes

_CSS = """
:root { color-scheme: light; }
body { margin: 20px 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  sans-serif; color: #212529; background: #fff; }
h1 { font-size: 20px; margin: 0 0 2px; font-weight: 600; }
h1 .file { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-weight: 500; color: #495057; }
.stats { color: #495057; margin: 0 0 10px; }
.stats b { color: #212529; font-weight: 600; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center;
  margin: 0 0 10px; font-size: 13px; }
.legend .sw { display: inline-block; width: 22px; height: 10px; border-radius: 2px;
  vertical-align: -1px; margin-right: 6px; }
.legend .sw.thin { height: 6px; vertical-align: 1px; }
.legend .sw.mark { width: 3px; height: 12px; }
.legend label { cursor: pointer; user-select: none; }
.legend .hint { color: #868e96; }
body:has(#show-flows:not(:checked)) .flows { display: none; }
.chart { border: 1px solid #dee2e6; border-radius: 6px; padding: 4px 0; overflow-x: auto; }
svg.timeline { display: block; width: 100%; height: auto; min-width: 900px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; fill: #343a40; }
svg .axis text { font-size: 11px; fill: #6c757d; }
svg .group text { font-weight: 600; fill: #212529; }
svg .lane:hover .bg { fill: #fff3bf; }
svg .flows path { fill: none; stroke: @FLOW@; stroke-width: 1.1; }
svg .flows path:hover { stroke: #e8590c; stroke-width: 3; }
svg .flows circle { fill: @FLOW@; }
details { margin-top: 16px; }
summary { cursor: pointer; font-weight: 600; }
table { border-collapse: collapse; margin-top: 8px; font-size: 13px; }
th, td { padding: 3px 10px; text-align: right; border-bottom: 1px solid #eef0f2; }
th { background: #f1f3f5; position: sticky; top: 0; }
th:first-child, td:first-child { text-align: left; }
td.num { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
tr.grouprow td { background: #f8f9fa; font-weight: 600; }
tr.total td { font-weight: 600; border-top: 2px solid #ced4da; }
td.waits, th.waits { text-align: left; }
td.waits { color: #495057; }
footer { margin-top: 14px; color: #868e96; font-size: 12px; }
""".replace("@FLOW@", _FLOW)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _lane_height(ntasks: int) -> int:
    if ntasks <= 10:
        return 30
    if ntasks <= 30:
        return 24
    if ntasks <= 80:
        return 18
    return 14


class _Page:
    """The coordinates of one page: a y for every group band and lane."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.names = display_names(trace)
        self.groups = group_names(trace)
        step = max(1, -(-len(trace.flows) // MAX_FLOWS))  # ceil
        self.flows = trace.flows[::step]
        self.lane = _lane_height(len(trace.tasks))
        self.band = max(18, round(self.lane * 0.8))
        self.font = min(13.0, max(9.0, self.lane * 0.5))
        self.unit_size, self.unit = pick_unit(trace.span)
        y = _AXIS
        self.group_y: dict[int, float] = {}
        self.lane_y: dict[TaskTrack, float] = {}
        for group in trace.groups:
            self.group_y[group.pid] = y
            y += self.band
            for task in group.tasks:
                self.lane_y[task] = y
                y += self.lane
        self.bottom = y
        self.height = y + (_AXIS if len(trace.tasks) > 25 else 8)

    def x(self, ts: float) -> float:
        return _X0 + (ts - self.trace.start) / self.trace.span * _CHART

    def when(self, ts: float) -> str:
        return f"{format_number(round((ts - self.trace.start) / self.unit_size, 3))} {self.unit}"


def render_html(trace: Trace, title: str | None = None) -> str:
    """The page for ``trace`` (a complete HTML document, UTF-8 text).
    ``title`` defaults to the trace file's name."""
    page = _Page(trace)
    name = title if title is not None else os.path.basename(trace.source)
    tasks = trace.tasks
    steps = sum(t.steps for t in tasks)
    running = sum(t.totals().time[RUNNING] for t in tasks)
    ngroups = len(trace.groups)
    drawn = len(page.flows)
    flows_note = f" ({drawn} of them drawn)" if drawn < len(trace.flows) else ""
    stats = (
        f"<b>{len(tasks)}</b> task{'s' if len(tasks) != 1 else ''} in <b>{ngroups}</b> "
        f"group{'s' if ngroups != 1 else ''} · <b>{_esc(format_duration(trace.span))}</b> · "
        f"<b>{steps}</b> steps · <b>{len(trace.flows)}</b> wake-ups{flows_note} · "
        f"the tasks ran for <b>{_esc(format_duration(running))}</b> "
        f"({running / trace.span * 100:.1f}% of one CPU)"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(name)} · yieldloop trace</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f'<h1>yieldloop trace <span class="file">{_esc(name)}</span></h1>',
        f'<p class="stats">{stats}</p>',
        _legend(),
        '<div class="chart">',
        *_svg(page),
        "</div>",
        *_table(page),
        "<footer>Each bar shows what the task did most in that slice of time; hover "
        "a bar, a mark or an arrow for details. Times are from the first event of the "
        "trace.</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _legend() -> str:
    items = []
    for state in STATES:
        thin = "" if state == RUNNING else " thin"
        items.append(
            f'<span><span class="sw{thin}" style="background:{COLOURS[state]}"></span>'
            f"{_esc(STATE_LABELS[state])}</span>"
        )
    items.append(
        f'<span><span class="sw mark" style="background:{COLOURS[RUNNING]}"></span>'
        "ran briefly</span>"
    )
    items.append(
        '<span><input type="checkbox" id="show-flows" checked> '
        '<label for="show-flows">wake-up arrows (waker → woken)</label></span>'
    )
    return f'<div class="legend">{"".join(items)}</div>'


def _svg(page: _Page) -> Iterator[str]:
    trace = page.trace
    yield (
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {page.height:.0f}" width="{_WIDTH}" '
        f'height="{page.height:.0f}" role="img" aria-label="timeline of {len(trace.tasks)} '
        f'tasks">'
    )
    yield '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" ' \
          f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" ' \
          f'fill="{_FLOW}"/></marker></defs>'
    yield from _groups(page)
    yield from _axis(page)
    for index, task in enumerate(trace.tasks):
        yield from _lane(page, task, index)
    yield from _flows(page)
    yield "</svg>"


def _groups(page: _Page) -> Iterator[str]:
    for group in page.trace.groups:
        y = page.group_y[group.pid]
        n = len(group.tasks)
        label = shorten(page.groups[group], 60)
        yield (
            f'<g class="group"><rect x="0" y="{y:.1f}" width="{_WIDTH}" height="{page.band}" '
            f'fill="#e9ecef"/><text x="10" y="{y + page.band * 0.68:.1f}" '
            f'font-size="{min(13.0, page.band * 0.62):.1f}">{_esc(label)} '
            f'<tspan font-weight="400" fill="#6c757d">· {n} task{"s" if n != 1 else ""}'
            f"</tspan><title>{_esc(group.name)}</title></text></g>"
        )


def _axis(page: _Page) -> Iterator[str]:
    trace = page.trace
    step, nsteps = ticks(trace.span / page.unit_size, _CHART // 100)
    top, bottom = _AXIS - 4, page.bottom
    yield '<g class="axis">'
    yield (
        f'<line x1="{_X0}" y1="{top}" x2="{_X0 + _CHART}" y2="{top}" stroke="#adb5bd"/>'
    )
    for k in range(nsteps + 1):
        x = page.x(trace.start + k * step * page.unit_size)
        label = f"{format_number(k * step)} {page.unit}" if k else "0"
        yield (
            f'<line x1="{x:.1f}" y1="{top - 5}" x2="{x:.1f}" y2="{bottom}" stroke="#e9ecef"/>'
            f'<line x1="{x:.1f}" y1="{top - 5}" x2="{x:.1f}" y2="{top}" stroke="#adb5bd"/>'
            f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle">{_esc(label)}</text>'
        )
        if page.height - bottom > 10:
            yield (
                f'<text x="{x:.1f}" y="{bottom + 18}" text-anchor="middle">{_esc(label)}</text>'
            )
    yield "</g>"


def _lane(page: _Page, task: TaskTrack, index: int) -> Iterator[str]:
    trace = page.trace
    y = page.lane_y[task]
    h = page.lane
    shade = "#f8f9fa" if index % 2 else "#ffffff"
    name = page.names[task]
    totals = task.totals()
    life = (
        f"{task.name} ({page.groups[task.group]})\n"
        f"lived {page.when(task.begin)} {_DASH} {page.when(task.end)}"
        f" ({format_duration(task.end - task.begin)})\n{totals.steps} steps, running "
        f"{format_duration(totals.time[RUNNING])}, waiting {format_duration(totals.waiting)}"
        f"\nwoken by other tasks {totals.woken}{_TIMES}, woke others {totals.wakes}{_TIMES}"
    )
    chars = int((_LABELS - 24) / (page.font * 0.56))
    yield (
        f'<g class="lane"><rect class="bg" x="0" y="{y:.1f}" width="{_WIDTH}" height="{h}" '
        f'fill="{shade}"><title>{_esc(life)}</title></rect>'
        f'<text x="22" y="{y + h / 2 + page.font * 0.36:.1f}" font-size="{page.font:.1f}">'
        f"{_esc(shorten(name, chars))}<title>{_esc(life)}</title></text>"
    )
    mid = y + h / 2
    x1, x2 = page.x(task.begin), page.x(task.end)
    yield (
        f'<rect x="{x1:.1f}" y="{mid - 1:.1f}" width="{max(x2 - x1, 1):.1f}" height="2" '
        f'fill="{COLOURS[ALIVE]}"/>'
    )
    n = _CHART
    per = trace.span / n
    cells = bucket_states(task, trace.start, per, n)
    full = h - 8
    finder = _SliceFinder(task.slices)
    for state, i, j in _runs(cells):
        if state is None or state == ALIVE:
            continue
        bar = full if state == RUNNING else max(4.0, full * 0.6)
        t0, t1 = trace.start + i * per, trace.start + j * per
        tip = _tip(page, task, state, finder.overlapping(t0, t1, state), t0, t1)
        yield (
            f'<rect x="{_X0 + i}" y="{mid - bar / 2:.1f}" width="{j - i}" height="{bar:.1f}" '
            f'fill="{COLOURS[state]}"><title>{_esc(tip)}</title></rect>'
        )
    # Marks where the task ran, but too briefly to win its pixel.
    ran = occupancy(task, trace.start, per, n)[RUNNING]
    levels = [
        0 if cells[i] == RUNNING or ran[i] <= 0 else (1 if ran[i] < 0.1 else 2 if ran[i] < 0.4
                                                     else 3)
        for i in range(n)
    ]
    top = y + 2
    marks = _SliceFinder(task.slices)
    mark = max(3.0, (full - (max(4.0, full * 0.6))) / 2 + 2)
    for level, i, j in _runs(levels):
        if not level:
            continue
        t0, t1 = trace.start + i * per, trace.start + j * per
        found = marks.overlapping(t0, t1, RUNNING)
        busy = sum(min(s.end, t1) - max(s.start, t0) for s in found)
        tip = (
            f"{name}: ran {len(found)} step{'s' if len(found) != 1 else ''} "
            f"({format_duration(busy)}) between {page.when(t0)} and {page.when(t1)}"
        )
        yield (
            f'<rect x="{_X0 + i}" y="{top:.1f}" width="{max(j - i, 1)}" height="{mark:.1f}" '
            f'fill="{COLOURS[RUNNING]}" fill-opacity="{0.35 + 0.2 * level:.2f}">'
            f"<title>{_esc(tip)}</title></rect>"
        )
    yield "</g>"


def _runs(cells: Sequence[_T]) -> Iterator[tuple[_T, int, int]]:
    """(value, first index, end index) for each run of equal values."""
    i = 0
    n = len(cells)
    while i < n:
        j = i + 1
        while j < n and cells[j] == cells[i]:
            j += 1
        yield cells[i], i, j
        i = j


class _SliceFinder:
    """The slices of one task that overlap a time range; ranges must be
    asked for in increasing order of start per state, as the lanes do."""

    def __init__(self, slices: list[Slice]) -> None:
        self.by_state: dict[str, list[Slice]] = {s: [] for s in STATES}
        for sl in slices:
            self.by_state[sl.state].append(sl)
        self.next: dict[str, int] = dict.fromkeys(STATES, 0)

    def overlapping(self, t0: float, t1: float, state: str) -> list[Slice]:
        slices = self.by_state[state]
        i = self.next[state]
        while i < len(slices) and slices[i].end <= t0:
            i += 1
        self.next[state] = i
        found = []
        while i < len(slices) and slices[i].start < t1:
            if slices[i].end > t0:
                found.append(slices[i])
            i += 1
        return found


def _tip(page: _Page, task: TaskTrack, state: str, found: list[Slice], t0: float,
         t1: float) -> str:
    name = page.names[task]
    if len(found) == 1:
        sl = found[0]
        what = "running" if state == RUNNING else sl.name
        return (
            f"{name}: {what}\n{STATE_LABELS[state]}, {format_duration(sl.duration)}\n"
            f"{page.when(sl.start)} {_DASH} {page.when(sl.end)}"
        )
    counts = Counter(s.name for s in found)
    what = _counted(counts, 4)
    total = sum(min(s.end, t1) - max(s.start, t0) for s in found)
    kind = "steps" if state == RUNNING else "waits"
    return (
        f"{name}: mostly {STATE_LABELS[state]}\n{len(found)} {kind} ({what}), "
        f"{format_duration(total)} of {format_duration(t1 - t0)}\n"
        f"{page.when(t0)} {_DASH} {page.when(t1)}"
    )


def _counted(counts: Counter[str], most: int) -> str:
    """``"sleep x3, Lock"`` (with a multiplication sign): the ``most``
    commonest names, with their counts."""
    return ", ".join(f"{n} {_TIMES}{c}" if c > 1 else n for n, c in counts.most_common(most))


def _flows(page: _Page) -> Iterator[str]:
    flows = page.flows
    if not flows:
        return
    # The group is drawn as one layer, then faded: crossing arrows do not pile
    # up into black.
    opacity = 0.55 if len(flows) < 100 else 0.4 if len(flows) < 1000 else 0.3
    yield f'<g class="flows" opacity="{opacity}">'
    for flow in flows:
        if flow.source is flow.target:
            continue
        x1, x2 = page.x(flow.source_ts), page.x(flow.target_ts)
        y1 = page.lane_y[flow.source] + page.lane / 2
        y2 = page.lane_y[flow.target] + page.lane / 2
        dy = y2 - y1
        # Leave the waker's lane centre and reach the woken lane's edge.
        y2 -= (page.lane / 2 - 2) * (1 if dy > 0 else -1)
        dy = y2 - y1
        bow = min(36.0, 5 + abs(dy) * 0.12)
        tip = (
            f"{page.names[flow.source]} woke {page.names[flow.target]}\n"
            f"at {page.when(flow.source_ts)}; it ran "
            f"{format_duration(flow.target_ts - flow.source_ts)} later"
        )
        yield (
            f'<circle cx="{x1:.1f}" cy="{y1:.1f}" r="1.8"/>'
            f'<path d="M{x1:.1f},{y1:.1f} C{x1 + bow:.1f},{y1 + dy / 3:.1f} '
            f'{x2 + bow:.1f},{y2 - dy / 3:.1f} {x2:.1f},{y2:.1f}" marker-end="url(#arrow)">'
            f"<title>{_esc(tip)}</title></path>"
        )
    yield "</g>"


def _table(page: _Page) -> Iterator[str]:
    trace = page.trace
    is_open = " open" if len(trace.tasks) <= 40 else ""
    yield f"<details{is_open}><summary>Per-task totals</summary>"
    heads = ["task", "lifetime", *(_SHORT[s] for s in STATES), "steps", "woken", "waited on"]
    yield (
        "<table><thead><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in heads[:-1])
        + f'<th class="waits">{heads[-1]}</th></tr></thead>'
    )
    yield "<tbody>"
    sums = dict.fromkeys(STATES, 0.0)
    steps = woken = 0
    for group in trace.groups:
        yield (
            f'<tr class="grouprow"><td colspan="{len(heads)}">{_esc(page.groups[group])}</td></tr>'
        )
        for task in group.tasks:
            t = task.totals()
            steps += t.steps
            woken += t.woken
            for s in STATES:
                sums[s] += t.time[s]
            waits = _counted(task.wait_names(), 3)
            cells = [format_duration(task.end - task.begin),
                     *(format_duration(t.time[s]) for s in STATES), str(t.steps), str(t.woken)]
            yield (
                f'<tr><td title="{_esc(task.name)}">{_esc(page.names[task])}</td>'
                + "".join(f'<td class="num">{_esc(c)}</td>' for c in cells)
                + f'<td class="waits">{_esc(waits)}</td></tr>'
            )
    cells = ["", *(format_duration(sums[s]) for s in STATES), str(steps), str(woken)]
    yield (
        f'<tr class="total"><td>all {len(trace.tasks)} tasks</td>'
        + "".join(f'<td class="num">{_esc(c)}</td>' for c in cells)
        + "<td></td></tr>"
    )
    yield "</tbody></table></details>"
