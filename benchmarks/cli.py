"""Command line: ``python -m benchmarks [options]``."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import runtimes as _runtimes  # noqa: F401  (fill the registries)
from . import workloads as _workloads  # noqa: F401
from .mdsection import update_section
from .registry import RUNTIMES, SERIES, WORKLOADS, Runtime, Workload
from .report import markdown, metadata_for, source_digest, summarize, text_table
from .runner import Run, child_env_note, run_suite

#: The key of the suite's section in a markdown file (see benchmarks.mdsection).
MARKDOWN_KEY = "python -m benchmarks"

DEFAULT_REPS = 5
QUICK_REPS = 2


def _names(kind: str, value: str, known: dict[str, Any]) -> list[str]:
    if value.strip() == "all":
        return list(known)
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {kind} {', '.join(unknown) or repr(value)}; known: {', '.join(known)}"
        )
    return names


def _workload_names(value: str) -> list[str]:
    """``--only``: workload names, where a series name stands for all its points."""
    known: dict[str, Any] = {**WORKLOADS, **SERIES}
    out: list[str] = []
    for name in _names("workload", value, known):
        if name in SERIES:
            out += [w.name for w in WORKLOADS.values() if w.series is SERIES[name]]
        else:
            out.append(name)
    return list(dict.fromkeys(out))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Compare yieldloop with asyncio, uvloop, trio and others. Every "
        "measurement runs in its own process; the report shows the median over the "
        "repetitions and the ratio to asyncio and to uvloop (higher is faster).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes and {QUICK_REPS} repetition(s): a smoke run for CI",
    )
    p.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        type=_workload_names,
        help="workloads to run, or a series name for all its sizes "
        f"({', '.join(SERIES)}); default: all",
    )
    p.add_argument(
        "--runtimes",
        metavar="NAME[,NAME]",
        type=lambda v: _names("runtime", v, RUNTIMES),
        help="runtimes to run, or 'all' (default: "
        f"{', '.join(n for n, r in RUNTIMES.items() if r.default)}; also known: "
        f"{', '.join(n for n, r in RUNTIMES.items() if not r.default)}); "
        "one that is not installed is reported as skipped",
    )
    p.add_argument(
        "--reps",
        type=int,
        metavar="N",
        help=f"repetitions (default {DEFAULT_REPS}, {QUICK_REPS} with --quick)",
    )
    p.add_argument(
        "-O",
        "--optimize",
        action="store_true",
        help="run the measured processes with python -O (asserts off)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up on one measurement after this long (default 300)",
    )
    p.add_argument("--json", metavar="PATH", help="write every run and the summary as JSON")
    p.add_argument(
        "--markdown",
        metavar="PATH",
        help="write the report as markdown into PATH: only the suite's own section, "
        "between its markers, is replaced (the rest of the file is kept); a file "
        "without the markers gets the section appended",
    )
    p.add_argument(
        "--chart",
        metavar="PNG",
        help="draw the ratios to asyncio and the scaling series into PNG (needs matplotlib)",
    )
    p.add_argument(
        "--from-json",
        metavar="PATH",
        help="do not measure: report the runs saved earlier with --json",
    )
    p.add_argument("--list", action="store_true", help="list workloads and runtimes, then exit")
    return p


def list_all() -> str:
    out = ["workloads:"]
    w = max(len(n) for n in WORKLOADS)
    for name, wl in WORKLOADS.items():
        quick = "" if wl.in_quick else "  (not in --quick)"
        out.append(f"  {name:<{w}}  {wl.describe()}  [{', '.join(wl.impls)}]{quick}")
    out.append("series (--only NAME runs all its sizes):")
    for name, series in SERIES.items():
        out.append(f"  {name}: {series.title}")
    out.append("runtimes:")
    w = max(len(n) for n in RUNTIMES)
    for name, rt in RUNTIMES.items():
        missing = rt.missing()
        state = f"  (not installed: {missing})" if missing else ""
        extra = "" if rt.default else "  [extra: run when named]"
        out.append(f"  {name:<{w}}  {rt.description}{extra}{state}")
    return "\n".join(out)


def _load_json(path: str) -> tuple[dict[str, Any], list[Run], list[Workload], list[Runtime]]:
    """The meta data and runs of a ``--json`` file, and the workloads and
    runtimes they name (in registry order)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    try:
        meta = data["meta"]
        runs = [Run.from_json(r) for r in data["runs"]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a file written by --json ({exc!r})") from None
    unknown = sorted({r.workload for r in runs} - set(WORKLOADS)) + sorted(
        {r.runtime for r in runs} - set(RUNTIMES)
    )
    if unknown:
        raise ValueError(f"{path} names workloads or runtimes this suite does not know: {unknown}")
    wanted = set(meta["params"])
    workloads = [w for w in WORKLOADS.values() if w.name in wanted]
    used = {r.runtime for r in runs}
    runtimes = [r for r in RUNTIMES.values() if r.name in used]
    return meta, runs, workloads, runtimes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``python -m benchmarks [options]``; return the exit status."""
    args = parser().parse_args(argv)
    if args.list:
        print(list_all())
        return 0

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.chart and importlib.util.find_spec("matplotlib") is None:
        progress("--chart needs matplotlib: pip install matplotlib (or the 'bench' extra)")
        return 2
    if args.from_json:
        if args.quick or args.only or args.runtimes or args.reps is not None:
            progress("--from-json reports saved runs: it takes no --quick/--only/--runtimes/--reps")
            return 2
        try:
            meta, runs, workloads, runtimes = _load_json(args.from_json)
        except (OSError, ValueError) as exc:
            progress(f"cannot read --from-json: {exc}")
            return 2
        reps = meta["reps"]
    else:
        reps = args.reps if args.reps is not None else (QUICK_REPS if args.quick else DEFAULT_REPS)
        if reps < 1:
            progress("--reps must be at least 1")
            return 2
        workloads = [WORKLOADS[n] for n in (args.only or WORKLOADS)]
        if args.quick:
            left_out = [w.name for w in workloads if not w.in_quick]
            workloads = [w for w in workloads if w.in_quick]
            if left_out and args.only:
                progress(f"not part of --quick, left out: {', '.join(left_out)}")
            if not workloads:
                progress("nothing to run: none of these workloads is part of --quick")
                return 2
        if args.runtimes:
            runtimes = [RUNTIMES[n] for n in args.runtimes]
        else:
            runtimes = [r for r in RUNTIMES.values() if r.default]

        argv_list = list(sys.argv[1:] if argv is None else argv)
        exe = sys.executable
        rel = os.path.relpath(exe)
        command = shlex.join(
            [rel if not rel.startswith("..") else exe, "-m", "benchmarks", *argv_list]
        )
        meta = metadata_for(command, reps, args.quick, runtimes, workloads)

        env = child_env_note()
        if env:
            progress(f"warning: set in the environment, changes what is measured: {env}")
        started = time.perf_counter()
        flags = ["-O"] if args.optimize else []
        meta["python_flags"] = flags
        if flags:
            meta["python"] += f", children run with {' '.join(flags)}"
        runs = run_suite(
            workloads,
            runtimes,
            reps,
            quick=args.quick,
            timeout=args.timeout,
            python_flags=flags,
            progress=progress,
        )
        meta["wall_seconds"] = round(time.perf_counter() - started, 3)
        if source_digest() != meta["yieldloop_source"]:
            meta["warning"] = "yieldloop's source changed during the run; the numbers mix versions"

    rows = summarize(runs, workloads, runtimes)
    print(f"# {meta['command']}")
    print(f"# {meta['date']}, {meta['python']}, {meta['cpu']}, nproc={meta['nproc']}, reps={reps}")
    print(text_table(rows, runtimes))
    if meta.get("warning"):
        print(f"warning: {meta['warning']}")

    if args.json:
        data = {
            "meta": meta,
            "runs": [r.to_json() for r in runs],
            "summary": [row.__dict__ | {"spread": row.spread} for row in rows],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    if args.chart:
        from .chart import write_chart

        write_chart(args.chart, rows, workloads, runtimes, meta)
        progress(f"chart written to {args.chart}")
    if args.markdown:
        chart = None
        if args.chart:
            chart = os.path.relpath(
                Path(args.chart).resolve(), Path(args.markdown).resolve().parent
            )
        text = markdown(rows, runtimes, workloads, meta, chart=chart)
        try:
            done = update_section(args.markdown, MARKDOWN_KEY, text)
        except ValueError as exc:
            progress(f"markdown not written: {exc}")
            return 1
        progress(f"markdown section {done} in {args.markdown}")

    failed = [r for r in runs if r.status in ("error", "timeout")]
    return 1 if failed else 0
