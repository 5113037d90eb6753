"""SocketType and getaddrinfo: real sockets on the loopback interface."""

from __future__ import annotations

import errno
import os
import socket as stdlib_socket
import threading
import time

import pytest

import yieldloop as yl
from yieldloop import CancelScope, ClosedResourceError, TaskGroup
from yieldloop._io._connect import open_udp_socket
from yieldloop._io._socket import SocketType, from_stdlib_socket, getaddrinfo, socket
from yieldloop.lowlevel import current_kernel

pytestmark = pytest.mark.timeout(60)


def open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_fd_leak():
    before = open_fds()
    yield
    # getaddrinfo threads may still be finishing; they hold no fds when done.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith("yieldloop getaddrinfo")]:
            break
        time.sleep(0.01)
    leaked = open_fds() - before
    assert not leaked, f"leaked fds: {sorted(leaked)}"


def no_registration(*socks):
    """The kernel keeps no waiter or poller registration for these fds."""
    k = current_kernel()
    for fd in socks:
        assert fd not in k._readers
        assert fd not in k._writers
        assert fd not in k._fd_masks


def tcp_listener():
    sock = socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def connected_pair():
    listener = tcp_listener()
    client = socket()
    try:
        async with TaskGroup() as tg:
            tg.spawn(client.connect, listener.getsockname())
            server, _ = await listener.accept()
    finally:
        listener.close()
    return client, server


def test_echo_tcp():
    async def main():
        client, server = await connected_pair()
        async with client, server:
            await client.sendall(b"hello")
            data = b""
            while len(data) < 5:
                data += await server.recv(100)
            assert data == b"hello"
            await server.send(data.upper())
            buf = bytearray(10)
            n = await client.recv_into(buf)
            assert bytes(buf[:n]) == b"HELLO"[:n]
            assert client.getpeername() == server.getsockname()
            client.shutdown(stdlib_socket.SHUT_WR)
            rest = await server.recv(100)
            assert rest == b""

    yl.run(main)


def test_socket_repr_and_plain_methods():
    async def main():
        sock = socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
        assert "fd=" in repr(sock)
        assert sock.family == stdlib_socket.AF_INET
        assert sock.type == stdlib_socket.SOCK_STREAM
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        assert sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR)
        fd = sock.fileno()
        assert fd >= 0
        sock.close()
        sock.close()  # twice is fine
        assert sock.closed and "closed" in repr(sock)
        with pytest.raises(ClosedResourceError):
            await sock.recv(1)
        with pytest.raises(ClosedResourceError):
            sock.getsockname()

    yl.run(main)


def test_from_stdlib_socket_sets_nonblocking():
    async def main():
        raw = stdlib_socket.socket()
        sock = from_stdlib_socket(raw)
        assert raw.getblocking() is False
        assert isinstance(sock, SocketType)
        assert sock.stdlib_socket is raw
        sock.close()
        with pytest.raises(TypeError):
            from_stdlib_socket("not a socket")

    yl.run(main)


def test_connect_refused():
    async def main():
        # A port with nobody listening: bind it, never listen, close it.
        probe = stdlib_socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        sock = socket()
        with pytest.raises(ConnectionRefusedError):
            await sock.connect(("127.0.0.1", port))
        assert sock.closed  # a failed connect closes the socket

    yl.run(main)


def test_connect_resolves_host_names():
    async def main():
        listener = tcp_listener()
        port = listener.getsockname()[1]
        client = socket()
        async with listener, client:
            await client.connect(("localhost", port))
            server, _ = await listener.accept()
            server.close()

    yl.run(main)


def test_udp_sendto_recvfrom():
    async def main():
        a = open_udp_socket("127.0.0.1")
        b = open_udp_socket("127.0.0.1", family=stdlib_socket.AF_INET)
        async with a, b:
            await a.sendto(b"ping", b.getsockname())
            data, addr = await b.recvfrom(100)
            assert data == b"ping"
            assert addr == a.getsockname()
            await b.sendto(b"pong", addr)
            assert (await a.recvfrom(100)) == (b"pong", b.getsockname())

    yl.run(main)


