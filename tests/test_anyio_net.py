"""The network half of the anyio backend (yieldloop._interop._anyio_net),
tested directly inside yieldloop.run(): TCP, UDP, unix streams and
datagrams, fd passing, and the bad paths (peer reset, closed sockets,
concurrent use, cancellation, fd leaks). Real sockets on loopback."""

from __future__ import annotations

import array
import errno
import os
import socket as stdlib_socket
import struct
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

anyio = pytest.importorskip("anyio")

from _leaks import no_leaks  # noqa: E402
from anyio import (  # noqa: E402
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
)
from anyio.abc import SocketAttribute  # noqa: E402

import yieldloop as yl  # noqa: E402
from yieldloop import Cancelled, CancelScope, TaskGroup  # noqa: E402
from yieldloop._interop import _anyio_net as net  # noqa: E402
from yieldloop.lowlevel import current_kernel  # noqa: E402
from yieldloop.testing import explore_cancellation  # noqa: E402

pytestmark = pytest.mark.timeout(60)

HAS_IPV6 = stdlib_socket.has_ipv6
try:
    _probe = stdlib_socket.socket(stdlib_socket.AF_INET6)
    _probe.bind(("::1", 0))
    _probe.close()
except OSError:
    HAS_IPV6 = False
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 on loopback")


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """yieldloop.run(main), failing if it leaves fds or threads behind."""
    with no_leaks():
        return yl.run(main)


async def wait_blocked() -> None:
    """Let every other task run until it blocks (a few rounds are plenty here)."""
    for _ in range(20):
        await yl.checkpoint()


def assert_no_waiters() -> None:
    kernel = current_kernel()
    assert not kernel._readers, kernel._readers
    assert not kernel._writers, kernel._writers


def tcp_server(family: int = stdlib_socket.AF_INET) -> stdlib_socket.socket:
    host = "::1" if family == stdlib_socket.AF_INET6 else "127.0.0.1"
    server = stdlib_socket.socket(family, stdlib_socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(16)
    return server


def free_port() -> int:
    probe = stdlib_socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


async def tcp_pair() -> tuple[net.SocketStream, stdlib_socket.socket]:
    """(anyio SocketStream, the peer as a non-blocking stdlib socket)."""
    with tcp_server() as server:
        stream = await net.connect_tcp("127.0.0.1", server.getsockname()[1])
        peer, _ = server.accept()
    peer.setblocking(False)
    return stream, peer


def reset(sock: stdlib_socket.socket) -> None:
    """Close ``sock`` with an RST instead of a FIN."""
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def fill(sock: net.SocketStream) -> None:
    """Fill the send buffer of ``sock`` until the OS refuses more."""
    raw = sock.extra(SocketAttribute.raw_socket)
    try:
        while True:
            raw.send(b"\0" * 65536)
    except BlockingIOError:
        pass


@pytest.fixture
def sock_dir():
    # A short directory: unix socket paths are limited to ~100 bytes.
    with tempfile.TemporaryDirectory() as path:
        yield Path(path)


# ------------------------------------------------------------------- TCP


def test_tcp_send_receive_and_extra_attributes() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        with peer:
            async with stream:
                raw = stream.extra(SocketAttribute.raw_socket)
                assert raw.gettimeout() == 0
                assert stream.extra(SocketAttribute.family) == stdlib_socket.AF_INET
                assert stream.extra(SocketAttribute.local_address) == raw.getsockname()
                assert stream.extra(SocketAttribute.local_port) == raw.getsockname()[1]
                assert stream.extra(SocketAttribute.remote_address) == peer.getsockname()
                assert stream.extra(SocketAttribute.remote_port) == peer.getsockname()[1]
                assert raw.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY)
                await stream.send(b"hello")
                await net.wait_readable(peer)
                assert peer.recv(100) == b"hello"
                peer.send(b"world")
                assert await stream.receive() == b"world"
                peer.send(b"abcdef")
                assert await stream.receive(2) == b"ab"
                assert await stream.receive() == b"cdef"

    run(main)


@needs_ipv6
def test_tcp_ipv6_and_local_address() -> None:
    async def main() -> None:
        with tcp_server(stdlib_socket.AF_INET6) as server:
            stream = await net.connect_tcp("::1", server.getsockname()[1], ("::1", 0))
            peer, _ = server.accept()
            with peer:
                async with stream:
                    assert stream.extra(SocketAttribute.family) == stdlib_socket.AF_INET6
                    assert stream.extra(SocketAttribute.local_address)[0] == "::1"
                    await stream.send(b"x")
                    assert peer.recv(1) == b"x"

    run(main)


def test_tcp_connect_with_local_port() -> None:
    async def main() -> None:
        port = free_port()
        with tcp_server() as server:
            stream = await net.connect_tcp(
                "127.0.0.1", server.getsockname()[1], ("127.0.0.1", port)
            )
            server.accept()[0].close()
            async with stream:
                assert stream.extra(SocketAttribute.local_port) == port

    run(main)


