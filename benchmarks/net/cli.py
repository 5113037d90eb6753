"""Command line: ``python -m benchmarks.net [options]``."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from importlib import metadata
from types import FrameType
from typing import Any

from ..mdsection import update_section
from ..report import cpu_model, git_commit, nproc, source_digest
from .measure import Case, NetRun, Options, case_params, measure
from .processes import ROOT, Processes
from .profile import format_profile, summarize_profile
from .servers import SECTIONS, SERVERS, ServerSpec
from .summary import NetRow, markdown, summarize, text_report

DEFAULT_REPS = 3
QUICK_REPS = 1
DEFAULT_SIZES_KIB = (1, 10, 100)

#: Names that stand for several servers in ``--runtimes``.
GROUPS = {
    "asyncio": ("asyncio-streams", "asyncio-protocol"),
    "uvloop": ("uvloop-streams", "uvloop-protocol"),
}


def _csv(value: str) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))


def parse_sections(value: str) -> list[str]:
    """``--only``: section names separated by commas."""
    names = _csv(value)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown) or repr(value)}; expected some of "
            f"{', '.join(SECTIONS)}"
        )
    return names


def parse_servers(value: str) -> list[str]:
    """``--runtimes``: server names, group names (asyncio, uvloop) or 'all'."""
    if value.strip() == "all":
        return list(SERVERS)
    out: list[str] = []
    unknown: list[str] = []
    for name in _csv(value):
        if name in SERVERS:
            out.append(name)
        elif name in GROUPS:
            out += GROUPS[name]
        else:
            unknown.append(name)
    if unknown or not out:
        raise argparse.ArgumentTypeError(
            f"unknown runtime {', '.join(unknown) or repr(value)}; known: "
            f"{', '.join(SERVERS)} (or {', '.join(GROUPS)} for both of its servers, or all)"
        )
    return list(dict.fromkeys(out))


def parse_sizes(value: str) -> list[int]:
    """``--sizes``: message sizes in KiB, e.g. ``1,10,100``."""
    try:
        sizes = [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes in KiB separated by commas, like 1,10,100; got {value!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be whole KiB >= 1, got {value!r}")
    return sizes


def _positive(kind: type[int] | type[float]) -> Any:
    def check(value: str) -> int | float:
        try:
            x = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a {kind.__name__} > 0, got {value!r}"
            ) from None
        if not x > 0:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} > 0, got {value!r}")
        return x

    return check


def _non_negative(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {value!r}") from None
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {value!r}")
    return x


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.net",
        description="Network benchmarks: an HTTP/1.1 keep-alive server loaded by wrk, TCP "
        "echo and TLS echo, on yieldloop, asyncio, uvloop and trio. Each measurement "
        "starts a fresh server process; repetitions are interleaved; the report shows "
        "medians and ratios to uvloop-streams and uvloop-protocol (higher is faster).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: 1 s of load, {QUICK_REPS} repetition(s), short warm-up",
    )
    p.add_argument(
        "--only",
        metavar="SECTION[,SECTION]",
        type=parse_sections,
        help=f"sections to run (default: all of {', '.join(SECTIONS)})",
    )
    p.add_argument(
        "--runtimes",
        metavar="NAME[,NAME]",
        type=parse_servers,
        help="servers to run, or 'all' (default: "
        f"{', '.join(n for n, s in SERVERS.items() if s.default)}; also known: "
        f"{', '.join(n for n, s in SERVERS.items() if not s.default)}); "
        "'asyncio' and 'uvloop' name both of their servers",
    )
    p.add_argument(
        "--reps",
        type=_positive(int),
        metavar="N",
        help=f"repetitions (default {DEFAULT_REPS}, {QUICK_REPS} with --quick)",
    )
    p.add_argument(
        "--duration",
        type=_positive(float),
        metavar="S",
        help="seconds of load per measurement (default 5, 1 with --quick; wrk rounds "
        "it to whole seconds)",
    )
    p.add_argument(
        "--warmup",
        type=_non_negative,
        metavar="S",
        help="echo: seconds of load before the measured window (default 1, 0.2 with --quick)",
    )
    p.add_argument(
        "--sizes",
        type=parse_sizes,
        metavar="KIB[,KIB]",
        help="echo and TLS message sizes in KiB (default 1,10,100)",
    )
    p.add_argument(
        "--concurrency",
        type=_positive(int),
        default=10,
        metavar="N",
        help="echo: concurrent connections, one client process each (default 10)",
    )
    p.add_argument(
        "--connections",
        type=_positive(int),
        default=50,
        metavar="N",
        help="http: wrk connections, -c (default 50)",
    )
    p.add_argument(
        "--wrk-threads",
        type=_positive(int),
        default=1,
        metavar="N",
        help="http: wrk threads, -t (default 1)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server to one CPU and the load generator to the others",
    )
    p.add_argument(
        "--timeout",
        type=_positive(float),
        default=60.0,
        metavar="S",
        help="give up on one measurement this many seconds after its load should "
        "have ended (default 60)",
    )
    p.add_argument("--json", metavar="PATH", help="write every run and the summary as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the report as markdown")
    p.add_argument(
        "--profile",
        metavar="SERVER",
        choices=list(SERVERS),
        help="instead of the benchmark: run each selected case once with SERVER under "
        "cProfile and print where its time goes",
    )
    p.add_argument(
        "--profile-dir",
        metavar="DIR",
        help="with --profile: keep the .pstats files here (default: thrown away)",
    )
    p.add_argument(
        "--from-json",
        metavar="PATH",
        help="measure nothing: print the report of an earlier run saved with --json "
        "(and write it with --markdown)",
    )
    p.add_argument("--list", action="store_true", help="list sections and servers, then exit")
    return p


def build_cases(sections: Sequence[str], sizes_kib: Sequence[int]) -> list[Case]:
    """The cases of the selected sections, in report order."""
    cases: list[Case] = []
    for section in SECTIONS:
        if section not in sections:
            continue
        if section == "http":
            cases.append(Case("http", "http", "http"))
        else:
            for kib in sizes_kib:
                cases.append(
                    Case(section, f"{section} {kib} KiB", "echo", kib * 1024, section == "tls")
                )
    return cases


def schedule(
    cases: Sequence[Case], servers: Sequence[ServerSpec], reps: int
) -> Iterator[tuple[int, Case, ServerSpec]]:
    """``(rep, case, server)`` interleaved: every case on every server in
    each repetition, the server order rotated by one per repetition."""
    n = len(servers)
    for rep in range(1, reps + 1):
        shift = (rep - 1) % n if n else 0
        order = list(servers[shift:]) + list(servers[:shift])
        for case in cases:
            for spec in order:
                if case.section in spec.sections:
                    yield rep, case, spec


def pin_plan(no_pin: bool) -> tuple[list[int] | None, list[int] | None, str]:
    """CPUs for the server and for the load generator, and how to say so."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None, "off (no CPU affinity on this system)"
    if no_pin:
        return None, None, "off (--no-pin)"
    if len(cpus) < 2:
        return None, None, f"off (only CPU {cpus} available)"
    server, load = cpus[-1:], cpus[:-1]
    return (
        server,
        load,
        f"server on CPU {server[0]}, load generator on CPU {','.join(map(str, load))}",
    )


