"""The programs in examples/, run for real: each one is started as a
subprocess (``sys.executable examples/NAME.py``), servers on an ephemeral
port (``--port 0``, the port is read from their first line), and talked to
with real clients - the example clients, stdlib sockets, ``http.client``,
``ssl`` with trustme certificates. Servers are stopped with SIGINT and must
exit with status 0 and no traceback."""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import pty
import queue
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and sockets")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: Seconds to wait for anything a test expects to happen. Generous: the
#: machine may be busy; nothing is asserted about how long things take.
WAIT = 60.0

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)$")


def example_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*extra.pop("PYTHONPATH_FIRST", "").split(os.pathsep), str(ROOT)]
    ).lstrip(os.pathsep)
    env.pop("PYTHONUNBUFFERED", None)  # the examples must flush by themselves
    env.update(extra)
    return env


class Example:
    """An example program running as a subprocess; its stdout lines arrive
    in a queue (read by a thread, so a chatty program never blocks)."""

    def __init__(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env or example_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._stderr: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.append(self.proc.stderr.read())

    def readline(self) -> str:
        """The next stdout line (fails at EOF or after WAIT seconds)."""
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"{self.name} printed nothing more within {WAIT} s; seen {self.seen}")
        if line is None:
            self.lines.put(None)
            self.proc.wait(WAIT)
            self._join()
            pytest.fail(
                f"{self.name} ended (status {self.proc.returncode}); stdout {self.seen}, "
                f"stderr:\n{self.stderr}"
            )
        self.seen.append(line)
        return line

    def wait_for(self, pattern: str) -> str:
        """Read stdout lines until one contains ``pattern``; return it."""
        while True:
            line = self.readline()
            if pattern in line:
                return line

    def port(self) -> int:
        """The port of a server, from its first line."""
        line = self.readline()
        match = LISTENING.match(line)
        assert match, f"the first line of {self.name} is {line!r}"
        return int(match.group(1))

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(WAIT)

    def rest(self) -> list[str]:
        """Every stdout line not read yet (after the program ended)."""
        out = []
        while (line := self.lines.get(timeout=WAIT)) is not None:
            out.append(line)
        self.lines.put(None)
        return out

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then wait for the exit; returns the status."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self) -> int:
        try:
            status = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {WAIT} s")
        self._join()
        return status

    def assert_clean_exit(self, status: int) -> None:
        assert status == 0, f"{self.name} exited with {status}; stderr:\n{self.stderr}"
        assert "Traceback" not in self.stderr, self.stderr

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._join()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture(scope="module", autouse=True)
def default_sigint() -> Iterator[None]:
    """If this process ignores SIGINT (started in the background by a
    shell), its children would too: give it a handler, which exec resets to
    the default in the children."""
    old = signal.getsignal(signal.SIGINT)
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if old == signal.SIG_IGN:
        signal.signal(signal.SIGINT, old)


@pytest.fixture
def start() -> Iterator[Callable[..., Example]]:
    """``start(name, *args)`` runs an example; every one is killed (if it
    is still running) and its pipes closed at the end of the test."""
    started: list[Example] = []

    def start(name: str, *args: str, env: dict[str, str] | None = None) -> Example:
        example = Example(name, *args, env=env)
        started.append(example)
        return example

    yield start
    for example in started:
        example.close()


def run_client(
    name: str, *args: str, input: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run an example to completion (a client), with ``input`` on stdin."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        input=input,
        capture_output=True,
        cwd=ROOT,
        env=env or example_env(),
        timeout=WAIT,
    )