def test_udp_wildcard_bind():
    async def main():
        with open_udp_socket() as sock:
            assert sock.getsockname()[0] == "0.0.0.0"
            assert sock.getsockname()[1] != 0

    yl.run(main)


def test_generator_coroutine_style():
    # A plain generator drives the socket with ``yield from``, no async/await.
    def server(listener, result):
        conn, _ = yield from listener.accept()
        try:
            data = b""
            while not data.endswith(b"\n"):
                chunk = yield from conn.recv(100)
                if not chunk:
                    break
                data += chunk
            yield from conn.sendall(data[::-1])
            result.append(data)
        finally:
            conn.close()

    def client(addr, result):
        sock = socket()
        try:
            yield from sock.connect(addr)
            yield from sock.sendall(b"abc\n")
            reply = yield from sock.recv(100)
            result.append(reply)
        finally:
            sock.close()

    def main():
        listener = tcp_listener()
        got = []
        try:
            t1 = yield ("spawn", server, listener, got)
            t2 = yield ("spawn", client, listener.getsockname(), got)
            yield from t1
            yield from t2
        finally:
            listener.close()
        return got

    assert yl.run(main) == [b"abc\n", b"\ncba"]


def test_close_wakes_waiting_reader_with_closed_resource_error():
    async def main():
        client, server = await connected_pair()
        errors = []

        async def reader():
            try:
                await server.recv(10)
            except ClosedResourceError as exc:
                errors.append(exc)

        async with TaskGroup() as tg:
            tg.spawn(reader)
            await yl.sleep(0.05)
            fd = server.fileno()
            server.close()
        assert len(errors) == 1
        no_registration(fd)
        client.close()

    yl.run(main)


def test_close_wakes_waiting_writer_and_acceptor():
    async def main():
        client, server = await connected_pair()
        listener = tcp_listener()
        errors = []

        async def writer():
            try:
                while True:  # fill the buffers until send has to wait
                    await client.send(b"x" * 65536)
            except ClosedResourceError as exc:
                errors.append(exc)

        async def acceptor():
            try:
                await listener.accept()
            except ClosedResourceError as exc:
                errors.append(exc)

        async with TaskGroup() as tg:
            tg.spawn(writer)
            tg.spawn(acceptor)
            await yl.sleep(0.2)
            fds = client.fileno(), listener.fileno()
            client.close()
            listener.close()
        assert len(errors) == 2
        no_registration(*fds)
        server.close()

    yl.run(main)


def test_two_readers_on_one_socket_is_an_error():
    async def main():
        client, server = await connected_pair()
        async with client, server:
            async with TaskGroup() as tg:
                tg.spawn(server.recv, 10)
                await yl.sleep(0.05)
                with pytest.raises(RuntimeError, match="already waiting"):
                    await server.recv(10)
                await client.send(b"x")

    yl.run(main)


@pytest.mark.parametrize("when", ["before", "while_waiting"])
def test_cancel_recv(when):
    async def main():
        client, server = await connected_pair()
        fd = server.fileno()
        with CancelScope() as scope:
            if when == "before":
                scope.cancel()
            else:
                async with TaskGroup() as tg:
                    tg.spawn(_cancel_later, scope)
            await server.recv(10)
            pytest.fail("recv was not cancelled")
        assert scope.cancelled_caught
        # The socket still works after a cancelled recv: no data was lost.
        await client.send(b"abc")
        assert await server.recv(10) == b"abc"
        client.close()
        server.close()
        no_registration(fd)

    yl.run(main)


async def _cancel_later(scope):
    await yl.sleep(0.05)
    scope.cancel()


def test_cancelled_recv_does_not_consume_ready_data():
    async def main():
        client, server = await connected_pair()
        async with client, server:
            await client.send(b"data")
            await yl.sleep(0.05)
            with CancelScope() as scope:
                scope.cancel()
                await server.recv(10)
            assert scope.cancelled_caught
            assert await server.recv(10) == b"data"

    yl.run(main)


@pytest.mark.parametrize("when", ["before", "while_waiting"])
def test_cancel_accept(when):
    async def main():
        listener = tcp_listener()
        fd = listener.fileno()
        with CancelScope() as scope:
            if when == "before":
                scope.cancel()
            async with TaskGroup() as tg:
                if when != "before":
                    tg.spawn(_cancel_later, scope)
                await listener.accept()
        assert scope.cancelled_caught
        listener.close()
        no_registration(fd)

    yl.run(main)