def test_tcp_large_transfer_both_ways() -> None:
    payload = os.urandom(4 * 1024 * 1024)

    async def main() -> None:
        stream, peer = await tcp_pair()
        peer.setblocking(True)
        received = bytearray()

        def echo() -> None:
            with peer:
                while True:
                    data = peer.recv(65536)
                    if not data:
                        break
                    peer.sendall(data)

        thread = threading.Thread(target=echo)
        thread.start()
        try:
            async with stream, TaskGroup() as tg:

                async def reader() -> None:
                    while True:
                        try:
                            received.extend(await stream.receive())
                        except EndOfStream:
                            return

                tg.spawn(reader)
                await stream.send(payload)
                await stream.send_eof()
        finally:
            await yl.to_thread(thread.join)
        assert received == payload

    run(main)


def test_tcp_send_accepts_memoryview_and_bytearray() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        with peer:
            async with stream:
                await stream.send(bytearray(b"ab"))
                await stream.send(memoryview(b"xcdx")[1:3])
                await stream.send(memoryview(array.array("i", [1])))
                await stream.send(b"")
                await net.wait_readable(peer)
                assert peer.recv(100) == b"abcd" + array.array("i", [1]).tobytes()

    run(main)


def test_tcp_receive_invalid_max_bytes() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        with peer:
            async with stream:
                for bad in (0, -1):
                    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
                        await stream.receive(bad)

    run(main)


def test_tcp_end_of_stream_then_closed() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        peer.close()
        async with stream:
            with pytest.raises(EndOfStream):
                await stream.receive()
            with pytest.raises(EndOfStream):  # and again
                await stream.receive()
        with pytest.raises(ClosedResourceError):
            await stream.receive()
        with pytest.raises(ClosedResourceError):
            await stream.send(b"x")
        with pytest.raises(ClosedResourceError):
            await stream.send_eof()

    run(main)


def test_tcp_send_eof() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        with peer:
            async with stream:
                await stream.send(b"data")
                await stream.send_eof()
                await net.wait_readable(peer)
                assert peer.recv(100) == b"data"
                await net.wait_readable(peer)
                assert peer.recv(100) == b""
                peer.send(b"still open")
                assert await stream.receive() == b"still open"
                with pytest.raises(BrokenResourceError):
                    await stream.send(b"after eof")

    run(main)


def test_tcp_peer_reset_while_receiving() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        async with stream, TaskGroup() as tg:

            async def resetter() -> None:
                await wait_blocked()
                reset(peer)

            tg.spawn(resetter)
            with pytest.raises(BrokenResourceError) as info:
                await stream.receive()
            assert isinstance(info.value.__cause__, ConnectionResetError)

    run(main)


def test_tcp_peer_reset_before_receive() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        reset(peer)
        async with stream:
            with pytest.raises(BrokenResourceError) as info:
                await stream.receive()
            assert isinstance(info.value.__cause__, OSError)

    run(main)


def test_tcp_peer_reset_while_sending() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        async with stream, TaskGroup() as tg:

            async def resetter() -> None:
                await wait_blocked()
                reset(peer)

            tg.spawn(resetter)
            with pytest.raises(BrokenResourceError) as info:
                while True:
                    await stream.send(b"\0" * 1024 * 1024)
            assert isinstance(info.value.__cause__, OSError)

    run(main)


def test_tcp_send_after_peer_closed() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        peer.close()
        async with stream:
            with pytest.raises(BrokenResourceError):
                for _ in range(1000):
                    await stream.send(b"foo")

    run(main)


def test_tcp_concurrent_receive_and_send_are_busy() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        with peer:
            async with stream, TaskGroup() as tg:
                tg.spawn(stream.receive)
                fill(stream)

                async def sender() -> None:
                    await stream.send(b"x" * 65536)

                tg.spawn(sender)
                await wait_blocked()
                with pytest.raises(BusyResourceError, match="already reading from"):
                    await stream.receive()
                with pytest.raises(BusyResourceError, match="already writing to"):
                    await stream.send(b"foo")
                with pytest.raises(BusyResourceError, match="already writing to"):
                    await stream.send_eof()
                tg.cancel_scope.cancel()
            assert_no_waiters()

    run(main)


def test_tcp_close_from_another_task_during_receive_and_send() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        raw = stream.extra(SocketAttribute.raw_socket)
        errors: list[BaseException] = []
        with peer:
            async with TaskGroup() as tg:

                async def receiver() -> None:
                    with pytest.raises(ClosedResourceError) as info:
                        await stream.receive()
                    errors.append(info.value)

                async def sender() -> None:
                    with pytest.raises(ClosedResourceError) as info:
                        while True:
                            await stream.send(b"\0" * 1024 * 1024)
                    errors.append(info.value)

                tg.spawn(receiver)
                tg.spawn(sender)
                await wait_blocked()
                await stream.aclose()
        assert len(errors) == 2
        assert raw.fileno() == -1
        assert_no_waiters()

    run(main)


