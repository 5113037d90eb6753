"""TLS: TLSStream over real TCP sockets on loopback, with certificates made
by trustme; open_tcp_stream and serve_tcp with an ssl_context."""

from __future__ import annotations

import functools
import logging
import os
import ssl
import threading
import time

import pytest
import trustme

import yieldloop as yl
from yieldloop import BrokenResourceError, ClosedResourceError, TaskGroup
from yieldloop._io._connect import open_tcp_stream
from yieldloop._io._server import serve_tcp
from yieldloop._io._socket import socket
from yieldloop._io._streams import BusyResourceError, SocketStream, Stream
from yieldloop._io._tls import TLSStream

pytestmark = pytest.mark.timeout(60)

HOST = "tls.example.test"


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


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def make_server_ctx(ca, alpn=None, sni_seen=None):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST, "localhost", "127.0.0.1").configure_cert(ctx)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if sni_seen is not None:
        ctx.sni_callback = lambda sslobj, name, context: sni_seen.append(name)
    return ctx


async def tcp_pair():
    """(client SocketStream, server SocketStream) over TCP on loopback."""
    listener = socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    try:
        async with TaskGroup() as tg:
            task = tg.spawn(open_tcp_stream, "127.0.0.1", port)
            sock, _ = await listener.accept()
    finally:
        listener.close()
    return task.result(), SocketStream(sock)


async def tls_pair(client_ctx, server_ctx, *, hostname=HOST, handshake=True, **kwargs):
    """(client TLSStream, server TLSStream) over TCP on loopback."""
    c, s = await tcp_pair()
    client = TLSStream(c, client_ctx, server_hostname=hostname, **kwargs)
    server = TLSStream(s, server_ctx, server_side=True, **kwargs)
    if handshake:
        async with TaskGroup() as tg:
            tg.spawn(client.do_handshake)
            tg.spawn(server.do_handshake)
    return client, server


async def receive_exactly(stream, n):
    got = bytearray()
    while len(got) < n:
        data = await stream.receive_some()
        assert data, f"stream ended after {len(got)} of {n} bytes"
        got += data
    return bytes(got)


async def echo_handler(stream):
    while True:
        data = await stream.receive_some()
        if not data:
            return
        await stream.send_all(data)


async def start_server(tg, handler, ctx, **kwargs):
    listeners = await tg.start(
        functools.partial(serve_tcp, handler, 0, ssl_context=ctx, host="127.0.0.1", **kwargs)
    )
    return listeners[0].socket.getsockname()[1]


# ------------------------------------------------------------ round trips


def test_echo_round_trip_with_helpers(client_ctx, server_ctx):
    async def main():
        async with TaskGroup() as tg:
            port = await start_server(tg, echo_handler, server_ctx)
            stream = await open_tcp_stream("127.0.0.1", port, ssl_context=client_ctx)
            async with stream:
                assert isinstance(stream, Stream)
                assert stream.version() in ("TLSv1.2", "TLSv1.3")
                assert stream.cipher() is not None
                sans = stream.getpeercert()["subjectAltName"]
                assert ("DNS", HOST) in sans
                for msg in (b"one", b"two", b"three" * 1000):
                    await stream.send_all(msg)
                    assert await receive_exactly(stream, len(msg)) == msg
            tg.cancel_scope.cancel()

    yl.run(main)


def test_implicit_handshake_on_first_use(client_ctx, server_ctx):
    async def main():
        client, server = await tls_pair(client_ctx, server_ctx, handshake=False)
        async with client, server, TaskGroup() as tg:
            tg.spawn(client.send_all, b"hello")
            assert await receive_exactly(server, 5) == b"hello"
            await server.do_handshake()  # already done: a no-op
            assert client.version() == server.version()

    yl.run(main)


def test_large_payload_both_ways(client_ctx, server_ctx):
    payload = os.urandom(2 * 1024 * 1024)

    async def main():
        client, server = await tls_pair(client_ctx, server_ctx)
        async with client, server, TaskGroup() as tg:
            tg.spawn(echo_handler, server)
            tg.spawn(client.send_all, payload)
            assert await receive_exactly(client, len(payload)) == payload
            await client.aclose()

    yl.run(main)


