"""Tools that read what a run left behind: the ``trace`` command.

Layer 5 (tools): may import every layer below; nothing below imports it.

* :mod:`._model` reads a trace file (``run(main, trace=path)``) into groups,
  tasks, slices and wake-ups;
* :mod:`._units` picks time units, axis ticks and the names tasks are shown
  with;
* :mod:`._timeline` draws it as a terminal Gantt chart, or a summary table;
* :mod:`._html` writes it as a self-contained HTML page (inline SVG);
* :mod:`._command` is ``python -m yieldloop trace``.
"""

from __future__ import annotations

from ._command import add_arguments, main
from ._html import render_html
from ._model import STATES, Trace, TraceError, load_trace, parse_trace
from ._timeline import ChartStyle, choose_style, render_chart, render_summary

__all__ = [
    "STATES",
    "ChartStyle",
    "Trace",
    "TraceError",
    "add_arguments",
    "choose_style",
    "load_trace",
    "main",
    "parse_trace",
    "render_chart",
    "render_html",
    "render_summary",
]
