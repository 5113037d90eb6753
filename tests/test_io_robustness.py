"""I/O robustness: ``serve_tcp`` (plain and TLS) against peers that misbehave,
backpressure, and clients cancelled at every await point.

Real sockets on 127.0.0.1, real threads (stdlib blocking sockets driven with
``to_thread`` play the misbehaving peers), real TLS with ``trustme``
certificates. In every scenario the server must keep serving a well-behaved
client (during and after), log handler errors instead of raising them, and
close every socket; each test also checks that no fd, thread or child process
is left behind (``tests/_leaks.py``).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import random
import resource
import socket as stdlib_socket
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trustme
from _leaks import Snapshot, leaks_since, no_leaks, snapshot

import yieldloop as yl
import yieldloop.socket as ylsocket
from yieldloop import (
    BrokenResourceError,
    BufferedReceiveStream,
    CancelScope,
    IncompleteRead,
    SocketListener,
    Stream,
    TaskGroup,
)
from yieldloop.lowlevel import current_kernel
from yieldloop.testing import explore_cancellation

pytestmark = pytest.mark.timeout(60)

HOST = "127.0.0.1"
SERVER_LOGGER = "yieldloop.server"
#: Receive buffer of the peers that stop reading: small, so that the kernel
#: cannot absorb a whole reply (tcp_rmem may let autotuning grow to 32 MiB).
SMALL_BUFFER = 64 * 1024


# ------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def leak_check() -> Iterator[None]:
    """Every test: no fd, thread or child process outlives it."""
    with no_leaks():
        yield


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority for this module's certificates."""
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for localhost and 127.0.0.1."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", HOST).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts :func:`ca`."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


# ------------------------------------------------------------ the server under test


class LineServer:
    """A line protocol, with counters the tests watch.

    ``ECHO <text>`` answers ``<text>\\n``; ``BLOB`` answers the bytes of
    :attr:`blob` (no framing); ``QUIT`` (or the end of the stream between
    requests) ends the connection. A request cut short, or one it does not
    know, is an error: the handler raises (and the server logs it).
    """

    def __init__(self, blob: bytes = b"") -> None:
        self.blob = blob
        #: Handlers running now.
        self.active = 0
        #: Handlers ever started.
        self.started = 0
        #: Handlers that ended without an error.
        self.finished = 0
        #: Handlers inside ``send_all(blob)`` now.
        self.sending = 0

    async def handler(self, stream: Stream) -> None:
        """Serve one connection (the handler given to ``serve_tcp``)."""
        self.active += 1
        self.started += 1
        try:
            buffered = BufferedReceiveStream(stream)
            while True:
                try:
                    line = await buffered.receive_until(b"\n", 4096)
                except IncompleteRead as exc:
                    if exc.partial:
                        raise  # a request cut short
                    break  # the peer finished between two requests
                command, _, argument = line.partition(b" ")
                if command == b"ECHO":
                    await stream.send_all(argument + b"\n")
                elif command == b"BLOB":
                    self.sending += 1
                    try:
                        await stream.send_all(self.blob)
                    finally:
                        self.sending -= 1
                elif command == b"QUIT":
                    break
                else:
                    raise ValueError(f"unknown request {line!r}")
            self.finished += 1
        finally:
            self.active -= 1


async def start_server(
    tg: TaskGroup, server: LineServer, **kwargs: Any
) -> tuple[int, list[SocketListener]]:
    """Start ``serve_tcp`` on an ephemeral port of 127.0.0.1: ``(port, listeners)``."""
    listeners = await tg.start(
        functools.partial(yl.serve_tcp, server.handler, 0, host=HOST, **kwargs)
    )
    return listeners[0].socket.getsockname()[1], listeners


