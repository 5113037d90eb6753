"""The ``trace`` command: ``python -m yieldloop trace FILE``.

Layer 5 (tools). Reads a trace written by ``yieldloop.run(main,
trace=FILE)`` (or ``YIELDLOOP_TRACE=FILE``) and draws it: a Gantt chart in
the terminal (default), a per-task summary table (``--summary``), or a
self-contained HTML page (``--html OUT``). Exit status 0, or 1 with a
one-line error on stderr when the file is missing or not a trace.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from ._html import render_html
from ._model import TraceError, load_trace
from ._timeline import MIN_WIDTH, choose_style, render_chart, render_summary

__all__ = ["add_arguments", "main"]

_PROG = "python -m yieldloop trace"
_DEFAULT_WIDTH = 100


def _width(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < MIN_WIDTH:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_WIDTH}, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``trace`` command's arguments."""
    parser.add_argument(
        "file",
        metavar="FILE",
        help="a trace file written by yieldloop.run(main, trace=FILE) or YIELDLOOP_TRACE=FILE",
    )
    parser.add_argument(
        "--width",
        type=_width,
        default=None,
        metavar="N",
        help=f"draw N columns wide (default: the terminal's width, or {_DEFAULT_WIDTH})",
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the chart: auto (default) means on a terminal unless NO_COLOR is set",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="print a table instead of the chart: per task, time running and waiting, steps",
    )
    parser.add_argument(
        "--html",
        metavar="OUT",
        default=None,
        help="write the timeline as a self-contained HTML page to OUT instead of drawing it",
    )


def _error(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 1


def main(args: argparse.Namespace) -> int:
    """Entry point of ``python -m yieldloop trace``."""
    try:
        trace = load_trace(args.file)
    except TraceError as exc:
        return _error(str(exc))
    out = sys.stdout
    if args.html is not None:
        page = render_html(trace)
        try:
            with open(args.html, "w", encoding="utf-8") as f:
                f.write(page)
        except OSError as exc:
            return _error(f"cannot write {args.html}: {exc.strerror or exc}")
        n = len(trace.tasks)
        print(
            f"wrote {args.html} ({n} task{'s' if n != 1 else ''}, "
            f"{len(page) // 1024 + 1} KB): open it in a web browser",
            file=out,
        )
        return 0
    width = args.width
    if width is None:
        width = max(MIN_WIDTH, shutil.get_terminal_size((_DEFAULT_WIDTH, 24)).columns)
    style = choose_style(out, args.color)
    lines = (render_summary if args.summary else render_chart)(trace, width, style)
    out.write("\n".join(lines) + "\n")
    out.flush()
    return 0
