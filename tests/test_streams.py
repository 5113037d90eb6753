"""Streams: SocketStream, BufferedReceiveStream, open_tcp_stream (Happy
Eyeballs), open_unix_stream. Real sockets on loopback."""

from __future__ import annotations

import os
import socket as stdlib_socket
import threading
import time
import types

import pytest

import yieldloop as yl
from yieldloop import BrokenResourceError, CancelScope, ClosedResourceError, TaskGroup
from yieldloop._io._connect import connect_happy_eyeballs, open_tcp_stream, open_unix_stream
from yieldloop._io._socket import getaddrinfo, socket
from yieldloop._io._streams import (
    BufferedReceiveStream,
    BusyResourceError,
    DelimiterNotFound,
    IncompleteRead,
    SocketStream,
    Stream,
)
from yieldloop.lowlevel import current_kernel

pytestmark = pytest.mark.timeout(60)


def open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_fd_leak():
    before = open_fds()
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith("yieldloop getaddrinfo")]:
            break
        time.sleep(0.01)
    leaked = open_fds() - before
    assert not leaked, f"leaked fds: {sorted(leaked)}"


def tcp_listener(host="127.0.0.1", family=stdlib_socket.AF_INET):
    sock = socket(family)
    sock.bind((host, 0))
    sock.listen(16)
    return sock


