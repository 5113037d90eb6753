"""The network half of anyio's backend ``"yieldloop"``: anyio's socket
classes over :class:`yieldloop.socket.SocketType`, and the backend's
networking functions (:func:`connect_tcp`, :func:`create_udp_socket`,
:func:`getaddrinfo`, :func:`wait_readable`, ...).

Layer 5 (tools around the runtime). :mod:`yieldloop._interop._anyio`
delegates to the functions here; each takes the parameters of the
:class:`anyio.abc.AsyncBackend` class method of the same name.

Every class wraps a non-blocking stdlib socket in a yieldloop
:class:`~yieldloop.socket.SocketType` (so the run tracks it and closing it
wakes the tasks waiting on it) and makes its system calls the way the
socket layer does: try the call, and wait for the fd only when it raises
:class:`BlockingIOError`. Each operation is a checkpoint, as in trio:

* it raises :class:`~yieldloop.Cancelled` before doing anything if the task
  is in a cancelled scope, so a cancelled ``send`` sends nothing;
* when the call succeeded without waiting, the task still goes to the back
  of the ready queue (``("reschedule",)``, not a cancellation point: the
  bytes received are never lost).

Errors are anyio's, with the conditions of its asyncio and trio backends:

* :class:`anyio.ClosedResourceError` - this side closed the resource
  (before the operation, or while a task was waiting in it);
* :class:`anyio.BrokenResourceError` - the operating system failed the
  operation (the peer reset the connection, ...); its ``__cause__`` is
  the :class:`OSError`;
* :class:`anyio.BusyResourceError` - a second task tried to receive (or
  send, or accept) while one already was;
* :class:`anyio.EndOfStream` - a stream's peer finished sending.

Connecting and resolving raise the :class:`OSError` itself (anyio's
``connect_tcp`` collects them over its Happy Eyeballs attempts).
"""

from __future__ import annotations

import array
import errno
import os
import socket
import types
from collections.abc import Callable, Collection, Generator, Sequence
from io import IOBase
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, cast, overload

from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
    ResourceGuard,
    abc,
)
from anyio._core._sockets import convert_ipv6_sockaddr
from anyio.abc import IPSockAddrType, UDPPacketType, UNIXDatagramPacketType

from .._io._socket import SocketType
from .._io._socket import getaddrinfo as _getaddrinfo
from .._kernel._errors import ClosedResourceError as YLClosedResourceError
from .._kernel._kernel import RESCHEDULE as _RESCHEDULE
from .._kernel._requests import checkpoint
from .._kernel._requests import wait_readable as _wait_readable
from .._kernel._requests import wait_writable as _wait_writable
from .._kernel._state import current_kernel
from .._os._threads import to_thread
from ..lowlevel import notify_closing as _notify_closing

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = [
    "ConnectedUDPSocket",
    "ConnectedUNIXDatagramSocket",
    "SocketStream",
    "TCPSocketListener",
    "UDPSocket",
    "UNIXDatagramSocket",
    "UNIXSocketListener",
    "UNIXSocketStream",
    "connect_tcp",
    "connect_unix",
    "create_tcp_listener",
    "create_udp_socket",
    "create_unix_datagram_socket",
    "create_unix_listener",
    "getaddrinfo",
    "getnameinfo",
    "notify_closing",
    "wait_readable",
    "wait_writable",
    "wrap_connected_udp_socket",
    "wrap_connected_unix_datagram_socket",
    "wrap_listener_socket",
    "wrap_stream_socket",
    "wrap_udp_socket",
    "wrap_unix_datagram_socket",
    "wrap_unix_stream_socket",
]

T = TypeVar("T")


#: What ``receive()`` asks the operating system for at most (a datagram's
#: largest size, and anyio's default for streams).
_RECEIVE_SIZE = 65536

#: A unix socket whose listener's backlog is full refuses ``connect`` with
#: EAGAIN, and nothing tells when to try again: retry after these pauses
#: (in seconds, doubling up to the last one).
_CONNECT_RETRY_FIRST = 0.001
_CONNECT_RETRY_MAX = 0.1

_AF_UNIX: int | None = getattr(socket, "AF_UNIX", None)