@pytest.mark.parametrize("when", ["before", "resolving", "waiting"])
def test_cancel_connect_at_every_point(when):
    # Every await point of connect: before it starts, while a host name is
    # being resolved in a thread, and while the connect is in progress (a
    # listener whose backlog is full drops the SYN, so connect hangs).
    async def main():
        listener = stdlib_socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        host, port = listener.getsockname()
        fillers = []
        try:
            if when == "waiting":
                with yl.move_on_after(0.3):
                    while True:
                        s = socket()
                        fillers.append(s)
                        await s.connect((host, port))
            sock = socket()
            fd = sock.fileno()
            with CancelScope() as scope:
                if when == "before":
                    scope.cancel()
                    await sock.connect((host, port))
                else:
                    async with TaskGroup() as tg:
                        if when == "resolving":
                            # Runs while connect waits for the lookup thread.
                            tg.spawn(_cancel_now, scope)
                            await sock.connect(("localhost", port))
                        else:
                            tg.spawn(_cancel_after, scope, 0.05)
                            await sock.connect((host, port))
            assert scope.cancelled_caught
            if when == "resolving" and not sock.closed:
                # The lookup thread won the race and the connect completed
                # at once; then the cancellation hit the task group instead.
                sock.getpeername()
                sock.close()
            assert sock.closed  # a cancelled connect closes its socket
            no_registration(fd)
        finally:
            for s in fillers:
                s.close()
            listener.close()

    yl.run(main)


async def _cancel_now(scope):
    scope.cancel()


async def _cancel_after(scope, delay):
    await yl.sleep(delay)
    scope.cancel()


def test_cancelled_connect_closes_the_socket():
    async def main():
        listener = stdlib_socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        addr = listener.getsockname()
        socks = []
        try:
            with yl.move_on_after(0.5) as scope:
                while True:  # until one connect has to wait: then it is cancelled
                    s = socket()
                    socks.append(s)
                    await s.connect(addr)
            assert scope.cancelled_caught
            assert socks[-1].closed
        finally:
            for s in socks:
                s.close()
            listener.close()

    yl.run(main)


def test_getaddrinfo_numeric_is_inline():
    async def main():
        before = threading.active_count()
        infos = await getaddrinfo("127.0.0.1", 80, type=stdlib_socket.SOCK_STREAM)
        assert infos[0][4] == ("127.0.0.1", 80)
        infos6 = await getaddrinfo("::1", "80", type=stdlib_socket.SOCK_STREAM)
        assert infos6[0][4][:2] == ("::1", 80)
        assert threading.active_count() == before

    yl.run(main)


def test_getaddrinfo_name_in_thread():
    async def main():
        infos = await getaddrinfo("localhost", 80, type=stdlib_socket.SOCK_STREAM)
        assert any(info[4][1] == 80 for info in infos)
        with pytest.raises(stdlib_socket.gaierror):
            await getaddrinfo("no-such-host.invalid", 80)

    yl.run(main)


def test_getaddrinfo_generator_style():
    def main():
        infos = yield from getaddrinfo("localhost", 80, type=stdlib_socket.SOCK_STREAM)
        return infos

    assert yl.run(main)


def test_getaddrinfo_cancelled_abandons_the_thread():
    async def main():
        with CancelScope() as scope:
            scope.cancel()
            await getaddrinfo("localhost", 80)
        assert scope.cancelled_caught
        # Cancelled while the thread runs: returns at once, result dropped.
        with CancelScope() as scope:
            async with TaskGroup() as tg:
                tg.spawn(_cancel_after, scope, 0)
                await getaddrinfo("localhost", 80)
        assert scope.cancelled_caught
        await yl.sleep(0.1)  # the thread's late result is ignored

    yl.run(main)


def test_socket_outside_a_task():
    sock = socket()
    sock.close()  # closing outside a run works
    with pytest.raises(RuntimeError):
        sock2 = socket()
        try:
            sock2.recv(1).send(None)
        finally:
            sock2.close()


