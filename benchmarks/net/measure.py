"""One measurement: start a server, check it, load it, stop it.

:func:`measure` runs one (case, server, repetition) and always returns a
:class:`NetRun` - with status ``"ok"``, or saying what went wrong - and
never leaves a process behind (see :mod:`.processes`).

The server runs in its own process, pinned to one CPU; the load generator
(wrk for HTTP, :mod:`.echoclient` processes for echo) runs pinned to the
other CPUs, so the two never compete for a core. While the load runs, the
server's CPU time is read from ``/proc``: a server near 100% of its core is
the bottleneck, as it should be; a server well below means the load
generator (or the machine) limited the rate.
"""

from __future__ import annotations

import http.client
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .processes import (
    Processes,
    machine_busy_seconds,
    pinned,
    process_cpu_times,
    read_line,
)
from .servers import ServerSpec
from .servers._common import HTTP_BODY
from .wrk import WrkResult
from .wrk import parse as parse_wrk

__all__ = ["Case", "NetRun", "Options", "ServerStartError", "measure", "MiB"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    """One line of load: a section's protocol, with a message size for echo."""

    #: "http", "echo" or "tls".
    section: str
    #: The name in the report, e.g. ``"echo 10 KiB"``.
    name: str
    #: What the server speaks: "http" or "echo".
    protocol: str
    #: Message size in bytes (echo and TLS echo), None for HTTP.
    size: int | None = None
    tls: bool = False


@dataclass
class Options:
    """How to load the servers; the same for every measurement of a run."""

    duration: float = 5.0
    #: Echo: seconds of load before the measured window starts.
    warmup: float = 1.0
    #: wrk: connections (-c) and threads (-t).
    connections: int = 50
    wrk_threads: int = 1
    #: Echo: concurrent connections, one client process each.
    concurrency: int = 10
    #: CPUs for the server and for the load generator (None: not pinned).
    server_cpus: list[int] | None = None
    load_cpus: list[int] | None = None
    #: Give up on one measurement after this many seconds beyond its duration.
    timeout: float = 60.0
    #: Files for the TLS section: the server's PEM and the CA's PEM.
    tls_server_pem: str | None = None
    tls_ca_pem: str | None = None
    wrk: str | None = field(default_factory=lambda: shutil.which("wrk"))

    @property
    def wrk_seconds(self) -> int:
        """wrk takes whole seconds (at least 1)."""
        return max(1, round(self.duration))


@dataclass
class NetRun:
    """The outcome of one measurement (or of one that was not made)."""

    section: str
    case: str
    server: str
    rep: int
    #: "ok"; "error" (the server ran but the measurement failed or was
    #: wrong); "no-start" (the server did not start); "skipped" (runtime or
    #: load tool not installed); "n/a" (the server has no such section).
    status: str
    params: dict[str, Any]
    #: Requests (HTTP) or round trips (echo) per second.
    rate: float | None = None
    #: Message bytes echoed per second, in MiB (echo only).
    mib_per_sec: float | None = None
    requests: int | None = None
    seconds: float | None = None
    #: CPU used by the server while loaded, in cores (1.0 = one core busy).
    server_cpu: float | None = None
    #: CPU used by the load generator over the same time, in cores.
    load_cpu: float | None = None
    #: CPU used by everything else on the machine meanwhile, in cores: other
    #: people's work that took time from the server or the load generator.
    other_cpu: float | None = None
    #: Server CPU time per request / round trip, in microseconds: what one
    #: operation costs the server, whatever share of a core it got; and
    #: the same split into user and system (kernel) time.
    server_us_per_op: float | None = None
    server_user_us_per_op: float | None = None
    server_sys_us_per_op: float | None = None
    #: wrk's average latency, as it prints it.
    latency: str = ""
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The run as a JSON-ready dict."""
        return asdict(self)


class ServerStartError(Exception):
    """The server process exited or said nothing before its deadline."""


class MeasurementError(Exception):
    """The server ran, but the load failed or got wrong answers."""


@dataclass
class _Server:
    proc: subprocess.Popen[bytes]
    port: int
    stderr: Any


def _tail(f: Any, lines: int = 1) -> str:
    try:
        f.seek(0)
        text = f.read().decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return ""
    return " | ".join(text.splitlines()[-lines:])


def start_server(
    procs: Processes,
    case: Case,
    spec: ServerSpec,
    options: Options,
    profile: str | None = None,
    timeout: float = 30.0,
) -> _Server:
    """Start ``spec``'s server for ``case`` and wait for its ``READY`` line."""
    cmd = [sys.executable, "-m", "benchmarks.net.servers", case.protocol, spec.name]
    if case.tls:
        if options.tls_server_pem is None:
            raise ValueError("a TLS case needs options.tls_server_pem")
        cmd += ["--tls", options.tls_server_pem]
    if options.server_cpus:
        cmd += ["--cpus", ",".join(map(str, options.server_cpus))]
    if profile is not None:
        cmd += ["--profile", profile]
    stderr = tempfile.TemporaryFile()
    try:
        proc = procs.start(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
    except BaseException:
        stderr.close()
        raise
    try:
        assert proc.stdout is not None
        try:
            line = read_line(proc.stdout, time.monotonic() + timeout)
        except TimeoutError:
            raise ServerStartError(f"no READY line within {timeout:g} s") from None
        parts = line.split()
        if len(parts) != 2 or parts[0] != b"READY" or not parts[1].isdigit():
            try:
                status = proc.wait(5) if not line else proc.poll()
            except subprocess.TimeoutExpired:
                status = None
            why = _tail(stderr) or f"printed {line!r}"
            raise ServerStartError(f"exit status {status}: {why}")
        return _Server(proc, int(parts[1]), stderr)
    except BaseException:
        procs.stop(proc, grace=1.0)
        stderr.close()
        raise


def check_http(port: int, timeout: float = 10.0) -> None:
    """Two GET requests on one connection: both must get 200 and the body,
    and the connection must stay open between them (keep-alive)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        first_sock = None
        for i in range(2):
            conn.request("GET", f"/check/{i}")
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200 or body != HTTP_BODY:
                raise MeasurementError(
                    f"GET answered {resp.status} {body[:60]!r}; expected 200 {HTTP_BODY!r}"
                )
            if resp.will_close:
                raise MeasurementError("the server does not keep the connection alive")
            if first_sock is None:
                first_sock = conn.sock
            elif conn.sock is not first_sock:
                raise MeasurementError("the second request needed a new connection")
    except (OSError, http.client.HTTPException) as exc:
        raise MeasurementError(f"HTTP check failed: {type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()


@dataclass
class CpuUse:
    """CPU used while the load ran, in cores (1.0 = one core busy)."""

    server: float | None
    load: float | None
    #: Everything else on the machine.
    other: float | None
    #: The span measured.
    seconds: float
    #: The server's user and system CPU seconds over the span.
    server_user_seconds: float | None = None
    server_sys_seconds: float | None = None


class _CpuMeter:
    # CPU of the server and of the whole machine between start() and stop().
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server0 = process_cpu_times(pid)
        self.machine0 = machine_busy_seconds()
        self.t0 = time.monotonic()

    def stop(self, load_seconds: float | None) -> CpuUse:
        server1 = process_cpu_times(self.pid)
        machine1 = machine_busy_seconds()
        elapsed = time.monotonic() - self.t0
        use = CpuUse(None, None if load_seconds is None else load_seconds / elapsed, None, elapsed)
        if self.server0 is not None and server1 is not None:
            use.server_user_seconds = server1[0] - self.server0[0]
            use.server_sys_seconds = server1[1] - self.server0[1]
            use.server = (use.server_user_seconds + use.server_sys_seconds) / elapsed
            if self.machine0 is not None and machine1 is not None:
                busy = (machine1 - self.machine0) / elapsed
                use.other = max(0.0, busy - use.server - (use.load or 0.0))
        return use


def run_wrk(procs: Processes, server: _Server, options: Options) -> tuple[WrkResult, CpuUse]:
    """wrk against ``server``; returns its result and the CPU used meanwhile."""
    if options.wrk is None:
        raise MeasurementError("wrk is not installed")
    cmd = [
        options.wrk,
        f"-t{options.wrk_threads}",
        f"-c{options.connections}",
        f"-d{options.wrk_seconds}s",
        f"http://127.0.0.1:{server.port}/",
    ]
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    meter = _CpuMeter(server.proc.pid)
    proc = procs.start(
        pinned(cmd, options.load_cpus),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            out, err = proc.communicate(timeout=options.wrk_seconds + options.timeout)
        except subprocess.TimeoutExpired:
            raise MeasurementError("wrk did not finish in time") from None
    finally:
        procs.stop(proc, grace=1.0)
    # wrk is the only child reaped meanwhile: the difference is its CPU time.
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = meter.stop(
        children1.ru_utime - children0.ru_utime + children1.ru_stime - children0.ru_stime
    )
    if proc.returncode != 0:
        tail = (err or out).decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise MeasurementError(f"wrk exited with status {proc.returncode}: {tail[0]}")
    try:
        result = parse_wrk(out.decode("utf-8", "replace"))
    except ValueError as exc:
        raise MeasurementError(str(exc)) from None
    return result, cpu


@dataclass
class EchoResult:
    """What the echo clients measured together."""

    round_trips: int
    bytes: int
    seconds: float
    cpu: CpuUse


def run_echo_load(procs: Processes, server: _Server, case: Case, options: Options) -> EchoResult:
    """``options.concurrency`` echo client processes against ``server``;
    they all start the measured window at the same moment."""
    assert case.size is not None
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.net.echoclient",
        "--port",
        str(server.port),
        "--size",
        str(case.size),
        "--timeout",
        str(options.timeout),
    ]
    if case.tls:
        if options.tls_ca_pem is None:
            raise ValueError("a TLS case needs options.tls_ca_pem")
        cmd += ["--ca", options.tls_ca_pem]
    if options.load_cpus:
        cmd += ["--cpus", ",".join(map(str, options.load_cpus))]
    clients: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(options.concurrency):
            clients.append(
                procs.start(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
            )
        deadline = time.monotonic() + 30.0
        for client in clients:
            assert client.stdout is not None
            try:
                line = read_line(client.stdout, deadline)
            except TimeoutError:
                raise MeasurementError("an echo client did not connect within 30 s") from None
            if line.strip() != b"READY":
                raise MeasurementError(f"echo client failed: {_client_error(client)}")
        start = time.monotonic() + options.warmup
        end = start + options.duration
        for client in clients:
            assert client.stdin is not None
            client.stdin.write(f"GO {start!r} {end!r}\n".encode())
            client.stdin.flush()
        time.sleep(max(0.0, start - time.monotonic()))
        meter = _CpuMeter(server.proc.pid)
        time.sleep(max(0.0, end - time.monotonic()))
        cpu = meter.stop(None)
        results = []
        for client in clients:
            try:
                out, err = client.communicate(timeout=options.timeout)
            except subprocess.TimeoutExpired:
                raise MeasurementError("an echo client did not finish in time") from None
            if client.returncode != 0:
                text = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
                raise MeasurementError(f"echo client failed: {text[0]}")
            try:
                results.append(json.loads(out.decode().strip().splitlines()[-1]))
            except (ValueError, IndexError):
                raise MeasurementError(f"echo client printed {out[-200:]!r}") from None
    finally:
        for client in clients:
            procs.stop(client, grace=1.0)
    # The clients measured their own CPU time over the window.
    load = sum(r["cpu_seconds"] for r in results) / (end - start)
    if cpu.other is not None:
        cpu.other = max(0.0, cpu.other - load)
    cpu.load = load
    return EchoResult(
        round_trips=sum(r["count"] for r in results),
        bytes=sum(r["bytes"] for r in results),
        seconds=end - start,
        cpu=cpu,
    )


def _client_error(client: subprocess.Popen[bytes]) -> str:
    try:
        _, err = client.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        return "no READY line"
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {client.returncode}"


def case_params(case: Case, options: Options) -> dict[str, Any]:
    """The parameters of a measurement of ``case``, as the report shows them."""
    if case.protocol == "http":
        return {
            "connections": options.connections,
            "wrk_threads": options.wrk_threads,
            "seconds": options.wrk_seconds,
        }
    return {
        "size": case.size,
        "concurrency": options.concurrency,
        "seconds": options.duration,
        "warmup": options.warmup,
        "tls": case.tls,
    }


def measure(
    procs: Processes,
    case: Case,
    spec: ServerSpec,
    rep: int,
    options: Options,
    profile: str | None = None,
) -> NetRun:
    """Measure ``case`` on ``spec``'s server once, in a fresh server process.

    With ``profile`` (a path) the server runs under cProfile and writes its
    stats there when it stops.
    """
    run = NetRun(case.section, case.name, spec.name, rep, "error", case_params(case, options))
    try:
        server = start_server(procs, case, spec, options, profile)
    except ServerStartError as exc:
        run.status = "no-start"
        run.detail = f"the server did not start: {exc}"
        return run
    try:
        _load(procs, server, case, options, run)
    except MeasurementError as exc:
        run.status = "error"
        run.detail = str(exc)
    except BaseException:
        procs.stop(server.proc, grace=1.0)
        server.stderr.close()
        raise
    try:
        status = procs.stop(server.proc, grace=30.0 if profile else 5.0)
        if run.status == "ok" and status not in (0, -2):
            run.status = "error"
            run.detail = f"the server did not stop cleanly on SIGINT (exit status {status})"
        if run.status == "error":
            run.rate = run.mib_per_sec = None
            why = _tail(server.stderr)
            if why:
                run.detail += f" (server stderr: {why})"
    finally:
        server.stderr.close()
    return run


def _load(procs: Processes, server: _Server, case: Case, options: Options, run: NetRun) -> None:
    # Check the server, load it, and fill in ``run``; MeasurementError if
    # anything is wrong.
    if case.protocol == "http":
        check_http(server.port)
        result, cpu = run_wrk(procs, server, options)
        if result.errors:
            raise MeasurementError(f"wrk: {result.errors}")
        run.rate = result.requests_per_sec
        run.requests = result.requests
        run.seconds = result.seconds
        run.latency = result.latency_avg
        run.server_cpu = cpu.server
        run.load_cpu = cpu.load
        run.other_cpu = cpu.other
        _per_op(run, cpu, result.requests)
    else:
        echo = run_echo_load(procs, server, case, options)
        if echo.round_trips == 0:
            raise MeasurementError("no round trip completed in the window")
        run.rate = echo.round_trips / echo.seconds
        run.mib_per_sec = echo.bytes / echo.seconds / MiB
        run.requests = echo.round_trips
        run.seconds = echo.seconds
        run.server_cpu = echo.cpu.server
        run.load_cpu = echo.cpu.load
        run.other_cpu = echo.cpu.other
        # The meter spans the measured window, whose round trips are counted.
        _per_op(run, echo.cpu, echo.round_trips)
    if server.proc.poll() is not None:
        raise MeasurementError(f"the server exited (status {server.proc.returncode})")
    run.status = "ok"


def _per_op(run: NetRun, cpu: CpuUse, ops: int) -> None:
    # The server's CPU microseconds per operation, in total and split.
    if cpu.server_user_seconds is None or cpu.server_sys_seconds is None or not ops:
        return
    run.server_user_us_per_op = cpu.server_user_seconds / ops * 1e6
    run.server_sys_us_per_op = cpu.server_sys_seconds / ops * 1e6
    run.server_us_per_op = run.server_user_us_per_op + run.server_sys_us_per_op
