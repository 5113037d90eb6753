"""TLS over any :class:`~yieldloop.Stream`: :class:`TLSStream`.

Layer 4. :func:`~yieldloop.open_tcp_stream` and :func:`~yieldloop.serve_tcp`
use it when given an ``ssl_context``. :class:`TLSStream` runs the TLS protocol with an
:class:`ssl.SSLObject` and two :class:`ssl.MemoryBIO` buffers: it encrypts
into the outgoing buffer and sends those bytes on the wrapped stream, and
feeds what it receives from the wrapped stream into the incoming buffer.
So it works over a TCP :class:`~yieldloop.SocketStream`, a unix socket, or
another :class:`TLSStream`.

Errors are those of every stream: a failed handshake or a damaged record is
a :class:`~yieldloop.BrokenResourceError` whose ``__cause__`` is the
:class:`ssl.SSLError` (for a certificate that does not verify, an
:class:`ssl.SSLCertVerificationError`).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from .._kernel._errors import BrokenResourceError, ClosedResourceError
from .._kernel._requests import Awaitable, checkpoint, dual
from .._sync._lock import Lock
from ._socket import Buffer
from ._streams import (
    DEFAULT_RECEIVE_SIZE,
    BusyResourceError,
    Stream,
    _check_max_bytes,
)

__all__ = ["TLSStream"]

T = TypeVar("T")

#: Bytes encrypted at a time by send_all (4 TLS records of 16 KiB).
_WRITE_CHUNK = 65536

_OK = "ok"
_BROKEN = "broken"
_CLOSED = "closed"
_UNWRAPPED = "unwrapped"


class TLSStream(Stream):
    """A TLS connection over ``transport_stream`` (any :class:`Stream`).

    The handshake runs on the first :meth:`send_all`/:meth:`receive_some`,
    or explicitly with :meth:`do_handshake`. ``server_hostname`` is the name
    sent as SNI and checked against the server's certificate (client side).

    ``receive_some`` returns ``b""`` once the peer sent its ``close_notify``.
    A peer that closes the connection without it may be an attacker cutting
    the data short, so that raises :class:`~yieldloop.BrokenResourceError` -
    unless ``https_compatible=True`` (many HTTPS servers close that way;
    HTTP has its own framing), where it is a normal end: ``b""``.

    Two tasks may use the stream at once, one sending and one receiving; two
    senders (or two receivers) raise :class:`~yieldloop.BusyResourceError`.
    A send that is cancelled midway leaves the stream broken (part of a
    record may have gone out).
    """

    __slots__ = (
        "_handshake_lock",
        "_handshook",
        "_https_compatible",
        "_incoming",
        "_outgoing",
        "_receiving",
        "_recv_count",
        "_sending",
        "_ssl",
        "_state",
        "_transport_recv_lock",
        "_transport_send_lock",
        "transport_stream",
    )

    def __init__(
        self,
        transport_stream: Stream,
        ssl_context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        https_compatible: bool = False,
    ) -> None:
        if not isinstance(transport_stream, Stream):
            raise TypeError(f"TLSStream needs a Stream to wrap, got {transport_stream!r}")
        if not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(f"ssl_context must be an ssl.SSLContext, got {ssl_context!r}")
        #: The wrapped stream that carries the encrypted bytes.
        self.transport_stream = transport_stream
        self._https_compatible = https_compatible
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = ssl_context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self._state = _OK
        self._handshook = False
        self._sending = False
        self._receiving = False
        self._recv_count = 0
        self._handshake_lock = Lock()
        self._transport_send_lock = Lock()
        self._transport_recv_lock = Lock()

    # ------------------------------------------------------------ info

    @property
    def server_hostname(self) -> str | None:
        """The name sent as SNI and checked against the certificate (or None)."""
        return self._ssl.server_hostname

    @property
    def server_side(self) -> bool:
        """True for the server side of the connection."""
        return self._ssl.server_side

    def selected_alpn_protocol(self) -> str | None:
        """The ALPN protocol both sides agreed on, or None."""
        return self._ssl.selected_alpn_protocol()

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The peer's certificate (see :meth:`ssl.SSLObject.getpeercert`)."""
        return self._ssl.getpeercert(binary_form)

    def cipher(self) -> tuple[str, str, int] | None:
        """``(name, protocol, secret bits)`` of the cipher in use, or None."""
        return self._ssl.cipher()

    def version(self) -> str | None:
        """The protocol version in use (e.g. ``"TLSv1.3"``), or None."""
        return self._ssl.version()

    # ------------------------------------------------------------ engine

    def _check_usable(self) -> None:
        if self._state == _CLOSED:
            raise ClosedResourceError("this TLS stream was closed")
        if self._state == _UNWRAPPED:
            raise ClosedResourceError("this TLS stream was unwrapped")
        if self._state == _BROKEN:
            raise BrokenResourceError(
                "this TLS stream is broken (an earlier operation failed or was cancelled midway)"
            )

    def _broken(self, what: str, exc: ssl.SSLError) -> BrokenResourceError:
        self._state = _BROKEN
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = f"certificate verify failed: {exc.verify_message}"
        else:
            detail = str(exc)
        return BrokenResourceError(f"TLS {what} failed: {detail}")

    async def _flush(self) -> bool:
        # Send what the SSL object wrote to the outgoing buffer. Bytes are
        # taken under the lock, so they go out in the order they were made.
        if not self._outgoing.pending:
            return False
        async with self._transport_send_lock:
            data = self._outgoing.read()
            if not data:
                return True
            try:
                await self.transport_stream.send_all(data)
            except BaseException:
                # Part of a record may be out: nothing sent later can be trusted.
                if self._state == _OK:
                    self._state = _BROKEN
                raise
        return True

    async def _receive(self) -> None:
        # Feed more bytes from the transport into the incoming buffer,
        # unless another task did it while this one waited for the lock.
        count = self._recv_count
        async with self._transport_recv_lock:
            if count != self._recv_count or self._incoming.eof:
                return
            try:
                data = await self.transport_stream.receive_some(DEFAULT_RECEIVE_SIZE)
            except BrokenResourceError:
                if self._state == _OK:
                    self._state = _BROKEN
                raise
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
            self._recv_count += 1

    async def _retry(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn`` on the SSL object until it no longer wants to read,
        sending and receiving on the transport as it asks."""
        waited = False
        while True:
            self._check_usable()
            want_read = False
            result: Any = None
            try:
                result = fn(*args)
            except ssl.SSLWantReadError:
                want_read = True
            except ssl.SSLError as exc:
                # The peer may still need our alert to learn what went wrong.
                try:
                    await self._flush()
                except Exception:
                    pass
                raise self._broken(what, exc) from exc
            if await self._flush():
                waited = True
            if not want_read:
                if not waited:
                    await checkpoint()
                return result  # type: ignore[no-any-return]
            if self._incoming.eof:  # pragma: no cover - OpenSSL raises SSLEOFError first
                self._state = _BROKEN
                raise BrokenResourceError(f"TLS {what} failed: the connection was closed")
            await self._receive()
            waited = True

    async def _handshake(self) -> None:
        if self._handshook:
            return
        async with self._handshake_lock:
            if self._handshook:
                return
            await self._retry("handshake", self._ssl.do_handshake)
            self._handshook = True

    # ------------------------------------------------------------ Stream API

    @dual
    async def do_handshake(self) -> None:
        """Run the TLS handshake now (it is otherwise run on first use).
        Does nothing (but a checkpoint) if it is already done."""
        self._check_usable()
        if self._handshook:
            await checkpoint()
            return
        await self._handshake()

    @dual
    async def send_all(self, data: Buffer) -> None:
        """Encrypt and send every byte of ``data``."""
        if self._sending:
            raise BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            self._check_usable()
            await self._handshake()
            view = memoryview(data).cast("B")
            if not view.nbytes:
                await checkpoint()
                return
            # Encrypt a chunk, send it, then the next: the outgoing buffer
            # never holds more than one chunk, so a peer that does not read
            # makes send_all wait instead of buffering everything.
            write = self._ssl.write
            for start in range(0, view.nbytes, _WRITE_CHUNK):
                await self._retry("write", write, view[start : start + _WRITE_CHUNK])
        finally:
            self._sending = False

    @dual
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Receive and decrypt up to ``max_bytes`` (default 64 KiB) bytes;
        ``b""`` once the peer closed the TLS session."""
        n = _check_max_bytes(max_bytes)
        if self._receiving:
            raise BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            self._check_usable()
            await self._handshake()
            try:
                return await self._retry("read", self._ssl.read, n)
            except BrokenResourceError as exc:
                cause = exc.__cause__
                if isinstance(cause, ssl.SSLZeroReturnError):
                    self._state = _OK  # a clean close_notify: the end of the data
                    return b""
                if isinstance(cause, ssl.SSLEOFError) and self._incoming.eof:
                    if self._https_compatible:
                        self._state = _OK
                        return b""
                    raise BrokenResourceError(
                        "the peer closed the connection without a TLS close_notify "
                        "(the data may have been cut short)"
                    ) from cause
                raise
        finally:
            self._receiving = False

    def send_eof(self) -> Awaitable[None]:
        """Not supported: TLS has no half-close. Use :meth:`aclose` or
        :meth:`unwrap`."""
        raise NotImplementedError("TLS streams cannot half-close; use aclose() or unwrap()")

    @dual
    async def unwrap(self) -> tuple[Stream, bytes]:
        """End the TLS session cleanly (both sides send ``close_notify``) and
        hand back the transport: returns ``(transport_stream, leftover)``,
        where ``leftover`` holds bytes received after the peer's
        ``close_notify`` (plain data the peer already sent). The TLS stream
        is then closed, but :meth:`aclose` leaves the transport open."""
        if self._sending or self._receiving:
            raise BusyResourceError("another task is using this stream")
        self._sending = self._receiving = True
        try:
            self._check_usable()
            await self._handshake()
            await self._retry("shutdown", self._ssl.unwrap)
            self._state = _UNWRAPPED
            return self.transport_stream, self._incoming.read()
        finally:
            self._sending = self._receiving = False

    @dual
    async def aclose(self) -> None:
        """Send ``close_notify`` (best effort: not if the stream is broken
        or a send is in progress) and close the transport. The transport is
        closed even if this is cancelled. Closing twice does nothing."""
        if self._state in (_CLOSED, _UNWRAPPED):
            await checkpoint()
            return
        usable = self._state == _OK and self._handshook
        self._state = _CLOSED
        try:
            if usable and not self._transport_send_lock.locked():
                try:
                    self._ssl.unwrap()
                except ssl.SSLError:  # SSLWantReadError: we do not wait for the reply
                    pass
                if self._outgoing.pending:
                    async with self._transport_send_lock:
                        data = self._outgoing.read()
                        try:
                            await self.transport_stream.send_all(data)
                        except (BrokenResourceError, ClosedResourceError, BusyResourceError):
                            pass
        finally:
            await self.transport_stream.aclose()

    def __repr__(self) -> str:
        side = "server" if self._ssl.server_side else "client"
        return f"<TLSStream {side} {self._state} over {self.transport_stream!r}>"