def wrk_version(wrk: str | None) -> str:
    """wrk's version, from the first line of its help."""
    if wrk is None:
        return ""
    try:
        out = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    first = (out.stdout or out.stderr).strip().splitlines()[:1]
    return first[0].split(" [")[0].removeprefix("wrk ") if first else "?"


def versions(servers: Sequence[ServerSpec], wrk: str | None) -> dict[str, str]:
    """Versions of the runtimes, trustme, OpenSSL and wrk, for the report."""
    out: dict[str, str] = {}
    mods = dict.fromkeys(m for s in servers for m in s.modules if m != "asyncio")
    for mod in [*mods, "trustme"]:
        try:
            out[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            pass
    out["OpenSSL"] = ssl.OPENSSL_VERSION.removeprefix("OpenSSL ")
    if wrk is not None:
        out["wrk"] = wrk_version(wrk)
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe_sections(options: Options, sizes_kib: Sequence[int]) -> dict[str, str]:
    """One line per section: what load it puts on the servers."""
    sizes = ", ".join(f"{k} KiB" for k in sizes_kib)
    echo = (
        f"{options.concurrency} connections, each a blocking client process sending a "
        f"message and reading back exactly its length; {options.duration:g} s measured "
        f"after {options.warmup:g} s of warm-up; messages of {sizes}; MiB/s counts the "
        "message bytes echoed (one direction)"
    )
    return {
        "http": f"`wrk -t{options.wrk_threads} -c{options.connections} "
        f"-d{options.wrk_seconds}s http://127.0.0.1:PORT/`; a 13-byte body; each server "
        "first answers two GETs on one connection correctly",
        "echo": echo,
        "tls": echo + "; a trustme certificate made for this run",
    }


def list_all() -> str:
    """``--list``: the sections and the servers, and which are installed."""
    out = ["sections: " + ", ".join(SECTIONS), "servers:"]
    w = max(len(n) for n in SERVERS)
    for name, spec in SERVERS.items():
        missing = spec.missing()
        state = f"  (not installed: {missing})" if missing else ""
        extra = "" if spec.default else "  [extra: run when named]"
        sections = ",".join(spec.sections)
        out.append(f"  {name:<{w}}  [{sections}] {spec.description}{extra}{state}")
    return "\n".join(out)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = parser().parse_args(argv)
    if args.list:
        print(list_all())
        return 0
    if args.from_json:
        return report_from_json(args.from_json, args.markdown)
    quick = args.quick
    reps = args.reps or (QUICK_REPS if quick else DEFAULT_REPS)
    sections = args.only or list(SECTIONS)
    names = args.runtimes or [n for n, s in SERVERS.items() if s.default]
    if args.profile:
        names = [args.profile]
    servers = [SERVERS[n] for n in names]
    sizes = args.sizes or list(DEFAULT_SIZES_KIB)
    server_cpus, load_cpus, pinning = pin_plan(args.no_pin)
    options = Options(
        duration=args.duration or (1.0 if quick else 5.0),
        warmup=args.warmup if args.warmup is not None else (0.2 if quick else 1.0),
        connections=args.connections,
        wrk_threads=args.wrk_threads,
        concurrency=args.concurrency,
        server_cpus=server_cpus,
        load_cpus=load_cpus,
        timeout=args.timeout,
    )
    cases = build_cases(sections, sizes)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="yieldloop-net-") as tmp:
            if args.profile:
                return run_profiles(procs, cases, servers[0], options, args.profile_dir or tmp)
            return run_benchmarks(args, argv, procs, cases, servers, options, reps, pinning, tmp)
    except KeyboardInterrupt:
        print("interrupted: stopping every child process", file=sys.stderr)
        return 130
    finally:
        procs.close()
        signal.signal(signal.SIGTERM, old_term)