def test_sni_seen_by_server(ca, client_ctx):
    seen = []

    async def main():
        ctx = make_server_ctx(ca, sni_seen=seen)
        client, server = await tls_pair(client_ctx, ctx)
        async with client, server:
            assert client.server_hostname == HOST
            assert server.server_hostname is None or server.server_hostname == HOST

    yl.run(main)
    assert seen == [HOST]


def test_sni_from_open_tcp_stream(ca, client_ctx):
    seen = []

    async def main():
        ctx = make_server_ctx(ca, sni_seen=seen)
        async with TaskGroup() as tg:
            port = await start_server(tg, echo_handler, ctx)
            async with await open_tcp_stream(
                "localhost", port, ssl_context=client_ctx
            ) as stream:
                assert stream.server_hostname == "localhost"
                await stream.send_all(b"x")
                assert await receive_exactly(stream, 1) == b"x"
            tg.cancel_scope.cancel()

    yl.run(main)
    assert seen == ["localhost"]


def test_alpn_negotiation(ca, client_ctx):
    async def main():
        server_ctx = make_server_ctx(ca, alpn=["h2", "http/1.1"])
        cctx = ssl.create_default_context()
        ca.configure_trust(cctx)
        cctx.set_alpn_protocols(["http/1.1"])
        client, server = await tls_pair(cctx, server_ctx)
        async with client, server:
            assert client.selected_alpn_protocol() == "http/1.1"
            assert server.selected_alpn_protocol() == "http/1.1"
        # Without ALPN on the client: none is selected.
        client, server = await tls_pair(client_ctx, server_ctx)
        async with client, server:
            assert client.selected_alpn_protocol() is None

    yl.run(main)


# ------------------------------------------------------------ verification


def test_unknown_ca_is_a_clear_error_and_server_goes_on(server_ctx, client_ctx, caplog):
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)

    async def main():
        async with TaskGroup() as tg:
            port = await start_server(tg, echo_handler, server_ctx)
            with pytest.raises(BrokenResourceError) as info:
                await open_tcp_stream("127.0.0.1", port, ssl_context=other)
            assert "certificate verify failed" in str(info.value)
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            # The server logged it and still serves.
            async with await open_tcp_stream(
                "127.0.0.1", port, ssl_context=client_ctx
            ) as stream:
                await stream.send_all(b"still here")
                assert await receive_exactly(stream, 10) == b"still here"
            tg.cancel_scope.cancel()

    with caplog.at_level(logging.WARNING, logger="yieldloop.server"):
        yl.run(main)
    assert any("TLS handshake with" in r.getMessage() for r in caplog.records)


def test_hostname_mismatch(client_ctx, server_ctx):
    async def main():
        client, server = await tls_pair(
            client_ctx, server_ctx, hostname="wrong.example.test", handshake=False
        )
        server_errors = []

        async def server_side():
            try:
                await server.do_handshake()
            except BrokenResourceError as exc:
                server_errors.append(exc)

        async with client, server, TaskGroup() as tg:
            tg.spawn(server_side)
            with pytest.raises(BrokenResourceError) as info:
                await client.do_handshake()
        assert "certificate verify failed" in str(info.value)
        assert "mismatch" in str(info.value).lower()
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        # The server learned it from the client's alert.
        assert len(server_errors) == 1
        assert isinstance(server_errors[0].__cause__, ssl.SSLError)

    yl.run(main)


# ------------------------------------------------------------ closing


def test_clean_close_gives_empty_bytes(client_ctx, server_ctx):
    async def main():
        client, server = await tls_pair(client_ctx, server_ctx)
        async with client:
            await server.send_all(b"bye")
            await server.aclose()
            assert await receive_exactly(client, 3) == b"bye"
            assert await client.receive_some() == b""
            assert await client.receive_some() == b""
        with pytest.raises(ClosedResourceError):
            await client.send_all(b"x")
        with pytest.raises(ClosedResourceError):
            await server.receive_some()
        await client.aclose()  # twice: nothing

    yl.run(main)


@pytest.mark.parametrize("https_compatible", [False, True])
def test_close_without_close_notify(client_ctx, server_ctx, https_compatible):
    async def main():
        client, server = await tls_pair(client_ctx, server_ctx, https_compatible=https_compatible)
        async with client:
            await server.send_all(b"data")
            await server.transport_stream.aclose()  # no close_notify
            assert await receive_exactly(client, 4) == b"data"
            if https_compatible:
                assert await client.receive_some() == b""
            else:
                with pytest.raises(BrokenResourceError) as info:
                    await client.receive_some()
                assert "close_notify" in str(info.value)
                assert isinstance(info.value.__cause__, ssl.SSLEOFError)
                with pytest.raises(BrokenResourceError):
                    await client.receive_some()

    yl.run(main)


