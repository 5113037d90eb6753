"""A TLS echo server and client, in one file.

With your own certificate::

    python examples/tls_echo.py server --port 7443 --certfile cert.pem --keyfile key.pem
    printf 'hello\\n' | python examples/tls_echo.py client --port 7443 --cafile ca.pem

Or with a throwaway certificate for ``localhost``/``127.0.0.1``, made by
`trustme <https://pypi.org/project/trustme/>`_ (``pip install trustme``)::

    python examples/tls_echo.py server --port 7443 --self-signed --write-ca /tmp/ca.pem
    printf 'hello\\n' | python examples/tls_echo.py client --port 7443 --cafile /tmp/ca.pem
    python examples/tls_echo.py client --port 7443 --cafile /tmp/ca.pem --count 100 --size 65536

The server prints ``listening on HOST:PORT`` first (``--port 0`` picks a free
port), then a line per connection with its TLS version and cipher. The
client checks every echo; it exits with status 1 if one is wrong or the
certificate does not verify. Ctrl-C stops either of them.

What it shows: ``serve_tcp(..., ssl_context=...)`` runs the TLS handshake
before calling the handler, which gets a ``TLSStream`` - the same
``send_all``/``receive_some`` as a plain TCP stream. On the client side,
``open_tcp_stream(host, port, ssl_context=...)`` connects, runs the handshake
and checks the server's certificate against ``host``.
"""

from __future__ import annotations

import argparse
import os
import random
import ssl
import sys
import tempfile
import time
from typing import Any

import yieldloop

#: Bytes read from stdin at a time.
STDIN_CHUNK = 65536


# ---------------------------------------------------------------- the server


async def echo(stream: yieldloop.TLSStream) -> None:
    """Send back everything the client sends, until it closes the TLS session."""
    peer = peer_of(stream)
    cipher = stream.cipher()
    print(f"{peer}: {stream.version()}, {cipher[0] if cipher else '?'}", flush=True)
    try:
        while True:
            data = await stream.receive_some()
            if not data:  # the client sent its close_notify: a clean end
                return
            await stream.send_all(data)
    except yieldloop.BrokenResourceError as exc:
        # The connection was reset, or closed without close_notify.
        print(f"{peer}: {exc}", flush=True)


def peer_of(stream: yieldloop.TLSStream) -> str:
    """The client's address, for the log lines."""
    transport = stream.transport_stream
    try:
        if isinstance(transport, yieldloop.SocketStream):
            return format_address(transport.socket.getpeername())
    except OSError:  # already disconnected
        pass
    return "(unknown client)"