AddrInfo = tuple[
    socket.AddressFamily,
    socket.SocketKind,
    int,
    str,
    tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
]


# ------------------------------------------------------------ system calls


@types.coroutine
def _call(sock: SocketType, kind: str, fn: Callable[..., T], *args: Any) -> Generator[Any, Any, T]:
    """``fn(*args)``, a non-blocking system call on ``sock``, repeated each
    time the fd is ready (``kind``: ``"wait_readable"``/``"wait_writable"``)
    until it does not raise :class:`BlockingIOError`. A checkpoint."""
    sock._check_usable()  # closed: ClosedResourceError; cancelled: Cancelled
    try:
        result = fn(*args)
    except BlockingIOError:
        pass
    else:
        yield _RESCHEDULE
        return result
    request = (kind, sock.fileno(), sock)
    while True:
        yield request  # closing the socket meanwhile throws ClosedResourceError here
        if sock.closed:  # closed after the fd became ready, before we ran
            raise YLClosedResourceError("this socket was closed while a task waited on it")
        try:
            return fn(*args)
        except BlockingIOError:
            continue


@types.coroutine
def _send_all(
    sock: SocketType, data: bytes | bytearray | memoryview, ancdata: list[Any] | None = None
) -> Generator[Any, Any, None]:
    """Send every byte of ``data`` on a stream socket, with ``ancdata``
    (``sendmsg``'s ancillary data, e.g. file descriptors) on the first
    part. A checkpoint; if cancelled while waiting, part of ``data`` may
    have been sent."""
    sock._check_usable()
    raw = sock.stdlib_socket
    waited = False
    with memoryview(data) as view, view.cast("B") as mv:
        total = len(mv)
        sent = 0
        while sent < total or ancdata:
            try:
                if ancdata:
                    sent += raw.sendmsg([mv[sent:]], ancdata)
                    ancdata = None  # the descriptors went with the first part
                else:
                    sent += raw.send(mv[sent:])
            except BlockingIOError:
                waited = True
                yield ("wait_writable", sock.fileno(), sock)
                if sock.closed:
                    raise YLClosedResourceError(
                        "this socket was closed while a task waited on it"
                    ) from None
    if not waited:
        yield _RESCHEDULE


@types.coroutine
def _connect(sock: SocketType, address: Any) -> Generator[Any, Any, None]:
    """Connect ``sock`` to ``address`` (a resolved address, or a unix
    socket's path). A checkpoint. The caller closes the socket if this
    fails or is cancelled."""
    sock._check_usable()
    raw = sock.stdlib_socket
    pause = _CONNECT_RETRY_FIRST
    while True:
        try:
            raw.connect(address)
        except BlockingIOError as exc:
            if exc.errno == errno.EINPROGRESS:
                break  # TCP: the handshake goes on; wait for it below
            if _AF_UNIX is None or sock.family != _AF_UNIX:
                raise  # (EAGAIN for TCP: no local port left)
            # EAGAIN: a unix socket whose listener's backlog is full.
            yield ("sleep", pause)
            pause = min(pause * 2, _CONNECT_RETRY_MAX)
            if sock.closed:
                raise YLClosedResourceError("this socket was closed while connecting") from None
        else:
            yield _RESCHEDULE
            return
    yield ("wait_writable", sock.fileno(), sock)
    if sock.closed:
        raise YLClosedResourceError("this socket was closed while connecting")
    err = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"Error connecting to {address!r}: {os.strerror(err)}")


# ------------------------------------------------------------ the classes


class _SocketMixin:
    """What every socket class here shares: the wrapped
    :class:`SocketType`, ``_raw_socket`` (for anyio's ``extra``
    attributes), closing, and turning errors into anyio's."""

    def __init__(self, sock: SocketType) -> None:
        self._sock = sock

    @property
    def _raw_socket(self) -> socket.socket:
        return self._sock.stdlib_socket

    async def aclose(self) -> None:
        """Close the socket (tasks using it get ``ClosedResourceError``),
        then a checkpoint: in a cancelled scope it is closed and then
        raises ``Cancelled``."""
        self._sock.close()
        await checkpoint()

    def _convert_error(self, exc: Exception) -> NoReturn:
        if isinstance(exc, YLClosedResourceError) or self._sock.closed:
            raise ClosedResourceError from None
        if isinstance(exc, OSError):
            raise BrokenResourceError from exc
        raise exc

    def _shutdown_write(self) -> None:
        if self._sock.closed:
            raise ClosedResourceError
        try:
            self._sock.stdlib_socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:  # already disconnected: nothing to do
                raise BrokenResourceError from exc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._sock!r}>"