def test_raw_socket_closed_behind_the_streams_back_is_broken() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        with peer:
            stream.extra(SocketAttribute.raw_socket).close()
            with pytest.raises(BrokenResourceError):
                await stream.receive()
            with pytest.raises(BrokenResourceError):
                await stream.send(b"x")
            await stream.aclose()

    run(main)


def test_aclose_in_cancelled_scope_closes_then_raises_cancelled() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        raw = stream.extra(SocketAttribute.raw_socket)
        with peer:
            with CancelScope() as scope:
                scope.cancel()
                await stream.aclose()
            assert scope.cancelled_caught
            assert raw.fileno() == -1
            await stream.aclose()  # twice is fine

    run(main)


def test_send_and_receive_are_checkpoints() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        ran: list[str] = []
        with peer:
            async with stream, TaskGroup() as tg:

                async def other() -> None:
                    ran.append("other")

                # Completing at once, they still let the other tasks run...
                tg.spawn(other)
                await stream.send(b"x")
                assert ran == ["other"]
                await net.wait_readable(peer)
                peer.send(peer.recv(10))
                await net.wait_readable(stream.extra(SocketAttribute.raw_socket))
                tg.spawn(other)
                assert await stream.receive() == b"x"
                assert ran == ["other", "other"]
                # ... and in a cancelled scope they do nothing.
                peer.send(b"y")
                with CancelScope() as scope:
                    scope.cancel()
                    await stream.send(b"not sent")
                assert scope.cancelled_caught
                with CancelScope() as scope:
                    scope.cancel()
                    await stream.receive()
                assert scope.cancelled_caught
                assert await stream.receive() == b"y"  # not consumed by the cancelled one
                await stream.send(b"z")
                await net.wait_readable(peer)
                assert peer.recv(100) == b"z"

    run(main)


def test_cancelled_receive_and_send_leave_the_stream_usable() -> None:
    async def main() -> None:
        stream, peer = await tcp_pair()
        with peer:
            async with stream:
                with yl.move_on_after(0.05) as scope:
                    await stream.receive()
                assert scope.cancelled_caught
                peer.send(b"later")
                assert await stream.receive() == b"later"
                fill(stream)
                with yl.move_on_after(0.05) as scope:
                    await stream.send(b"blocked")
                assert scope.cancelled_caught
                assert_no_waiters()
                # Drain the peer: the guard is free, sending works again.
                async with TaskGroup() as tg:

                    async def drain() -> None:
                        while True:
                            await net.wait_readable(peer)
                            if b"end" in peer.recv(1 << 20):
                                return

                    tg.spawn(drain)
                    await stream.send(b"end")

    run(main)


def test_connect_refused() -> None:
    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            await net.connect_tcp("127.0.0.1", free_port())

    run(main)


def test_connect_cancelled_closes_the_socket() -> None:
    async def main() -> None:
        with tcp_server() as server:
            with CancelScope() as scope:
                scope.cancel()
                await net.connect_tcp("127.0.0.1", server.getsockname()[1])
            assert scope.cancelled_caught

    run(main)


def test_tcp_client_exchange_cancelled_at_every_await_point() -> None:
    outcomes: list[str] = []

    async def scenario(region: CancelScope) -> None:
        listener = net.create_tcp_listener(tcp_server())

        async def echo() -> None:
            while True:
                conn = await listener.accept()
                async with conn:
                    try:
                        while True:
                            await conn.send(await conn.receive())
                    except (EndOfStream, BrokenResourceError):
                        pass

        async with listener, TaskGroup() as tg:
            tg.spawn(echo)
            port = listener.extra(SocketAttribute.local_port)
            outcome = "cancelled"
            with region:
                stream = await net.connect_tcp("127.0.0.1", port)
                try:
                    await stream.send(b"ping")
                    assert await stream.receive() == b"ping"
                    await stream.send_eof()
                    with pytest.raises(EndOfStream):
                        await stream.receive()
                finally:
                    with CancelScope(shield=True):
                        await stream.aclose()
                outcome = "completed"
            outcomes.append(outcome)
            # The server is still fine.
            async with await net.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b"after")
                assert await stream.receive() == b"after"
            tg.cancel_scope.cancel()
        assert_no_waiters()

    with no_leaks():
        result = explore_cancellation(scenario, clock=yl.MonotonicClock)
    assert result.complete
    assert outcomes[-1] == "completed"
    assert outcomes[:-1] == ["cancelled"] * (result.runs - 1)
    assert result.runs >= 6, result


# -------------------------------------------------------------- listeners