def free_port(host="127.0.0.1", family=stdlib_socket.AF_INET):
    """A port nobody listens on (bound once, then released)."""
    probe = stdlib_socket.socket(family)
    probe.bind((host, 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


async def stream_pair():
    """(client SocketStream, server SocketStream) over TCP on loopback."""
    listener = tcp_listener()
    port = listener.getsockname()[1]
    try:
        async with TaskGroup() as tg:
            task = tg.spawn(open_tcp_stream, "127.0.0.1", port)
            sock, _ = await listener.accept()
    finally:
        listener.close()
    return task.result(), SocketStream(sock)


async def echo_server_once(listener):
    sock, _ = await listener.accept()
    async with SocketStream(sock) as stream:
        while True:
            data = await stream.receive_some()
            if not data:
                return
            await stream.send_all(data)


def test_echo_over_tcp():
    async def main():
        listener = tcp_listener()
        port = listener.getsockname()[1]
        async with listener, TaskGroup() as tg:
            tg.spawn(echo_server_once, listener)
            async with await open_tcp_stream("127.0.0.1", port) as stream:
                assert isinstance(stream, Stream)
                for msg in (b"one", b"two", b"three"):
                    await stream.send_all(msg)
                    got = b""
                    while len(got) < len(msg):
                        got += await stream.receive_some(100)
                    assert got == msg
                await stream.send_eof()
                assert await stream.receive_some() == b""

    yl.run(main)


def test_echo_over_tcp_with_host_name():
    async def main():
        listener = tcp_listener()
        port = listener.getsockname()[1]
        async with listener, TaskGroup() as tg:
            tg.spawn(echo_server_once, listener)
            async with await open_tcp_stream("localhost", port) as stream:
                await stream.send_all(b"hi")
                assert await BufferedReceiveStream(stream).receive_exactly(2) == b"hi"

    yl.run(main)


def test_echo_over_unix_socket(tmp_path):
    path = str(tmp_path / "sock")

    async def main():
        listener = socket(stdlib_socket.AF_UNIX)
        listener.bind(path)
        listener.listen(4)
        async with listener, TaskGroup() as tg:
            tg.spawn(echo_server_once, listener)
            async with await open_unix_stream(path) as stream:
                await stream.send_all(b"over unix\n")
                buffered = BufferedReceiveStream(stream)
                assert await buffered.receive_until(b"\n") == b"over unix"

    yl.run(main)


def test_open_unix_stream_missing_path(tmp_path):
    async def main():
        with pytest.raises(FileNotFoundError):
            await open_unix_stream(str(tmp_path / "nothing"))

    yl.run(main)


def test_large_payload_both_ways():
    size = 8 * 1024 * 1024
    payload = os.urandom(size)

    async def main():
        client, server = await stream_pair()
        async with client, server:
            got = {}

            async def receive(stream, key):
                got[key] = await BufferedReceiveStream(stream).receive_exactly(size)

            async with TaskGroup() as tg:
                tg.spawn(receive, server, "server")
                tg.spawn(receive, client, "client")
                tg.spawn(client.send_all, payload)
                tg.spawn(server.send_all, payload[::-1])
            assert got["server"] == payload
            assert got["client"] == payload[::-1]

    yl.run(main)


def test_peer_disconnects_mid_stream():
    # Receiving: the peer's close reads as b"" (not an error).
    # Sending: BrokenResourceError, with the OSError as its __cause__.
    async def main():
        client, server = await stream_pair()
        await client.send_all(b"partial")
        await client.aclose()
        data = b""
        while chunk := await server.receive_some():
            data += chunk
        assert data == b"partial"
        with pytest.raises(BrokenResourceError) as info:
            for _ in range(1000):
                await server.send_all(b"x" * 65536)
                await yl.sleep(0.001)
        assert isinstance(info.value.__cause__, OSError)
        await server.aclose()

    yl.run(main)


def test_receive_after_reset_is_broken_resource():
    async def main():
        client, server = await stream_pair()
        # SO_LINGER 0 makes close() send a RST.
        client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        await server.send_all(b"unread")  # unread data also forces a reset
        await yl.sleep(0.05)
        await client.aclose()
        await yl.sleep(0.05)
        with pytest.raises(BrokenResourceError) as info:
            await server.receive_some()
        assert isinstance(info.value.__cause__, ConnectionResetError)
        await server.aclose()

    yl.run(main)


def test_use_after_close_is_closed_resource_error():
    async def main():
        client, server = await stream_pair()
        await client.aclose()
        await client.aclose()  # twice is fine
        with pytest.raises(ClosedResourceError):
            await client.send_all(b"x")
        with pytest.raises(ClosedResourceError):
            await client.receive_some()
        with pytest.raises(ClosedResourceError):
            await client.send_eof()
        server.close()

    yl.run(main)


def test_close_while_receiving_wakes_receiver():
    async def main():
        client, server = await stream_pair()
        errors = []

        async def receiver():
            try:
                await server.receive_some()
            except ClosedResourceError as exc:
                errors.append(exc)

        async with TaskGroup() as tg:
            tg.spawn(receiver)
            await yl.sleep(0.05)
            fd = server.socket.fileno()
            await server.aclose()
        assert len(errors) == 1
        k = current_kernel()
        assert fd not in k._readers and fd not in k._fd_masks
        await client.aclose()

    yl.run(main)


def test_concurrent_send_all_is_an_error():
    async def main():
        client, server = await stream_pair()
        async with client, server:
            async with TaskGroup() as tg:
                # A big send that has to wait for the reader.
                tg.spawn(client.send_all, b"x" * (32 * 1024 * 1024))
                await yl.sleep(0.05)
                with pytest.raises(BusyResourceError, match="another task is already sending"):
                    await client.send_all(b"y")
                with pytest.raises(BusyResourceError, match="already sending"):
                    await client.send_eof()
                buffered = BufferedReceiveStream(server)
                await buffered.receive_exactly(32 * 1024 * 1024)

    yl.run(main)


def test_concurrent_receive_is_an_error():
    async def main():
        client, server = await stream_pair()
        async with client, server:
            async with TaskGroup() as tg:
                tg.spawn(server.receive_some)
                await yl.sleep(0.05)
                with pytest.raises(BusyResourceError, match="another task is already receiving"):
                    await server.receive_some()
                await client.send_all(b"z")

    yl.run(main)


def test_receive_some_checks_max_bytes():
    async def main():
        client, server = await stream_pair()
        async with client, server:
            with pytest.raises(ValueError):
                await server.receive_some(0)
            with pytest.raises(TypeError):
                await server.receive_some(1.5)
            await client.send_all(b"abcdef")
            await yl.sleep(0.05)
            assert await server.receive_some(2) == b"ab"

    yl.run(main)


def test_cancel_receive_some_and_send_all_leave_no_registration():
    async def main():
        client, server = await stream_pair()
        fds = client.socket.fileno(), server.socket.fileno()
        with yl.move_on_after(0.05) as scope:
            await server.receive_some()
        assert scope.cancelled_caught
        with yl.move_on_after(0.05) as scope:
            await client.send_all(b"x" * (64 * 1024 * 1024))
        assert scope.cancelled_caught
        await client.aclose()
        await server.aclose()
        k = current_kernel()
        for fd in fds:
            assert fd not in k._readers and fd not in k._writers and fd not in k._fd_masks

    yl.run(main)


def test_aclose_in_cancelled_scope_still_closes():
    async def main():
        client, server = await stream_pair()
        with CancelScope() as scope:
            scope.cancel()
            await client.aclose()
        assert scope.cancelled_caught
        assert client.socket.closed
        server.close()

    yl.run(main)


# -------------------------------------------------------- BufferedReceiveStream


def test_receive_until_and_exactly():
    async def main():
        client, server = await stream_pair()
        async with client, BufferedReceiveStream(server) as buffered:
            await client.send_all(b"line one\r\nline two\r\n12345rest")
            await client.send_eof()
            assert await buffered.receive_until(b"\r\n") == b"line one"
            assert await buffered.receive_until(b"\r\n", 8) == b"line two"
            assert await buffered.receive_exactly(5) == b"12345"
            assert await buffered.receive_exactly(0) == b""
            with pytest.raises(IncompleteRead) as info:
                await buffered.receive_until(b"\n")
            assert info.value.partial == b"rest"
            assert await buffered.receive_some() == b""
            with pytest.raises(IncompleteRead):
                await buffered.receive_exactly(1)

    yl.run(main)


def test_receive_until_delimiter_split_across_reads():
    async def main():
        client, server = await stream_pair()
        async with client, server:
            buffered = BufferedReceiveStream(server)

            async def sender():
                for piece in (b"abc\r", b"\ndef", b"\r", b"\n"):
                    await client.send_all(piece)
                    await yl.sleep(0.02)

            async with TaskGroup() as tg:
                tg.spawn(sender)
                assert await buffered.receive_until(b"\r\n") == b"abc"
                assert await buffered.receive_until(b"\r\n") == b"def"

    yl.run(main)


def test_receive_until_max_size():
    async def main():
        client, server = await stream_pair()
        async with client, server:
            buffered = BufferedReceiveStream(server)
            await client.send_all(b"x" * 100 + b"\n")
            with pytest.raises(DelimiterNotFound, match="first 10 bytes"):
                await buffered.receive_until(b"\n", 10)
            # The data stays buffered; a larger limit reads it.
            assert await buffered.receive_until(b"\n", 100) == b"x" * 100
            # The limit is reached before the delimiter ever arrives.
            await client.send_all(b"y" * 50)
            with pytest.raises(DelimiterNotFound):
                await buffered.receive_until(b"\n", 20)
            assert len(buffered.buffer) >= 21
            with pytest.raises(ValueError):
                await buffered.receive_until(b"", 10)

    yl.run(main)


def test_buffered_receive_some_and_send_through():
    async def main():
        client, server = await stream_pair()
        async with client:
            buffered = BufferedReceiveStream(server)
            await client.send_all(b"hello world\n")
            assert await buffered.receive_until(b" ") == b"hello"
            assert await buffered.receive_some(3) == b"wor"
            assert await buffered.receive_some() == b"ld\n"
            await buffered.send_all(b"back")
            assert await BufferedReceiveStream(client).receive_exactly(4) == b"back"
            await buffered.send_eof()
            assert await client.receive_some() == b""
            await buffered.aclose()
            assert server.socket.closed

    yl.run(main)


def test_buffered_generator_style():
    def main():
        client, server = yield from stream_pair().__await__()
        try:
            buffered = BufferedReceiveStream(server)
            yield from client.send_all(b"GET / HTTP/1.0\r\n\r\nbody")
            line = yield from buffered.receive_until(b"\r\n")
            blank = yield from buffered.receive_until(b"\r\n")
            body = yield from buffered.receive_exactly(4)
            return line, blank, body
        finally:
            client.close()
            server.close()

    assert yl.run(main) == (b"GET / HTTP/1.0", b"", b"body")


class ChunkStream(Stream):
    """An in-memory stream: each ``receive_some`` hands out the next of
    ``chunks`` (then ``b""``), so BufferedReceiveStream takes its path for
    streams other than SocketStream."""

    def __init__(self, *chunks):
        self.chunks = list(chunks)

    @types.coroutine
    def receive_some(self, max_bytes=None):
        yield ("checkpoint",)
        return self.chunks.pop(0) if self.chunks else b""


async def buffered_from_chunks(source, chunks, tg):
    """A BufferedReceiveStream that receives ``chunks`` one read at a time:
    from a SocketStream fed by a client task (``source == "socket"``), or
    from a ChunkStream. Returns (buffered, things to close)."""
    if source == "chunks":
        return BufferedReceiveStream(ChunkStream(*chunks)), []
    client, server = await stream_pair()

    async def sender():
        for chunk in chunks:
            await client.send_all(chunk)
            await yl.sleep(0.01)
        await client.send_eof()

    tg.spawn(sender)
    return BufferedReceiveStream(server), [client, server]


UNTIL_CASES = [
    # (chunks, delimiter, max_size, what receive_until returns, one call after another;
    #  an exception class stands for that error, the bytes then still buffered)
    ([b"a\r\n\r\nbb\r\n\r\nc"], b"\r\n\r\n", 100, [b"a", b"bb", (IncompleteRead, b"c")]),
    ([b"ab\r", b"\n\r", b"\ncd\r\n\r\n"], b"\r\n\r\n", 100, [b"ab", b"cd"]),
    ([b"\n", b"x\n"], b"\n", 100, [b"", b"x", (IncompleteRead, b"")]),
    # the delimiter right at max_size: still found
    ([b"12345\r\n"], b"\r\n", 5, [b"12345"]),
    ([b"12345\r", b"\n"], b"\r\n", 5, [b"12345"]),
    ([b"123", b"45", b"\r\n6"], b"\r\n", 5, [b"12345", (IncompleteRead, b"6")]),
    # one byte past it: DelimiterNotFound, everything stays buffered
    ([b"123456\r\n"], b"\r\n", 5, [(DelimiterNotFound, b"123456\r\n")]),
    ([b"123456", b"\r\n"], b"\r\n", 5, [(DelimiterNotFound, b"123456\r\n")]),
    ([b"1234", b"567"], b"\r\n", 5, [(DelimiterNotFound, b"1234567")]),
    ([b"1234567\r\n"], b"\r\n", 0, [(DelimiterNotFound, b"1234567\r\n")]),
]


@pytest.mark.parametrize("source", ["socket", "chunks"])
@pytest.mark.parametrize(("chunks", "delimiter", "max_size", "expected"), UNTIL_CASES)
def test_receive_until_cases(source, chunks, delimiter, max_size, expected):
    async def main():
        async with TaskGroup() as tg:
            buffered, resources = await buffered_from_chunks(source, chunks, tg)
            for want in expected:
                if isinstance(want, tuple):
                    error, left = want
                    with pytest.raises(error) as info:
                        await buffered.receive_until(delimiter, max_size)
                    if error is IncompleteRead:
                        assert info.value.partial == left
                        assert buffered.buffer == b""
                    else:
                        assert buffered.buffer == left
                else:
                    head = await buffered.receive_until(delimiter, max_size)
                    assert head == want
                    assert type(head) is bytes
        for resource in resources:
            await resource.aclose()

    yl.run(main)


def test_receive_until_with_the_delimiter_already_buffered_is_a_checkpoint():
    async def main():
        buffered = BufferedReceiveStream(ChunkStream(b"one\ntwo\n"))
        assert await buffered.receive_until(b"\n") == b"one"
        with CancelScope() as scope:
            scope.cancel()
            await buffered.receive_until(b"\n")
        assert scope.cancelled_caught
        assert buffered.buffer == b"two\n"  # nothing consumed
        assert await buffered.receive_until(b"\n") == b"two"

    yl.run(main)


def test_receive_until_other_argument_types():
    import enum

    class Size(enum.IntEnum):
        SMALL = 3

    async def main():
        buffered = BufferedReceiveStream(ChunkStream(b"ab;cd;", bytearray(b"ef;")))
        assert await buffered.receive_until(bytearray(b";")) == b"ab"
        assert await buffered.receive_until(b";", Size.SMALL) == b"cd"
        head = await buffered.receive_until(b";")  # a stream that returns a bytearray
        assert head == b"ef" and type(head) is bytes
        for delimiter, max_size in [(b"", 1), ("x", 1), (b"x", -1), (b"x", True), (b"x", 1.0)]:
            with pytest.raises(ValueError):
                await buffered.receive_until(delimiter, max_size)

    yl.run(main)


def test_receive_until_cancelled_before_and_while_waiting():
    async def main():
        client, server = await stream_pair()
        async with client, server:
            buffered = BufferedReceiveStream(server)
            # Cancelled before: the data already in the socket is not consumed.
            await client.send_all(b"first\n")
            await yl.sleep(0.02)
            with CancelScope() as scope:
                scope.cancel()
                await buffered.receive_until(b"\n")
            assert scope.cancelled_caught
            assert buffered.buffer == b""
            assert await buffered.receive_until(b"\n") == b"first"
            # Cancelled while waiting, with part of a line buffered: it stays.
            await client.send_all(b"sec")
            with yl.move_on_after(0.05) as scope:
                await buffered.receive_until(b"\n")
            assert scope.cancelled_caught
            assert buffered.buffer == b"sec"
            await client.send_all(b"ond\n")
            assert await buffered.receive_until(b"\n") == b"second"  # not busy any more

    yl.run(main)


def test_receive_until_concurrent_use_is_an_error():
    async def main():
        client, server = await stream_pair()
        async with client, server:
            buffered = BufferedReceiveStream(server)
            got = []

            async def reader():
                got.append(await buffered.receive_until(b"\n"))

            async with TaskGroup() as tg:
                tg.spawn(reader)
                await yl.sleep(0.05)
                with pytest.raises(BusyResourceError, match="another task is already receiving"):
                    await buffered.receive_until(b"\n")
                with pytest.raises(BusyResourceError, match="already receiving"):
                    await buffered.receive_exactly(1)
                with pytest.raises(BusyResourceError, match="already receiving"):
                    await server.receive_some()
                await client.send_all(b"line\n")
            assert got == [b"line"]

    yl.run(main)


def test_receive_until_closed_reset_and_after_close():
    async def main():
        client, server = await stream_pair()
        buffered = BufferedReceiveStream(server)
        errors = []

        async def receiver():
            try:
                await buffered.receive_until(b"\n")
            except ClosedResourceError as exc:
                errors.append(exc)

        async with TaskGroup() as tg:
            tg.spawn(receiver)
            await yl.sleep(0.05)
            fd = server.socket.fileno()
            await buffered.aclose()
        assert len(errors) == 1
        k = current_kernel()
        assert fd not in k._readers and fd not in k._fd_masks
        with pytest.raises(ClosedResourceError):
            await buffered.receive_until(b"\n")
        await client.aclose()

        # A reset while waiting: BrokenResourceError, the OSError its cause.
        client, server = await stream_pair()
        buffered = BufferedReceiveStream(server)
        client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        await server.send_all(b"unread")  # unread data also forces a reset
        async with TaskGroup() as tg:
            tg.spawn(_close_later, client)
            with pytest.raises(BrokenResourceError) as info:
                await buffered.receive_until(b"\n")
        assert isinstance(info.value.__cause__, ConnectionResetError)
        await buffered.aclose()

    yl.run(main)


async def _close_later(stream):
    await yl.sleep(0.05)
    await stream.aclose()


@pytest.mark.parametrize("source", ["socket", "chunks"])
def test_receive_exactly_whole_and_split_reads(source):
    async def main():
        chunks = [b"abcd", b"ef", b"gh", bytearray(b"ijkl")]
        async with TaskGroup() as tg:
            buffered, resources = await buffered_from_chunks(source, chunks, tg)
            for want in (b"abcd", b"efgh", b"ij"):
                data = await buffered.receive_exactly(len(want))
                assert data == want and type(data) is bytes
            with pytest.raises(IncompleteRead) as info:
                await buffered.receive_exactly(3)
            assert info.value.partial == b"kl"
        for resource in resources:
            await resource.aclose()

    yl.run(main)


def test_buffered_receive_some_from_the_stream():
    async def main():
        client, server = await stream_pair()
        async with client, server:
            buffered = BufferedReceiveStream(server)
            await client.send_all(b"abc")
            assert await buffered.receive_some(2) == b"ab"  # from the socket
            assert await buffered.receive_some() == b"c"
            await client.send_eof()
            assert await buffered.receive_some() == b""
            assert await buffered.receive_some() == b""  # at the end, stays there

    yl.run(main)


# ---------------------------------------------------------------- Happy Eyeballs


def test_open_tcp_stream_generator_style():
    def main(port):
        stream = yield from open_tcp_stream("127.0.0.1", port)
        stream.close()
        return True

    listener = stdlib_socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    try:
        assert yl.run(main, listener.getsockname()[1])
    finally:
        listener.close()


def test_happy_eyeballs_one_bad_address():
    # ::1 has no listener on this port; 127.0.0.1 has one. The bad address
    # comes first, so the good one is tried after it fails.
    async def main():
        listener = tcp_listener()
        port = listener.getsockname()[1]
        async with listener:
            bad = await getaddrinfo("::1", free_port("::1", stdlib_socket.AF_INET6),
                                    type=stdlib_socket.SOCK_STREAM)
            good = await getaddrinfo("127.0.0.1", port, type=stdlib_socket.SOCK_STREAM)
            for delay in (0.25, 0.0, 10.0):
                stream = await connect_happy_eyeballs(bad + good, delay, "test")
                async with stream:
                    assert stream.socket.getpeername() == ("127.0.0.1", port)
                    sock, _ = await listener.accept()
                    sock.close()

    yl.run(main)


def test_happy_eyeballs_slow_first_address_loses():
    # The first address never answers (a listener with a full backlog drops
    # the SYN); after the delay the second attempt starts and wins, and the
    # first one is cancelled and its socket closed.
    async def main():
        stuck = stdlib_socket.socket()
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(0)
        fillers = []
        try:
            stuck_addr = stuck.getsockname()
            with yl.move_on_after(0.5):
                while True:
                    s = socket()
                    fillers.append(s)
                    await s.connect(stuck_addr)
            good = tcp_listener()
            async with good:
                targets = await getaddrinfo(*stuck_addr, type=stdlib_socket.SOCK_STREAM)
                targets += await getaddrinfo(*good.getsockname(), type=stdlib_socket.SOCK_STREAM)
                t0 = yl.current_time()
                stream = await connect_happy_eyeballs(targets, 0.05, "test")
                async with stream:
                    assert stream.socket.getpeername() == good.getsockname()
                assert yl.current_time() - t0 < 5
        finally:
            for s in fillers:
                s.close()
            stuck.close()

    yl.run(main)


def test_open_tcp_stream_all_fail_lists_every_address():
    async def main():
        p4 = free_port()
        p6 = free_port("::1", stdlib_socket.AF_INET6)
        targets = await getaddrinfo("::1", p6, type=stdlib_socket.SOCK_STREAM)
        targets += await getaddrinfo("127.0.0.1", p4, type=stdlib_socket.SOCK_STREAM)
        with pytest.raises(OSError) as info:
            await connect_happy_eyeballs(targets, 0.25, "somewhere")
        msg = str(info.value)
        assert "all attempts to connect to somewhere failed" in msg
        assert f"[::1]:{p6}" in msg and f"127.0.0.1:{p4}" in msg
        assert isinstance(info.value.__cause__, ExceptionGroup)
        assert len(info.value.__cause__.exceptions) == 2
        with pytest.raises(OSError, match=f"all attempts to connect to 127.0.0.1:{p4}"):
            await open_tcp_stream("127.0.0.1", p4)

    yl.run(main)


def test_open_tcp_stream_cancelled_leaves_nothing_behind():
    async def main():
        stuck = stdlib_socket.socket()
        stuck.bind(("127.0.0.1", 0))
        stuck.listen(0)
        fillers = []
        try:
            addr = stuck.getsockname()
            with yl.move_on_after(0.5):
                while True:
                    s = socket()
                    fillers.append(s)
                    await s.connect(addr)
            with yl.move_on_after(0.1) as scope:
                await open_tcp_stream(*addr)
            assert scope.cancelled_caught
            k = current_kernel()
            assert not k._readers and not k._writers
        finally:
            for s in fillers:
                s.close()
            stuck.close()

    yl.run(main)


def test_open_tcp_stream_bad_arguments():
    async def main():
        with pytest.raises(TypeError):
            await open_tcp_stream(None, 80)
        with pytest.raises(TypeError):
            await open_tcp_stream("127.0.0.1", "80")
        with pytest.raises(ValueError):
            await open_tcp_stream("127.0.0.1", 80, happy_eyeballs_delay=-1)

    yl.run(main)


def test_interleave_alternates_families():
    from yieldloop._io._connect import _interleave

    six = [(stdlib_socket.AF_INET6, 1, 6, "", (f"::{i}", 80, 0, 0)) for i in range(3)]
    four = [(stdlib_socket.AF_INET, 1, 6, "", (f"10.0.0.{i}", 80)) for i in range(2)]
    order = [t[4][0] for t in _interleave(six + four)]
    assert order == ["::0", "10.0.0.0", "::1", "10.0.0.1", "::2"]
    assert _interleave([]) == []


def test_no_targets_and_awaiting_twice():
    async def main():
        with pytest.raises(OSError, match="no addresses"):
            await connect_happy_eyeballs([], 0.25, "nowhere")
        listener = tcp_listener()
        async with listener:
            aw = open_tcp_stream(*listener.getsockname())
            assert "open_tcp_stream" in repr(aw)
            stream = await aw
            await stream.aclose()
            with pytest.raises(RuntimeError, match="already awaited"):
                await aw
            sock, _ = await listener.accept()
            sock.close()

    yl.run(main)
