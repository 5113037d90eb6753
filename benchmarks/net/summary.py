"""Turning runs into the report: medians, spreads, ratios, tables.

One table per section (http, echo, tls). For each case and server: the
median rate over the repetitions, the spread ``(max - min) / median``, the
median CPU use of the server and of the load generator while loaded, and
the ratio of the median to uvloop-streams' and to uvloop-protocol's
medians in the same case.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .measure import Case, NetRun

__all__ = ["BASELINES", "NetRow", "markdown", "summarize", "text_report"]

#: The servers every other one is compared with.
BASELINES = ("uvloop-streams", "uvloop-protocol")

CPU_LEGEND = (
    "server µs/op: the server's CPU time per request (round trip for echo), lower is "
    "better, and steadier than the rate on a busy machine; user+sys: the same split "
    "into the time in the process itself and in the kernel (system calls, TCP); "
    "server CPU / load CPU / others: cores used by the server / the load generator / "
    "everything else on the machine (other processes, and kernel interrupt work) while "
    "loaded (100% = one core busy); a server well below 100% was held back by the load "
    "generator or by the others; CPU/op vs uvloop s / p: uvloop-streams' and "
    "uvloop-protocol's server µs/op over this server's (higher: cheaper per request)"
)

SECTION_TITLES = {
    "http": "HTTP/1.1 keep-alive GET, loaded by wrk (requests/s)",
    "echo": "TCP echo, one blocking client process per connection (round trips/s)",
    "tls": "TLS echo, the same over TLS 1.3 (round trips/s)",
}


@dataclass
class NetRow:
    """One (case, server) line of the report."""

    section: str
    case: str
    server: str
    #: "ok" (every repetition ran), "partial", "failed", "skipped", "n/a".
    status: str
    median: float | None = None
    low: float | None = None
    high: float | None = None
    mib_per_sec: float | None = None
    server_cpu: float | None = None
    load_cpu: float | None = None
    other_cpu: float | None = None
    server_us_per_op: float | None = None
    server_user_us_per_op: float | None = None
    server_sys_us_per_op: float | None = None
    n_ok: int = 0
    n_runs: int = 0
    detail: str = ""
    vs_uvloop_streams: float | None = None
    vs_uvloop_protocol: float | None = None
    #: The baselines' CPU time per operation over this server's (higher:
    #: this server spends less CPU on one request than the baseline).
    cpu_vs_uvloop_streams: float | None = None
    cpu_vs_uvloop_protocol: float | None = None

    @property
    def spread(self) -> float | None:
        """(max - min) / median of the repetitions, as a fraction."""
        if self.median is None or self.low is None or self.high is None or self.n_ok < 2:
            return None
        return (self.high - self.low) / self.median

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON-ready dict, spread included."""
        return asdict(self) | {"spread": self.spread}