def test_tcp_listener_accept_and_attributes() -> None:
    async def main() -> None:
        listener = net.create_tcp_listener(tcp_server())
        async with listener:
            raw = listener.extra(SocketAttribute.raw_socket)
            assert listener.extra(SocketAttribute.local_address) == raw.getsockname()
            assert listener.extra(SocketAttribute.local_port) == raw.getsockname()[1]
            with pytest.raises(anyio.TypedAttributeLookupError):
                listener.extra(SocketAttribute.remote_address)
            with stdlib_socket.create_connection(raw.getsockname()) as client:
                stream = await listener.accept()
                assert isinstance(stream, net.SocketStream)
                async with stream:
                    conn = stream.extra(SocketAttribute.raw_socket)
                    assert conn.gettimeout() == 0
                    assert conn.getsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY)
                    client.sendall(b"blah")
                    request = await stream.receive()
                    await stream.send(request[::-1])
                    assert client.recv(100) == b"halb"

    run(main)


def test_listener_busy_closed_and_cancelled_accept() -> None:
    async def main() -> None:
        listener = net.create_tcp_listener(tcp_server())
        raw = listener.extra(SocketAttribute.raw_socket)
        async with TaskGroup() as tg:

            async def accepter() -> None:
                with pytest.raises(ClosedResourceError):
                    await listener.accept()

            tg.spawn(accepter)
            await wait_blocked()
            with pytest.raises(BusyResourceError, match="already accepting connections from"):
                await listener.accept()
            with yl.move_on_after(0.01):  # (busy even with a timeout)
                with pytest.raises(BusyResourceError):
                    await listener.accept()
            await listener.aclose()
        assert raw.fileno() == -1
        with pytest.raises(ClosedResourceError):
            await listener.accept()
        assert_no_waiters()

    run(main)


def test_accept_cancelled_then_accepts() -> None:
    async def main() -> None:
        listener = net.create_tcp_listener(tcp_server())
        async with listener:
            with yl.move_on_after(0.02) as scope:
                await listener.accept()
            assert scope.cancelled_caught
            with CancelScope() as scope:
                scope.cancel()
                await listener.accept()  # a connection is waiting, but cancelled first
            addr = listener.extra(SocketAttribute.local_address)
            with stdlib_socket.create_connection(addr) as client:
                with CancelScope() as scope:
                    scope.cancel()
                    await listener.accept()
                assert scope.cancelled_caught
                async with await listener.accept() as stream:
                    client.sendall(b"x")
                    assert await stream.receive() == b"x"

    run(main)


def test_unix_listener(sock_dir: Path) -> None:
    async def main() -> None:
        raw = stdlib_socket.socket(stdlib_socket.AF_UNIX)
        raw.bind(str(sock_dir / "s"))
        raw.listen()
        listener = net.create_unix_listener(raw)
        async with listener:
            assert listener.extra(SocketAttribute.local_address) == str(sock_dir / "s")
            with pytest.raises(anyio.TypedAttributeLookupError):
                listener.extra(SocketAttribute.local_port)
            async with TaskGroup() as tg:
                task = tg.spawn(net.connect_unix, str(sock_dir / "s"))
                server_side = await listener.accept()
            assert isinstance(server_side, net.UNIXSocketStream)
            client = task.result()
            async with client, server_side:
                await client.send(b"hi")
                assert await server_side.receive() == b"hi"
                await server_side.send_eof()
                with pytest.raises(EndOfStream):
                    await client.receive()

    run(main)


def test_wrap_listener_socket_picks_the_class(sock_dir: Path) -> None:
    async def main() -> None:
        tcp = await net.wrap_listener_socket(tcp_server())
        raw = stdlib_socket.socket(stdlib_socket.AF_UNIX)
        raw.bind(str(sock_dir / "s"))
        raw.listen()
        unix = await net.wrap_listener_socket(raw)
        async with tcp, unix:
            assert isinstance(tcp, net.TCPSocketListener)
            assert isinstance(unix, net.UNIXSocketListener)

    run(main)


# ----------------------------------------------------------- unix streams


def test_unix_stream_send_receive_bytes_path(sock_dir: Path) -> None:
    async def main() -> None:
        path = str(sock_dir / "s")
        with stdlib_socket.socket(stdlib_socket.AF_UNIX) as server:
            server.bind(path)
            server.listen()
            stream = await net.connect_unix(path.encode())
            peer, _ = server.accept()
            with peer:
                async with stream:
                    assert isinstance(stream, net.UNIXSocketStream)
                    assert stream.extra(SocketAttribute.remote_address) == path
                    await stream.send(b"blah")
                    assert peer.recv(100) == b"blah"
                    peer.sendall(b"halb")
                    assert await stream.receive() == b"halb"

    run(main)


def test_unix_connect_errors(sock_dir: Path) -> None:
    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            await net.connect_unix(str(sock_dir / "missing"))
        with stdlib_socket.socket(stdlib_socket.AF_UNIX) as unbound_listener:
            unbound_listener.bind(str(sock_dir / "notlistening"))
            with pytest.raises(ConnectionRefusedError):
                await net.connect_unix(str(sock_dir / "notlistening"))

    run(main)