def server_context(args: argparse.Namespace) -> ssl.SSLContext:
    """The server's TLS settings: its certificate and key, from files or,
    with ``--self-signed``, made up now (the CA is written to a file)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if args.certfile is not None:
        context.load_cert_chain(args.certfile, args.keyfile)
        return context
    try:
        import trustme
    except ImportError:
        sys.exit(
            "tls_echo: --self-signed needs the trustme package (pip install trustme); "
            "or give a certificate with --certfile/--keyfile"
        )
    ca = trustme.CA()
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    ca.cert_pem.write_to_path(args.write_ca)
    return context


async def serve(args: argparse.Namespace, context: ssl.SSLContext) -> None:
    """Listen, print the address, serve until cancelled."""
    listeners = await yieldloop.open_tcp_listeners(args.port, host=args.host)
    try:
        for listener in listeners:
            print(f"listening on {format_address(listener.socket.getsockname())}", flush=True)
        if args.self_signed:
            print(f"the CA certificate is in {args.write_ca}: pass it as --cafile", flush=True)
        await yieldloop.serve_listeners(echo, listeners, ssl_context=context)
    finally:
        for listener in listeners:  # serve_listeners closes them too; this
            listener.close()  # covers the case where it never started


def run_server(args: argparse.Namespace) -> None:
    """``tls_echo.py server``."""
    remove_ca = False
    if args.self_signed and args.write_ca is None:
        # A CA file of our own, removed when the server stops.
        fd, args.write_ca = tempfile.mkstemp(prefix="tls_echo_ca_", suffix=".pem")
        os.close(fd)
        remove_ca = True
    try:
        try:
            context = server_context(args)
        except (OSError, ssl.SSLError) as exc:
            sys.exit(f"tls_echo: cannot load the certificate: {exc}")
        yieldloop.run(serve, args, context)
    except OSError as exc:  # e.g. the port is taken
        sys.exit(f"tls_echo: {exc}")
    finally:
        if remove_ca:
            os.unlink(args.write_ca)


# ---------------------------------------------------------------- the client


class EchoError(Exception):
    """The echo did not match what was sent, or never came back."""


async def check_echoes(
    conn: yieldloop.BufferedReceiveStream,
    expected: yieldloop.ReceiveChannel[bytes],
    timeout: float,
    show: bool,
) -> int:
    """Receive and compare the echo of each message announced on
    ``expected``, printing it if ``show``. Returns the bytes checked."""
    checked = 0
    async with expected:
        async for message in expected:
            try:
                with yieldloop.fail_after(timeout):
                    echo = await conn.receive_exactly(len(message))
            except yieldloop.IncompleteRead:
                raise EchoError(f"the server closed the session after {checked} bytes") from None
            except TimeoutError:
                raise EchoError(f"no echo within {timeout} s (after {checked} bytes)") from None
            if echo != message:
                raise EchoError(f"wrong echo after {checked} correct bytes: {echo[:40]!r}...")
            checked += len(message)
            if show:
                sys.stdout.buffer.write(echo)
                sys.stdout.flush()
    return checked


async def send_messages(
    conn: yieldloop.Stream, expected: yieldloop.SendChannel[bytes], args: argparse.Namespace
) -> None:
    """Send stdin line by line, or ``--count`` random messages; announce
    each one on ``expected`` first."""
    async with expected:  # closing it tells the receiver "that was all"
        if args.count is not None:
            for _ in range(args.count):
                message = random.randbytes(args.size)
                await expected.send(message)
                await conn.send_all(message)
            return
        pending = b""
        while True:
            # Reading stdin blocks: a worker thread does it, and is left
            # behind (abandon_on_cancel) if we are cancelled by Ctrl-C.
            chunk = await yieldloop.to_thread(
                os.read, sys.stdin.fileno(), STDIN_CHUNK, abandon_on_cancel=True
            )
            pending += chunk
            while (end := pending.find(b"\n")) >= 0 or (not chunk and pending):
                cut = end + 1 if end >= 0 else len(pending)
                line, pending = pending[:cut], pending[cut:]
                await expected.send(line)
                await conn.send_all(line)
            if not chunk:
                return


async def client(args: argparse.Namespace) -> int:
    """Connect with TLS, send and check, report. Returns the exit status."""
    # Verify the server's certificate against --cafile (or the system's CAs).
    context = ssl.create_default_context(cafile=args.cafile)
    try:
        stream = await yieldloop.open_tcp_stream(args.host, args.port, ssl_context=context)
    except OSError as exc:
        print(f"tls_echo: cannot connect: {exc}", file=sys.stderr)
        return 1
    except yieldloop.BrokenResourceError as exc:  # the handshake failed
        print(f"tls_echo: TLS handshake failed: {exc.__cause__ or exc}", file=sys.stderr)
        return 1
    print(f"connected: {stream.version()}", file=sys.stderr)
    start = time.perf_counter()
    problem = None
    async with yieldloop.BufferedReceiveStream(stream) as conn:  # aclose: close_notify
        announce, expected = yieldloop.open_channel(16)
        try:
            async with yieldloop.TaskGroup() as tg:
                checker = tg.spawn(check_echoes, conn, expected, args.timeout, args.count is None)
                await send_messages(conn, announce, args)
        except* EchoError as group:
            problem = str(group.exceptions[0])
        except* yieldloop.BrokenResourceError as group:
            if problem is None:
                problem = f"the connection broke: {group.exceptions[0]}"
    if problem is not None:
        print(f"tls_echo: {problem}", file=sys.stderr)
        return 1
    if args.count is not None:
        elapsed = time.perf_counter() - start
        print(
            f"{args.count} messages of {args.size} bytes echoed correctly over TLS "
            f"({checker.result()} bytes in {elapsed:.3f} s)"
        )
    return 0


# ---------------------------------------------------------------- both


def format_address(sockname: tuple[Any, ...]) -> str:
    """``host:port`` from a ``getsockname()`` result, with brackets around an
    IPv6 host."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: ``server ...`` or ``client ...``."""
    parser = argparse.ArgumentParser(description="A TLS echo server and client on yieldloop.")
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("server", help="run the echo server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    server.add_argument("--port", type=int, default=7443, help="port (7443; 0 picks a free one)")
    server.add_argument("--certfile", help="the server's certificate chain (PEM)")
    server.add_argument("--keyfile", help="its private key (PEM), if not in --certfile")
    server.add_argument(
        "--self-signed",
        action="store_true",
        help="make a throwaway CA and certificate for localhost (needs trustme)",
    )
    server.add_argument(
        "--write-ca",
        metavar="PATH",
        help="with --self-signed: write the CA certificate here (default: a temporary file)",
    )

    client = commands.add_parser("client", help="send messages and check their echo")
    client.add_argument("--host", default="127.0.0.1", help="server name or address (127.0.0.1)")
    client.add_argument("--port", type=int, default=7443, help="server port (7443)")
    client.add_argument(
        "--cafile", help="CA certificate(s) to verify the server with (default: the system's)"
    )
    client.add_argument(
        "--count", type=int, help="send COUNT random messages instead of reading stdin"
    )
    client.add_argument("--size", type=int, default=1024, help="bytes per message (1024)")
    client.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each echo (30)"
    )

    args = parser.parse_args(argv)
    low = 0 if args.command == "server" else 1
    if not low <= args.port <= 65535:
        parser.error(f"--port must be between {low} and 65535, got {args.port}")
    if args.command == "server":
        if args.certfile is None and not args.self_signed:
            parser.error("the server needs --certfile (and --keyfile), or --self-signed")
        if args.certfile is not None and args.self_signed:
            parser.error("give either --certfile or --self-signed, not both")
        if args.keyfile is not None and args.certfile is None:
            parser.error("--keyfile needs --certfile")
        if args.write_ca is not None and not args.self_signed:
            parser.error("--write-ca goes with --self-signed")
    else:
        if args.count is not None and args.count < 1:
            parser.error(f"--count must be at least 1, got {args.count}")
        if args.size < 1:
            parser.error(f"--size must be at least 1, got {args.size}")
        if not args.timeout > 0:
            parser.error(f"--timeout must be more than 0, got {args.timeout}")
    return args


if __name__ == "__main__":
    options = parse_args()
    try:
        if options.command == "server":
            run_server(options)
        else:
            sys.exit(yieldloop.run(client, options))
    except KeyboardInterrupt:  # Ctrl-C: yieldloop already cancelled and closed everything
        pass
