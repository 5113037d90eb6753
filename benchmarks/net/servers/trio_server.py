"""The trio server: ``trio.serve_tcp`` (``trio.serve_ssl_over_tcp`` for
TLS), a ``receive_some`` loop with its own buffer for HTTP heads (trio has
no buffered stream of its own)."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._common import BAD_REQUEST, ECHO_RECEIVE_SIZE, MAX_HEAD, respond

__all__ = ["serve"]


async def http(stream: trio.abc.Stream) -> None:
    """Answer HTTP/1.1 requests on one connection until the client closes it."""
    buf = bytearray()
    try:
        while True:
            index = buf.find(b"\r\n\r\n")
            while index < 0:
                if len(buf) > MAX_HEAD:
                    return
                data = await stream.receive_some(65536)
                if not data:
                    return
                start = max(0, len(buf) - 3)
                buf += data
                index = buf.find(b"\r\n\r\n", start)
            response = respond(buf[:index])
            del buf[: index + 4]
            if response is None:
                await stream.send_all(BAD_REQUEST)
                return
            await stream.send_all(response)
    except trio.BrokenResourceError:
        return


async def echo(stream: trio.abc.Stream) -> None:
    """Send back every byte received until the client closes the connection."""
    try:
        while True:
            data = await stream.receive_some(ECHO_RECEIVE_SIZE)
            if not data:
                return
            await stream.send_all(data)
    except trio.BrokenResourceError:
        return  # a reset, or (TLS) a close without close_notify


def serve(
    name: str,
    protocol: str,
    ssl_context: ssl.SSLContext | None,
    ready: Callable[[int], None],
) -> None:
    """Run the trio server for ``protocol`` on 127.0.0.1 (an ephemeral port,
    passed to ``ready``) until interrupted (KeyboardInterrupt)."""
    if name != "trio":
        raise ValueError(f"unknown trio server {name!r}")
    handler: Callable[[Any], Awaitable[None]]
    if protocol == "http":
        handler = http
    elif protocol == "echo":
        handler = echo
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected 'http' or 'echo'")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if ssl_context is None:
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
                )
                port = listeners[0].socket.getsockname()[1]
            else:
                listeners = await nursery.start(
                    functools.partial(
                        trio.serve_ssl_over_tcp, handler, 0, ssl_context, host="127.0.0.1"
                    )
                )
                port = listeners[0].transport_listener.socket.getsockname()[1]
            ready(port)

    trio.run(main)