def test_unix_connect_waits_for_a_full_backlog(sock_dir: Path) -> None:
    async def main() -> None:
        path = str(sock_dir / "s")
        with stdlib_socket.socket(stdlib_socket.AF_UNIX) as server:
            server.bind(path)
            server.listen(0)
            server.setblocking(False)
            queued: list[stdlib_socket.socket] = []
            try:
                # Fill the backlog until a non-blocking connect is refused.
                while True:
                    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX)
                    probe.setblocking(False)
                    try:
                        probe.connect(path)
                    except BlockingIOError:
                        probe.close()
                        break
                    queued.append(probe)
                # Cancelled while retrying: the socket is closed.
                with yl.move_on_after(0.05) as scope:
                    await net.connect_unix(path)
                assert scope.cancelled_caught
                async with TaskGroup() as tg:
                    task = tg.spawn(net.connect_unix, path)
                    await yl.sleep(0.05)
                    assert not task.done()
                    server.accept()[0].close()  # room for one more
                stream = task.result()
                await stream.aclose()
                while True:
                    try:
                        server.accept()[0].close()
                    except BlockingIOError:
                        break
            finally:
                for probe in queued:
                    probe.close()

    run(main)


def test_unix_seqpacket_keeps_message_boundaries(sock_dir: Path) -> None:
    if not hasattr(stdlib_socket, "SOCK_SEQPACKET"):
        pytest.skip("no SOCK_SEQPACKET")

    async def main() -> None:
        path = str(sock_dir / "s")
        raw = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_SEQPACKET)
        raw.bind(path)
        raw.listen()
        async with net.create_unix_listener(raw) as listener:
            async with TaskGroup() as tg:
                task = tg.spawn(net.connect_unix, path, stdlib_socket.SOCK_SEQPACKET)
                server_side = await listener.accept()
            async with task.result() as client, server_side:
                await client.send(b"po")
                await client.send(b"tato")
                assert await server_side.receive(1024) == b"po"
                assert await server_side.receive(1024) == b"tato"

    run(main)


def test_send_fds_and_receive_fds(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("Hello, ")
    (tmp_path / "b").write_text("World!")

    async def main() -> None:
        left, right = stdlib_socket.socketpair()
        sender = await net.wrap_unix_stream_socket(left)
        receiver = await net.wrap_unix_stream_socket(right)
        async with sender, receiver:
            with (tmp_path / "a").open() as a, (tmp_path / "b").open() as b:
                await sender.send_fds(b"test", [a, b.fileno()])
            message, fds = await receiver.receive_fds(10, 2)
            assert message == b"test"
            text = ""
            for fd in fds:
                with os.fdopen(fd) as f:
                    text += f.read()
            assert text == "Hello, World!"
            await sender.send_eof()
            with pytest.raises(EndOfStream):
                await receiver.receive_fds(10, 1)

    run(main)


def test_send_fds_large_message_sends_the_fds_once(tmp_path: Path) -> None:
    message = os.urandom(1024 * 1024)
    (tmp_path / "f").write_bytes(b"passed")

    async def main() -> None:
        left, right = stdlib_socket.socketpair()
        left.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096)
        sender = await net.wrap_unix_stream_socket(left)
        receiver = await net.wrap_unix_stream_socket(right)
        received = bytearray()
        contents: list[bytes] = []

        async def receive() -> None:
            while True:
                try:
                    chunk, fds = await receiver.receive_fds(65536, 4)
                except EndOfStream:
                    return
                received.extend(chunk)
                for fd in fds:
                    with os.fdopen(fd, "rb") as f:
                        contents.append(f.read())

        async with sender, receiver, TaskGroup() as tg:
            tg.spawn(receive)
            with (tmp_path / "f").open("rb") as f:
                await sender.send_fds(message, [f])
            await sender.send_eof()
        assert received == message
        assert contents == [b"passed"]

    run(main)


def test_fd_passing_bad_arguments_and_closed_stream() -> None:
    async def main() -> None:
        left, right = stdlib_socket.socketpair()
        sender = await net.wrap_unix_stream_socket(left)
        receiver = await net.wrap_unix_stream_socket(right)
        async with receiver:
            for msglen in (-1, "foo"):
                with pytest.raises(ValueError, match="msglen must be a non-negative integer"):
                    await receiver.receive_fds(msglen, 1)  # type: ignore[arg-type]
            for maxfds in (0, "foo"):
                with pytest.raises(ValueError, match="maxfds must be a positive integer"):
                    await receiver.receive_fds(0, maxfds)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="message must not be empty"):
                await sender.send_fds(b"", [0])
            with pytest.raises(ValueError, match="fds must not be empty"):
                await sender.send_fds(b"x", [])
            await sender.aclose()
            with pytest.raises(ClosedResourceError):
                await sender.send_fds(b"x", [0])
            with pytest.raises(EndOfStream):
                await receiver.receive_fds(10, 1)
        with pytest.raises(ClosedResourceError):
            await receiver.receive_fds(10, 1)

    run(main)