async def good_exchange(
    port: int, ssl_context: ssl.SSLContext | None = None, token: bytes = b"ping"
) -> None:
    """A well-behaved client: one request, its reply, QUIT, the server's close."""
    stream = await yl.open_tcp_stream(HOST, port, ssl_context=ssl_context)
    async with stream:
        buffered = BufferedReceiveStream(stream)
        await stream.send_all(b"ECHO " + token + b"\n")
        assert await buffered.receive_until(b"\n") == token
        await stream.send_all(b"QUIT\n")
        assert await buffered.receive_some() == b""


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail (naming ``what``) after ``timeout``."""
    with yl.move_on_after(timeout):
        while not predicate():
            await yl.sleep(0.005)
        return
    raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")


async def settle_fds(base: Snapshot, timeout: float = 30.0) -> None:
    """Wait until the process holds no fd/thread/child that ``base`` did not."""
    with yl.move_on_after(timeout):
        while leaks_since(base):
            await yl.sleep(0.005)
        return
    raise AssertionError("still open:\n  " + "\n  ".join(leaks_since(base)))


def assert_no_io_waiters() -> None:
    """No task of this run waits on any fd any more."""
    kernel = current_kernel()
    assert not kernel._readers, f"tasks still wait to read: {kernel._readers}"
    assert not kernel._writers, f"tasks still wait to write: {kernel._writers}"


def server_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    """The server's log records of exactly ``level``."""
    return [r for r in caplog.records if r.name == SERVER_LOGGER and r.levelno == level]


# ------------------------------------------------------------ stdlib peers (blocking)