class SocketStream(_SocketMixin, abc.SocketStream):
    """anyio's :class:`~anyio.abc.SocketStream` over a connected stream
    socket (TCP, or a unix socket wrapped with ``SocketStream.from_socket``).

    ``receive`` raises :class:`~anyio.EndOfStream` once the peer finished
    sending; ``send`` sends every byte before it returns.
    """

    def __init__(self, sock: SocketType) -> None:
        super().__init__(sock)
        self._receive_guard = ResourceGuard("reading from")
        self._send_guard = ResourceGuard("writing to")

    async def receive(self, max_bytes: int = _RECEIVE_SIZE) -> bytes:
        """Receive up to ``max_bytes`` bytes (at least one)."""
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        with self._receive_guard:
            sock = self._sock
            try:
                data = await _call(sock, "wait_readable", sock.stdlib_socket.recv, max_bytes)
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)
        if not data:
            raise EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        """Send all of ``item``. If cancelled while waiting, part of it may
        have been sent."""
        with self._send_guard:
            try:
                await _send_all(self._sock, item)
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)

    async def send_eof(self) -> None:
        """Shut down the sending side (the peer receives the end of the
        stream); receiving still works. A checkpoint."""
        with self._send_guard:
            await checkpoint()
            self._shutdown_write()


class UNIXSocketStream(SocketStream, abc.UNIXSocketStream):
    """anyio's :class:`~anyio.abc.UNIXSocketStream`: a
    :class:`SocketStream` over a unix socket, which can also pass file
    descriptors (:meth:`send_fds`, :meth:`receive_fds`)."""

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        """Receive a message of up to ``msglen`` bytes and up to ``maxfds``
        file descriptors sent with it (the caller owns them)."""
        if not isinstance(msglen, int) or msglen < 0:
            raise ValueError("msglen must be a non-negative integer")
        if not isinstance(maxfds, int) or maxfds < 1:
            raise ValueError("maxfds must be a positive integer")
        fds = array.array("i")
        with self._receive_guard:
            sock = self._sock
            try:
                message, ancdata, _flags, _addr = await _call(
                    sock,
                    "wait_readable",
                    sock.stdlib_socket.recvmsg,
                    msglen,
                    socket.CMSG_LEN(maxfds * fds.itemsize),
                )
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)
        if not message and not ancdata:
            raise EndOfStream
        unexpected = None
        for cmsg_level, cmsg_type, cmsg_data in ancdata:
            if cmsg_level != socket.SOL_SOCKET or cmsg_type != socket.SCM_RIGHTS:
                unexpected = (cmsg_level, cmsg_type)
                continue
            fds.frombytes(cmsg_data[: len(cmsg_data) - (len(cmsg_data) % fds.itemsize)])
        if unexpected is not None:
            for fd in fds:  # nobody would close them
                os.close(fd)
            raise RuntimeError(
                f"Received unexpected ancillary data; message = {message!r}, "
                f"cmsg_level = {unexpected[0]}, cmsg_type = {unexpected[1]}"
            )
        return message, list(fds)

    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        """Send ``message`` (not empty) with the file descriptors ``fds``
        (numbers, or open files and sockets)."""
        if not message:
            raise ValueError("message must not be empty")
        if not fds:
            raise ValueError("fds must not be empty")
        filenos: list[int] = []
        for fd in fds:
            if isinstance(fd, int):
                filenos.append(fd)
            elif isinstance(fd, IOBase):
                filenos.append(fd.fileno())
        ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", filenos))]
        with self._send_guard:
            try:
                await _send_all(self._sock, message, ancdata)
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)