def test_receive_fds_busy_and_cancelled() -> None:
    async def main() -> None:
        left, right = stdlib_socket.socketpair()
        sender = await net.wrap_unix_stream_socket(left)
        receiver = await net.wrap_unix_stream_socket(right)
        async with sender, receiver, TaskGroup() as tg:
            tg.spawn(receiver.receive_fds, 10, 1)
            await wait_blocked()
            with pytest.raises(BusyResourceError, match="already reading from"):
                await receiver.receive_fds(10, 1)
            with pytest.raises(BusyResourceError, match="already reading from"):
                await receiver.receive()
            tg.cancel_scope.cancel()
        assert_no_waiters()

    run(main)


def test_receive_fds_closes_descriptors_it_cannot_return() -> None:
    # More descriptors than maxfds: the OS closes the extra ones (MSG_CTRUNC),
    # and the ones returned belong to the caller.
    async def main() -> None:
        left, right = stdlib_socket.socketpair()
        receiver = await net.wrap_unix_stream_socket(right)
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        try:
            fds = array.array("i", [r1, r2])
            left.sendmsg([b"x"], [(stdlib_socket.SOL_SOCKET, stdlib_socket.SCM_RIGHTS, fds)])
            async with receiver:
                message, got = await receiver.receive_fds(1, 1)
            assert message == b"x"
            assert len(got) == 1
            os.close(got[0])
        finally:
            left.close()
            for fd in (r1, w1, r2, w2):
                os.close(fd)

    run(main)


# -------------------------------------------------------------------- UDP


def test_udp_send_receive_and_attributes() -> None:
    async def main() -> None:
        udp = await net.create_udp_socket(stdlib_socket.AF_INET, ("127.0.0.1", 0), None, False)
        assert isinstance(udp, net.UDPSocket)
        async with udp:
            raw = udp.extra(SocketAttribute.raw_socket)
            assert raw.gettimeout() == 0
            addr = udp.extra(SocketAttribute.local_address)
            assert addr == raw.getsockname()
            with pytest.raises(anyio.TypedAttributeLookupError):
                udp.extra(SocketAttribute.remote_address)
            await udp.send((b"blah", addr))
            assert await udp.receive() == (b"blah", addr)
            await udp.sendto(b"by name", "localhost", addr[1])  # resolved first
            assert await udp.receive() == (b"by name", addr)

    run(main)


@needs_ipv6
def test_udp_ipv6_addresses_are_pairs() -> None:
    async def main() -> None:
        udp = await net.create_udp_socket(stdlib_socket.AF_INET6, ("::1", 0), None, False)
        async with udp:
            addr = udp.extra(SocketAttribute.local_address)
            assert len(addr) == 2
            await udp.send((b"x", addr))
            assert await udp.receive() == (b"x", addr)

    run(main)


def test_connected_udp() -> None:
    async def main() -> None:
        server = await net.create_udp_socket(stdlib_socket.AF_INET, ("127.0.0.1", 0), None, False)
        server_addr = server.extra(SocketAttribute.local_address)
        client = await net.create_udp_socket(stdlib_socket.AF_INET, None, server_addr, False)
        assert isinstance(client, net.ConnectedUDPSocket)
        async with server, client:
            assert client.extra(SocketAttribute.remote_address) == server_addr
            assert client.extra(SocketAttribute.remote_port) == server_addr[1]
            await client.send(b"ping")
            data, addr = await server.receive()
            assert (data, addr) == (b"ping", client.extra(SocketAttribute.local_address))
            await server.send((b"pong", addr))
            assert await client.receive() == b"pong"

    run(main)


def test_udp_reuse_port() -> None:
    if not hasattr(stdlib_socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")

    async def main() -> None:
        a = await net.create_udp_socket(stdlib_socket.AF_INET, ("127.0.0.1", 0), None, True)
        port = a.extra(SocketAttribute.local_port)
        b = await net.create_udp_socket(stdlib_socket.AF_INET, ("127.0.0.1", port), None, True)
        async with a, b:
            assert b.extra(SocketAttribute.local_port) == port

    run(main)


def test_udp_bind_failure_and_cancelled_creation_close_the_socket() -> None:
    async def main() -> None:
        with stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            with pytest.raises(OSError) as info:
                await net.create_udp_socket(stdlib_socket.AF_INET, taken.getsockname(), None, False)
            assert info.value.errno == errno.EADDRINUSE
        for remote in (None, ("127.0.0.1", 9)):
            with CancelScope() as scope:
                scope.cancel()
                await net.create_udp_socket(stdlib_socket.AF_INET, None, remote, False)
            assert scope.cancelled_caught

    run(main)


def test_udp_busy_closed_and_cancelled_receive() -> None:
    async def main() -> None:
        udp = await net.create_udp_socket(stdlib_socket.AF_INET, ("127.0.0.1", 0), None, False)
        addr = udp.extra(SocketAttribute.local_address)
        with yl.move_on_after(0.02) as scope:
            await udp.receive()
        assert scope.cancelled_caught
        async with TaskGroup() as tg:

            async def receiver() -> None:
                with pytest.raises(ClosedResourceError):
                    await udp.receive()

            tg.spawn(receiver)
            await wait_blocked()
            with pytest.raises(BusyResourceError, match="already reading from"):
                await udp.receive()
            await udp.aclose()
        with pytest.raises(ClosedResourceError):
            await udp.receive()
        with pytest.raises(ClosedResourceError):
            await udp.send((b"x", addr))
        assert_no_waiters()

    run(main)


def test_udp_receive_keeps_the_datagram_when_cancelled_before() -> None:
    async def main() -> None:
        udp = await net.create_udp_socket(stdlib_socket.AF_INET, ("127.0.0.1", 0), None, False)
        async with udp:
            addr = udp.extra(SocketAttribute.local_address)
            await udp.send((b"kept", addr))
            with CancelScope() as scope:
                scope.cancel()
                await udp.receive()
            assert scope.cancelled_caught
            assert await udp.receive() == (b"kept", addr)

    run(main)


def test_connected_udp_refused_is_broken() -> None:
    async def main() -> None:
        udp = await net.create_udp_socket(
            stdlib_socket.AF_INET, None, ("127.0.0.1", free_port()), False
        )
        async with udp:
            await udp.send(b"nobody there")
            with pytest.raises(BrokenResourceError) as info, yl.fail_after(5):
                await udp.receive()
            assert isinstance(info.value.__cause__, ConnectionRefusedError)

    run(main)


# ----------------------------------------------------- unix datagram sockets


def unix_dgram(path: Path | None = None) -> stdlib_socket.socket:
    raw = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_DGRAM)
    raw.setblocking(False)
    if path is not None:
        raw.bind(str(path))
    return raw


