"""A TCP echo server: every byte a client sends comes straight back.

Run it, then talk to it with ``echo_client.py`` (or ``nc 127.0.0.1 7000``)::

    python examples/echo_server.py --port 7000
    python examples/echo_client.py --port 7000

``--port 0`` picks a free port. The first line the server prints is always
``listening on HOST:PORT``. Ctrl-C stops it: every connection is cancelled
and closed, then the program exits with status 0.

What it shows: ``open_tcp_listeners`` + ``serve_listeners`` (the two halves
of ``serve_tcp``) run ``echo`` in a task of its own for each connection and
close the stream when ``echo`` returns.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yieldloop


async def echo(stream: yieldloop.SocketStream) -> None:
    """Send back everything the client sends, until it stops sending."""
    try:
        while True:
            data = await stream.receive_some()
            if not data:  # b"": the client finished sending (or closed)
                return
            await stream.send_all(data)
    except yieldloop.BrokenResourceError:
        # The client went away abruptly (a reset). That is normal on the
        # internet, not an error of ours: just end this connection.
        return


def format_address(sockname: tuple[Any, ...]) -> str:
    """``host:port`` from a ``getsockname()`` result, with brackets around an
    IPv6 host."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def main(host: str, port: int) -> None:
    """Serve the echo protocol on ``host``:``port`` until cancelled."""
    # Listen first (an error such as "address in use" is raised right here),
    # so that we can print the address - with --port 0, the system picks the
    # port and this is how we learn it.
    listeners = await yieldloop.open_tcp_listeners(port, host=host)
    try:
        for listener in listeners:
            print(f"listening on {format_address(listener.socket.getsockname())}", flush=True)
        await yieldloop.serve_listeners(echo, listeners)  # runs until cancelled
    finally:
        for listener in listeners:  # serve_listeners closes them too; this
            listener.close()  # covers the case where it never started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="A TCP echo server on yieldloop.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=7000, help="port (7000; 0 picks a free one)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    return args


if __name__ == "__main__":
    options = parse_args()
    try:
        yieldloop.run(main, options.host, options.port)
    except KeyboardInterrupt:  # Ctrl-C: yieldloop already cancelled and closed everything
        pass
    except OSError as exc:  # e.g. the port is taken
        sys.exit(f"echo_server: {exc}")
