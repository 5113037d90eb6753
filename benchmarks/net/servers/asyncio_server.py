"""The asyncio servers, run on asyncio's default loop or on uvloop.

* ``*-streams`` - :func:`asyncio.start_server`: a coroutine per connection,
  ``StreamReader.readuntil`` for HTTP heads, ``read`` for echo, then
  ``writer.write`` + ``await writer.drain()``.
* ``*-protocol`` - ``loop.create_server`` with an :class:`asyncio.Protocol`:
  ``data_received`` parses and ``transport.write`` answers.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, cast

from ._common import BAD_REQUEST, ECHO_RECEIVE_SIZE, MAX_HEAD, respond

__all__ = ["serve"]


async def http_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer HTTP/1.1 requests on one connection until the client closes it."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            response = respond(head[:-4])
            if response is None:
                writer.write(BAD_REQUEST)
                await writer.drain()
                return
            writer.write(response)
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


async def echo_streams(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send back every byte received until the client closes the connection."""
    try:
        while True:
            data = await reader.read(ECHO_RECEIVE_SIZE)
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        return
    finally:
        writer.close()


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive with callbacks: buffer, split heads, answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports implement asyncio.Transport without subclassing it)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        buf = self.buffer
        buf += data
        while True:
            index = buf.find(b"\r\n\r\n")
            if index < 0:
                if len(buf) > MAX_HEAD:
                    transport.close()
                return
            response = respond(buf[:index])
            del buf[: index + 4]
            if response is None:
                transport.write(BAD_REQUEST)
                transport.close()
                return
            transport.write(response)


class EchoProtocol(asyncio.Protocol):
    """Echo with callbacks: write back what arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports implement asyncio.Transport without subclassing it)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


def serve(
    name: str,
    protocol: str,
    ssl_context: ssl.SSLContext | None,
    ready: Callable[[int], None],
) -> None:
    """Run the ``name`` server for ``protocol`` on 127.0.0.1 (an ephemeral
    port, passed to ``ready``) until interrupted (KeyboardInterrupt)."""
    loop_name, _, api = name.partition("-")
    if loop_name not in ("asyncio", "uvloop") or api not in ("streams", "protocol"):
        raise ValueError(f"unknown asyncio server {name!r}")
    if protocol not in ("http", "echo"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'http' or 'echo'")

    async def main() -> None:
        server: asyncio.Server
        if api == "streams":
            handler = http_streams if protocol == "http" else echo_streams
            server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
        else:
            factory: Callable[[], asyncio.Protocol] = (
                HttpProtocol if protocol == "http" else EchoProtocol
            )
            loop = asyncio.get_running_loop()
            server = await loop.create_server(factory, "127.0.0.1", 0, ssl=ssl_context)
        ready(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    runner: Callable[[Coroutine[Any, Any, None]], None]
    if loop_name == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    runner(main())