def free_port() -> int:
    """A port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def receive_all(sock: socket.socket) -> bytes:
    """Everything until the peer closes."""
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def assert_closed_by_peer(sock: socket.socket) -> None:
    """The peer closes the connection (after whatever it still sends)."""
    try:
        receive_all(sock)
    except ConnectionResetError:
        pass


# ====================================================================== echo


def test_echo_client_sends_lines_and_prints_the_echo(start: Callable[..., Example]) -> None:
    server = start("echo_server.py", "--port", "0")
    port = server.port()
    text = b"hello\nworld\n\xc3\xa9t\xc3\xa9\nlast line without newline"
    result = run_client("echo_client.py", "--port", str(port), input=text)
    assert result.returncode == 0, result.stderr
    assert result.stdout == text
    assert result.stderr == b""
    server.assert_clean_exit(server.interrupt())


def test_echo_client_count_mode_checks_every_message(start: Callable[..., Example]) -> None:
    server = start("echo_server.py", "--port", "0")
    port = server.port()
    # Large messages: the client must receive while it sends, or both ends
    # would wait for each other with full socket buffers.
    result = run_client("echo_client.py", "--port", str(port), "--count", "40", "--size", "250000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"40 messages of 250000 bytes echoed correctly")
    result = run_client("echo_client.py", "--port", str(port), "--count", "3")
    assert result.returncode == 0, result.stderr
    assert b"3 messages of 1024 bytes" in result.stdout
    server.assert_clean_exit(server.interrupt())


def test_echo_server_with_plain_sockets(start: Callable[..., Example]) -> None:
    server = start("echo_server.py", "--port", "0")
    port = server.port()
    socks = [connect(port) for _ in range(5)]
    try:
        for i, sock in enumerate(socks):  # interleaved: one task per connection
            sock.sendall(b"first %d " % i)
        for i, sock in enumerate(socks):
            sock.sendall(b"second %d" % i)
            sock.shutdown(socket.SHUT_WR)  # the server ends the connection after EOF
        for i, sock in enumerate(socks):
            assert receive_all(sock) == b"first %d second %d" % (i, i)
        # An abrupt reset must not disturb the server.
        rude = connect(port)
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        rude.sendall(b"x" * 100000)
        rude.close()
        with connect(port) as sock:
            sock.sendall(b"still here")
            sock.shutdown(socket.SHUT_WR)
            assert receive_all(sock) == b"still here"
    finally:
        for sock in socks:
            sock.close()
    server.assert_clean_exit(server.interrupt())


def test_echo_server_stops_with_connections_open(start: Callable[..., Example]) -> None:
    server = start("echo_server.py", "--port", "0")
    port = server.port()
    with connect(port) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        server.assert_clean_exit(server.interrupt())
        assert_closed_by_peer(sock)  # the server closed its end on the way out


def test_echo_client_ctrl_c_while_waiting_for_the_terminal(
    start: Callable[..., Example],
) -> None:
    server = start("echo_server.py", "--port", "0")
    port = server.port()
    # stdin is a terminal nobody types on: the client is blocked reading it
    # (in a worker thread) when Ctrl-C comes.
    controller, terminal = pty.openpty()
    try:
        client = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "echo_client.py"), "--port", str(port)],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=example_env(),
        )
        os.close(terminal)
        terminal = -1
        with client:
            assert client.stderr is not None
            ready, _, _ = select.select([client.stderr], [], [], WAIT)
            assert ready, "the client did not start"
            assert client.stderr.readline() == b"connected; type lines, Ctrl-D to finish\n"
            client.send_signal(signal.SIGINT)
            out, err = client.communicate(timeout=WAIT)
            assert client.returncode == 0, err
            assert out == b""
            assert err == b""  # no traceback, no "Fatal Python error" at exit
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    server.assert_clean_exit(server.interrupt())


def fake_echo_server(reply: Callable[[bytes], bytes]) -> tuple[socket.socket, threading.Thread]:
    """A one-connection server that answers what it receives with
    ``reply(data)`` (until the client is done); an empty reply ends its
    side of the stream."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(WAIT)
            with contextlib.suppress(OSError):
                while data := conn.recv(65536):
                    answer = reply(data)
                    if not answer:
                        # Close our side only, and read what the client still
                        # sends: closing with unread data would send a reset
                        # instead of the end of the stream.
                        conn.shutdown(socket.SHUT_WR)
                        while conn.recv(65536):
                            pass
                        return
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda data: data.upper(), b"wrong echo"),
        (lambda data: b"", b"closed the connection"),
    ],
    ids=["wrong-bytes", "closes-early"],
)
def test_echo_client_reports_a_bad_server(reply: Callable[[bytes], bytes], message: bytes) -> None:
    listener, thread = fake_echo_server(reply)
    with listener:
        port = listener.getsockname()[1]
        result = run_client("echo_client.py", "--port", str(port), input=b"hello\nworld\n")
        thread.join(WAIT)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert b"Traceback" not in result.stderr


