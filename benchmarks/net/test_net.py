"""Tests of the network benchmark harness, with real processes and sockets.

Run with ``.venv/bin/python -m pytest -q benchmarks/net/test_net.py``
(they are not part of ``tests/``: they start servers and load for seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.net import cli
from benchmarks.net.measure import Case, MeasurementError, Options, check_http, measure
from benchmarks.net.processes import ROOT, Processes, process_cpu_seconds
from benchmarks.net.servers import SERVERS, ServerSpec
from benchmarks.net.summary import summarize, text_report
from benchmarks.net.wrk import parse as parse_wrk

HTTP = Case("http", "http", "http")
ECHO_1K = Case("echo", "echo 1 KiB", "echo", 1024)


def _options(tmp_path: Path | None = None, tls: bool = False) -> Options:
    opts = Options(duration=1.0, warmup=0.1, concurrency=2, connections=4, timeout=30.0)
    if tls:
        assert tmp_path is not None
        from benchmarks.net.tlscerts import make_tls_files

        files = make_tls_files(str(tmp_path))
        opts.tls_server_pem, opts.tls_ca_pem = files.server_pem, files.ca_pem
    return opts


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as p:
        yield p
        assert p.live() == [], "a measurement left a child process running"


# -- a real server for the bad paths -------------------------------------------


class TinyServer:
    """A thread that accepts connections on 127.0.0.1 and answers each
    with ``reply(received_bytes)``, for servers that misbehave."""

    def __init__(self, reply: Callable[[bytes], bytes]) -> None:
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                try:
                    while data := conn.recv(65536):
                        conn.sendall(self.reply(data))
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def tiny() -> Iterator[Callable[[Callable[[bytes], bytes]], TinyServer]]:
    made: list[TinyServer] = []

    def make(reply: Callable[[bytes], bytes]) -> TinyServer:
        server = TinyServer(reply)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


# -- wrk's report ----------------------------------------------------------------

WRK_OK = """\
Running 1s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.01ms  312.45us   7.10ms   91.20%
    Req/Sec    24.90k     1.02k   26.10k    70.00%
  24780 requests in 1.00s, 2.58MB read