def test_sendall_large_payload_and_broken_pipe():
    async def main():
        client, server = await connected_pair()
        payload = os.urandom(4 * 1024 * 1024)
        received = bytearray()

        async def reader():
            while len(received) < len(payload):
                chunk = await server.recv(1 << 20)
                assert chunk
                received.extend(chunk)

        async with TaskGroup() as tg:
            tg.spawn(reader)
            await client.sendall(payload)
        assert received == payload
        server.close()
        with pytest.raises(OSError) as info:
            for _ in range(100):
                await client.sendall(b"x" * 65536)
                await yl.sleep(0.01)
        assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
        client.close()

    yl.run(main)


def test_recv_and_sendall_with_flags():
    # A call with flags takes its own branch (without flags, one argument less).
    async def main():
        client, server = await connected_pair()
        async with client, server:
            peeked = []

            async def peeker():  # waits first: the recv with flags after the wait
                peeked.append(await server.recv(10, stdlib_socket.MSG_PEEK))

            async with TaskGroup() as tg:
                tg.spawn(peeker)
                await yl.sleep(0.05)
                await client.sendall(b"abc", stdlib_socket.MSG_DONTWAIT)
            assert peeked == [b"abc"]
            assert await server.recv(10, stdlib_socket.MSG_PEEK) == b"abc"  # at once
            assert await server.recv(10) == b"abc"
            big = os.urandom(8 * 1024 * 1024)  # waits for the reader, flags and all
            async with TaskGroup() as tg:
                tg.spawn(client.sendall, big, stdlib_socket.MSG_DONTWAIT)
                received = bytearray()
                while len(received) < len(big):
                    received += await server.recv(1 << 20)
            assert received == big

    yl.run(main)


def test_detach():
    async def main():
        sock = socket()
        fd = sock.detach()
        assert sock.closed
        os.close(fd)

    yl.run(main)



# ---- the poller registration a socket keeps between waits


def test_a_socket_keeps_its_registration_and_drops_it_on_close():
    async def main():
        a, b = stdlib_socket.socketpair()
        sa, sb = from_stdlib_socket(a), from_stdlib_socket(b)
        kernel = current_kernel()

        async def echo_once():
            await sb.sendall(await sb.recv(10))

        async with TaskGroup() as tg:
            tg.spawn(echo_once)
            await yl.sleep(0.01)  # sb waits for data: registered now
            key = sb._armed
            assert key != 0 and kernel._fd_masks[sb.fileno()] == key % 8
            await sa.sendall(b"ping")
            assert await sa.recv(10) == b"ping"
        fd = sb.fileno()
        sb.close()
        assert sb._armed == 0 and fd not in kernel._fd_masks
        sa.close()

    yl.run(main)


def test_a_socket_used_in_two_runs_is_registered_again():
    a, b = stdlib_socket.socketpair()
    sa, sb = from_stdlib_socket(a), from_stdlib_socket(b)  # outside a run: not tracked
    keys = []

    async def exchange(data):
        got = []

        async def reader():
            got.append(await sb.recv(10))

        async with TaskGroup() as tg:
            tg.spawn(reader)
            await yl.sleep(0.01)  # waiting: registered in this run
            keys.append(sb._armed)
            await sa.sendall(data)
        return got

    try:
        assert yl.run(exchange, b"1") == [b"1"]
        assert yl.run(exchange, b"2") == [b"2"]  # a key from the first run does not count
    finally:
        sa.close()
        sb.close()
    assert keys[0] != keys[1] and 0 not in keys


def test_a_number_reused_by_a_new_socket_is_registered_for_it():
    # A socket dropped without close(): its number comes back for a new one,
    # which must not be taken for registered.
    async def main():
        for _ in range(3):
            a, b = stdlib_socket.socketpair()
            sa, sb = from_stdlib_socket(a), from_stdlib_socket(b)
            async with TaskGroup() as tg:
                tg.spawn(sb.recv, 10)
                await yl.sleep(0.01)
                await sa.sendall(b"x")
            sa._sock.close()  # behind the kernel's back
            sb._sock.close()
            del sa, sb

    yl.run(main)
