"""TCP servers: open_tcp_listeners, serve_listeners, serve_tcp; the grace period
that running handlers get when a server stops."""

from __future__ import annotations

import errno
import functools
import logging
import os
import resource
import signal
import socket as stdlib_socket
import threading
import time

import pytest
from _leaks import no_leaks

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


# ------------------------------------------------------------ grace period


async def start_stoppable(tg, fn, *args, **kwargs):
    """Start server ``fn`` in ``tg`` inside a scope of its own; return
    ``(scope, listeners)``: ``scope.cancel()`` stops that server alone."""
    scope = CancelScope()

    async def run(task_status=yl.TASK_STATUS_IGNORED):
        with scope:
            await fn(*args, task_status=task_status, **kwargs)

    return scope, await tg.start(run)


def test_grace_period_lets_a_slow_handler_finish_and_refuses_new_connections():
    log = []

    async def handler(stream):
        await stream.receive_some()
        log.append("handler started")
        await yl.sleep(0.3)  # never sees the server's cancellation
        await stream.send_all(b"finished")
        log.append("handler done")

    async def main():
        async with TaskGroup() as tg:
            scope, listeners = await start_stoppable(
                tg, serve_tcp, handler, 0, host="127.0.0.1", grace_period=30
            )
            port = port_of(listeners)
            async with await open_tcp_stream("127.0.0.1", port) as client:
                await client.send_all(b"go")
                while not log:
                    await yl.sleep(0.01)
                t0 = yl.current_time()
                scope.cancel()
                await yl.sleep(0)
                # Shutdown has started: the listener is closed at once.
                assert listeners[0].socket.closed
                with pytest.raises(OSError):
                    await open_tcp_stream("127.0.0.1", port)
                assert await BufferedReceiveStream(client).receive_exactly(8) == b"finished"
        elapsed = yl.current_time() - t0
        assert log == ["handler started", "handler done"]
        assert scope.cancelled_caught
        assert elapsed < 10  # the server ended with its last handler, not after 30 s

    with no_leaks(settle=0):
        yl.run(main)


def test_grace_period_cancels_a_handler_at_the_deadline():
    seen = []

    async def handler(stream):
        seen.append("started")
        try:
            await yl.sleep_forever()
        except yl.Cancelled:
            seen.append(yl.current_time())
            raise

    async def main():
        async with TaskGroup() as tg:
            scope, listeners = await start_stoppable(
                tg, serve_tcp, handler, 0, host="127.0.0.1", grace_period=0.3
            )
            async with await open_tcp_stream("127.0.0.1", port_of(listeners)) as client:
                while not seen:
                    await yl.sleep(0.01)
                t0 = yl.current_time()
                scope.cancel()
                assert await client.receive_some() == b""  # closed at the deadline
                t1 = yl.current_time()
        return t0, t1

    with no_leaks(settle=0):
        t0, t1 = yl.run(main)
    assert seen[0] == "started"
    cancelled_at = seen[1]
    assert 0.3 <= cancelled_at - t0 < 5
    assert 0.3 <= t1 - t0 < 5


@pytest.mark.parametrize("grace", [None, 0, 0.0])
def test_no_grace_period_cancels_handlers_at_once(grace):
    seen = []

    async def handler(stream):
        seen.append("started")
        try:
            await yl.sleep_forever()
        except yl.Cancelled:
            seen.append("cancelled")
            raise

    async def main():
        async with TaskGroup() as tg:
            scope, listeners = await start_stoppable(
                tg, serve_tcp, handler, 0, host="127.0.0.1", grace_period=grace
            )
            async with await open_tcp_stream("127.0.0.1", port_of(listeners)):
                while not seen:
                    await yl.sleep(0.01)
                scope.cancel()
                await yl.sleep(0)
                await yl.sleep(0)
                assert seen == ["started", "cancelled"]

    with no_leaks(settle=0):
        yl.run(main)