def test_unix_datagram_send_receive(sock_dir: Path) -> None:
    async def main() -> None:
        a = await net.create_unix_datagram_socket(unix_dgram(sock_dir / "a"), None)
        b = await net.create_unix_datagram_socket(unix_dgram(sock_dir / "b"), str(sock_dir / "a"))
        assert isinstance(a, net.UNIXDatagramSocket)
        assert isinstance(b, net.ConnectedUNIXDatagramSocket)
        async with a, b:
            assert a.extra(SocketAttribute.local_address) == str(sock_dir / "a")
            assert b.extra(SocketAttribute.remote_address) == str(sock_dir / "a")
            await b.send(b"blah")
            assert await a.receive() == (b"blah", str(sock_dir / "b"))
            await a.sendto(b"halb", str(sock_dir / "b"))
            assert await b.receive() == b"halb"
            await a.send((b"self", str(sock_dir / "a")))
            assert await a.receive() == (b"self", str(sock_dir / "a"))

    run(main)


def test_unix_datagram_connect_failure_and_cancel_close_the_raw_socket(sock_dir: Path) -> None:
    async def main() -> None:
        raw = unix_dgram()
        with pytest.raises(FileNotFoundError):
            await net.create_unix_datagram_socket(raw, str(sock_dir / "missing"))
        assert raw.fileno() == -1
        for remote in (None, str(sock_dir / "missing")):
            raw = unix_dgram()
            with CancelScope() as scope:
                scope.cancel()
                await net.create_unix_datagram_socket(raw, remote)
            assert scope.cancelled_caught
            assert raw.fileno() == -1

    run(main)


def test_unix_datagram_busy_closed(sock_dir: Path) -> None:
    async def main() -> None:
        a = await net.create_unix_datagram_socket(unix_dgram(sock_dir / "a"), None)
        b = await net.wrap_connected_unix_datagram_socket(
            _connected_unix_dgram(sock_dir / "b", sock_dir / "a")
        )
        async with TaskGroup() as tg:

            async def receiver(sock: Any) -> None:
                with pytest.raises(ClosedResourceError):
                    await sock.receive()

            tg.spawn(receiver, a)
            tg.spawn(receiver, b)
            await wait_blocked()
            with pytest.raises(BusyResourceError, match="already reading from"):
                await a.receive()
            with pytest.raises(BusyResourceError, match="already reading from"):
                await b.receive()
            await a.aclose()
            await b.aclose()
        with pytest.raises(ClosedResourceError):
            await a.sendto(b"x", str(sock_dir / "a"))
        with pytest.raises(ClosedResourceError):
            await b.send(b"x")
        assert_no_waiters()

    run(main)


def _connected_unix_dgram(local: Path, remote: Path) -> stdlib_socket.socket:
    raw = unix_dgram(local)
    raw.connect(str(remote))
    return raw