def _median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def summarize(
    runs: Sequence[NetRun], cases: Sequence[Case], servers: Sequence[str]
) -> list[NetRow]:
    """One :class:`NetRow` per (case, server) that has runs, in case then server order."""
    rows: list[NetRow] = []
    for case in cases:
        by_server: dict[str, NetRow] = {}
        for server in servers:
            mine = [r for r in runs if r.case == case.name and r.server == server]
            if not mine:
                continue
            row = NetRow(case.section, case.name, server, "ok")
            if mine[0].status in ("skipped", "n/a"):
                row.status = mine[0].status
                row.detail = mine[0].detail
                by_server[server] = row
                continue
            good = [r for r in mine if r.status == "ok" and r.rate]
            bad = [r for r in mine if r.status != "ok"]
            row.n_ok, row.n_runs = len(good), len(mine)
            if good:
                rates = [r.rate for r in good if r.rate is not None]
                row.median = statistics.median(rates)
                row.low, row.high = min(rates), max(rates)
                row.mib_per_sec = _median([r.mib_per_sec for r in good])
                row.server_cpu = _median([r.server_cpu for r in good])
                row.load_cpu = _median([r.load_cpu for r in good])
                row.other_cpu = _median([r.other_cpu for r in good])
                row.server_us_per_op = _median([r.server_us_per_op for r in good])
                row.server_user_us_per_op = _median([r.server_user_us_per_op for r in good])
                row.server_sys_us_per_op = _median([r.server_sys_us_per_op for r in good])
            if bad and all(r.status == "no-start" for r in mine):
                row.status = "skipped"  # reported like a runtime that is missing
                row.detail = bad[0].detail
            elif bad:
                row.status = "partial" if good else "failed"
                row.detail = f"{bad[0].status}: {bad[0].detail}"
            by_server[server] = row
        streams = by_server.get(BASELINES[0])
        protocol = by_server.get(BASELINES[1])
        for row in by_server.values():
            row.vs_uvloop_streams = _ratio(row, streams)
            row.vs_uvloop_protocol = _ratio(row, protocol)
            row.cpu_vs_uvloop_streams = _cpu_ratio(row, streams)
            row.cpu_vs_uvloop_protocol = _cpu_ratio(row, protocol)
        rows.extend(by_server.values())
    return rows


def _ratio(row: NetRow, base: NetRow | None) -> float | None:
    if row.median is None or base is None or not base.median:
        return None
    return row.median / base.median


def _cpu_ratio(row: NetRow, base: NetRow | None) -> float | None:
    if not row.server_us_per_op or base is None or not base.server_us_per_op:
        return None
    return base.server_us_per_op / row.server_us_per_op


# -- formatting ---------------------------------------------------------------


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _fmt_split(user: float | None, sys: float | None) -> str:
    return "-" if user is None or sys is None else f"{user:.1f}+{sys:.1f}"


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def _headers(section: str) -> tuple[list[str], list[bool]]:
    rate = "median req/s" if section == "http" else "median msg/s"
    heads = ["case", "server", rate]
    right = [False, False, True]
    if section != "http":
        heads.append("MiB/s")
        right.append(True)
    heads += [
        "spread",
        "server µs/op",
        "user+sys",
        "server CPU",
        "load CPU",
        "others",
        "vs uvloop-streams",
        "vs uvloop-protocol",
        "CPU/op vs uvloop s / p",
        "runs",
    ]
    right += [True] * 10
    return heads, right


def _cells(row: NetRow, first_of_case: bool) -> list[str]:
    case = row.case if first_of_case else ""
    echo = row.section != "http"
    if row.status in ("skipped", "n/a") or row.median is None:
        what = row.status if row.status in ("skipped", "n/a") else row.status.upper()
        blanks = 11 if echo else 10
        cells = [case, row.server, what] + [""] * blanks
        if row.median is None and row.status not in ("skipped", "n/a"):
            cells[-1] = f"0/{row.n_runs}"
        return cells
    cells = [case, row.server, f"{row.median:,.0f}"]
    if echo:
        cells.append("-" if row.mib_per_sec is None else f"{row.mib_per_sec:,.1f}")
    spread = row.spread
    cells += [
        "" if spread is None else f"{spread * 100:.1f}%",
        "-" if row.server_us_per_op is None else f"{row.server_us_per_op:.1f}",
        _fmt_split(row.server_user_us_per_op, row.server_sys_us_per_op),
        _fmt_pct(row.server_cpu),
        _fmt_pct(row.load_cpu),
        _fmt_pct(row.other_cpu),
        _fmt_ratio(row.vs_uvloop_streams),
        _fmt_ratio(row.vs_uvloop_protocol),
        f"{_fmt_ratio(row.cpu_vs_uvloop_streams)} / {_fmt_ratio(row.cpu_vs_uvloop_protocol)}",
        f"{row.n_ok}/{row.n_runs}",
    ]
    return cells


