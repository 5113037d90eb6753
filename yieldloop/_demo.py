"""The ``demo`` command: the lesson yieldloop grew from, replayed live.

Layer 5 (tools). Three workers each download a page (1 s), connect to a
database (0.5 s) and write the page to it (1 s), written three ways:

1. blocking functions with :func:`time.sleep`, run one after another;
2. generator coroutines that ``yield ("sleep", 1)`` - the raw request
   protocol - composed with ``yield from`` and run by yieldloop;
3. the same with ``async def`` and ``await yieldloop.sleep(1)``.

With ``--trace FILE`` the third version also records a trace of its run
(``yieldloop.run(..., trace=FILE)``): every task's steps and waits, and
which task woke which, for ``python -m yieldloop trace FILE``, its
``--html`` page, or https://ui.perfetto.dev.

Each worker records when it starts each step; after a version has run, the
demo draws the recording as a timeline (one row per worker) so you can see
the waits overlap. Nothing here uses kernel internals: only public
awaitables and the documented requests.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TextIO

from ._kernel._kernel import run
from ._kernel._requests import current_time, sleep
from ._structured._group import gather

__all__ = ["add_arguments", "main", "run_demo"]

# Durations of the tutorial, in seconds (multiplied by --scale).
PAGE_S = 1.0
CONNECT_S = 0.5
WRITE_S = 1.0
WORKERS = (1, 2, 3)

# What a worker is doing; "done" ends its last step.
DOWNLOAD = "download"
CONNECT = "connect"
WRITE = "write"
DONE = "done"

_MESSAGES = {
    DOWNLOAD: "downloading page",
    CONNECT: "connecting to db",
    WRITE: "writing page to db",
    DONE: "done",
}

WIDTH = 80  # every line of output fits in this many columns
_LABEL = "  worker {} "  # the row label; the chart starts right after it


# ===================================================================== style

# ANSI SGR codes for each step, and for kinds of text.
_SGR = {
    DOWNLOAD: "36",  # cyan
    CONNECT: "33",  # yellow
    WRITE: "35",  # magenta
    "heading": "1",  # bold
    "dim": "2",
    "good": "1;32",  # bold green
}


@dataclass(frozen=True)
class Style:
    """Glyphs and colours for one output stream."""

    colour: bool
    unicode: bool

    def paint(self, text: str, what: str) -> str:
        """``text`` in the colour for ``what`` (unchanged without colour)."""
        if not self.colour or not text:
            return text
        return f"\x1b[{_SGR[what]}m{text}\x1b[0m"

    def glyph(self, step: str) -> str:
        """The character that draws ``step`` in a timeline."""
        if self.unicode:
            return {DOWNLOAD: "▒", CONNECT: "·", WRITE: "█"}[step]
        return {DOWNLOAD: "=", CONNECT: ".", WRITE: "#"}[step]

    @property
    def rule(self) -> str:
        return "━" if self.unicode else "="

    @property
    def box(self) -> tuple[str, str, str, str]:
        """(row border, axis corner, axis line, tick)."""
        return ("│", "└", "─", "┴") if self.unicode else ("|", "+", "-", "+")


def _supports(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return False
    return True


def choose_style(stream: TextIO, colour: str = "auto") -> Style:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (to
    anything but the empty string, as https://no-color.org says) or
    ``TERM=dumb``; ``colour`` of "always"/"never" overrides that. Box-drawing
    characters only when the stream's encoding has them."""
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
    return Style(colour=use_colour, unicode=_supports(stream, "━│└─┴▒·█"))


# ================================================================ recording


@dataclass
class Section:
    """One version of the workers: what they did and when."""

    title: str
    t0: float = 0.0
    elapsed: float = 0.0
    # worker id -> [(time since t0, step), ...] in order
    events: dict[int, list[tuple[float, str]]] = field(default_factory=dict)


