"""Turning runs into the report: medians, ratios, tables, and the machine's details."""

from __future__ import annotations

import datetime
import hashlib
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from .registry import SERIES, Runtime, Series, Workload
from .runner import ROOT, Run

#: The runtimes every other one is compared with.
BASELINES = ("asyncio", "uvloop")


@dataclass
class Row:
    """One (workload, runtime) line of the report."""

    workload: str
    runtime: str
    #: "ok" (every repetition ran), "partial" (some failed), "failed",
    #: "skipped" or "n/a".
    status: str
    reference: bool
    median: float | None = None
    low: float | None = None
    high: float | None = None
    n_ok: int = 0
    n_runs: int = 0
    detail: str = ""
    vs_asyncio: float | None = None
    vs_uvloop: float | None = None
    #: asyncio's CPU time per operation / this one's: like ``vs_asyncio``
    #: (higher is faster) but from CPU time, which other processes on the
    #: machine disturb less than the wall-clock rate.
    cpu_vs_asyncio: float | None = None
    #: Median CPU seconds per operation (the process's, over the timed span).
    cpu_per_op: float | None = None
    #: The scaling series of the workload and its size there, if it has one.
    series: str | None = None
    x: int | None = None
    #: The series' ceiling rate for this point (see ``Series.ideal``).
    ideal: float | None = None

    @property
    def spread(self) -> float | None:
        """(max - min) / median of the repetitions, as a fraction."""
        if self.median is None or self.low is None or self.high is None or self.n_ok < 2:
            return None
        return (self.high - self.low) / self.median


def summarize(
    runs: Sequence[Run], workloads: Sequence[Workload], runtimes: Sequence[Runtime]
) -> list[Row]:
    """One :class:`Row` per (workload, runtime), in registry order."""
    rows: list[Row] = []
    for workload in workloads:
        by_runtime: dict[str, Row] = {}
        for runtime in runtimes:
            mine = [r for r in runs if r.workload == workload.name and r.runtime == runtime.name]
            if not mine:
                continue
            row = Row(workload.name, runtime.name, "ok", runtime.reference)
            first = mine[0]
            if workload.series is not None:
                row.series, row.x = workload.series.name, workload.x
                if workload.series.ideal is not None:
                    row.ideal = workload.series.ideal(first.params)
            if first.status == "n/a" and runtime.reference:
                continue  # a reference row only where it has something to show
            if first.status in ("skipped", "n/a"):
                row.status = first.status
                row.detail = first.detail
            else:
                rates = [r.ops_per_sec for r in mine if r.status == "ok" and r.ops_per_sec]
                bad = [r for r in mine if r.status != "ok"]
                row.n_ok, row.n_runs = len(rates), len(mine)
                if rates:
                    row.median = statistics.median(rates)
                    row.low, row.high = min(rates), max(rates)
                cpu = [
                    r.cpu_seconds / r.ops
                    for r in mine
                    if r.status == "ok" and r.cpu_seconds is not None and r.ops
                ]
                if cpu:
                    row.cpu_per_op = statistics.median(cpu)
                if bad:
                    row.status = "partial" if rates else "failed"
                    row.detail = f"{bad[0].status}: {bad[0].detail}"
            by_runtime[runtime.name] = row
        base = by_runtime.get("asyncio")
        for row in by_runtime.values():
            row.vs_asyncio = _ratio(row, base)
            row.vs_uvloop = _ratio(row, by_runtime.get("uvloop"))
            if row.cpu_per_op and base is not None and base.cpu_per_op:
                row.cpu_vs_asyncio = base.cpu_per_op / row.cpu_per_op
        rows.extend(by_runtime.values())
    return rows