class _Listener(_SocketMixin):
    """Accepting connections, for both listener classes."""

    def __init__(self, sock: SocketType) -> None:
        super().__init__(sock)
        self._accept_guard = ResourceGuard("accepting connections from")

    async def _accept(self) -> SocketType:
        with self._accept_guard:
            sock = self._sock
            try:
                raw, _addr = await _call(sock, "wait_readable", sock.stdlib_socket.accept)
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)
        try:
            return SocketType(raw)
        except BaseException:
            raw.close()
            raise


class TCPSocketListener(_Listener, abc.SocketListener):
    """anyio's :class:`~anyio.abc.SocketListener` over a listening TCP
    socket. Accepted streams have ``TCP_NODELAY`` set."""

    async def accept(self) -> SocketStream:
        """Wait for a connection and return a stream for it."""
        sock = await self._accept()
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return SocketStream(sock)
        except BaseException:
            sock.close()
            raise


class UNIXSocketListener(_Listener, abc.SocketListener):
    """anyio's :class:`~anyio.abc.SocketListener` over a listening unix
    socket: :meth:`accept` returns :class:`UNIXSocketStream`."""

    async def accept(self) -> UNIXSocketStream:
        """Wait for a connection and return a stream for it."""
        return UNIXSocketStream(await self._accept())


class _Datagrams(_SocketMixin):
    """The guards of the datagram socket classes."""

    def __init__(self, sock: SocketType) -> None:
        super().__init__(sock)
        self._receive_guard = ResourceGuard("reading from")
        self._send_guard = ResourceGuard("writing to")

    async def _receive_from(self) -> tuple[bytes, Any]:
        with self._receive_guard:
            sock = self._sock
            try:
                return await _call(
                    sock, "wait_readable", sock.stdlib_socket.recvfrom, _RECEIVE_SIZE
                )
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)

    async def _receive(self) -> bytes:
        with self._receive_guard:
            sock = self._sock
            try:
                return await _call(sock, "wait_readable", sock.stdlib_socket.recv, _RECEIVE_SIZE)
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)

    async def _send_to(self, data: bytes, address: Any) -> None:
        with self._send_guard:
            sock = self._sock
            try:
                await _call(sock, "wait_writable", sock.stdlib_socket.sendto, data, address)
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)

    async def _send(self, data: bytes) -> None:
        with self._send_guard:
            sock = self._sock
            try:
                await _call(sock, "wait_writable", sock.stdlib_socket.send, data)
            except (OSError, YLClosedResourceError) as exc:
                self._convert_error(exc)


def _is_numeric_host(family: int, host: Any) -> bool:
    if not isinstance(host, str) or "%" in host:  # a scope id: let getaddrinfo parse it
        return False
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):
        return False
    return True


class UDPSocket(_Datagrams, abc.UDPSocket):
    """anyio's :class:`~anyio.abc.UDPSocket`: an unconnected datagram
    socket; ``receive`` returns ``(data, (host, port))``."""

    async def receive(self) -> tuple[bytes, IPSockAddrType]:
        """Receive a datagram and the address it came from."""
        data, address = await self._receive_from()
        return data, convert_ipv6_sockaddr(address)

    async def send(self, item: UDPPacketType) -> None:
        """Send ``item``, a ``(data, (host, port))`` pair. A host name is
        resolved first (off the loop thread)."""
        data, address = item
        family = self._sock.family
        if (
            family in (socket.AF_INET, socket.AF_INET6)
            and isinstance(address, tuple)
            and len(address) >= 2
            and not _is_numeric_host(family, address[0])
        ):
            infos = await _getaddrinfo(address[0], address[1], family, socket.SOCK_DGRAM)
            resolved = infos[0][4]
            address = (*resolved[:2], *address[2:4]) if len(address) > 2 else resolved
        await self._send_to(data, address)


class ConnectedUDPSocket(_Datagrams, abc.ConnectedUDPSocket):
    """anyio's :class:`~anyio.abc.ConnectedUDPSocket`: a datagram socket
    connected to one peer."""

    async def receive(self) -> bytes:
        """Receive a datagram from the peer."""
        return await self._receive()

    async def send(self, item: bytes) -> None:
        """Send a datagram to the peer."""
        await self._send(item)


