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

from .registry import Runtime, Workload
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
                if bad:
                    row.status = "partial" if rates else "failed"
                    row.detail = f"{bad[0].status}: {bad[0].detail}"
            by_runtime[runtime.name] = row
        for row in by_runtime.values():
            row.vs_asyncio = _ratio(row, by_runtime.get("asyncio"))
            row.vs_uvloop = _ratio(row, by_runtime.get("uvloop"))
        rows.extend(by_runtime.values())
    return rows


def _ratio(row: Row, base: Row | None) -> float | None:
    if row.median is None or base is None or not base.median:
        return None
    return row.median / base.median


def geomeans(rows: Sequence[Row], runtimes: Sequence[Runtime]) -> list[tuple[str, Any, Any, int]]:
    """Per runtime: geometric mean of its ratios to asyncio and to uvloop over
    the workloads where both were measured, and the number of workloads."""
    out = []
    for runtime in runtimes:
        if runtime.reference:
            continue
        mine = [r for r in rows if r.runtime == runtime.name and r.median is not None]
        a = [r.vs_asyncio for r in mine if r.vs_asyncio]
        u = [r.vs_uvloop for r in mine if r.vs_uvloop]
        if not mine:
            continue
        out.append((runtime.name, _geomean(a), _geomean(u), len(mine)))
    return out


def _geomean(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


# -- formatting ---------------------------------------------------------------

HEADERS = ("workload", "runtime", "median ops/s", "spread", "vs asyncio", "vs uvloop", "runs")
_RIGHT = (False, False, True, True, True, True, True)


def _cells(row: Row, first_of_workload: bool) -> list[str]:
    name = row.runtime + (" (ref)" if row.reference else "")
    wl = row.workload if first_of_workload else ""
    if row.status in ("skipped", "n/a"):
        return [wl, name, row.status, "", "", "", ""]
    if row.median is None:
        return [wl, name, row.status.upper(), "", "", "", f"0/{row.n_runs}"]
    spread = row.spread
    return [
        wl,
        name,
        f"{row.median:,.0f}",
        "" if spread is None else f"{spread * 100:.1f}%",
        _fmt_ratio(row.vs_asyncio),
        _fmt_ratio(row.vs_uvloop),
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
    """The plain-text report: the main table, the geometric means, notes."""
    body = _table_rows(rows)
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, _RIGHT, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(HEADERS), line(["-" * w for w in widths])]
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
        for name, a, u, n in means:
            out.append(
                f"  {name:<{w}}  vs asyncio {_fmt_ratio(a):>7}  vs uvloop {_fmt_ratio(u):>7}"
                f"  ({n} workloads)"
            )
    out += [f"note: {n}" for n in notes(rows)]
    return "\n".join(out)


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
) -> str:
    """The report as a markdown document, with how and where it was measured."""
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
    out.append("")
    out.append("| " + " | ".join(HEADERS) + " |")
    out.append("|" + "|".join("---:" if r else "---" for r in _RIGHT) + "|")
    for cells in _table_rows(rows):
        cells = [f"**{c}**" if i == 0 and c else c for i, c in enumerate(cells)]
        out.append("| " + " | ".join(cells) + " |")
    means = geomeans(rows, runtimes)
    if means and len({r.workload for r in rows}) > 1:
        out += ["", "Geometric mean of the ratios over workloads:", ""]
        out += ["| runtime | vs asyncio | vs uvloop | workloads |", "|---|---:|---:|---:|"]
        for name, a, u, n in means:
            out.append(f"| {name} | {_fmt_ratio(a)} | {_fmt_ratio(u)} | {n} |")
    out += ["", "Workloads:", ""]
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
