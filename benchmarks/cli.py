"""Command line: ``python -m benchmarks [options]``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence

from . import runtimes as _runtimes  # noqa: F401  (fill the registries)
from . import workloads as _workloads  # noqa: F401
from .registry import RUNTIMES, WORKLOADS
from .report import markdown, metadata_for, source_digest, summarize, text_table
from .runner import child_env_note, run_suite

DEFAULT_REPS = 5
QUICK_REPS = 2


def _names(kind: str, value: str, known: dict[str, object]) -> list[str]:
    if value.strip() == "all":
        return list(known)
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {kind} {', '.join(unknown) or repr(value)}; known: {', '.join(known)}"
        )
    return names


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
        type=lambda v: _names("workload", v, WORKLOADS),
        help=f"workloads to run (default: all of {', '.join(WORKLOADS)})",
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
    p.add_argument("--markdown", metavar="PATH", help="write the report as markdown")
    p.add_argument("--list", action="store_true", help="list workloads and runtimes, then exit")
    return p


def list_all() -> str:
    out = ["workloads:"]
    w = max(len(n) for n in WORKLOADS)
    for name, wl in WORKLOADS.items():
        out.append(f"  {name:<{w}}  {wl.describe()}  [{', '.join(wl.impls)}]")
    out.append("runtimes:")
    w = max(len(n) for n in RUNTIMES)
    for name, rt in RUNTIMES.items():
        missing = rt.missing()
        state = f"  (not installed: {missing})" if missing else ""
        extra = "" if rt.default else "  [extra: run when named]"
        out.append(f"  {name:<{w}}  {rt.description}{extra}{state}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        print(list_all())
        return 0
    reps = args.reps if args.reps is not None else (QUICK_REPS if args.quick else DEFAULT_REPS)
    if reps < 1:
        print("--reps must be at least 1", file=sys.stderr)
        return 2
    workloads = [WORKLOADS[n] for n in (args.only or WORKLOADS)]
    if args.runtimes:
        runtimes = [RUNTIMES[n] for n in args.runtimes]
    else:
        runtimes = [r for r in RUNTIMES.values() if r.default]

    argv_list = list(sys.argv[1:] if argv is None else argv)
    exe = sys.executable
    rel = os.path.relpath(exe)
    command = shlex.join([rel if not rel.startswith("..") else exe, "-m", "benchmarks", *argv_list])
    meta = metadata_for(command, reps, args.quick, runtimes, workloads)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

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
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown(rows, runtimes, workloads, meta))

    failed = [r for r in runs if r.status in ("error", "timeout")]
    return 1 if failed else 0
