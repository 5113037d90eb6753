"""An HTTP/1.1 "hello, world" server with keep-alive.

Run it and try it::

    python examples/http_hello.py --port 8080
    curl -v http://127.0.0.1:8080/                  # one request
    curl -v http://127.0.0.1:8080/a http://127.0.0.1:8080/b   # two, one connection
    wrk -t2 -c100 -d10s http://127.0.0.1:8080/      # load it

Every request gets ``Hello, world!``. It is small, but it speaks HTTP/1.1
properly:

* one task per connection, requests served in order on it (keep-alive, and
  pipelined requests too); HTTP/1.0 clients get keep-alive only if they ask;
* the request head is read with ``BufferedReceiveStream.receive_until``; a
  head bigger than ``--max-header-size`` gets ``431``, a malformed one
  ``400`` (and an unknown HTTP version ``505``); after an error response the
  connection is closed, gracefully: we stop sending, then read what the
  client still sends, so that it gets the response rather than a reset;
* request bodies are read and thrown away, whether framed by
  ``Content-Length`` or ``Transfer-Encoding: chunked``; ``Expect:
  100-continue`` is answered;
* ``Connection: close`` is honoured;
* each request, from the moment we start waiting for it to the end of its
  response, must be done within ``--timeout`` seconds: a connection idle (or
  stuck) for that long is closed.

The responses are built in advance (and rebuilt once a second, for their
``Date`` header) and sent with one ``send_all`` each: the fast path of a
keep-alive ``GET`` is one ``receive_until``, a little parsing and one send.
The first line printed is ``listening on HOST:PORT`` (``--port 0`` picks a
free port); Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from email.utils import formatdate
from typing import Any

import yieldloop

#: The body of every successful response.
BODY = b"Hello, world!\n"

#: Seconds at most spent reading what a client still sends after an error
#: response (so that closing does not reset the connection under it).
LINGER = 2.0

# A header name, or a method: a "token" (RFC 9110, section 5.6.2).
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# Control characters other than tab, CR and LF: never allowed in a head.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HTTP_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


class HTTPError(Exception):
    """A request we refuse: answered with ``status`` and then the connection
    is closed."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class HelloResponses:
    """The four responses to a good request - keep-alive or not, ``HEAD`` or
    not - built once, and again when the second of the ``Date`` header
    changes."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._second = -1
        self._responses: list[bytes] = []

    def get(self, keep_alive: bool, head_only: bool) -> bytes:
        """The bytes to send for a request."""
        now = int(time.time())
        if now != self._second:
            self._build(now)
        return self._responses[2 * head_only + keep_alive]

    def _build(self, now: int) -> None:
        self._second = now
        self._responses = []
        for head_only in (False, True):
            for keep_alive in (False, True):
                head = (
                    "HTTP/1.1 200 OK\r\n"
                    f"Date: {formatdate(now, usegmt=True)}\r\n"
                    "Server: yieldloop-http-hello\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n"
                    f"Content-Length: {len(self.body)}\r\n"
                    f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
                    "\r\n"
                ).encode("ascii")
                self._responses.append(head if head_only else head + self.body)


def error_response(error: HTTPError) -> bytes:
    """A complete ``text/plain`` response for ``error``, closing the connection."""
    body = f"{error.status} {error.reason}: {error.detail}\n".encode()
    head = (
        f"HTTP/1.1 {error.status} {error.reason}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        "Server: yieldloop-http-hello\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def bad_request(detail: str) -> HTTPError:
    """A ``400 Bad Request``."""
    return HTTPError(400, "Bad Request", detail)


def parse_head(head: bytes) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    """Split a request head (without its final blank line) into its method,
    HTTP version and headers (names lower-cased; repeated headers joined
    with ``", "``). Raises :class:`HTTPError` if it is malformed."""
    head = head.lstrip(b"\r\n")  # blank lines before a request are allowed
    if _CONTROL.search(head):
        raise bad_request("control character in the request head")
    lines = head.split(b"\r\n")
    # A CR or LF anywhere but in a CRLF pair is not HTTP.
    if head.count(b"\n") != len(lines) - 1 or head.count(b"\r") != len(lines) - 1:
        raise bad_request("bare CR or LF in the request head")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise bad_request(f"malformed request line {lines[0][:100]!r}")
    method, _target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if _HTTP_VERSION.fullmatch(version):
            raise HTTPError(505, "HTTP Version Not Supported", f"{version.decode()} is not spoken")
        raise bad_request(f"malformed HTTP version {version[:20]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # also: no space before the colon
            raise bad_request(f"malformed header line {line[:100]!r}")
        name = name.lower()
        value = value.strip(b" \t")
        if name in headers:
            if name == b"host" or (name == b"content-length" and headers[name] != value):
                raise bad_request(f"conflicting {name.decode()} headers")
            if name != b"content-length":
                headers[name] += b", " + value
        else:
            headers[name] = value
    return method, version, headers


async def discard(conn: yieldloop.BufferedReceiveStream, size: int) -> None:
    """Read ``size`` bytes and throw them away (without holding them all)."""
    while size > 0:
        data = await conn.receive_some(min(size, 65536))
        if not data:
            raise yieldloop.IncompleteRead("the client closed the connection in a body")
        size -= len(data)


async def discard_chunked(conn: yieldloop.BufferedReceiveStream, max_line: int) -> None:
    """Read a ``Transfer-Encoding: chunked`` body (and its trailer) and
    throw it away."""
    try:
        while True:
            size_line = await conn.receive_until(b"\r\n", max_line)
            size_text = size_line.split(b";", 1)[0].strip(b" \t")  # extensions are ignored
            if not _HEX.fullmatch(size_text):
                raise bad_request(f"malformed chunk size {size_line[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                break
            await discard(conn, size)
            if await conn.receive_exactly(2) != b"\r\n":
                raise bad_request("a chunk is not followed by CRLF")
        while await conn.receive_until(b"\r\n", max_line):  # trailer fields, then a blank line
            pass
    except yieldloop.DelimiterNotFound:
        raise bad_request(f"a chunk line is longer than {max_line} bytes") from None


async def read_body(
    conn: yieldloop.BufferedReceiveStream,
    version: bytes,
    headers: dict[bytes, bytes],
    max_line: int,
) -> None:
    """Read the request body, if there is one, as the headers frame it."""
    transfer_encoding = headers.get(b"transfer-encoding")
    content_length = headers.get(b"content-length")
    length = 0
    if transfer_encoding is not None:
        if content_length is not None:
            raise bad_request("both Transfer-Encoding and Content-Length")
        if transfer_encoding.lower() != b"chunked":
            raise HTTPError(501, "Not Implemented", "only chunked transfer coding is supported")
    elif content_length is not None:
        if not content_length.isdigit() or len(content_length) > 18:
            raise bad_request(f"malformed Content-Length {content_length[:20]!r}")
        length = int(content_length)
    if transfer_encoding is None and length == 0:
        return  # no body
    if version == b"HTTP/1.1" and headers.get(b"expect", b"").lower() == b"100-continue":
        # The client waits for this before it sends a (large) body.
        await conn.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
    if transfer_encoding is not None:
        await discard_chunked(conn, max_line)
    else:
        await discard(conn, length)


class HelloServer:
    """Serves ``Hello, world!`` on each connection given to :meth:`handle`."""

    def __init__(self, timeout: float, max_header_size: int) -> None:
        self.timeout = timeout
        self.max_header_size = max_header_size
        self.responses = HelloResponses(BODY)

    async def handle(self, stream: yieldloop.SocketStream) -> None:
        """Serve requests on one connection until it is closed (by the client,
        a ``Connection: close``, an error or the timeout)."""
        conn = yieldloop.BufferedReceiveStream(stream)
        try:
            keep_alive = True
            # One cancel scope for the connection, its deadline moved forward
            # at each request (cheaper than a new move_on_after each time).
            # When a deadline passes, the scope cancels whatever the request
            # is waiting on and the loop ends: the connection is closed.
            with yieldloop.CancelScope() as scope:
                while keep_alive:
                    scope.deadline = yieldloop.current_time() + self.timeout
                    keep_alive = await self.serve_one(conn)
        except (yieldloop.IncompleteRead, yieldloop.BrokenResourceError):
            return  # the client went away; serve_tcp closes the stream

    async def serve_one(self, conn: yieldloop.BufferedReceiveStream) -> bool:
        """Read one request and answer it. Returns whether to keep the
        connection open for another."""
        try:
            head = await conn.receive_until(b"\r\n\r\n", self.max_header_size)
        except yieldloop.IncompleteRead as exc:
            if exc.partial.strip():
                raise  # closed in the middle of a request
            return False  # closed between requests: the normal end
        except yieldloop.DelimiterNotFound:
            await self.refuse(
                conn,
                HTTPError(
                    431,
                    "Request Header Fields Too Large",
                    f"the request head is larger than {self.max_header_size} bytes",
                ),
            )
            return False
        try:
            method, version, headers = parse_head(head)
            if version == b"HTTP/1.1":
                if b"host" not in headers:
                    raise bad_request("an HTTP/1.1 request needs a Host header")
                keep_alive = b"close" not in connection_options(headers)
            else:
                keep_alive = b"keep-alive" in connection_options(headers)
            await read_body(conn, version, headers, self.max_header_size)
        except HTTPError as error:
            await self.refuse(conn, error)
            return False
        await conn.send_all(self.responses.get(keep_alive, method == b"HEAD"))
        return keep_alive

    async def refuse(self, conn: yieldloop.BufferedReceiveStream, error: HTTPError) -> None:
        """Send an error response, then close gracefully: stop sending and
        read (for a moment at most) what the client still sends. Closing a
        socket with unread data resets the connection, and the client could
        lose the response."""
        await conn.send_all(error_response(error))
        await conn.send_eof()
        with yieldloop.move_on_after(LINGER):
            while await conn.receive_some():
                pass


def connection_options(headers: dict[bytes, bytes]) -> set[bytes]:
    """The options of the ``Connection`` header, lower-cased."""
    value = headers.get(b"connection")
    if not value:
        return set()
    return {option.strip() for option in value.lower().split(b",")}


def format_address(sockname: tuple[Any, ...]) -> str:
    """``host:port`` from a ``getsockname()`` result, with brackets around an
    IPv6 host."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def main(args: argparse.Namespace) -> None:
    """Listen, print the address, serve until cancelled."""
    server = HelloServer(args.timeout, args.max_header_size)
    listeners = await yieldloop.open_tcp_listeners(args.port, host=args.host)
    try:
        for listener in listeners:
            print(f"listening on {format_address(listener.socket.getsockname())}", flush=True)
        await yieldloop.serve_listeners(server.handle, listeners)
    finally:
        for listener in listeners:  # serve_listeners closes them too; this
            listener.close()  # covers the case where it never started


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description="An HTTP/1.1 hello-world server on yieldloop.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds a connection may wait for, read and answer one request (30)",
    )
    parser.add_argument(
        "--max-header-size",
        type=int,
        default=16384,
        help="largest request head accepted, in bytes; larger gets 431 (16384)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be more than 0, got {args.timeout}")
    if args.max_header_size < 64:
        parser.error(f"--max-header-size must be at least 64, got {args.max_header_size}")
    return args


if __name__ == "__main__":
    options = parse_args()
    try:
        yieldloop.run(main, options)
    except KeyboardInterrupt:  # Ctrl-C: yieldloop already cancelled and closed everything
        pass
    except OSError as exc:  # e.g. the port is taken
        sys.exit(f"http_hello: {exc}")