class UNIXDatagramSocket(_Datagrams, abc.UNIXDatagramSocket):
    """anyio's :class:`~anyio.abc.UNIXDatagramSocket`: an unconnected unix
    datagram socket; ``receive`` returns ``(data, path)``."""

    async def receive(self) -> UNIXDatagramPacketType:
        """Receive a datagram and the path it came from."""
        return await self._receive_from()

    async def send(self, item: UNIXDatagramPacketType) -> None:
        """Send ``item``, a ``(data, path)`` pair."""
        data, path = item
        await self._send_to(data, path)


class ConnectedUNIXDatagramSocket(_Datagrams, abc.ConnectedUNIXDatagramSocket):
    """anyio's :class:`~anyio.abc.ConnectedUNIXDatagramSocket`: a unix
    datagram socket connected to one peer."""

    async def receive(self) -> bytes:
        """Receive a datagram from the peer."""
        return await self._receive()

    async def send(self, item: bytes) -> None:
        """Send a datagram to the peer."""
        await self._send(item)


# ------------------------------------------------------- backend functions


def _own(sock: socket.socket) -> SocketType:
    """Wrap ``sock`` (which the wrapper owns from now on); close it if that fails."""
    try:
        return SocketType(sock)
    except BaseException:
        sock.close()
        raise