def _not_runnable(case: Case, spec: ServerSpec, options: Options, tls_error: str) -> NetRun | None:
    # A run that cannot be made, or None if it can.
    status, why = "skipped", ""
    if case.section not in spec.sections:
        status, why = "n/a", f"{spec.name} has no {case.section} server"
    elif (missing := spec.missing()) is not None:
        why = f"{missing} is not installed"
    elif case.protocol == "http" and options.wrk is None:
        why = "wrk is not installed (Debian/Ubuntu: apt-get install wrk)"
    elif case.tls and tls_error:
        why = tls_error
    if not why:
        return None
    return NetRun(
        case.section, case.name, spec.name, 0, status, case_params(case, options), detail=why
    )


def _prepare_tls(cases: Sequence[Case], options: Options, tmp: str) -> str:
    # Make the certificates if a TLS case is selected; the reason if not possible.
    if not any(c.tls for c in cases):
        return ""
    from .tlscerts import make_tls_files

    try:
        files = make_tls_files(tmp)
    except ImportError:
        return "trustme is not installed (pip install trustme)"
    options.tls_server_pem = files.server_pem
    options.tls_ca_pem = files.ca_pem
    return ""


def run_benchmarks(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    procs: Processes,
    cases: Sequence[Case],
    servers: Sequence[ServerSpec],
    options: Options,
    reps: int,
    pinning: str,
    tmp: str,
) -> int:
    """The benchmark: every case on every server, ``reps`` times, then the report."""
    argv_list = list(sys.argv[1:] if argv is None else argv)
    rel = os.path.relpath(sys.executable)
    exe = sys.executable if rel.startswith("..") else rel
    meta: dict[str, Any] = {
        "command": shlex.join([exe, "-m", "benchmarks.net", *argv_list]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()} "
        f"({platform.system()} {platform.machine()})",
        "cpu": cpu_model(),
        "nproc": nproc(),
        "loadavg": _loadavg(),
        "pinning": pinning,
        "yieldloop_commit": git_commit(),
        "yieldloop_source": source_digest(),
        "versions": versions(servers, options.wrk),
        "reps": reps,
        "quick": args.quick,
        "params": {c.name: case_params(c, options) for c in cases},
    }
    tls_error = _prepare_tls(cases, options, tmp)
    runs: list[NetRun] = []
    runnable: dict[tuple[str, str], bool] = {}
    for case in cases:
        for spec in servers:
            blocked = _not_runnable(case, spec, options, tls_error)
            runnable[case.name, spec.name] = blocked is None
            if blocked is not None:
                runs.append(blocked)
    todo = [t for t in schedule(cases, servers, reps) if runnable[t[1].name, t[2].name]]
    width_c = max((len(c.name) for c in cases), default=0)
    width_s = max((len(s.name) for s in servers), default=0)
    started = time.perf_counter()
    for i, (rep, case, spec) in enumerate(todo, 1):
        run = measure(procs, case, spec, rep, options)
        runs.append(run)
        if run.status == "ok":
            assert run.rate is not None
            what = f"{run.rate:>10,.0f}/s"
            if run.mib_per_sec is not None:
                what += f" {run.mib_per_sec:8.1f} MiB/s"
            if run.server_cpu is not None:
                what += f"  server CPU {run.server_cpu * 100:3.0f}%"
        else:
            what = f"{run.status.upper()}: {run.detail}"
        print(
            f"[{i:>{len(str(len(todo)))}}/{len(todo)}] rep {rep}/{reps}  "
            f"{case.name:<{width_c}}  {spec.name:<{width_s}}  {what}",
            file=sys.stderr,
            flush=True,
        )
    meta["wall_seconds"] = round(time.perf_counter() - started, 3)
    meta["loadavg_end"] = _loadavg()
    if source_digest() != meta["yieldloop_source"]:
        meta["warning"] = "yieldloop's source changed during the run; the numbers mix versions"

    meta["describe"] = describe_sections(options, sorted({c.size // 1024 for c in cases if c.size}))
    meta["cases"] = [asdict(c) for c in cases]
    meta["servers"] = [s.name for s in servers]
    rows = summarize(runs, cases, meta["servers"])
    print_report(rows, meta)
    if args.json:
        data = {
            "meta": meta,
            "runs": [r.to_json() for r in runs],
            "summary": [row.to_json() for row in rows],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
    if args.markdown:
        write_markdown(args.markdown, rows, meta)
    failed = [r for r in runs if r.status in ("error", "no-start")]
    return 1 if failed else 0


def print_report(rows: Sequence[NetRow], meta: dict[str, Any]) -> None:
    """The text report on stdout: a header with the command and machine, the tables."""
    print(f"# {meta['command']}")
    print(
        f"# {meta['date']}, {meta['python']}, {meta['cpu']}, nproc={meta['nproc']}, "
        f"reps={meta['reps']}, pinning: {meta['pinning']}"
    )
    print(text_report(rows, meta["describe"]))
    if meta.get("warning"):
        print(f"warning: {meta['warning']}")


def _cases_of(runs: Sequence[NetRun]) -> tuple[list[Case], list[str]]:
    # The cases and servers of ``runs``, in report order.
    found: dict[str, Case] = {}
    for run in runs:
        if run.case not in found:
            size = run.params.get("size")
            protocol = "http" if run.section == "http" else "echo"
            found[run.case] = Case(run.section, run.case, protocol, size, run.section == "tls")
    cases = sorted(found.values(), key=lambda c: (SECTIONS.index(c.section), c.size or 0))
    present = {r.server for r in runs}
    return cases, [name for name in SERVERS if name in present]


def report_from_json(path: str, markdown_path: str | None) -> int:
    """``--from-json``: the report of a run saved with ``--json``, again."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        meta = data["meta"]
        runs = [NetRun(**r) for r in data["runs"]]
        if "cases" in meta:
            cases = [Case(**c) for c in meta["cases"]]
            servers = list(meta["servers"])
        else:  # written before the cases were saved: rebuild them from the runs
            cases, servers = _cases_of(runs)
        meta.setdefault("describe", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(
            f"cannot read {path}: expected the JSON written by --json ({type(exc).__name__}: "
            f"{exc})",
            file=sys.stderr,
        )
        return 2
    rows = summarize(runs, cases, servers)
    print_report(rows, meta)
    if markdown_path:
        write_markdown(markdown_path, rows, meta)
    return 0


#: The key of this tool's section in a markdown file (see benchmarks.mdsection).
MARKDOWN_KEY = "python -m benchmarks.net"


def write_markdown(path: str, rows: Sequence[NetRow], meta: dict[str, Any]) -> None:
    """Write the report into its own section of the markdown file ``path``
    (``docs/benchmarks.md`` holds the suite's sections too); the rest of the
    file is kept."""
    how = update_section(path, MARKDOWN_KEY, markdown(rows, meta, meta["describe"]))
    print(f"markdown: {how} the network section of {path}", file=sys.stderr)


def run_profiles(
    procs: Processes, cases: Sequence[Case], spec: ServerSpec, options: Options, out_dir: str
) -> int:
    """Each case once with ``spec``'s server under cProfile; print the summaries."""
    os.makedirs(out_dir, exist_ok=True)
    tls_error = _prepare_tls(cases, options, out_dir)
    status = 0
    for case in cases:
        blocked = _not_runnable(case, spec, options, tls_error)
        if blocked is not None:
            print(f"== {case.name} on {spec.name}: {blocked.status}: {blocked.detail}\n")
            continue
        path = os.path.join(out_dir, f"{spec.name}-{case.name.replace(' ', '-')}.pstats")
        run = measure(procs, case, spec, 1, options, profile=path)
        print(f"== {case.name} on {spec.name}, under cProfile", flush=True)
        if run.status != "ok" or not os.path.exists(path):
            print(f"{run.status}: {run.detail or 'no profile written'}\n")
            status = 1
            continue
        assert run.rate is not None
        cpu = "" if run.server_cpu is None else f", server CPU {run.server_cpu * 100:.0f}%"
        print(f"rate under the profiler: {run.rate:,.0f}/s{cpu}; stats in {path}")
        print(format_profile(summarize_profile(path, str(ROOT))))
        print()
    return status