Requests/sec:  24751.37
Transfer/sec:      2.58MB
"""

WRK_ERRORS = WRK_OK.replace(
    "Requests/sec:",
    "  Socket errors: connect 0, read 3, write 0, timeout 2\n"
    "  Non-2xx or 3xx responses: 7\nRequests/sec:",
)


def test_wrk_report_is_parsed() -> None:
    result = parse_wrk(WRK_OK)
    assert result.requests == 24780
    assert result.seconds == 1.0
    assert result.requests_per_sec == 24751.37
    assert result.latency_avg == "2.01ms"
    assert result.errors == ""


def test_wrk_errors_are_reported() -> None:
    result = parse_wrk(WRK_ERRORS)
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert result.non_2xx == 7
    assert result.errors == "3 read errors, 2 timeout errors, 7 non-2xx/3xx responses"


def test_wrk_garbage_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a wrk report"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


# -- real measurements -----------------------------------------------------------


@pytest.mark.parametrize("server", ["yieldloop", "yieldloop-some", "asyncio-protocol", "trio"])
def test_http_measurement(procs: Processes, server: str) -> None:
    spec = SERVERS[server]
    if spec.missing():
        pytest.skip(f"{spec.missing()} is not installed")
    opts = _options()
    if opts.wrk is None:
        pytest.skip("wrk is not installed")
    run = measure(procs, HTTP, spec, 1, opts)
    assert run.status == "ok", run.detail
    assert run.rate is not None and run.rate > 0
    assert run.requests is not None and run.requests > 0
    assert run.server_cpu is not None and run.server_cpu > 0


@pytest.mark.parametrize("server", ["yieldloop", "asyncio-streams", "uvloop-protocol", "trio"])
def test_echo_measurement(procs: Processes, server: str) -> None:
    spec = SERVERS[server]
    if spec.missing():
        pytest.skip(f"{spec.missing()} is not installed")
    run = measure(procs, ECHO_1K, spec, 1, _options())
    assert run.status == "ok", run.detail
    assert run.rate is not None and run.rate > 0
    assert run.mib_per_sec == pytest.approx(run.rate * 1024 / 2**20)
    assert run.load_cpu is not None and run.load_cpu > 0
    assert run.server_user_us_per_op is not None and run.server_sys_us_per_op is not None
    assert run.server_us_per_op == pytest.approx(
        run.server_user_us_per_op + run.server_sys_us_per_op
    )


@pytest.mark.parametrize("server", ["yieldloop", "uvloop-streams", "trio"])
def test_tls_echo_measurement(procs: Processes, server: str, tmp_path: Path) -> None:
    pytest.importorskip("trustme")
    spec = SERVERS[server]
    if spec.missing():
        pytest.skip(f"{spec.missing()} is not installed")
    case = Case("tls", "tls 10 KiB", "echo", 10 * 1024, tls=True)
    run = measure(procs, case, spec, 1, _options(tmp_path, tls=True))
    assert run.status == "ok", run.detail
    assert run.rate is not None and run.rate > 0


def test_server_that_does_not_start(procs: Processes) -> None:
    # Not a server the servers' entry point knows: it exits with status 2.
    spec = ServerSpec("no-such-server", (), "yieldloop_server", "broken on purpose")
    run = measure(procs, ECHO_1K, spec, 1, _options())
    assert run.status == "no-start"
    assert "exit status 2" in run.detail
    rows = summarize([run], [ECHO_1K], [spec.name])
    assert rows[0].status == "skipped"
    assert "no-such-server skipped: the server did not start" in text_report(rows, {})


def test_wrong_http_answer_is_caught(
    tiny: Callable[[Callable[[bytes], bytes]], TinyServer],
) -> None:
    server = tiny(lambda _: b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
    with pytest.raises(MeasurementError, match="answered 404"):
        check_http(server.port)


def test_http_without_keep_alive_is_caught(
    tiny: Callable[[Callable[[bytes], bytes]], TinyServer],
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!"
    server = tiny(lambda _: answer)
    with pytest.raises(MeasurementError, match="keep the connection alive"):
        check_http(server.port)


def test_wrong_echo_is_caught(tiny: Callable[[Callable[[bytes], bytes]], TinyServer]) -> None:
    server = tiny(lambda data: bytes(b ^ 1 for b in data))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.net.echoclient", "--port", str(server.port)]
        + ["--size", "100", "--timeout", "10"],
        cwd=ROOT,
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert b"different bytes" in proc.stderr


def test_echo_client_counts_round_trips(
    tiny: Callable[[Callable[[bytes], bytes]], TinyServer],
) -> None:
    server = tiny(lambda data: data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.net.echoclient", "--port", str(server.port)]
        + ["--size", "4096"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"READY\n"
        start = time.monotonic() + 0.1
        out, err = proc.communicate(f"GO {start} {start + 0.5}\n".encode(), timeout=60)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["count"] > 0
    assert result["bytes"] == result["count"] * 4096


# -- processes ---------------------------------------------------------------------


def test_stop_kills_a_child_that_ignores_sigint(procs: Processes) -> None:
    code = (
        "import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)"
    )
    proc = procs.start([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    assert procs.stop(proc, grace=0.2) == -signal.SIGKILL
    assert procs.live() == []


def test_server_stops_on_sigint_even_if_started_with_it_ignored(procs: Processes) -> None:
    # As a background job of a non-interactive shell is started.
    cmd = [sys.executable, "-m", "benchmarks.net.servers", "echo", "yieldloop"]
    proc = procs.start(
        cmd,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"READY ")
    assert procs.stop(proc, grace=20) == 0


def test_process_cpu_seconds_grows() -> None:
    before = process_cpu_seconds(os.getpid())
    if before is None:
        pytest.skip("no /proc")
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    after = process_cpu_seconds(os.getpid())
    assert after is not None and after > before


def _cmdline(pid: int) -> str:
    # The command line of a live process, "" once it is gone.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            out.add(int(entry))
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_no_server(sig: int) -> None:
    if not os.path.isdir("/proc"):
        pytest.skip("no /proc")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.net", "--only", "echo", "--sizes", "1"]
        + ["--runtimes", "yieldloop", "--duration", "30", "--reps", "1"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with proc:
        deadline = time.monotonic() + 30
        kids: dict[int, str] = {}
        while time.monotonic() < deadline and len(kids) < 3:  # server + clients
            time.sleep(0.2)
            for pid in _children(proc.pid):
                kids.setdefault(pid, _cmdline(pid))
        assert kids, "the run started no child process"
        proc.send_signal(sig)
        proc.wait(30)
    assert proc.returncode != 0
    time.sleep(0.2)
    alive = {pid: cmd for pid, cmd in kids.items() if _cmdline(pid) == cmd}
    for pid in alive:  # do not leave them behind if the test fails
        os.kill(pid, signal.SIGKILL)
    assert alive == {}


# -- the command line ----------------------------------------------------------------


def test_runtime_names_and_groups() -> None:
    assert cli.parse_servers("uvloop,trio") == ["uvloop-streams", "uvloop-protocol", "trio"]
    assert cli.parse_servers("all") == list(SERVERS)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown runtime nope; known:"):
        cli.parse_servers("nope")
    with pytest.raises(argparse.ArgumentTypeError, match="expected sizes in KiB"):
        cli.parse_sizes("1,big")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown section"):
        cli.parse_sections("http,ftp")


def test_missing_runtime_and_section_are_not_run() -> None:
    opts = _options()
    ghost = ServerSpec("ghost", ("no_such_module_xyz",), "yieldloop_server", "not installed")
    run = cli._not_runnable(ECHO_1K, ghost, opts, "")
    assert run is not None and run.status == "skipped"
    assert run.detail == "no_such_module_xyz is not installed"
    run = cli._not_runnable(ECHO_1K, SERVERS["yieldloop-some"], opts, "")
    assert run is not None and run.status == "n/a"
    tls = Case("tls", "tls 1 KiB", "echo", 1024, tls=True)
    run = cli._not_runnable(tls, SERVERS["yieldloop"], opts, "trustme is not installed")
    assert run is not None and run.status == "skipped"
    assert cli._not_runnable(ECHO_1K, SERVERS["yieldloop"], opts, "") is None


def test_schedule_interleaves_and_rotates() -> None:
    servers = [SERVERS["yieldloop"], SERVERS["trio"], SERVERS["yieldloop-some"]]
    cases = cli.build_cases(["http", "echo"], [1])
    order = [(rep, c.name, s.name) for rep, c, s in cli.schedule(cases, servers, 2)]
    assert order == [
        (1, "http", "yieldloop"),
        (1, "http", "trio"),
        (1, "http", "yieldloop-some"),
        (1, "echo 1 KiB", "yieldloop"),
        (1, "echo 1 KiB", "trio"),  # yieldloop-some has no echo server
        (2, "http", "trio"),
        (2, "http", "yieldloop-some"),
        (2, "http", "yieldloop"),
        (2, "echo 1 KiB", "trio"),
        (2, "echo 1 KiB", "yieldloop"),
    ]


def test_command_line_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "net.json"
    out_md = tmp_path / "net.md"
    status = cli.main(
        ["--quick", "--only", "echo", "--sizes", "1", "--concurrency", "2"]
        + ["--runtimes", "yieldloop"]
        + ["--json", str(out_json), "--markdown", str(out_md)]
    )
    assert status == 0
    data = json.loads(out_json.read_text())
    assert [r["status"] for r in data["runs"]] == ["ok"]
    assert data["summary"][0]["server"] == "yieldloop"
    text = capsys.readouterr().out
    assert "echo 1 KiB  yieldloop" in text
    md = out_md.read_text()
    assert md.startswith("<!-- python -m benchmarks.net: begin")
    assert "## Network servers: HTTP, TCP echo, TLS echo" in md
    assert "| **echo 1 KiB** | yieldloop |" in md
    # The same report again, from the JSON, without measuring.
    again = tmp_path / "again.md"
    assert cli.main(["--from-json", str(out_json), "--markdown", str(again)]) == 0
    assert capsys.readouterr().out == text
    assert again.read_text() == md
    # Into a file with other sections: only its own is replaced.
    shared = tmp_path / "shared.md"
    shared.write_text("# Benchmarks\n\nkept\n")
    assert cli.main(["--from-json", str(out_json), "--markdown", str(shared)]) == 0
    assert cli.main(["--from-json", str(out_json), "--markdown", str(shared)]) == 0
    text2 = shared.read_text()
    assert text2.startswith("# Benchmarks\n\nkept\n")
    assert text2.count("## Network servers") == 1
    (tmp_path / "bad.json").write_text("{}")
    assert cli.main(["--from-json", str(tmp_path / "bad.json")]) == 2
    assert "expected the JSON written by --json" in capsys.readouterr().err
