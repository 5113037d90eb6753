"""Byte streams: the :class:`Stream` interface, :class:`SocketStream`,
:class:`BufferedReceiveStream` (connections are opened in ``_connect``).

Layer 4. A stream moves bytes in order, both ways: :meth:`Stream.send_all`,
:meth:`Stream.receive_some` (``b""`` at the end), :meth:`Stream.send_eof`,
:meth:`Stream.aclose`.

Errors a stream raises (the same for every kind of stream):

* :class:`~yieldloop.ClosedResourceError` - *this side* closed the stream
  (also when it is closed while another task is sending or receiving);
* :class:`~yieldloop.BrokenResourceError` - the connection broke: the peer
  went away while we were sending (``EPIPE``), or reset the connection. The
  operating system's error is its ``__cause__``. A peer that closed
  normally is not an error when receiving: ``receive_some`` returns ``b""``.
* :class:`BusyResourceError` - two tasks sent (or received) on one stream
  at the same time: the bytes would interleave.
"""

from __future__ import annotations

import errno
import socket as _stdlib_socket
import types
from collections.abc import Generator
from typing import Any

from .._kernel._errors import BrokenResourceError, ClosedResourceError
from .._kernel._kernel import RESCHEDULE as _RESCHEDULE
from .._kernel._requests import Awaitable
from .._kernel._state import local
from .._sync._common import AsyncResource
from ._socket import _STREAK, Buffer, SocketType

__all__ = [
    "BufferedReceiveStream",
    "BusyResourceError",
    "DelimiterNotFound",
    "IncompleteRead",
    "SocketStream",
    "Stream",
]

#: ``receive_some()`` without ``max_bytes`` reads up to this many bytes.
DEFAULT_RECEIVE_SIZE = 65536

_CHECKPOINT = ("checkpoint",)


class BusyResourceError(RuntimeError):
    """Two tasks used the same direction of a stream at once (e.g. both
    called ``send_all``): their bytes would interleave."""