def test_grace_period_bad_values():
    async def main():
        for bad in (-1, float("nan"), float("inf"), -0.5):
            with pytest.raises(ValueError, match="grace_period"):
                await serve_tcp(echo_handler, 0, host="127.0.0.1", grace_period=bad)
        for bad in ("1", True, [1]):
            with pytest.raises(TypeError, match="grace_period"):
                await serve_tcp(echo_handler, 0, host="127.0.0.1", grace_period=bad)
        listeners = await open_tcp_listeners(0, host="127.0.0.1")
        with pytest.raises(ValueError, match="grace_period"):
            await serve_listeners(echo_handler, listeners, grace_period=-1)
        listeners[0].close()
        with pytest.raises(TypeError, match="handler"):
            await serve_tcp(None, 0, host="127.0.0.1")
        with pytest.raises(TypeError, match="SocketListener"):
            await serve_listeners(echo_handler, [object()])

    with no_leaks(settle=0):
        yl.run(main)


def test_a_second_outer_cancellation_during_the_grace_period_does_not_hang():
    # The server stops (inner scope), then the scope around everything is
    # cancelled too: the handlers keep their grace period, which is bounded,
    # and a handler that swallows Cancelled sees it again at once (level-triggered).
    seen = []

    async def handler(stream):
        try:
            await yl.sleep_forever()
        except yl.Cancelled:
            seen.append("cancelled once")
        try:
            await yl.sleep(600)  # still inside the cancelled scope
        except yl.Cancelled:
            seen.append("cancelled again")
            raise

    async def main():
        with CancelScope() as outer:
            async with TaskGroup() as tg:
                scope, listeners = await start_stoppable(
                    tg, serve_tcp, handler, 0, host="127.0.0.1", grace_period=0.3
                )
                client = await open_tcp_stream("127.0.0.1", port_of(listeners))
                try:
                    await yl.sleep(0.05)
                    t0 = yl.current_time()
                    scope.cancel()
                    await yl.sleep(0.05)
                    outer.cancel()
                    outer.cancel()
                    await yl.sleep_forever()
                finally:
                    client.close()
        return t0, yl.current_time()

    with no_leaks(settle=0):
        t0, t1 = yl.run(main)
    assert seen == ["cancelled once", "cancelled again"]
    assert 0.3 <= t1 - t0 < 5


def test_grace_period_with_serve_listeners_and_many_handlers():
    done = []

    async def handler(stream):
        n = int(await stream.receive_some())
        await yl.sleep(0.01 * n)
        await stream.send_all(b"%d" % n)
        done.append(n)

    async def client(port, n, got):
        async with await open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"%d" % n)
            got.append(int(await stream.receive_some()))

    async def main():
        listeners = await open_tcp_listeners(0, host="127.0.0.1")
        got = []
        async with TaskGroup() as tg:
            scope, _ = await start_stoppable(
                tg, serve_listeners, handler, listeners, grace_period=30
            )
            async with TaskGroup() as clients:
                for n in range(20):
                    clients.spawn(client, port_of(listeners), n, got)
                while len(done) < 1:
                    await yl.sleep(0.001)
                scope.cancel()  # 19 handlers are still sleeping
        assert sorted(got) == sorted(done) == list(range(20))

    with no_leaks(settle=0):
        yl.run(main)


def test_ctrl_c_gives_handlers_their_grace_period():
    log = []

    async def handler(stream):
        await stream.receive_some()
        log.append("started")
        await yl.sleep(0.2)
        await stream.send_all(b"done")
        log.append("finished")

    async def main():
        async with TaskGroup() as tg:
            listeners = await start_server(tg, handler, grace_period=30)
            client = await open_tcp_stream("127.0.0.1", port_of(listeners))
            try:
                await client.send_all(b"go")
                while not log:
                    await yl.sleep(0.01)
                signal.raise_signal(signal.SIGINT)
                try:
                    await yl.sleep(600)
                finally:
                    with CancelScope(shield=True):
                        assert await client.receive_some() == b"done"
            finally:
                client.close()

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with no_leaks(settle=0), pytest.raises(KeyboardInterrupt):
        yl.run(main)
    assert log == ["started", "finished"]