def test_datagram_send_waits_for_room_and_close_wakes_it(sock_dir: Path) -> None:
    # Unix datagram sockets push back when the peer's queue is full (UDP on
    # loopback never does); the UDP classes take the same path.
    async def main() -> None:
        peer = unix_dgram(sock_dir / "peer")
        raw = _connected_unix_dgram(sock_dir / "local", sock_dir / "peer")
        raw.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 1024)
        udp = await net.wrap_connected_udp_socket(raw)
        with peer:
            sent = 0
            with yl.move_on_after(0.2) as scope:
                while True:
                    await udp.send(b"\0" * 64)
                    sent += 1
            assert scope.cancelled_caught and sent >= 2
            # It waits while the queue is full, and goes on when there is room.
            async with TaskGroup() as tg:
                task = tg.spawn(udp.send, b"last")
                await wait_blocked()
                assert not task.done()
                received = []
                while not received or received[-1] != b"last":
                    try:
                        received.append(peer.recv(100))
                    except BlockingIOError:
                        await net.wait_readable(peer)
            assert len(received) == sent + 1
            # Closing it while it waits: ClosedResourceError.
            with yl.move_on_after(0.2) as scope:
                while True:
                    await udp.send(b"\0" * 64)
            assert scope.cancelled_caught
            async with TaskGroup() as tg:

                async def sender() -> None:
                    with pytest.raises(ClosedResourceError):
                        await udp.send(b"never")

                tg.spawn(sender)
                await wait_blocked()
                await udp.aclose()
            assert raw.fileno() == -1

    run(main)


def test_wrap_functions_return_the_right_classes(sock_dir: Path) -> None:
    async def main() -> None:
        udp_raw = stdlib_socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM)
        udp_raw.bind(("127.0.0.1", 0))
        udp = await net.wrap_udp_socket(udp_raw)
        left, right = stdlib_socket.socketpair()
        stream = await net.wrap_stream_socket(left)
        unix_stream = await net.wrap_unix_stream_socket(right)
        dgram = await net.wrap_unix_datagram_socket(unix_dgram(sock_dir / "d"))
        async with udp, stream, unix_stream, dgram:
            assert type(udp) is net.UDPSocket
            assert type(stream) is net.SocketStream
            assert type(unix_stream) is net.UNIXSocketStream
            assert type(dgram) is net.UNIXDatagramSocket
            assert isinstance(udp, anyio.abc.UDPSocket)
            assert isinstance(stream, anyio.abc.SocketStream)
            assert isinstance(unix_stream, anyio.abc.UNIXSocketStream)
            assert isinstance(dgram, anyio.abc.UNIXDatagramSocket)
            await stream.send(b"x")
            assert await unix_stream.receive() == b"x"

    run(main)


# ------------------------------------------------ waiting for fds, names


def test_wait_readable_writable_busy_and_notify_closing() -> None:
    async def main() -> None:
        a, b = stdlib_socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.setblocking(False)
            await net.wait_writable(a)
            await net.wait_writable(a.fileno())
            try:
                while True:
                    a.send(b"\0" * 65536)
            except BlockingIOError:
                pass
            async with TaskGroup() as tg:

                async def reader() -> None:
                    with pytest.raises(ClosedResourceError):
                        await net.wait_readable(a)

                async def writer() -> None:
                    with pytest.raises(ClosedResourceError):
                        await net.wait_writable(a.fileno())

                tg.spawn(reader)
                tg.spawn(writer)
                await wait_blocked()
                with pytest.raises(BusyResourceError, match="already reading from"):
                    await net.wait_readable(a.fileno())
                with pytest.raises(BusyResourceError, match="already writing to"):
                    await net.wait_writable(a)
                net.notify_closing(a)
            assert_no_waiters()
            b.send(b"x")
            await net.wait_readable(a)
            assert a.recv(10) == b"x"
            with yl.move_on_after(0.02) as scope:
                await net.wait_readable(a)
            assert scope.cancelled_caught
            assert_no_waiters()
        net.notify_closing(123456)  # nobody waits: nothing happens

    run(main)


def test_getaddrinfo_and_getnameinfo() -> None:
    async def main() -> None:
        infos = await net.getaddrinfo("127.0.0.1", 80, type=stdlib_socket.SOCK_STREAM)
        assert infos[0][0] is stdlib_socket.AF_INET
        assert infos[0][1] is stdlib_socket.SOCK_STREAM
        assert infos[0][4] == ("127.0.0.1", 80)
        infos = await net.getaddrinfo("localhost", "80", family=stdlib_socket.AF_INET)
        assert ("127.0.0.1", 80) in [info[4] for info in infos]
        with pytest.raises(stdlib_socket.gaierror):
            await net.getaddrinfo("no-such-host.invalid", 80)
        expected = stdlib_socket.getnameinfo(("127.0.0.1", 6666), 0)
        assert await net.getnameinfo(("127.0.0.1", 6666)) == expected
        with CancelScope() as scope:
            scope.cancel()
            await net.getnameinfo(("127.0.0.1", 6666))
        assert scope.cancelled_caught
        with CancelScope() as scope:
            scope.cancel()
            await net.getaddrinfo("127.0.0.1", 80)
        assert scope.cancelled_caught

    run(main)


def test_cancelled_is_yieldloops() -> None:
    # Cancellation comes out as yieldloop.Cancelled, never converted.
    async def main() -> None:
        stream, peer = await tcp_pair()
        with peer:
            async with stream:
                with CancelScope() as scope:
                    scope.cancel()
                    with pytest.raises(Cancelled):
                        await stream.receive()
                assert not scope.cancelled_caught

    run(main)