def test_echo_client_without_a_server() -> None:
    result = run_client("echo_client.py", "--port", str(free_port()), "--count", "1")
    assert result.returncode == 1
    assert b"cannot connect" in result.stderr
    assert b"Traceback" not in result.stderr


def test_echo_server_port_in_use(start: Callable[..., Example]) -> None:
    server = start("echo_server.py", "--port", "0")
    port = server.port()
    second = start("echo_server.py", "--port", str(port))
    status = second.wait()
    assert status == 1
    assert "echo_server:" in second.stderr
    assert "Traceback" not in second.stderr
    server.assert_clean_exit(server.interrupt())


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("echo_server.py", ["--port", "70000"]),
        ("echo_client.py", ["--count", "0"]),
        ("echo_client.py", ["--size", "-1"]),
        ("http_hello.py", ["--timeout", "0"]),
        ("chat_server.py", ["--buffer", "0"]),
        ("parallel_fetch.py", ["--jobs", "0"]),
        ("parallel_fetch.py", ["--cmd", ""]),
        ("parallel_fetch.py", ["--cmd", "'unbalanced"]),
        ("tls_echo.py", ["server", "--port", "0"]),
        ("tls_echo.py", ["server", "--keyfile", "k.pem", "--self-signed"]),
        ("tls_echo.py", []),
    ],
)
def test_bad_arguments_are_refused(name: str, args: list[str]) -> None:
    result = run_client(name, *args)
    assert result.returncode == 2  # argparse's status for a usage error
    assert b"error:" in result.stderr
    assert b"Traceback" not in result.stderr


# ====================================================================== http


