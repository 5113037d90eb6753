"""TCP servers: open_tcp_listeners, serve_listeners, serve_tcp."""

from __future__ import annotations

import errno
import functools
import logging
import os
import resource
import socket as stdlib_socket
import threading
import time

import pytest

import yieldloop as yl
from yieldloop import CancelScope, ClosedResourceError, TaskGroup
from yieldloop._io._connect import open_tcp_stream
from yieldloop._io._server import SocketListener, open_tcp_listeners, serve_listeners, serve_tcp
from yieldloop._io._socket import socket
from yieldloop._io._streams import BufferedReceiveStream, SocketStream
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


async def echo_handler(stream):
    while data := await stream.receive_some():
        await stream.send_all(data)


def start_server(tg, handler, **kwargs):
    kwargs.setdefault("host", "127.0.0.1")
    return tg.start(functools.partial(serve_tcp, handler, 0, **kwargs))


def port_of(listeners):
    return listeners[0].socket.getsockname()[1]


async def roundtrip(port, msg):
    async with await open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(msg)
        return await BufferedReceiveStream(stream).receive_exactly(len(msg))


def test_serve_tcp_start_returns_listeners_on_an_ephemeral_port():
    async def main():
        async with TaskGroup() as tg:
            listeners = await start_server(tg, echo_handler)
            assert len(listeners) == 1
            assert isinstance(listeners[0], SocketListener)
            port = port_of(listeners)
            assert port != 0
            results = await yl.gather(*(roundtrip(port, b"msg %d" % i) for i in range(20)))
            assert results == [b"msg %d" % i for i in range(20)]
            tg.cancel_scope.cancel()
        assert listeners[0].socket.closed

    yl.run(main)


def test_handler_exception_is_logged_and_server_keeps_serving(caplog):
    async def handler(stream):
        data = await stream.receive_some()
        if data == b"boom":
            raise ValueError("handler failed on purpose")
        await stream.send_all(data)

    async def main():
        async with TaskGroup() as tg:
            port = port_of(await start_server(tg, handler))
            async with await open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(b"boom")
                # The server closes the connection after the handler failed.
                assert await stream.receive_some() == b""
            assert await roundtrip(port, b"still here") == b"still here"
            tg.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR, logger="yieldloop.server"):
        yl.run(main)
    records = [r for r in caplog.records if r.name == "yieldloop.server"]
    assert len(records) == 1
    assert "error in connection handler" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)
    assert "handler failed on purpose" in caplog.text
    assert "Traceback" in caplog.text


def test_server_cancellation_closes_every_connection():
    handler_streams = []
    cancelled = []

    async def handler(stream):
        handler_streams.append(stream)
        try:
            await yl.sleep_forever()
        except yl.Cancelled:
            cancelled.append(stream)
            raise

    async def main():
        clients = []
        async with TaskGroup() as tg:
            listeners = await start_server(tg, handler)
            port = port_of(listeners)
            for _ in range(5):
                clients.append(await open_tcp_stream("127.0.0.1", port))
            while len(handler_streams) < 5:
                await yl.sleep(0.01)
            tg.cancel_scope.cancel()
        assert len(cancelled) == 5
        assert all(s.socket.closed for s in handler_streams)
        assert listeners[0].socket.closed
        for client in clients:  # the peers see the connections end
            assert await client.receive_some() == b""
            await client.aclose()
        k = current_kernel()
        assert not k._readers and not k._writers
        # Nobody listens any more.
        with pytest.raises(OSError):
            await open_tcp_stream("127.0.0.1", port)

    yl.run(main)


def test_generator_handler():
    def handler(stream):
        buffered = BufferedReceiveStream(stream)
        line = yield from buffered.receive_until(b"\n")
        yield from stream.send_all(line.upper() + b"\n")

    async def main():
        async with TaskGroup() as tg:
            port = port_of(await start_server(tg, handler))
            async with await open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(b"shout\n")
                assert await BufferedReceiveStream(stream).receive_until(b"\n") == b"SHOUT"
            tg.cancel_scope.cancel()

    yl.run(main)