class Demo:
    """Runs the three versions and prints what happens."""

    def __init__(
        self, scale: float, out: TextIO, style: Style, trace: str | None = None
    ) -> None:
        self.scale = scale
        self.trace = trace  # where the async/await version writes its trace
        self.page_s = PAGE_S * scale
        self.connect_s = CONNECT_S * scale
        self.write_s = WRITE_S * scale
        self.out = out
        self.style = style
        # Short runs need more digits to tell the steps apart.
        self.digits = 2 if scale >= 0.1 else 3
        self.section = Section("")

    # ---------------------------------------------------------------- output

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def log(self, worker: int, step: str, now: float) -> None:
        """Record that ``worker`` starts ``step`` at clock time ``now``, and say so."""
        t = now - self.section.t0
        self.section.events.setdefault(worker, []).append((t, step))
        stamp = f"{t:{5 + self.digits}.{self.digits}f} s"
        message = self.style.paint(_MESSAGES[step], step) if step != DONE else "done"
        self.print(f"  {stamp}  worker {worker}  {message}")

    def heading(self, number: int, total: int, title: str, code: list[str]) -> None:
        style = self.style
        text = f"{style.rule * 2} {number}/{total}  {title} "
        self.print()
        self.print(style.paint(text + style.rule * (WIDTH - len(text)), "heading"))
        for line in code:
            self.print(style.paint(f"  {line}", "dim"))
        self.print()

    # -------------------------------------------------------------- versions

    def blocking(self) -> None:
        """1. Plain functions: every wait blocks the whole program."""

        def get_page(n: int) -> str:
            self.log(n, DOWNLOAD, time.monotonic())
            time.sleep(self.page_s)
            return "<html>Hello</html>"

        def write_db(n: int, data: str) -> None:
            self.log(n, CONNECT, time.monotonic())
            time.sleep(self.connect_s)
            self.log(n, WRITE, time.monotonic())
            time.sleep(self.write_s)

        def worker(n: int) -> None:
            page = get_page(n)
            write_db(n, page)
            self.log(n, DONE, time.monotonic())

        for n in WORKERS:
            worker(n)

    def generators(self) -> None:
        """2. Generator coroutines speaking the request protocol."""

        def get_page(n: int) -> Generator[Any, Any, str]:
            self.log(n, DOWNLOAD, (yield ("current_time",)))
            yield ("sleep", self.page_s)
            return "<html>Hello</html>"

        def write_db(n: int, data: str) -> Generator[Any, Any, None]:
            self.log(n, CONNECT, (yield ("current_time",)))
            yield ("sleep", self.connect_s)
            self.log(n, WRITE, (yield ("current_time",)))
            yield ("sleep", self.write_s)

        def worker(n: int) -> Generator[Any, Any, None]:
            page = yield from get_page(n)
            yield from write_db(n, page)
            self.log(n, DONE, (yield ("current_time",)))

        run(gather(*(worker(n) for n in WORKERS)))

    def async_await(self) -> None:
        """3. The same with async/await."""

        async def get_page(n: int) -> str:
            self.log(n, DOWNLOAD, current_time())
            await sleep(self.page_s)
            return "<html>Hello</html>"

        async def write_db(n: int, data: str) -> None:
            self.log(n, CONNECT, current_time())
            await sleep(self.connect_s)
            self.log(n, WRITE, current_time())
            await sleep(self.write_s)

        async def worker(n: int) -> None:
            page = await get_page(n)
            await write_db(n, page)
            self.log(n, DONE, current_time())

        run(gather(*(worker(n) for n in WORKERS)), trace=self.trace)

    def run_section(self, title: str, body: Callable[[], None]) -> Section:
        # The default clock *is* time.monotonic, so times recorded inside
        # yieldloop.run() and outside it are on one scale.
        section = self.section = Section(title)
        section.t0 = time.monotonic()
        body()
        section.elapsed = time.monotonic() - section.t0
        return section

    # ---------------------------------------------------------------- charts

    def timeline(self, section: Section, span: float) -> list[str]:
        """Draw ``section`` as rows of glyphs over an axis of ``span`` seconds."""
        style = self.style
        border, corner, line, tick = style.box
        step, nsteps = _axis_steps(max(span, _end(section)))
        labels = [_fmt(k * step) for k in range(nsteps + 1)]
        label_width = len(_LABEL.format(WORKERS[-1]))
        # Room for the chart, its end tick and the last label.
        room = WIDTH - label_width - 1 - len(labels[-1])
        per_step = max(1, room // nsteps)
        width = per_step * nsteps
        per_second = per_step / step

        lines = []
        for worker, events in sorted(section.events.items()):
            cells = [" "] * width
            for (start, what), (end, _) in itertools.pairwise(events):
                a = min(width - 1, round(start * per_second))
                b = min(width, max(a + 1, round(end * per_second)))
                for i in range(a, b):
                    cells[i] = what
            row = ""
            for what, run_ in itertools.groupby(cells):
                n = len(list(run_))
                row += " " * n if what == " " else style.paint(style.glyph(what) * n, what)
            lines.append(f"{_LABEL.format(worker)}{border}{row.rstrip()}")
        # The corner stands for the tick at 0.
        axis = "".join(tick if i and i % per_step == 0 else line for i in range(width + 1))
        lines.append(" " * label_width + corner + axis)
        under = "seconds".rjust(label_width)
        for k, label in enumerate(labels):
            at = label_width + 1 + k * per_step  # column of tick k
            if len(under) < at:  # drop a label that would run into the previous one
                under = under.ljust(at) + label
        lines.append(under)
        legend = "   ".join(
            f"{style.paint(style.glyph(s), s)} {_MESSAGES[s]}" for s in (DOWNLOAD, CONNECT, WRITE)
        )
        lines.append(" " * label_width + legend)
        return lines


def _end(section: Section) -> float:
    return max((ev[-1][0] for ev in section.events.values() if ev), default=0.0)


def _axis_steps(span: float) -> tuple[float, int]:
    """A round tick step (1, 2 or 5 times a power of ten) and how many steps
    cover ``span``: about eight. A step that is only just begun by the span
    (jitter on the last sleep) does not get a tick of its own."""
    span = max(span, 1e-6)
    exp = math.floor(math.log10(span / 8))
    while True:
        for mult in (1, 2, 5):
            step = mult * 10.0**exp
            if step >= span / 8:
                return step, max(1, math.ceil(span / step - 0.25))
        exp += 1


def _fmt(value: float) -> str:
    return f"{round(value, 9):g}"


# ====================================================================== run


@dataclass(frozen=True)
class _Version:
    short: str  # its name in the summary
    title: str
    code: list[str]  # the gist of the code, shown under the heading
    body: Callable[[Demo], None]


_VERSIONS = [
    _Version(
        "blocking",
        "blocking: time.sleep()",
        [
            "def get_page(): time.sleep(1); return page",
            "def write_db(page): time.sleep(0.5); time.sleep(1)",
            "for n in 1, 2, 3: worker(n)         # one after another",
        ],
        Demo.blocking,
    ),
    _Version(
        "generators",
        "generators: yield requests to a scheduler",
        [
            'def get_page(): yield ("sleep", 1); return page',
            "def worker(n): page = yield from get_page(); yield from write_db(page)",
            "yieldloop.run(yieldloop.gather(worker(1), worker(2), worker(3)))",
        ],
        Demo.generators,
    ),
    _Version(
        "async/await",
        "async/await: the same machinery, nicer syntax",
        [
            "async def get_page(): await yieldloop.sleep(1); return page",
            "async def worker(n): page = await get_page(); await write_db(page)",
            "yieldloop.run(yieldloop.gather(worker(1), worker(2), worker(3)))",
        ],
        Demo.async_await,
    ),
]


def run_demo(
    scale: float = 1.0,
    *,
    skip_blocking: bool = False,
    out: TextIO | None = None,
    colour: str = "auto",
    trace: str | os.PathLike[str] | None = None,
) -> int:
    """Run the demo, printing to ``out`` (default: stdout). With ``trace``,
    the async/await version writes a trace of its run to that file. Returns
    0 (1 when the trace could not be written)."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    trace_path = None if trace is None else os.fspath(trace)
    if trace_path is not None:
        problem = _trace_problem(trace_path)
        if problem:
            raise ValueError(problem)
        if os.path.exists(trace_path):
            os.remove(trace_path)  # so that a file left over is never taken for this run's
    out = sys.stdout if out is None else out
    style = choose_style(out, colour)
    demo = Demo(scale, out, style, trace_path)
    versions = _VERSIONS[1:] if skip_blocking else _VERSIONS
    per_worker = PAGE_S + CONNECT_S + WRITE_S
    nominal = per_worker * (len(WORKERS) if not skip_blocking else 1) * scale

    demo.print(style.paint("yieldloop demo: from yield to async/await", "heading"))
    demo.print(
        f"Three workers: download a page ({PAGE_S:g} s), connect to a db "
        f"({CONNECT_S:g} s), write ({WRITE_S:g} s)."
    )
    if scale != 1:
        demo.print(f"All durations are multiplied by --scale {scale:g}.")

    results: list[tuple[str, float]] = []
    span = nominal
    for number, version in enumerate(versions, 1):
        short = version.short
        demo.heading(number, len(versions), version.title, version.code)
        section = demo.run_section(short, functools.partial(version.body, demo))
        span = max(span, _end(section))
        demo.print()
        for line in demo.timeline(section, span):
            demo.print(line)
        demo.print()
        if results and results[0][0] == "blocking" and section.elapsed > 0:
            note = f"  ({results[0][1] / section.elapsed:.1f}x faster than blocking)"
        elif short == "blocking":
            note = "  (each worker waits for the one before it)"
        else:
            note = "  (the three workers wait at the same time)"
        took = f"elapsed: {section.elapsed:.{demo.digits}f} s"
        demo.print(f"  {style.paint(took, 'good')}{note}")
        results.append((short, section.elapsed))

    demo.print()
    rule = style.rule
    text = f"{rule * 2} summary "
    demo.print(style.paint(text + rule * (WIDTH - len(text)), "heading"))
    base = dict(results).get("blocking")
    for short, elapsed in results:
        line = f"  {short:<12} {elapsed:{5 + demo.digits}.{demo.digits}f} s"
        if base is not None and short != "blocking" and elapsed > 0:
            line += f"   {base / elapsed:.1f}x faster"
        demo.print(line)
    demo.print()
    demo.print("  Both concurrent versions run on one kernel: await yieldloop.sleep(1)")
    demo.print('  yields the very request, ("sleep", 1), that the generator yields by hand.')
    if trace_path is None:
        return 0
    demo.print()
    if not os.path.isfile(trace_path):
        print(f"the trace could not be written to {trace_path}", file=sys.stderr)
        return 1
    demo.print(f"  The async/await run's trace is in {trace_path}. Draw it with")
    demo.print(style.paint(f"    python -m yieldloop trace {trace_path}", "heading"))
    page = os.path.splitext(trace_path)[0] + ".html"
    demo.print(style.paint(f"    python -m yieldloop trace {trace_path} --html {page}", "heading"))
    demo.print("  or open it in https://ui.perfetto.dev.")
    return 0


# ====================================================================== CLI


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _trace_problem(path: str) -> str | None:
    """Why a trace cannot be written to ``path``, or None."""
    if not path:
        return "the trace file name is empty"
    if os.path.isdir(path):
        return f"{path!r} is a directory, not a file"
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        return f"no such directory: {parent!r}"
    if not os.access(parent, os.W_OK):
        return f"cannot write in directory {parent!r}"
    return None


def _trace_file(text: str) -> str:
    problem = _trace_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` command's options."""
    parser.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        metavar="S",
        help="multiply every duration by S (default 1.0; 0.1 for a quick run)",
    )
    parser.add_argument(
        "--skip-blocking",
        action="store_true",
        help="leave out the blocking version (it takes 7.5 s at scale 1)",
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: auto (default) means on a terminal unless NO_COLOR is set",
    )
    parser.add_argument(
        "--trace",
        type=_trace_file,
        default=None,
        metavar="FILE",
        help="write a trace of the async/await run to FILE (view it with "
        "'python -m yieldloop trace FILE')",
    )


def main(args: argparse.Namespace) -> int:
    """Entry point of ``python -m yieldloop demo``."""
    return run_demo(
        args.scale, skip_blocking=args.skip_blocking, colour=args.color, trace=args.trace
    )