async def connect_tcp(
    host: str, port: int, local_address: IPSockAddrType | None = None
) -> SocketStream:
    """Connect to ``host`` (a numeric address) and ``port``, from
    ``local_address`` if given."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = _own(socket.socket(family, socket.SOCK_STREAM))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if local_address:
            sock.bind(local_address)
        await _connect(sock, (host, port))
        return SocketStream(sock)
    except BaseException:
        sock.close()
        raise


async def connect_unix(
    path: str | bytes,
    kind: Literal[socket.SocketKind.SOCK_STREAM, socket.SocketKind.SOCK_SEQPACKET] = (
        socket.SOCK_STREAM
    ),
) -> UNIXSocketStream:
    """Connect to the unix socket at ``path``."""
    if _AF_UNIX is None:  # pragma: no cover - not on this platform
        raise RuntimeError("unix sockets are not supported on this platform")
    sock = _own(socket.socket(_AF_UNIX, kind))
    try:
        await _connect(sock, path)
        return UNIXSocketStream(sock)
    except BaseException:
        sock.close()
        raise


def create_tcp_listener(sock: socket.socket) -> TCPSocketListener:
    """A listener over ``sock``, a bound and listening TCP socket."""
    return TCPSocketListener(_own(sock))


def create_unix_listener(sock: socket.socket) -> UNIXSocketListener:
    """A listener over ``sock``, a bound and listening unix socket."""
    return UNIXSocketListener(_own(sock))


async def create_udp_socket(
    family: socket.AddressFamily,
    local_address: IPSockAddrType | None,
    remote_address: IPSockAddrType | None,
    reuse_port: bool,
) -> UDPSocket | ConnectedUDPSocket:
    """A UDP socket bound to ``local_address`` (resolved; None: any) and,
    with ``remote_address`` (resolved), connected to it."""
    sock = _own(socket.socket(family, socket.SOCK_DGRAM))
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if local_address:
            sock.bind(local_address)
        if remote_address:
            await _connect(sock, remote_address)
            return ConnectedUDPSocket(sock)
        await checkpoint()
        return UDPSocket(sock)
    except BaseException:
        sock.close()
        raise


@overload
async def create_unix_datagram_socket(
    raw_socket: socket.socket, remote_path: None
) -> UNIXDatagramSocket: ...


@overload
async def create_unix_datagram_socket(
    raw_socket: socket.socket, remote_path: str | bytes
) -> ConnectedUNIXDatagramSocket: ...


async def create_unix_datagram_socket(
    raw_socket: socket.socket, remote_path: str | bytes | None
) -> UNIXDatagramSocket | ConnectedUNIXDatagramSocket:
    """A unix datagram socket over ``raw_socket`` (owned from now on; it
    is closed if this fails), connected to ``remote_path`` if given."""
    sock = _own(raw_socket)
    try:
        if remote_path:
            await _connect(sock, remote_path)
            return ConnectedUNIXDatagramSocket(sock)
        await checkpoint()
        return UNIXDatagramSocket(sock)
    except BaseException:
        sock.close()
        raise


async def getaddrinfo(
    host: bytes | str | None,
    port: str | int | None,
    *,
    family: int | socket.AddressFamily = 0,
    type: int | socket.SocketKind = 0,
    proto: int = 0,
    flags: int = 0,
) -> Sequence[AddrInfo]:
    """:func:`socket.getaddrinfo`, off the loop thread (numeric hosts at
    once). A checkpoint."""
    infos = await _getaddrinfo(host, port, family, type, proto, flags)
    return cast("list[AddrInfo]", infos)


async def getnameinfo(sockaddr: IPSockAddrType, flags: int = 0) -> tuple[str, str]:
    """:func:`socket.getnameinfo` in a worker thread (abandoned if
    cancelled). A checkpoint."""
    return await to_thread(socket.getnameinfo, sockaddr, flags, abandon_on_cancel=True)


def _waiting(kind: str, obj: FileDescriptorLike) -> bool:
    # Whether a task already waits for obj's fd; the kernel allows one
    # reader and one writer per fd.
    fd = obj if isinstance(obj, int) else obj.fileno()
    kernel = current_kernel()
    waiters = kernel._readers if kind == "wait_readable" else kernel._writers
    return fd in waiters


async def wait_readable(obj: FileDescriptorLike) -> None:
    """Wait until ``obj`` (an fd or an object with ``fileno()``) is
    readable. :class:`~anyio.BusyResourceError` if another task already
    waits for that; :class:`~anyio.ClosedResourceError` if
    :func:`notify_closing` is called meanwhile."""
    if _waiting("wait_readable", obj):
        raise BusyResourceError("reading from")
    try:
        await _wait_readable(obj)
    except YLClosedResourceError as exc:
        raise ClosedResourceError().with_traceback(exc.__traceback__) from None


async def wait_writable(obj: FileDescriptorLike) -> None:
    """Wait until ``obj`` is writable (see :func:`wait_readable`)."""
    if _waiting("wait_writable", obj):
        raise BusyResourceError("writing to")
    try:
        await _wait_writable(obj)
    except YLClosedResourceError as exc:
        raise ClosedResourceError().with_traceback(exc.__traceback__) from None


def notify_closing(obj: FileDescriptorLike) -> None:
    """``obj`` is about to be closed: the tasks in :func:`wait_readable` /
    :func:`wait_writable` on it get :class:`~anyio.ClosedResourceError`."""
    _notify_closing(obj)


async def wrap_listener_socket(sock: socket.socket) -> abc.SocketListener:
    """A listener over ``sock`` (a listening TCP or unix socket)."""
    if _AF_UNIX is not None and sock.family == _AF_UNIX:
        return UNIXSocketListener(_own(sock))
    return TCPSocketListener(_own(sock))


async def wrap_stream_socket(sock: socket.socket) -> SocketStream:
    """A stream over ``sock``, a connected stream socket."""
    return SocketStream(_own(sock))


async def wrap_unix_stream_socket(sock: socket.socket) -> UNIXSocketStream:
    """A stream over ``sock``, a connected unix stream socket."""
    return UNIXSocketStream(_own(sock))


async def wrap_udp_socket(sock: socket.socket) -> UDPSocket:
    """A :class:`UDPSocket` over ``sock``, a bound datagram socket."""
    return UDPSocket(_own(sock))


async def wrap_connected_udp_socket(sock: socket.socket) -> ConnectedUDPSocket:
    """A :class:`ConnectedUDPSocket` over ``sock``, a connected datagram socket."""
    return ConnectedUDPSocket(_own(sock))


async def wrap_unix_datagram_socket(sock: socket.socket) -> UNIXDatagramSocket:
    """A :class:`UNIXDatagramSocket` over ``sock``, a unix datagram socket."""
    return UNIXDatagramSocket(_own(sock))


async def wrap_connected_unix_datagram_socket(
    sock: socket.socket,
) -> ConnectedUNIXDatagramSocket:
    """A :class:`ConnectedUNIXDatagramSocket` over ``sock``, a connected unix
    datagram socket."""
    return ConnectedUNIXDatagramSocket(_own(sock))
