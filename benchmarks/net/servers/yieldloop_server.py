"""The yieldloop servers: ``serve_tcp`` with a handler per connection.

* ``yieldloop`` - HTTP heads with :meth:`BufferedReceiveStream.receive_until`
  (what the documentation suggests for line-based protocols); echo with
  ``receive_some`` / ``send_all``.
* ``yieldloop-some`` - HTTP with a ``receive_some`` loop and a buffer of its
  own, as the trio server does: the difference between the two rows is
  the cost of :class:`~yieldloop.BufferedReceiveStream`.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Awaitable, Callable

import yieldloop

from ._common import BAD_REQUEST, ECHO_RECEIVE_SIZE, MAX_HEAD, respond

__all__ = ["serve"]

AnyStream = yieldloop.SocketStream | yieldloop.TLSStream


async def http_buffered(stream: AnyStream) -> None:
    """Answer HTTP/1.1 requests on one connection until the client closes it."""
    buffered = yieldloop.BufferedReceiveStream(stream)
    try:
        while True:
            try:
                head = await buffered.receive_until(b"\r\n\r\n", MAX_HEAD)
            except (yieldloop.IncompleteRead, yieldloop.DelimiterNotFound):
                return  # the client closed (or sent no head within MAX_HEAD)
            response = respond(head)
            if response is None:
                await buffered.send_all(BAD_REQUEST)
                return
            await buffered.send_all(response)
    except yieldloop.BrokenResourceError:
        return  # the client reset the connection


async def http_some(stream: AnyStream) -> None:
    """The same, with ``receive_some`` and a buffer of its own."""
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
    except yieldloop.BrokenResourceError:
        return


async def echo(stream: AnyStream) -> None:
    """Send back every byte received until the client closes the connection."""
    try:
        while True:
            data = await stream.receive_some(ECHO_RECEIVE_SIZE)
            if not data:
                return
            await stream.send_all(data)
    except yieldloop.BrokenResourceError:
        return  # a reset, or (TLS) a close without close_notify


def serve(
    name: str,
    protocol: str,
    ssl_context: ssl.SSLContext | None,
    ready: Callable[[int], None],
) -> None:
    """Run the ``name`` server for ``protocol`` on 127.0.0.1 (an ephemeral
    port, passed to ``ready``) until interrupted (KeyboardInterrupt)."""
    handler: Callable[[AnyStream], Awaitable[None]]
    if protocol == "echo":
        handler = echo
    elif protocol == "http":
        handler = http_some if name == "yieldloop-some" else http_buffered
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected 'http' or 'echo'")

    async def main() -> None:
        async with yieldloop.TaskGroup() as tg:
            listeners = await tg.start(
                functools.partial(
                    yieldloop.serve_tcp, handler, 0, host="127.0.0.1", ssl_context=ssl_context
                )
            )
            ready(listeners[0].socket.getsockname()[1])

    yieldloop.run(main)