def connect_peer(port: int, *, rcvbuf: int | None = None) -> stdlib_socket.socket:
    """A blocking stdlib TCP socket connected to the server (30 s timeout)."""
    sock = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:  # before connect(), so the window is small from the start
            sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(30.0)
        sock.connect((HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


def reset_close(sock: stdlib_socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST instead of a FIN."""
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_to_end(sock: stdlib_socket.socket) -> tuple[bytes, bool]:
    """Read until the connection ends: ``(data, was_reset)``."""
    chunks = []
    try:
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    except ConnectionResetError:
        return b"".join(chunks), True
    return b"".join(chunks), False


def client_hello() -> bytes:
    """The first flight of a TLS client: a real ClientHello record."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16  # a handshake record
    return hello


# ------------------------------------------------------------ the leak check itself


def test_leak_check_reports_fds_threads_and_children() -> None:
    stop = threading.Event()
    with pytest.raises(AssertionError) as info:
        with no_leaks(settle=0.2):
            sock = stdlib_socket.socket()
            thread = threading.Thread(target=stop.wait, name="leaky thread")
            thread.start()
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        message = str(info.value)
        assert f"fd {sock.fileno()} -> socket:[" in message
        assert "thread 'leaky thread'" in message
        assert f"child process {child.pid}" in message
    finally:
        sock.close()
        stop.set()
        thread.join()
        child.kill()
        child.wait()
    # Once they are gone, the same check passes.
    with no_leaks(settle=5):
        stdlib_socket.socket().close()


# ------------------------------------------------------------ resets


def test_peer_resets_while_the_server_is_sending(caplog: pytest.LogCaptureFixture) -> None:
    server = LineServer(blob=bytes(16 << 20))

    async def main() -> None:
        async with TaskGroup() as tg:
            port, listeners = await start_server(tg, server)

            def start_download() -> stdlib_socket.socket:
                sock = connect_peer(port, rcvbuf=SMALL_BUFFER)
                try:
                    sock.sendall(b"BLOB\n")
                    assert sock.recv(4096)  # the reply has begun...
                except BaseException:
                    sock.close()
                    raise
                return sock  # ...and the peer reads no more of it

            peer = await yl.to_thread(start_download)
            try:
                await wait_until(lambda: server.sending == 1, "the handler to be sending")
                await good_exchange(port, token=b"during")
                assert server.sending == 1  # still stuck on the peer that does not read
            finally:
                reset_close(peer)
            await wait_until(lambda: server.active == 0, "the reset handler to end")
            await good_exchange(port, token=b"after")
            tg.cancel_scope.cancel()
        assert listeners[0].socket.closed
        assert_no_io_waiters()

    with caplog.at_level(logging.WARNING, logger=SERVER_LOGGER):
        yl.run(main)
    errors = server_records(caplog, logging.ERROR)
    assert len(errors) == 1, caplog.text
    assert "error in connection handler" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    exc = errors[0].exc_info[1]
    assert isinstance(exc, BrokenResourceError)
    assert isinstance(exc.__cause__, (ConnectionResetError, BrokenPipeError))
    assert (server.started, server.finished) == (3, 2)


def test_peer_resets_in_the_middle_of_a_request(caplog: pytest.LogCaptureFixture) -> None:
    server = LineServer()

    async def main() -> None:
        async with TaskGroup() as tg:
            port, _ = await start_server(tg, server)
            peer = await yl.to_thread(connect_peer, port)
            try:
                peer.sendall(b"ECHO this line never en")
                await wait_until(lambda: server.active == 1, "the handler to start")
                await good_exchange(port, token=b"during")
            finally:
                reset_close(peer)
            await wait_until(lambda: server.active == 0, "the reset handler to end")
            await good_exchange(port, token=b"after")
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    with caplog.at_level(logging.WARNING, logger=SERVER_LOGGER):
        yl.run(main)
    errors = server_records(caplog, logging.ERROR)
    assert len(errors) == 1, caplog.text
    assert errors[0].exc_info is not None
    exc = errors[0].exc_info[1]
    assert isinstance(exc, BrokenResourceError)
    assert isinstance(exc.__cause__, ConnectionResetError)
    assert (server.started, server.finished) == (3, 2)


def test_many_peers_reset_from_threads_at_random_points(caplog: pytest.LogCaptureFixture) -> None:
    # Each peer thread asks for a reply far larger than the socket buffers,
    # reads a random part of it and resets; good clients run all the while.
    peers = 12
    rng = random.Random(20261129)
    amounts = [rng.randrange(1, 1 << 20) for _ in range(peers)]
    server = LineServer(blob=bytes(16 << 20))
    good: list[int] = []

    def reset_midway(port: int, amount: int) -> int:
        sock = connect_peer(port, rcvbuf=SMALL_BUFFER)
        try:
            sock.sendall(b"BLOB\n")
            got = 0
            while got < amount:
                chunk = sock.recv(min(65536, amount - got))
                assert chunk, "the server ended the reply early"
                got += len(chunk)
        finally:
            reset_close(sock)
        return got

    async def good_clients(port: int, done: yl.Event) -> None:
        while not done.is_set():
            await good_exchange(port, token=b"good %d" % len(good))
            good.append(1)

    async def main() -> None:
        async with TaskGroup() as tg:
            port, _ = await start_server(tg, server)
            done = yl.Event()
            async with TaskGroup() as clients:
                clients.spawn(good_clients, port, done)
                async with TaskGroup() as resetters:
                    for amount in amounts:
                        resetters.spawn(yl.to_thread, reset_midway, port, amount)
                done.set()
            await wait_until(lambda: server.active == 0, "every handler to end")
            await good_exchange(port, token=b"after")
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    with caplog.at_level(logging.WARNING, logger=SERVER_LOGGER):
        yl.run(main)
    errors = server_records(caplog, logging.ERROR)
    assert len(errors) == peers, caplog.text
    for record in errors:
        assert record.exc_info is not None
        exc = record.exc_info[1]
        assert isinstance(exc, BrokenResourceError)
        assert isinstance(exc.__cause__, (ConnectionResetError, BrokenPipeError))
    assert good  # at least one good exchange ran while the peers reset
    assert server.started == peers + len(good) + 1
    assert server.finished == len(good) + 1


# ------------------------------------------------------------ half-close


def test_half_closed_peers_still_get_their_replies(caplog: pytest.LogCaptureFixture) -> None:
    blob = os.urandom(8 << 20)
    server = LineServer(blob=blob)

    async def main() -> None:
        async with TaskGroup() as tg:
            port, _ = await start_server(tg, server)

            # A: asks for a big reply, half-closes at once, reads it later.
            def ask_and_half_close(request: bytes) -> stdlib_socket.socket:
                sock = connect_peer(port, rcvbuf=SMALL_BUFFER)
                try:
                    sock.sendall(request)
                    sock.shutdown(stdlib_socket.SHUT_WR)
                except BaseException:
                    sock.close()
                    raise
                return sock

            def finish(sock: stdlib_socket.socket) -> tuple[bytes, bool]:
                with sock:
                    return read_to_end(sock)

            a = await yl.to_thread(ask_and_half_close, b"ECHO one\nECHO two\nBLOB\n")
            try:
                await wait_until(lambda: server.sending == 1, "the big reply to start")
                await good_exchange(port, token=b"during")
            finally:
                got_a = await yl.to_thread(finish, a)
            assert got_a == (b"one\ntwo\n" + blob, False)

            # B: the same with a yieldloop stream and send_eof().
            async with await yl.open_tcp_stream(HOST, port) as b:
                await b.send_all(b"ECHO three\n")
                await b.send_eof()
                got_b = b""
                while chunk := await b.receive_some():
                    got_b += chunk
            assert got_b == b"three\n"

            # C: half-closes before saying anything: a clean, empty reply.
            c = await yl.to_thread(ask_and_half_close, b"")
            assert await yl.to_thread(finish, c) == (b"", False)

            # D: half-closes in the middle of a request: the handler fails
            # (logged), and the peer sees the connection end.
            d = await yl.to_thread(ask_and_half_close, b"ECHO cut sho")
            assert await yl.to_thread(finish, d) == (b"", False)

            await wait_until(lambda: server.active == 0, "every handler to end")
            await good_exchange(port, token=b"after")
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    with caplog.at_level(logging.WARNING, logger=SERVER_LOGGER):
        yl.run(main)
    errors = server_records(caplog, logging.ERROR)
    assert len(errors) == 1, caplog.text
    assert errors[0].exc_info is not None
    exc = errors[0].exc_info[1]
    assert isinstance(exc, IncompleteRead)
    assert exc.partial == b"ECHO cut sho"
    assert not server_records(caplog, logging.WARNING)
    assert (server.started, server.finished) == (6, 5)


# ------------------------------------------------------------ idle connections


@contextmanager
def fd_limit_at_least(needed: int) -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE (up to the hard limit) to ``needed``;
    skip the test if the hard limit is lower. Restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        new_soft = hard if hard != resource.RLIM_INFINITY else max(needed, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        except (ValueError, OSError) as exc:
            pytest.skip(f"cannot raise the fd limit to {needed}: {exc}")
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(300)
def test_a_thousand_idle_connections(caplog: pytest.LogCaptureFixture) -> None:
    idle = 1000
    server = LineServer()

    def connect_many(port: int) -> list[stdlib_socket.socket]:
        socks: list[stdlib_socket.socket] = []
        try:
            for _ in range(idle):
                socks.append(connect_peer(port))
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return socks

    async def main() -> None:
        async with TaskGroup() as tg:
            port, _ = await start_server(tg, server)
            peers = await yl.to_thread(connect_many, port)
            try:
                await wait_until(lambda: server.active == idle, f"{idle} handlers to start")
                await good_exchange(port, token=b"during")
                assert server.active == idle  # the silent ones are all still there
            finally:
                for sock in peers:
                    sock.close()
            await wait_until(lambda: server.active == 0, "every handler to see its peer go")
            await good_exchange(port, token=b"after")
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    with fd_limit_at_least(2200), caplog.at_level(logging.WARNING, logger=SERVER_LOGGER):
        yl.run(main)
    assert not [r for r in caplog.records if r.name == SERVER_LOGGER], caplog.text
    assert (server.started, server.finished) == (idle + 2, idle + 2)


# ------------------------------------------------------------ TLS: garbage and silence


GARBAGE: dict[str, Callable[[], bytes]] = {
    "plaintext-http": lambda: b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "random-bytes": lambda: random.Random(7).randbytes(4096),
    "bad-handshake-record": lambda: b"\x16\x03\x01\x00\x40" + bytes(range(64)),
    "truncated-client-hello": lambda: client_hello()[:40],
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_to_a_tls_server(
    kind: str,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    garbage = GARBAGE[kind]()
    server = LineServer()

    def send_garbage(sock: stdlib_socket.socket) -> tuple[bytes, bool]:
        with sock:
            sock.sendall(garbage)
            sock.shutdown(stdlib_socket.SHUT_WR)
            return read_to_end(sock)

    async def main() -> None:
        async with TaskGroup() as tg:
            port, _ = await start_server(tg, server, ssl_context=server_ctx)
            peer = await yl.to_thread(connect_peer, port)
            try:
                await good_exchange(port, client_ctx, token=b"during")
            finally:
                got, _ = await yl.to_thread(send_garbage, peer)
            # The server ended the connection, with at most a TLS alert.
            assert not got or got[0] == 0x15, got[:64]
            await good_exchange(port, client_ctx, token=b"after")
            await wait_until(lambda: server.active == 0, "every handler to end")
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    with caplog.at_level(logging.WARNING, logger=SERVER_LOGGER):
        yl.run(main)
    warnings = server_records(caplog, logging.WARNING)
    assert len(warnings) == 1, caplog.text
    assert "TLS handshake with" in warnings[0].getMessage()
    assert "failed" in warnings[0].getMessage()
    assert not server_records(caplog, logging.ERROR), caplog.text
    # The handler only ever saw the two good clients.
    assert (server.started, server.finished) == (2, 2)


@pytest.mark.parametrize("sends", ["nothing", "half-a-client-hello"])
def test_silent_tls_client_is_dropped_after_the_handshake_timeout(
    sends: str,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeout = 0.5
    first = b"" if sends == "nothing" else client_hello()[:40]
    server = LineServer()
    outcome: list[tuple[bytes, bool, float]] = []

    def silent_peer(port: int) -> None:
        start = time.monotonic()  # before the server can have accepted it
        with connect_peer(port) as sock:
            sock.sendall(first)
            data, reset = read_to_end(sock)
            outcome.append((data, reset, time.monotonic() - start))

    async def main() -> None:
        async with TaskGroup() as tg:
            port, _ = await start_server(
                tg, server, ssl_context=server_ctx, handshake_timeout=timeout
            )
            async with TaskGroup() as peers:
                peers.spawn(yl.to_thread, silent_peer, port)
                await good_exchange(port, client_ctx, token=b"during")
            await good_exchange(port, client_ctx, token=b"after")
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    with caplog.at_level(logging.WARNING, logger=SERVER_LOGGER):
        yl.run(main)
    [(data, reset, elapsed)] = outcome
    assert (data, reset) == (b"", False)  # a plain close, nothing sent
    # Not dropped before the timeout (no upper bound: the machine may be loaded).
    assert elapsed >= timeout - 1e-6
    warnings = server_records(caplog, logging.WARNING)
    assert len(warnings) == 1, caplog.text
    message = warnings[0].getMessage()
    assert "TLS handshake with" in message
    assert "timed out after 0.5 seconds" in message
    assert (server.started, server.finished) == (2, 2)


# ------------------------------------------------------------ backpressure

PAYLOAD_SIZE = 64 << 20


def rss() -> int:
    """Resident memory of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def queued_bytes(fd: int, request: int) -> int:
    """Bytes in a socket's send (``TIOCOUTQ``) or receive (``FIONREAD``) queue."""
    count: int = struct.unpack("i", fcntl.ioctl(fd, request, b"\0\0\0\0"))[0]
    return count


@yl.coroutine
def counting_requests(awaitable: Any, counter: list[int]) -> Generator[Any, Any, Any]:
    """Drive ``awaitable`` and count the requests it makes to the kernel (a
    task that is really parked makes none)."""
    it = awaitable.__await__() if hasattr(awaitable, "__await__") else awaitable
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            request = it.throw(error) if error is not None else it.send(value)
        except StopIteration as stop:
            return stop.value
        counter[0] += 1
        value, error = None, None
        try:
            value = yield request
        except BaseException as exc:
            error = exc


async def wait_until_parked(counter: list[int], quiet: float = 0.3) -> None:
    """Wait until the counted task has made no request for ``quiet`` seconds
    (the kernel had nothing to do for it); fail if that never happens."""
    with yl.move_on_after(20):
        while True:
            seen = counter[0]
            await yl.sleep(quiet)
            if counter[0] == seen:
                return
    raise AssertionError(f"the sender never stayed parked ({counter[0]} requests so far)")


async def stream_pair(
    rcvbuf: int = SMALL_BUFFER,
) -> tuple[yl.SocketStream, stdlib_socket.socket]:
    """(yieldloop client stream, stdlib peer socket) over TCP, with small buffers."""
    listener = stdlib_socket.socket()
    try:
        listener.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, rcvbuf)
        listener.bind((HOST, 0))
        listener.listen(1)
        client = await yl.open_tcp_stream(HOST, listener.getsockname()[1])
        peer, _ = listener.accept()  # already in the backlog: does not block
    finally:
        listener.close()
    client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, SMALL_BUFFER)
    return client, peer


def read_and_hash(sock: stdlib_socket.socket, size: int) -> tuple[int, str]:
    """Read ``size`` bytes (or to the end) in order: ``(count, sha256)``."""
    digest = hashlib.sha256()
    count = 0
    while count < size:
        chunk = sock.recv(min(1 << 20, size - count))
        if not chunk:
            break
        digest.update(chunk)
        count += len(chunk)
    return count, digest.hexdigest()


def test_send_all_to_a_peer_that_does_not_read_parks_then_delivers_in_order() -> None:
    payload = os.urandom(PAYLOAD_SIZE)
    expected = hashlib.sha256(payload).hexdigest()
    seen: dict[str, Any] = {}

    async def main() -> None:
        client, peer = await stream_pair()
        with peer:
            async with client, TaskGroup() as tg:
                counter = [0]
                before = rss()
                sender = tg.spawn(counting_requests, client.send_all(payload), counter)
                await wait_until_parked(counter)
                # The peer read nothing: the sender waits for the socket to
                # become writable, and most of the payload is still ours.
                assert not sender.done()
                assert current_kernel()._writers.get(client.socket.fileno()) is sender
                in_flight = queued_bytes(client.socket.fileno(), termios.TIOCOUTQ)
                in_flight += queued_bytes(peer.fileno(), termios.FIONREAD)
                assert 0 < in_flight < PAYLOAD_SIZE // 4
                seen["growth"] = rss() - before
                parked_requests = counter[0]
                # Now the peer reads everything.
                seen["received"] = await yl.to_thread(read_and_hash, peer, PAYLOAD_SIZE)
            assert sender.done() and sender.result() is None
            assert counter[0] > parked_requests
        assert_no_io_waiters()

    yl.run(main)
    assert seen["received"] == (PAYLOAD_SIZE, expected)
    # Sending did not copy the payload (64 MiB) into memory of ours.
    assert seen["growth"] < PAYLOAD_SIZE // 2, f"memory grew by {seen['growth']} bytes"


async def tls_stream_pair(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> tuple[yl.TLSStream, yl.TLSStream]:
    """(client, server) TLS streams over TCP with small buffers, handshaken."""
    listener = ylsocket.socket()
    try:
        listener.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, SMALL_BUFFER)
        listener.bind((HOST, 0))
        listener.listen(1)
        async with TaskGroup() as tg:
            connecting = tg.spawn(yl.open_tcp_stream, HOST, listener.getsockname()[1])
            sock, _ = await listener.accept()
    finally:
        listener.close()
    transport = connecting.result()
    transport.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, SMALL_BUFFER)
    client = yl.TLSStream(transport, client_ctx, server_hostname="localhost")
    server = yl.TLSStream(yl.SocketStream(sock), server_ctx, server_side=True)
    async with TaskGroup() as tg:
        tg.spawn(client.do_handshake)
        tg.spawn(server.do_handshake)
    return client, server


async def receive_and_hash(stream: Stream, size: int) -> tuple[int, str]:
    """Receive ``size`` bytes (or to the end) in order: ``(count, sha256)``."""
    digest = hashlib.sha256()
    count = 0
    while count < size:
        chunk = await stream.receive_some(1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        count += len(chunk)
    return count, digest.hexdigest()


def test_tls_send_all_to_a_peer_that_does_not_read_parks_then_delivers_in_order(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    payload = os.urandom(PAYLOAD_SIZE)
    expected = hashlib.sha256(payload).hexdigest()
    seen: dict[str, Any] = {}

    async def main() -> None:
        client, server = await tls_stream_pair(client_ctx, server_ctx)
        async with client, server, TaskGroup() as tg:
            counter = [0]
            sender = tg.spawn(counting_requests, client.send_all(payload), counter)
            await wait_until_parked(counter)
            assert not sender.done()
            transport = client.transport_stream
            assert isinstance(transport, yl.SocketStream)
            assert current_kernel()._writers.get(transport.socket.fileno()) is sender
            seen["received"] = await receive_and_hash(server, PAYLOAD_SIZE)
        assert sender.result() is None
        assert_no_io_waiters()

    yl.run(main)
    assert seen["received"] == (PAYLOAD_SIZE, expected)


def test_tls_send_all_to_a_peer_that_does_not_read_does_not_buffer_the_payload(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    payload = os.urandom(PAYLOAD_SIZE)
    seen: dict[str, int] = {}

    async def main() -> None:
        client, server = await tls_stream_pair(client_ctx, server_ctx)
        async with client, server, TaskGroup() as tg:
            counter = [0]
            before = rss()
            tg.spawn(counting_requests, client.send_all(payload), counter)
            await wait_until_parked(counter)
            seen["growth"] = rss() - before
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    yl.run(main)
    assert seen["growth"] < PAYLOAD_SIZE // 2, f"memory grew by {seen['growth']} bytes"


# ------------------------------------------------------------ cancellation


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_client_cancelled_at_every_await_point(
    tls: bool,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # explore_cancellation cancels the region (the whole client exchange:
    # connect, handshake, request, reply, close) at its 1st await point, then
    # its 2nd, ... until a run completes; after each, the server must serve
    # a good client and every fd the client opened must be closed.
    outcomes: list[str] = []

    async def scenario(region: CancelScope) -> None:
        server = LineServer()
        kwargs = {"ssl_context": server_ctx} if tls else {}
        client_ssl = client_ctx if tls else None
        async with TaskGroup() as tg:
            port, _ = await start_server(tg, server, **kwargs)
            base = snapshot()
            outcome = "cancelled"
            with region:
                await good_exchange(port, client_ssl, token=b"under test")
                outcome = "completed"
            outcomes.append(outcome)
            await good_exchange(port, client_ssl, token=b"after")
            await wait_until(lambda: server.active == 0, "every handler to end")
            await settle_fds(base)
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    with caplog.at_level(logging.WARNING, logger=SERVER_LOGGER):
        result = explore_cancellation(scenario, clock=yl.MonotonicClock)
    assert result.complete
    assert len(outcomes) == result.runs
    # Every run but the last was cancelled somewhere; the last one ran through.
    assert outcomes[-1] == "completed"
    assert outcomes[:-1] == ["cancelled"] * (result.runs - 1)
    # At least: the connect, the task group around it, the wait for each
    # reply, the close.
    assert result.runs >= 5, result


def test_clients_cancelled_from_another_task_leave_a_long_lived_server_healthy() -> None:
    # One server for the whole test. Client k is cancelled by a task that
    # first lets k scheduling rounds pass; k grows until an exchange finishes.
    server = LineServer()
    cancelled: list[int] = []

    async def main() -> None:
        async with TaskGroup() as tg:
            port, _ = await start_server(tg, server)
            base = snapshot()
            for k in range(2000):
                scope = CancelScope()

                async def cancel_after(rounds: int, scope: CancelScope = scope) -> None:
                    for _ in range(rounds):
                        await yl.checkpoint()
                    scope.cancel()

                async with TaskGroup() as inner:
                    inner.spawn(cancel_after, k)
                    with scope:
                        await good_exchange(port, token=b"client %d" % k)
                if not scope.cancelled_caught:
                    break
                cancelled.append(k)
                await good_exchange(port, token=b"after %d" % k)
                await wait_until(lambda: server.active == 0, "every handler to end")
                await settle_fds(base)
            else:
                raise AssertionError("no client ever finished its exchange")
            tg.cancel_scope.cancel()
        assert_no_io_waiters()

    yl.run(main)
    assert cancelled[:3] == [0, 1, 2]
    assert len(cancelled) >= 5
    assert server.active == 0