def test_unwrap_then_plaintext(client_ctx, server_ctx):
    async def main():
        client, server = await tls_pair(client_ctx, server_ctx)
        await client.send_all(b"secret")
        assert await receive_exactly(server, 6) == b"secret"

        results = {}

        async def unwrap_server():
            transport, leftover = await server.unwrap()
            # Plain data right after close_notify.
            await transport.send_all(b"in the clear")
            results["server"] = (transport, leftover)

        async with TaskGroup() as tg:
            tg.spawn(unwrap_server)
            c_transport, c_leftover = await client.unwrap()
        s_transport, s_leftover = results["server"]
        assert s_leftover == b""
        assert isinstance(c_transport, SocketStream)
        got = c_leftover
        while len(got) < 12:
            got += await c_transport.receive_some()
        assert got == b"in the clear"
        await c_transport.send_all(b"reply")
        assert await receive_exactly(s_transport, 5) == b"reply"
        with pytest.raises(ClosedResourceError):
            await client.send_all(b"x")
        await client.aclose()  # the transport belongs to the caller now
        await c_transport.send_all(b"!")
        assert await receive_exactly(s_transport, 1) == b"!"
        await c_transport.aclose()
        await s_transport.aclose()

    yl.run(main)


# ------------------------------------------------------------ concurrency, cancellation


def test_concurrent_send_all_is_busy(client_ctx, server_ctx):
    async def main():
        client, server = await tls_pair(client_ctx, server_ctx)
        async with client, server, TaskGroup() as tg:
            # Nobody reads on the server side: this send blocks.
            tg.spawn(client.send_all, b"x" * (16 * 1024 * 1024))
            await yl.sleep(0.05)
            with pytest.raises(BusyResourceError):
                await client.send_all(b"y")
            tg.cancel_scope.cancel()
        # The cancelled send left the stream broken.
        with pytest.raises(ClosedResourceError):
            await client.send_all(b"z")

    yl.run(main)


def test_concurrent_receive_is_busy(client_ctx, server_ctx):
    async def main():
        client, server = await tls_pair(client_ctx, server_ctx)
        async with client, server, TaskGroup() as tg:
            tg.spawn(client.receive_some)
            await yl.sleep(0.01)
            with pytest.raises(BusyResourceError):
                await client.receive_some()
            tg.cancel_scope.cancel()

    yl.run(main)


def test_cancelled_send_breaks_the_stream(client_ctx, server_ctx):
    async def main():
        client, server = await tls_pair(client_ctx, server_ctx)
        async with client, server:
            with yl.move_on_after(0.05):
                await client.send_all(b"x" * (16 * 1024 * 1024))
            with pytest.raises(BrokenResourceError):
                await client.send_all(b"more")

    yl.run(main)


def test_cancel_during_handshake_leaks_no_fds(client_ctx):
    async def main():
        listener = socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        before = open_fds()
        with yl.move_on_after(0.2) as scope:
            # The listener accepts (in the kernel's backlog) but never answers.
            await open_tcp_stream("127.0.0.1", port, ssl_context=client_ctx)
        assert scope.cancelled_caught
        assert open_fds() == before
        listener.close()

    yl.run(main)


def test_cancel_server_during_handshake_leaks_no_fds(server_ctx):
    async def main():
        before = open_fds()
        async with TaskGroup() as tg:
            port = await start_server(tg, echo_handler, server_ctx)
            raw = await open_tcp_stream("127.0.0.1", port)  # sends no ClientHello
            await yl.sleep(0.05)
            tg.cancel_scope.cancel()
        await raw.aclose()
        assert open_fds() == before

    yl.run(main)


def test_bad_arguments(client_ctx):
    async def main():
        with pytest.raises(TypeError):
            TLSStream(object(), client_ctx)
        c, s = await tcp_pair()
        async with c, s:
            with pytest.raises(TypeError):
                TLSStream(c, object())
            tls = TLSStream(c, client_ctx, server_hostname=HOST)
            with pytest.raises(ValueError):
                await tls.receive_some(0)
            with pytest.raises(NotImplementedError):
                tls.send_eof()
            assert "client" in repr(tls)

    yl.run(main)