def _section_rows(rows: Sequence[NetRow], section: str) -> list[list[str]]:
    out: list[list[str]] = []
    last = None
    for row in rows:
        # A server without this section (an extra one) is left out, not "n/a".
        if row.section != section or row.status == "n/a":
            continue
        out.append(_cells(row, row.case != last))
        last = row.case
    return out


def _sections(rows: Sequence[NetRow]) -> list[str]:
    return list(dict.fromkeys(r.section for r in rows))


def text_report(rows: Sequence[NetRow], describe: dict[str, str]) -> str:
    """The plain-text report: a table per section, then the notes.
    ``describe[section]`` is the one-line description of its load."""
    out: list[str] = []
    for section in _sections(rows):
        heads, right = _headers(section)
        body = _section_rows(rows, section)
        widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(heads)]

        def line(
            cells: Sequence[str], widths: list[int] = widths, right: list[bool] = right
        ) -> str:
            parts = [
                c.rjust(w) if r else c.ljust(w)
                for c, w, r in zip(cells, widths, right, strict=True)
            ]
            return "  ".join(parts).rstrip()

        if out:
            out.append("")
        out.append(f"== {section}: {SECTION_TITLES[section]}")
        if describe.get(section):
            out.append(f"   {describe[section]}")
        out.append(line(heads))
        out.append(line(["-" * w for w in widths]))
        last_case = None
        for cells in body:
            if cells[0] and last_case is not None:
                out.append("")
            if cells[0]:
                last_case = cells[0]
            out.append(line(cells))
    out += ["", CPU_LEGEND]
    out += [f"note: {n}" for n in notes(rows)]
    return "\n".join(out)


def notes(rows: Sequence[NetRow]) -> list[str]:
    """One line per server that was skipped, and per failed measurement."""
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if row.status == "skipped" and (row.server, row.detail) not in seen:
            seen.add((row.server, row.detail))
            out.append(f"{row.server} skipped: {row.detail}")
        elif row.status in ("failed", "partial"):
            out.append(f"{row.case} on {row.server}: {row.detail}")
    return out


def markdown(rows: Sequence[NetRow], meta: dict[str, Any], describe: dict[str, str]) -> str:
    """The report as a markdown document, with how and where it was measured."""
    out = ["## Network servers: HTTP, TCP echo, TLS echo", ""]
    out.append(f"- command: `{meta['command']}`")
    out.append(f"- date: {meta['date']}")
    out.append(f"- python: {meta['python']}")
    out.append(f"- cpu: {meta['cpu']}")
    out.append(f"- nproc: {meta['nproc']}")
    if meta.get("loadavg"):
        out.append(f"- load average at start: {', '.join(map(str, meta['loadavg']))}")
    if meta.get("loadavg_end"):
        out.append(f"- load average at the end: {', '.join(map(str, meta['loadavg_end']))}")
    out.append(f"- pinning: {meta['pinning']}")
    if meta.get("yieldloop_commit"):
        out.append(f"- yieldloop: {meta['yieldloop_commit']} (source {meta['yieldloop_source']})")
    if meta.get("warning"):
        out.append(f"- **warning**: {meta['warning']}")
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    if versions:
        out.append(f"- versions: {versions}")
    out.append(
        f"- repetitions: {meta['reps']}, interleaved (median shown; spread = (max - min) / median)"
    )
    out.append(f"- {CPU_LEGEND}")
    for section in _sections(rows):
        heads, right = _headers(section)
        out += ["", f"### {section}: {SECTION_TITLES[section]}", ""]
        if describe.get(section):
            out += [describe[section], ""]
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        for cells in _section_rows(rows, section):
            cells = [f"**{c}**" if i == 0 and c else c for i, c in enumerate(cells)]
            out.append("| " + " | ".join(cells) + " |")
    extra = notes(rows)
    if extra:
        out += ["", "Notes:", ""] + [f"- {n}" for n in extra]
    return "\n".join(out) + "\n"