class IncompleteRead(EOFError):
    """The stream ended before ``receive_exactly``/``receive_until`` had
    what it needed. ``partial`` holds the bytes that did arrive (they are
    consumed)."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class DelimiterNotFound(Exception):
    """``receive_until`` read ``max_size`` bytes without finding the
    delimiter. The bytes stay buffered."""


class Stream(AsyncResource):
    """A bidirectional byte stream (trio's ``HalfCloseableStream``).

    Subclasses implement :meth:`send_all`, :meth:`receive_some`,
    :meth:`send_eof` and :meth:`aclose`; each returns an awaitable that works
    with ``await`` and ``yield from``. ``async with stream:`` closes it.
    """

    __slots__ = ()

    def send_all(self, data: Buffer) -> Awaitable[None]:
        """Send every byte of ``data`` (awaitable)."""
        raise NotImplementedError

    def receive_some(self, max_bytes: int | None = None) -> Awaitable[bytes]:
        """Receive at least one and at most ``max_bytes`` bytes, or ``b""``
        once the peer has finished sending (awaitable)."""
        raise NotImplementedError

    def send_eof(self) -> Awaitable[None]:
        """Tell the peer that nothing more will be sent (awaitable)."""
        raise NotImplementedError

    def aclose(self) -> Awaitable[None]:
        """Close the stream (awaitable). Closing twice does nothing."""
        raise NotImplementedError


def _check_max_bytes(max_bytes: int | None) -> int:
    if max_bytes is None:
        return DEFAULT_RECEIVE_SIZE
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes must be an int or None, got {max_bytes!r}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    return max_bytes


def _check_until_args(delimiter: Any, max_size: Any) -> None:
    # receive_until's full argument check (bytearray delimiters, int subclasses).
    if not isinstance(delimiter, (bytes, bytearray)) or not delimiter:
        raise ValueError(f"delimiter must be non-empty bytes, got {delimiter!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        raise ValueError(f"max_size must be an int >= 0, got {max_size!r}")


def _not_found(delimiter: bytes, max_size: int) -> DelimiterNotFound:
    return DelimiterNotFound(f"no {delimiter!r} in the first {max_size} bytes of the stream")


class SocketStream(Stream):
    """A :class:`Stream` over a connected ``SOCK_STREAM`` :class:`SocketType`
    (TCP or a unix socket). Sets ``TCP_NODELAY`` on TCP sockets.

    ``send_all`` raises :class:`~yieldloop.BrokenResourceError` when the
    peer is gone; ``receive_some`` returns ``b""`` when the peer closed and
    raises ``BrokenResourceError`` when it reset the connection.
    """

    __slots__ = ("_receiving", "_sending", "socket")

    def __init__(self, sock: SocketType) -> None:
        if not isinstance(sock, SocketType):
            raise TypeError(f"SocketStream needs a yieldloop SocketType, got {sock!r}")
        if sock.type != _stdlib_socket.SOCK_STREAM:
            raise ValueError("SocketStream needs a SOCK_STREAM socket")
        #: The underlying :class:`SocketType`.
        self.socket = sock
        self._sending = False
        self._receiving = False
        if sock.family in (_stdlib_socket.AF_INET, _stdlib_socket.AF_INET6):
            try:
                sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not TCP after all
                pass

    def send_all(self, data: Buffer) -> Awaitable[None]:
        """Send every byte of ``data``. If it is cancelled midway, part of
        ``data`` may have been sent: the stream is then unusable for sending."""
        return self.socket._sendall(data, 0, self)

    def receive_some(self, max_bytes: int | None = None) -> Awaitable[bytes]:
        """Receive up to ``max_bytes`` (default 64 KiB) bytes; ``b""`` at the end."""
        if max_bytes is None:
            n = DEFAULT_RECEIVE_SIZE
        elif max_bytes.__class__ is int and max_bytes > 0:  # the common case, checked fast
            n = max_bytes
        else:
            n = _check_max_bytes(max_bytes)
        return self.socket._recv(n, 0, self)

    # What the socket's _recv/_sendall raise for this stream.

    def _busy(self, what: str) -> BusyResourceError:
        return BusyResourceError(f"another task is already {what} on this stream")

    def _broken(self, exc: OSError, what: str) -> Exception:
        if self.socket.closed:
            return ClosedResourceError("this stream was closed")
        if what == "sending" and isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            return BrokenResourceError(f"the connection broke while sending: {exc}")
        return BrokenResourceError(f"error {what} on the stream: {exc}")

    @types.coroutine
    def send_eof(self) -> Generator[Any, Any, None]:
        """Shut down the sending side (the peer reads ``b""``); receiving
        still works. A checkpoint."""
        if self._sending:
            raise BusyResourceError("another task is already sending on this stream")
        if self.socket.closed:
            raise ClosedResourceError("this stream was closed")
        yield _CHECKPOINT
        try:
            self.socket.shutdown(_stdlib_socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:  # already disconnected: nothing to do
                raise BrokenResourceError(f"error shutting down the stream: {exc}") from exc

    @types.coroutine
    def aclose(self) -> Generator[Any, Any, None]:
        """Close the socket (tasks using it get ``ClosedResourceError``).
        The socket is closed first, then this is a checkpoint: in a
        cancelled scope it is closed and then raises ``Cancelled``."""
        self.socket.close()
        yield _CHECKPOINT

    def close(self) -> None:
        """Close the socket at once (the synchronous form of :meth:`aclose`)."""
        self.socket.close()

    def setsockopt(self, level: int, optname: int, value: int | Buffer) -> None:
        """Set an option on the underlying socket."""
        self.socket.setsockopt(level, optname, value)

    def getsockopt(self, level: int, optname: int) -> int:
        """Read an option of the underlying socket."""
        return self.socket.getsockopt(level, optname)

    def __repr__(self) -> str:
        return f"<SocketStream {self.socket!r}>"


class BufferedReceiveStream(Stream):
    """Wraps a :class:`Stream` and keeps what was received beyond what was
    asked for, for :meth:`receive_exactly` and :meth:`receive_until`
    (line-based protocols). Sending and closing go to the wrapped stream.
    """

    __slots__ = ("_buffer", "_eof", "stream")

    def __init__(self, stream: Stream) -> None:
        if not isinstance(stream, Stream):
            raise TypeError(f"BufferedReceiveStream needs a Stream, got {stream!r}")
        #: The wrapped stream.
        self.stream = stream
        self._buffer = bytearray()
        self._eof = False

    @property
    def buffer(self) -> bytes:
        """The bytes received but not returned yet."""
        return bytes(self._buffer)

    def send_all(self, data: Buffer) -> Awaitable[None]:
        """Send on the wrapped stream."""
        stream = self.stream
        if stream.__class__ is SocketStream:  # its send_all() inline: one call less
            return stream.socket._sendall(data, 0, stream)
        return stream.send_all(data)

    def send_eof(self) -> Awaitable[None]:
        """``send_eof`` on the wrapped stream."""
        return self.stream.send_eof()

    def aclose(self) -> Awaitable[None]:
        """Close the wrapped stream (buffered bytes are dropped)."""
        self._buffer.clear()
        return self.stream.aclose()

    @types.coroutine
    def receive_some(self, max_bytes: int | None = None) -> Generator[Any, Any, bytes]:
        """Buffered bytes first (up to ``max_bytes``); else receive from the stream."""
        n = _check_max_bytes(max_bytes)
        buf = self._buffer
        if buf:
            yield _CHECKPOINT
            data = bytes(buf[:n])
            del buf[:n]
            return data
        if self._eof:
            yield _CHECKPOINT
            return b""
        stream = self.stream
        if stream.__class__ is SocketStream:  # its receive_some() inline: one layer less
            data = yield from stream.socket._recv(n, 0, stream)
        else:
            data = yield from stream.receive_some(n)
        if not data:
            self._eof = True
        return data

    @types.coroutine
    def receive_exactly(self, n: int) -> Generator[Any, Any, bytes]:
        """Receive exactly ``n`` bytes; :class:`IncompleteRead` if the
        stream ends first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        buf = self._buffer
        if len(buf) >= n:
            yield _CHECKPOINT
        while len(buf) < n:
            if self._eof:
                partial = bytes(buf)
                buf.clear()
                raise IncompleteRead(
                    f"the stream ended after {len(partial)} of the {n} bytes asked for",
                    partial,
                )
            stream = self.stream
            if stream.__class__ is SocketStream:  # its receive_some() inline: one layer less
                data = yield from stream.socket._recv(DEFAULT_RECEIVE_SIZE, 0, stream)
            else:
                data = yield from stream.receive_some()
            if not data:
                self._eof = True
            elif not buf and len(data) == n and data.__class__ is bytes:
                return data  # just what was asked for: no copy
            else:
                buf += data
        data = bytes(buf[:n])
        del buf[:n]
        return data

    @types.coroutine
    def receive_until(self, delimiter: bytes, max_size: int = 65536) -> Generator[Any, Any, bytes]:
        """Receive up to ``delimiter`` and return the bytes before it (the
        delimiter is consumed too).

        Raises :class:`DelimiterNotFound` if ``max_size`` bytes arrived
        without the delimiter (they stay buffered), and
        :class:`IncompleteRead` if the stream ended first.
        """
        if not (
            delimiter.__class__ is bytes
            and delimiter
            and max_size.__class__ is int
            and max_size >= 0
        ):  # the common case checked fast; the full check, and its errors, in there
            _check_until_args(delimiter, max_size)
        buf = self._buffer
        if buf:
            index = buf.find(delimiter)
            if index >= 0:
                if index > max_size:
                    raise _not_found(delimiter, max_size)
                yield _CHECKPOINT
                head = bytes(buf[:index])
                del buf[: index + len(delimiter)]
                return head
        # Receive until the delimiter arrives; for a SocketStream, its
        # receive_some() (SocketType._recv) is written out here. This is the
        # hot path of every line-based server, where each generator layer
        # costs (the one saved here is about 5% of an HTTP keep-alive request).
        while True:
            if buf and len(buf) >= max_size + len(delimiter):
                raise _not_found(delimiter, max_size)
            if self._eof:
                partial = bytes(buf)
                buf.clear()
                raise IncompleteRead(
                    f"the stream ended before {delimiter!r} "
                    f"({len(partial)} bytes received without it)",
                    partial,
                )
            stream = self.stream
            data: bytes | None
            if stream.__class__ is not SocketStream:
                data = yield from stream.receive_some()
            else:
                # SocketType._recv(DEFAULT_RECEIVE_SIZE, 0, stream), written
                # out: keep the two in step.
                if stream._receiving:
                    raise stream._busy("receiving")
                stream._receiving = True
                sock = stream.socket
                try:
                    kernel = local.kernel
                    if (
                        sock._closed
                        or kernel is None
                        or (task := kernel.current_task) is None
                        or task._scope._eff
                    ):
                        sock._check_usable()  # raises the error
                    if sock._drained:
                        data = None
                    else:
                        try:
                            data = sock._sock.recv(DEFAULT_RECEIVE_SIZE)
                        except BlockingIOError:
                            data = None
                        else:
                            sock._drained = len(data) < DEFAULT_RECEIVE_SIZE
                            streak = sock._streak + 1
                            if streak >= _STREAK:
                                streak = 0
                                yield _RESCHEDULE
                            sock._streak = streak
                    if data is None:
                        sock._streak = 0
                        request = ("wait_readable", sock._sock.fileno(), sock)
                        while True:
                            yield request
                            if sock._closed:
                                raise ClosedResourceError(
                                    "this socket was closed while a task waited on it"
                                )
                            try:
                                data = sock._sock.recv(DEFAULT_RECEIVE_SIZE)
                            except BlockingIOError:
                                continue
                            sock._drained = len(data) < DEFAULT_RECEIVE_SIZE
                            break
                except OSError as exc:
                    raise stream._broken(exc, "receiving") from exc
                finally:
                    stream._receiving = False
            if not data:
                self._eof = True
            elif buf or data.__class__ is not bytes:
                # Search only where a new match can start.
                dlen = len(delimiter)
                start = len(buf) - dlen + 1
                buf += data
                index = buf.find(delimiter, start if start > 0 else 0)
                if index >= 0:
                    if index > max_size:
                        raise _not_found(delimiter, max_size)
                    data = bytes(buf[:index])
                    del buf[: index + dlen]
                    return data
            else:
                # Nothing was buffered (a request/response peer): take the
                # answer from the received bytes, copied once. (partition()
                # takes its one argument unparsed, unlike find(), and copies
                # nothing when the delimiter is not there.)
                head, found, rest = data.partition(delimiter)
                if found and len(head) <= max_size:
                    if rest:
                        buf += rest
                    return head
                buf += data
                if found:
                    raise _not_found(delimiter, max_size)

    def __repr__(self) -> str:
        return f"<BufferedReceiveStream {len(self._buffer)} buffered, of {self.stream!r}>"
