"""What every server shares: the HTTP response and the request check.

Each server parses the request head the same way (:func:`respond`) and
sends the same bytes, so the runtimes differ only in how they move them.
"""

from __future__ import annotations

import sys

__all__ = [
    "BAD_REQUEST",
    "ECHO_RECEIVE_SIZE",
    "HTTP_BODY",
    "HTTP_RESPONSE",
    "MAX_HEAD",
    "announce",
    "respond",
]

#: The body of every answer.
HTTP_BODY = b"Hello, World!"

#: The whole answer to a good request: keep-alive, with Content-Length.
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(HTTP_BODY)).encode() + b"\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n" + HTTP_BODY
)

#: The answer to a request line that is not ``METHOD TARGET HTTP/1.x``;
#: the server closes the connection after it.
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

#: A request head longer than this (without its ``\r\n\r\n``) is refused.
MAX_HEAD = 16384

#: What the echo servers ask for per receive.
ECHO_RECEIVE_SIZE = 65536


def respond(head: bytes | bytearray) -> bytes | None:
    """The answer to one request head (without its ``\\r\\n\\r\\n``), or
    None if its request line is malformed (answer :data:`BAD_REQUEST` and
    close)."""
    end = head.find(b"\r\n")
    line = head if end < 0 else head[:end]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[2].startswith(b"HTTP/1."):
        return None
    return HTTP_RESPONSE


def announce(port: int) -> None:
    """Tell the parent the server is listening: one ``READY <port>`` line."""
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