def read_response(reader: io.BufferedReader) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response from a binary file made by socket.makefile."""
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return status, headers, reader.read(length)


def test_http_keep_alive_with_http_client(start: Callable[..., Example]) -> None:
    server = start("http_hello.py", "--port", "0")
    port = server.port()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b"Hello, world!\n"
        assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
        assert response.getheader("Date")
        assert not response.will_close
        sock = conn.sock
        assert sock is not None
        for path in ("/a", "/b?c=d", "/" + "x" * 2000):
            conn.request("GET", path)
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"Hello, world!\n")
            assert conn.sock is sock  # the same connection, kept alive
        conn.request("POST", "/form", body=b"a=1&b=2" * 1000)  # Content-Length
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"Hello, world!\n")
        conn.request(
            "PUT",
            "/upload",
            body=iter([b"chunk one", b"", b"chunk two" * 5000]),
            encode_chunked=True,
        )
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"Hello, world!\n")
        conn.request("HEAD", "/")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") == "14"
        assert response.read() == b""
        assert conn.sock is sock
        conn.request("GET", "/last", headers={"Connection": "close"})
        response = conn.getresponse()
        assert response.getheader("Connection") == "close"
        assert response.will_close
        assert response.read() == b"Hello, world!\n"
    finally:
        conn.close()
    server.assert_clean_exit(server.interrupt())


def test_http_raw_requests(start: Callable[..., Example]) -> None:
    server = start("http_hello.py", "--port", "0")
    port = server.port()
    with connect(port) as sock, sock.makefile("rb") as reader:
        # Two pipelined requests in one write, then Connection: close.
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"\r\nPOST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        )
        for _ in range(2):
            status, headers, body = read_response(reader)
            assert (status, body) == (200, b"Hello, world!\n")
            assert headers["connection"] == "keep-alive"
        # A chunked body with an extension and a trailer, and Expect: 100-continue.
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(b"5;ext=1\r\nhello\r\n0\r\nTrailer: yes\r\n\r\n")
        assert read_response(reader)[0] == 200
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n")
        status, headers, body = read_response(reader)
        assert (status, headers["connection"], body) == (200, "close", b"Hello, world!\n")
        assert reader.read() == b""  # then the server closes
    # HTTP/1.0: closed after the response, unless the client asks for keep-alive.
    with connect(port) as sock, sock.makefile("rb") as reader:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert read_response(reader)[1]["connection"] == "keep-alive"
        # (An HTTP/1.0 client does not know 100 Continue: it gets none.)
        sock.sendall(
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
        )
        status, headers, body = read_response(reader)
        assert (status, headers["connection"], body) == (200, "close", b"Hello, world!\n")
        assert reader.read() == b""
    server.assert_clean_exit(server.interrupt())


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"garbage\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS on a plain port
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: header\r\n" * 5000, 431),  # no end in sight
    ],
)
def test_http_bad_requests(
    start: Callable[..., Example], request_bytes: bytes, status: int
) -> None:
    server = start("http_hello.py", "--port", "0")
    port = server.port()
    with connect(port) as sock, sock.makefile("rb") as reader:
        sock.sendall(request_bytes)
        got, headers, body = read_response(reader)
        assert got == status, body
        assert headers["connection"] == "close"
        assert body.startswith(str(status).encode())
        assert reader.read() == b""  # and the connection is closed, cleanly
    # The server goes on serving others.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"Hello, world!\n"
    finally:
        conn.close()
    server.assert_clean_exit(server.interrupt())


def test_http_closes_idle_and_half_sent_connections(start: Callable[..., Example]) -> None:
    server = start("http_hello.py", "--port", "0", "--timeout", "0.5")
    port = server.port()
    with connect(port) as idle, connect(port) as half:
        half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        assert receive_all(idle) == b""
        assert receive_all(half) == b""
    # A client that goes away in the middle of a request is no problem either.
    with connect(port) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly some")
    server.assert_clean_exit(server.interrupt())


def test_http_stops_with_keep_alive_connections_open(start: Callable[..., Example]) -> None:
    server = start("http_hello.py", "--port", "0")
    port = server.port()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"Hello, world!\n"
        server.assert_clean_exit(server.interrupt())
        sock = conn.sock
        assert sock is not None
        assert_closed_by_peer(sock)
    finally:
        conn.close()


# ======================================================================= tls


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A trustme CA and a certificate for localhost/127.0.0.1, in PEM files."""
    trustme = pytest.importorskip("trustme")
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = {name: str(directory / f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(paths["cert"], append=i > 0)
    cert.private_key_pem.write_to_path(paths["key"])
    return paths


def test_tls_echo_with_certificate_files(
    start: Callable[..., Example], tls_files: dict[str, str]
) -> None:
    server = start(
        "tls_echo.py",
        "server",
        "--port",
        "0",
        "--certfile",
        tls_files["cert"],
        "--keyfile",
        tls_files["key"],
    )
    port = str(server.port())
    text = b"hello over TLS\nsecond line\n"
    result = run_client(
        "tls_echo.py", "client", "--port", port, "--cafile", tls_files["ca"], input=text
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == text
    assert "TLSv1" in server.readline()  # a line per connection
    result = run_client(
        "tls_echo.py",
        "client",
        "--host",
        "localhost",
        "--port",
        port,
        "--cafile",
        tls_files["ca"],
        "--count",
        "30",
        "--size",
        "100000",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"30 messages of 100000 bytes echoed correctly over TLS")

    # A stdlib TLS client, checking the certificate too.
    context = ssl.create_default_context(cafile=tls_files["ca"])
    with connect(int(port)) as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"stdlib")
        assert tls.recv(6) == b"stdlib"

    # Without the CA, the client refuses the server; the server survives.
    result = run_client("tls_echo.py", "client", "--port", port, "--count", "1")
    assert result.returncode == 1
    assert b"certificate verify failed" in result.stderr
    assert b"Traceback" not in result.stderr
    result = run_client(
        "tls_echo.py", "client", "--port", port, "--cafile", tls_files["ca"], input=b"after\n"
    )
    assert (result.returncode, result.stdout) == (0, b"after\n")
    server.assert_clean_exit(server.interrupt())


def test_tls_echo_self_signed(start: Callable[..., Example], tmp_path: Path) -> None:
    pytest.importorskip("trustme")
    ca_path = tmp_path / "ca.pem"
    server = start(
        "tls_echo.py", "server", "--port", "0", "--self-signed", "--write-ca", str(ca_path)
    )
    port = str(server.port())
    assert str(ca_path) in server.readline()
    result = run_client(
        "tls_echo.py", "client", "--port", port, "--cafile", str(ca_path), input=b"self-signed\n"
    )
    assert (result.returncode, result.stdout) == (0, b"self-signed\n"), result.stderr
    server.assert_clean_exit(server.interrupt())
    assert ca_path.exists()  # a file we asked for is ours to keep

    # Without --write-ca, a temporary CA file is made, then removed at exit.
    server = start("tls_echo.py", "server", "--port", "0", "--self-signed")
    port = str(server.port())
    match = re.search(r"the CA certificate is in (\S+):", server.readline())
    assert match
    temporary = Path(match.group(1))
    result = run_client(
        "tls_echo.py", "client", "--port", port, "--cafile", str(temporary), input=b"temporary\n"
    )
    assert (result.returncode, result.stdout) == (0, b"temporary\n"), result.stderr
    server.assert_clean_exit(server.interrupt())
    assert not temporary.exists()


def test_tls_echo_self_signed_without_trustme(tmp_path: Path) -> None:
    (tmp_path / "trustme.py").write_text("raise ImportError('no trustme here')\n")
    result = run_client(
        "tls_echo.py",
        "server",
        "--port",
        "0",
        "--self-signed",
        env=example_env(PYTHONPATH_FIRST=str(tmp_path)),
    )
    assert result.returncode == 1
    assert b"needs the trustme package" in result.stderr
    assert b"Traceback" not in result.stderr


def test_tls_echo_bad_certificate_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    result = run_client("tls_echo.py", "server", "--port", "0", "--certfile", missing)
    assert result.returncode == 1
    assert b"cannot load the certificate" in result.stderr
    assert b"Traceback" not in result.stderr


# ====================================================================== chat


class ChatClient:
    """A chat client on a plain socket; its lines arrive in a queue."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(WAIT)
        self.sock.connect(("127.0.0.1", port))
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.thread: threading.Thread | None = None

    def start_reading(self) -> None:
        def read() -> None:
            with contextlib.suppress(OSError), self.sock.makefile("rb") as reader:
                for line in reader:
                    self.lines.put(line.decode().rstrip("\n"))
            self.lines.put(None)

        self.thread = threading.Thread(target=read, daemon=True)
        self.thread.start()

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def expect(self, pattern: str) -> str:
        """Read lines until one contains ``pattern``."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line with {pattern!r} within {WAIT} s")
            assert line is not None, f"the server closed the connection before {pattern!r}"
            if pattern in line:
                return line

    def next_line(self) -> str | None:
        return self.lines.get(timeout=WAIT)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.thread is not None:
            self.thread.join(WAIT)


@pytest.fixture
def chat_clients() -> Iterator[list[ChatClient]]:
    clients: list[ChatClient] = []
    yield clients
    for client in clients:
        client.close()


def test_chat_broadcast_nick_and_leave(
    start: Callable[..., Example], chat_clients: list[ChatClient]
) -> None:
    server = start("chat_server.py", "--port", "0")
    port = server.port()

    def join() -> tuple[ChatClient, str]:
        client = ChatClient(port)
        chat_clients.append(client)
        client.start_reading()
        welcome = client.expect("* welcome, ")
        name = welcome.split()[2].rstrip("!")
        client.expect("* commands:")
        return client, name

    a, a_name = join()
    b, b_name = join()
    a.expect(f"* {b_name} joined")
    c, c_name = join()
    a.expect(f"* {c_name} joined")
    b.expect(f"* {c_name} joined")
    server.wait_for(f"{c_name} joined from 127.0.0.1:")

    a.send("/nick alice")
    assert a.expect("* you are now") == "* you are now alice"
    assert b.expect("is now") == f"* {a_name} is now alice"
    assert c.expect("is now") == f"* {a_name} is now alice"
    b.send("/nick alice")
    assert b.expect("taken") == "* alice is taken"
    a.send("/nick alice")
    assert a.expect("already") == "* you are alice already"
    b.send("/nick no spaces allowed")
    b.expect("* a name is 1 to 20 letters")
    b.send("/nick bob")
    b.expect("* you are now bob")

    a.send("hello, room")
    assert b.expect("alice:") == "alice: hello, room"
    assert c.expect("alice:") == "alice: hello, room"
    a.send("/who")
    assert a.expect("* here:") == f"* here: alice, bob, {c_name}"
    a.send("/frobnicate")
    a.expect("* commands:")

    c.send("/quit")
    assert c.expect("* bye") == "* bye"
    assert c.next_line() is None  # and the server closes the connection
    a.expect(f"* {c_name} left")
    b.expect(f"* {c_name} left")
    b.close()  # without a word
    a.expect("* bob left")
    server.wait_for("bob left")
    server.assert_clean_exit(server.interrupt())
    assert a.next_line() is None  # the server closed the connection on exit


def test_chat_own_messages_do_not_come_back(
    start: Callable[..., Example], chat_clients: list[ChatClient]
) -> None:
    server = start("chat_server.py", "--port", "0")
    port = server.port()
    a = ChatClient(port)
    chat_clients.append(a)
    a.start_reading()
    a.expect("* commands:")
    a.send("talking to myself")
    a.send("/who")
    # If the message were echoed to its sender, it would come before this.
    assert a.next_line() == "* here: guest1"
    server.assert_clean_exit(server.interrupt())


def test_chat_drops_a_slow_client(
    start: Callable[..., Example], chat_clients: list[ChatClient]
) -> None:
    server = start("chat_server.py", "--port", "0", "--buffer", "8")
    port = server.port()
    talker = ChatClient(port)
    listener = ChatClient(port)
    slow = ChatClient(port, receive_buffer=4096)  # and it never reads
    chat_clients.extend([talker, listener, slow])
    talker.start_reading()
    listener.start_reading()
    talker_name = talker.expect("* welcome, ").split()[2].rstrip("!")
    talker.expect("joined")  # the listener...
    slow_name = talker.expect("joined").split()[1]  # ...then the slow one
    listener.expect(f"* {slow_name} joined")

    # Talk until the slow client, whose buffers fill up, is dropped. The
    # talker reads the notices; the listener reads everything.
    line = "x" * 3000
    sent = 0
    notice = f"* {slow_name} was disconnected: too slow"
    dropped = threading.Event()

    def watch() -> None:
        talker.expect(notice)
        dropped.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + WAIT
    while not dropped.is_set():
        assert time.monotonic() < deadline, f"{slow_name} not dropped after {sent} lines"
        talker.send(f"{sent} {line}")
        sent += 1
    watcher.join(WAIT)
    server.wait_for(f"{slow_name} was disconnected: too slow")

    # The listener got every line, in order, and the notice; it was not held up.
    talker.send("the end")
    got = 0
    while True:
        text = listener.next_line()
        assert text is not None, "the listener was disconnected"
        if text.startswith("* "):  # the notice
            continue
        if text == f"{talker_name}: the end":
            break
        assert text == f"{talker_name}: {got} {line}", text[:50]
        got += 1
    assert got == sent

    # The slow client's connection is closed: after what was in flight, EOF.
    slow.sock.settimeout(WAIT)
    assert_closed_by_peer(slow.sock)
    server.assert_clean_exit(server.interrupt())


def test_chat_line_too_long(start: Callable[..., Example], chat_clients: list[ChatClient]) -> None:
    server = start("chat_server.py", "--port", "0", "--max-line", "100")
    port = server.port()
    a = ChatClient(port)
    b = ChatClient(port)
    chat_clients.extend([a, b])
    a.start_reading()
    b.start_reading()
    a.expect("* guest2 joined")
    b.send("y" * 500)
    b.expect("* lines are at most 100 bytes; bye")
    assert b.next_line() is None
    a.expect("* guest2 was disconnected: line too long")
    server.assert_clean_exit(server.interrupt())


# ========================================================== parallel fetch


def test_parallel_fetch_defaults() -> None:
    result = run_client("parallel_fetch.py")
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr
    assert out.splitlines()[0] == "running 6 commands, at most 3 at a time"
    assert out.count(": ok, took ") == 6
    assert "    slept 0.3 s" in out
    assert out.rstrip().splitlines()[-1].startswith("6 of 6 commands succeeded in ")


def test_parallel_fetch_reports_failures() -> None:
    py = sys.executable
    result = run_client(
        "parallel_fetch.py",
        "--cmd",
        f"{py} -c 'print(\"fine\")'",
        "--cmd",
        f"{py} -c 'import sys; print(\"oops\", file=sys.stderr); sys.exit(3)'",
        "--cmd",
        "/no/such/program --flag",
    )
    out = result.stdout.decode()
    assert result.returncode == 1
    assert "ok, took" in out
    assert "    fine" in out
    assert "exit status 3, took" in out
    assert "    oops" in out
    assert "/no/such/program --flag: cannot start:" in out
    assert "1 of 3 commands succeeded" in out
    assert b"Traceback" not in result.stderr


def test_parallel_fetch_limits_the_jobs(tmp_path: Path) -> None:
    # Each command adds a file to a directory, counts the files there (the
    # commands running now, at least), waits a little and removes its file.
    code = (
        "import os, sys, time; d = sys.argv[1]; me = os.path.join(d, str(os.getpid())); "
        "open(me, 'w').close(); print('running', len(os.listdir(d))); "
        "time.sleep(0.3); os.unlink(me)"
    )
    cmd = f'{sys.executable} -c "{code}" {tmp_path}'
    args = [arg for _ in range(6) for arg in ("--cmd", cmd)]
    result = run_client("parallel_fetch.py", "--jobs", "2", *args)
    assert result.returncode == 0, result.stderr
    counts = [int(n) for n in re.findall(rb"    running (\d+)", result.stdout)]
    assert len(counts) == 6
    assert all(1 <= n <= 2 for n in counts), counts


def wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + WAIT
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} was not written"
        time.sleep(0.05)
    return path.read_text()


def assert_process_gone(pid: int) -> None:
    """``pid`` ends (and is reaped: not even a zombie is left)."""
    deadline = time.monotonic() + WAIT
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, f"process {pid} is still there"
        time.sleep(0.05)


def sleeper(pid_file: Path) -> str:
    code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"
    return f'{sys.executable} -c "{code}" {pid_file}'


def test_parallel_fetch_timeout_stops_the_commands(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    result = run_client(
        "parallel_fetch.py",
        "--timeout",
        "2",
        "--cmd",
        sleeper(pid_file),
        "--cmd",
        "echo quick",
    )
    out = result.stdout.decode()
    assert result.returncode == 1
    assert "echo quick: ok" in out
    assert "timed out after 2.0 s: 1 of 2 commands finished" in out
    assert b"Traceback" not in result.stderr
    assert_process_gone(int(pid_file.read_text()))


def test_parallel_fetch_ctrl_c_stops_the_commands(
    start: Callable[..., Example], tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    fetch = start("parallel_fetch.py", "--cmd", sleeper(pid_file))
    assert fetch.readline() == "running 1 commands, at most 3 at a time"
    pid = int(wait_for_file(pid_file))
    fetch.assert_clean_exit(fetch.interrupt())
    assert_process_gone(pid)