def main_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows of the main table: every workload that is not a series point."""
    return [r for r in rows if r.series is None]


def _ratio(row: Row, base: Row | None) -> float | None:
    if row.median is None or base is None or not base.median:
        return None
    return row.median / base.median


def geomeans(
    rows: Sequence[Row], runtimes: Sequence[Runtime]
) -> list[tuple[str, Any, Any, Any, int]]:
    """Per runtime: geometric mean of its ratios to asyncio, to uvloop and of
    its CPU-time ratio to asyncio over the workloads where they were
    measured, and the number of workloads. Series points are left out (each
    series has a table of its own)."""
    rows = main_rows(rows)
    out = []
    for runtime in runtimes:
        if runtime.reference:
            continue
        mine = [r for r in rows if r.runtime == runtime.name and r.median is not None]
        a = [r.vs_asyncio for r in mine if r.vs_asyncio]
        u = [r.vs_uvloop for r in mine if r.vs_uvloop]
        c = [r.cpu_vs_asyncio for r in mine if r.cpu_vs_asyncio]
        if not mine:
            continue
        out.append((runtime.name, _geomean(a), _geomean(u), _geomean(c), len(mine)))
    return out


def _geomean(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


# -- formatting ---------------------------------------------------------------

HEADERS = (
    "workload",
    "runtime",
    "median ops/s",
    "spread",
    "vs asyncio",
    "vs uvloop",
    "CPU vs asyncio",
    "runs",
)
_RIGHT = (False, False, True, True, True, True, True, True)


def _cells(row: Row, first_of_workload: bool) -> list[str]:
    name = row.runtime + (" (ref)" if row.reference else "")
    wl = row.workload if first_of_workload else ""
    if row.status in ("skipped", "n/a"):
        return [wl, name, row.status, "", "", "", "", ""]
    if row.median is None:
        return [wl, name, row.status.upper(), "", "", "", "", f"0/{row.n_runs}"]
    spread = row.spread
    return [
        wl,
        name,
        f"{row.median:,.0f}",
        "" if spread is None else f"{spread * 100:.1f}%",
        _fmt_ratio(row.vs_asyncio),
        _fmt_ratio(row.vs_uvloop),
        _fmt_ratio(row.cpu_vs_asyncio),
        f"{row.n_ok}/{row.n_runs}",
    ]


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _table_rows(rows: Sequence[Row]) -> list[list[str]]:
    out: list[list[str]] = []
    last = None
    for row in rows:
        out.append(_cells(row, row.workload != last))
        last = row.workload
    return out


def text_table(rows: Sequence[Row], runtimes: Sequence[Runtime]) -> str:
    """The plain-text report: the main table, the geometric means, the
    scaling series, notes."""
    all_rows = rows
    rows = main_rows(rows)
    body = _table_rows(rows)
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, _RIGHT, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(HEADERS), line(["-" * w for w in widths])] if rows else []
    last = None
    for row, cells in zip(rows, body, strict=True):
        if last is not None and row.workload != last:
            out.append("")
        out.append(line(cells))
        last = row.workload
    means = geomeans(rows, runtimes)
    if means and len({r.workload for r in rows}) > 1:
        out += ["", "geometric mean over workloads:"]
        w = max(len(m[0]) for m in means)
        for name, a, u, c, n in means:
            out.append(
                f"  {name:<{w}}  vs asyncio {_fmt_ratio(a):>7}  vs uvloop {_fmt_ratio(u):>7}"
                f"  CPU vs asyncio {_fmt_ratio(c):>7}  ({n} workloads)"
            )
    for table in series_tables(all_rows, runtimes):
        if out:
            out.append("")
        out.append(f"{table.series.name}: {table.series.title}")
        for caption, headers, body_rows in table.parts:
            out.append(f"  {caption}")
            out += ["  " + line for line in _grid(headers, body_rows)]
    out += [f"note: {n}" for n in notes(all_rows)]
    return "\n".join(out)


def _grid(headers: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in body]


@dataclass
class SeriesTable:
    """The tables of one scaling series: ``parts`` is a list of
    ``(caption, headers, rows of cells)``, one for the rates and one for the
    CPU time per operation."""

    series: Series
    xs: list[int]
    parts: list[tuple[str, list[str], list[list[str]]]]


def series_tables(rows: Sequence[Row], runtimes: Sequence[Runtime]) -> list[SeriesTable]:
    """One :class:`SeriesTable` per series that has rows, in registry order.

    Rows are runtimes, columns the sizes; the last column is the value at the
    largest size divided by the value at the smallest: for the rate, 1.00
    means the runtime does not slow down as the size grows.
    """
    out: list[SeriesTable] = []
    for series in SERIES.values():
        mine = [r for r in rows if r.series == series.name]
        if not mine:
            continue
        xs = sorted({r.x for r in mine if r.x is not None})
        label = series.label
        # The last column compares the largest size with the smallest.
        span = [f"{label(xs[-1])} / {label(xs[0])}"] if len(xs) > 1 else []
        rate_rows: list[list[str]] = []
        cpu_rows: list[list[str]] = []
        for runtime in runtimes:
            by_x = {r.x: r for r in mine if r.runtime == runtime.name}
            if not by_x or all(r.status in ("skipped", "n/a") for r in by_x.values()):
                continue
            name = runtime.name + (" (ref)" if runtime.reference else "")
            rates = [_series_rate_cell(by_x.get(x)) for x in xs]
            cpus = [_series_cpu_cell(by_x.get(x)) for x in xs]
            first, last = by_x.get(xs[0]), by_x.get(xs[-1])
            rate_ratio = cpu_ratio = "-"
            if len(xs) > 1 and first and last:
                if first.median and last.median:
                    rate_ratio = f"{last.median / first.median:.2f}"
                if first.cpu_per_op and last.cpu_per_op:
                    cpu_ratio = f"{last.cpu_per_op / first.cpu_per_op:.2f}"
            rate_rows.append([name, *rates, *([rate_ratio] if span else [])])
            cpu_rows.append([name, *cpus, *([cpu_ratio] if span else [])])
        heads = [label(x) for x in xs]
        rate_caption = f"ops/s (median) by {series.axis}"
        if series.ideal is not None:
            rate_caption += "; in brackets: share of the ceiling"
        out.append(
            SeriesTable(
                series,
                xs,
                [
                    (rate_caption, ["runtime", *heads, *span], rate_rows),
                    (
                        f"CPU time per operation, microseconds (median) by {series.axis}",
                        ["runtime", *heads, *span],
                        cpu_rows,
                    ),
                ],
            )
        )
    return out


def _series_rate_cell(row: Row | None) -> str:
    if row is None:
        return ""
    if row.status in ("skipped", "n/a"):
        return row.status
    if row.median is None:
        return row.status.upper()
    cell = f"{row.median:,.0f}"
    if row.ideal:
        cell += f" ({row.median / row.ideal:.0%})"
    return cell


def _series_cpu_cell(row: Row | None) -> str:
    if row is None or row.cpu_per_op is None:
        return "" if row is None or row.median is None else "-"
    return f"{row.cpu_per_op * 1e6:,.2f}"


def notes(rows: Sequence[Row]) -> list[str]:
    """One line per runtime that was skipped, and per failed measurement."""
    out: list[str] = []
    seen: set[str] = set()
    for row in rows:
        if row.status == "skipped" and row.runtime not in seen:
            seen.add(row.runtime)
            out.append(f"{row.runtime} skipped: {row.detail}")
        elif row.status in ("failed", "partial"):
            out.append(f"{row.workload} on {row.runtime}: {row.detail}")
    return out


def markdown(
    rows: Sequence[Row],
    runtimes: Sequence[Runtime],
    workloads: Sequence[Workload],
    meta: dict[str, Any],
    chart: str | None = None,
) -> str:
    """The report as markdown, with how and where it was measured.

    ``chart`` is the path of the chart image relative to the markdown file,
    to show it under the details. This is the section that ``--markdown``
    keeps between its markers in the file (see :mod:`benchmarks.mdsection`).
    """
    out = ["# yieldloop benchmarks", ""]
    out.append(f"- command: `{meta['command']}`")
    out.append(f"- date: {meta['date']}")
    out.append(f"- python: {meta['python']}")
    out.append(f"- cpu: {meta['cpu']}")
    out.append(f"- nproc: {meta['nproc']}")
    if meta.get("loadavg"):
        out.append(f"- load average at start: {', '.join(map(str, meta['loadavg']))}")
    if meta.get("yieldloop_commit"):
        out.append(f"- yieldloop: {meta['yieldloop_commit']} (source {meta['yieldloop_source']})")
    if meta.get("warning"):
        out.append(f"- **warning**: {meta['warning']}")
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    if versions:
        out.append(f"- versions: {versions}")
    out.append(f"- repetitions: {meta['reps']} (median shown; spread = (max - min) / median)")
    out.append(
        "- CPU vs asyncio: asyncio's median CPU time per operation / this runtime's "
        "(like vs asyncio, but from the process's CPU time, which other processes on "
        "the machine disturb less than the wall clock)"
    )
    if meta.get("wall_seconds"):
        out.append(f"- wall time of the whole run: {meta['wall_seconds'] / 60:.1f} min")
    if chart:
        out += ["", f"![Ratio to asyncio per workload, and the scaling series]({chart})"]
    main = main_rows(rows)
    if main:
        out.append("")
        out.append("| " + " | ".join(HEADERS) + " |")
        out.append("|" + "|".join("---:" if r else "---" for r in _RIGHT) + "|")
        for cells in _table_rows(main):
            cells = [f"**{c}**" if i == 0 and c else c for i, c in enumerate(cells)]
            out.append("| " + " | ".join(cells) + " |")
    means = geomeans(rows, runtimes)
    if means and len({r.workload for r in main}) > 1:
        out += [
            "",
            "Geometric mean of the ratios over workloads (the scaling series below "
            "are not part of it):",
            "",
        ]
        out += [
            "| runtime | vs asyncio | vs uvloop | CPU vs asyncio | workloads |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, a, u, c, n in means:
            out.append(f"| {name} | {_fmt_ratio(a)} | {_fmt_ratio(u)} | {_fmt_ratio(c)} | {n} |")
    tables = series_tables(rows, runtimes)
    if tables:
        out += ["", "## Scaling"]
    for table in tables:
        out += ["", f"### {table.series.name}: {table.series.title}", ""]
        if table.series.note:
            out += [table.series.note, ""]
        for caption, headers, body in table.parts:
            out += [f"{caption}:", ""]
            out.append("| " + " | ".join(headers) + " |")
            out.append("|---|" + "---:|" * (len(headers) - 1))
            out += ["| " + " | ".join(cells) + " |" for cells in body]
            out.append("")
        out.pop()
    out += ["", "## Workloads", ""]
    for w in workloads:
        out.append(f"- **{w.name}**: {w.describe(meta['params'][w.name])}")
    extra = notes(rows)
    if extra:
        out += ["", "Notes:", ""] + [f"- {n}" for n in extra]
    return "\n".join(out) + "\n"


# -- the machine ---------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def versions(runtimes: Sequence[Runtime]) -> dict[str, str]:
    out: dict[str, str] = {}
    for runtime in runtimes:
        for mod in runtime.modules:
            if mod == "asyncio":
                continue
            try:
                out[mod] = metadata.version(mod)
            except metadata.PackageNotFoundError:
                pass
    return out


def git_commit() -> str:
    """The yieldloop commit, with ``+dirty`` if yieldloop/ has local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "yieldloop"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


def source_digest() -> str:
    """A short hash of yieldloop's source files, to notice edits during a run."""
    h = hashlib.sha1()
    for path in sorted((ROOT / "yieldloop").rglob("*.py")):
        h.update(str(path.relative_to(ROOT)).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:12]


def metadata_for(
    command: str,
    reps: int,
    quick: bool,
    runtimes: Sequence[Runtime],
    workloads: Sequence[Workload],
) -> dict[str, Any]:
    return {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()} "
        f"({platform.system()} {platform.machine()})",
        "cpu": cpu_model(),
        "nproc": nproc(),
        "loadavg": _loadavg(),
        "yieldloop_commit": git_commit(),
        "yieldloop_source": source_digest(),
        "versions": versions(runtimes),
        "reps": reps,
        "quick": quick,
        "params": {w.name: w.params(quick) for w in workloads},
    }