def test_open_tcp_listeners_all_interfaces():
    async def main():
        listeners = await open_tcp_listeners(0)
        try:
            families = {listener.socket.family for listener in listeners}
            assert stdlib_socket.AF_INET in families
            for listener in listeners:
                if listener.socket.family == stdlib_socket.AF_INET6:
                    assert listener.socket.getsockopt(
                        stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY
                    )
            v4 = next(lst for lst in listeners if lst.socket.family == stdlib_socket.AF_INET)
            port = v4.socket.getsockname()[1]
            async with TaskGroup() as tg:
                tg.spawn(roundtrip, port, b"x")
                stream = await v4.accept()
                async with stream:
                    await stream.send_all(await stream.receive_some())
        finally:
            for listener in listeners:
                await listener.aclose()

    yl.run(main)


def test_open_tcp_listeners_errors():
    async def main():
        listeners = await open_tcp_listeners(0, host="127.0.0.1", backlog=5)
        port = port_of(listeners)
        try:
            # Someone else listens there without SO_REUSEPORT.
            with pytest.raises(OSError, match="cannot listen") as info:
                await open_tcp_listeners(port, host="127.0.0.1")
            assert info.value.errno == errno.EADDRINUSE
        finally:
            listeners[0].close()
        with pytest.raises(TypeError):
            await open_tcp_listeners("80")

    yl.run(main)


def test_serve_listeners_with_own_listeners_and_generator_driver():
    def main():
        listeners = yield from open_tcp_listeners(0, host="127.0.0.1")
        port = port_of(listeners)
        with CancelScope() as scope:
            async def client():
                assert await roundtrip(port, b"gen") == b"gen"
                scope.cancel()

            async def body():
                async with TaskGroup() as tg:
                    got = await tg.start(serve_listeners, echo_handler, listeners)
                    assert got == listeners
                    tg.spawn(client)

            yield from yl.gather(body())
        return listeners[0].socket.closed

    assert yl.run(main) is True


def test_accept_on_closed_listener():
    async def main():
        listener = SocketListener(socket())
        listener.close()
        with pytest.raises(ClosedResourceError):
            await listener.accept()
        with socket(type=stdlib_socket.SOCK_DGRAM) as udp, pytest.raises(ValueError):
            SocketListener(udp)

    yl.run(main)


def test_out_of_fds_backs_off_and_recovers(caplog):
    # With the fd limit just above what is open, accept() fails with EMFILE:
    # the server logs once, waits, and serves again once fds are free.
    served = []

    async def handler(stream):
        served.append(1)
        await stream.send_all(b"ok")

    async def main():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        async with TaskGroup() as tg:
            port = port_of(await start_server(tg, handler))
            clients = []
            try:
                # Leave room for exactly one more fd: the connecting socket.
                highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
                resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 3, hard))
                try:
                    c = stdlib_socket.socket()
                    clients.append(c)
                    c.setblocking(False)
                    try:
                        c.connect(("127.0.0.1", port))
                    except BlockingIOError:
                        pass
                    # Now the process is out of fds: accept gets EMFILE.
                    filler = []
                    try:
                        while True:
                            filler.append(os.open("/dev/null", os.O_RDONLY))
                    except OSError:
                        pass
                    await yl.sleep(0.35)  # several back-off rounds, no spinning
                    for fd in filler:
                        os.close(fd)
                finally:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                while not served:
                    await yl.sleep(0.01)
            finally:
                for c in clients:
                    c.close()
            tg.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="yieldloop.server"):
        yl.run(main)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert "retrying" in errors[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_handler_stream_is_socket_stream():
    kinds = []

    async def handler(stream):
        kinds.append(type(stream))

    async def main():
        async with TaskGroup() as tg:
            port = port_of(await start_server(tg, handler))
            async with await open_tcp_stream("127.0.0.1", port) as stream:
                assert await stream.receive_some() == b""
            tg.cancel_scope.cancel()

    yl.run(main)
    assert kinds == [SocketStream]
