"""Sockets: :class:`SocketType`, an async wrapper of a stdlib socket, and
:func:`getaddrinfo` run off the loop thread.

Layer 4. Every operation that may block tries the system call first and
waits for the fd (``("wait_readable", fd)`` / ``("wait_writable", fd)``)
only when the call raises :class:`BlockingIOError`. Each operation is a
checkpoint in both directions:

* it raises :class:`~yieldloop.Cancelled` before doing anything if the task
  is in a cancelled scope, so a cancelled task never performs the operation;
* when the system call succeeded at once, the task still goes to the back of
  the ready queue (the ``("reschedule",)`` request, which is not a
  cancellation point, so the result is never lost), so a task reading a
  socket that always has data cannot starve the others.

The methods are generator functions marked with :func:`types.coroutine`:
``await sock.recv(100)`` in ``async def`` code and ``yield from
sock.recv(100)`` in a plain generator coroutine are the same thing.

Errors: the operating system's errors come through as they are
(:class:`ConnectionResetError`, :class:`BrokenPipeError`, ...). Using a
socket after :meth:`SocketType.close`, or closing it while another task is
waiting on it, raises :class:`~yieldloop.ClosedResourceError`.
"""

from __future__ import annotations

import builtins
import os
import socket as _stdlib_socket
import threading
import types
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .._kernel._errors import Cancelled, ClosedResourceError
from .._kernel._kernel import RESCHEDULE as _RESCHEDULE
from .._kernel._requests import dual
from .._kernel._state import current_kernel, local, running_kernel

if TYPE_CHECKING:
    from .._kernel._task import Task

__all__ = [
    "SocketType",
    "dual",
    "from_stdlib_socket",
    "getaddrinfo",
    "socket",
]

T = TypeVar("T")
P = ParamSpec("P")


# Operations completing at once, in a row, before one yields to other tasks.
_STREAK = 16

# A bytes-like object the socket layer accepts for sending.
Buffer = bytes | bytearray | memoryview


def _cancel_check() -> None:
    """Raise Cancelled if the running task is inside a cancelled scope."""
    task = current_kernel().current_task
    if task is None:
        raise RuntimeError("socket operations must be called from inside a yieldloop task")
    if task._scope._eff:
        raise Cancelled()


class SocketType:
    """An async socket: a stdlib :class:`socket.socket`, set non-blocking.

    Make one with :func:`socket` or :func:`from_stdlib_socket`. The blocking
    operations (``accept``, ``connect``, ``recv``, ``send``, ...) are
    awaitables; the rest (``bind``, ``listen``, ``setsockopt``, ...) are
    plain methods. ``async with sock:`` closes it at the end.

    Only one task at a time may wait to read, and one to write: a second
    one gets a ``RuntimeError`` naming the first.
    """

    __slots__ = ("__weakref__", "_armed", "_closed", "_drained", "_sock", "_streak")

    def __init__(self, sock: _stdlib_socket.socket) -> None:
        if not isinstance(sock, _stdlib_socket.socket):
            raise TypeError(f"SocketType needs a stdlib socket.socket, got {sock!r}")
        sock.setblocking(False)
        self._sock = sock
        self._closed = False
        # True when the last recv emptied the receive buffer: the next one
        # waits for data first instead of trying a recv that would fail.
        self._drained = False
        # Operations in a row that completed without waiting (see _done_now).
        self._streak = 0
        # The kernel's key for this socket's poller registration (0: none;
        # see Kernel._req_wait_fd).
        self._armed = 0
        kernel = running_kernel()
        if kernel is not None:
            kernel.track_resource(self, "a socket")

    # --------------------------------------------------------- plain methods

    @property
    def family(self) -> int:
        """The address family (``AF_INET``, ``AF_INET6``, ``AF_UNIX``, ...)."""
        return self._sock.family

    @property
    def type(self) -> int:
        """The socket type (``SOCK_STREAM``, ``SOCK_DGRAM``, ...)."""
        return self._sock.type

    @property
    def proto(self) -> int:
        """The protocol number."""
        return self._sock.proto

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def stdlib_socket(self) -> _stdlib_socket.socket:
        """The wrapped stdlib socket (non-blocking; do not close it directly)."""
        return self._sock

    def fileno(self) -> int:
        """The file descriptor (-1 once closed)."""
        return self._sock.fileno()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedResourceError("this socket was closed")

    def getsockname(self) -> Any:
        """The socket's own address."""
        self._check_open()
        return self._sock.getsockname()

    def getpeername(self) -> Any:
        """The address of the peer of a connected socket."""
        self._check_open()
        return self._sock.getpeername()

    def setsockopt(self, level: int, optname: int, value: int | Buffer) -> None:
        """Set a socket option (see :meth:`socket.socket.setsockopt`)."""
        self._check_open()
        self._sock.setsockopt(level, optname, value)

    def getsockopt(self, level: int, optname: int) -> int:
        """Read an integer socket option."""
        self._check_open()
        return self._sock.getsockopt(level, optname)

    def bind(self, address: Any) -> None:
        """Bind to ``address``. Give a numeric host (``"127.0.0.1"``), or
        resolve it with :func:`getaddrinfo` first: a host name would be
        resolved here, blocking the loop."""
        self._check_open()
        self._sock.bind(address)

    def listen(self, backlog: int = 128) -> None:
        """Start listening for connections."""
        self._check_open()
        self._sock.listen(backlog)

    def shutdown(self, how: int) -> None:
        """Shut down one or both directions (``SHUT_RD``, ``SHUT_WR``, ``SHUT_RDWR``)."""
        self._check_open()
        self._sock.shutdown(how)

    def close(self) -> None:
        """Close the socket. Tasks waiting on it are woken with
        :class:`~yieldloop.ClosedResourceError`. Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        kernel = running_kernel()
        if kernel is not None:
            kernel.untrack_resource(self)
            fd = self._sock.fileno()
            if fd >= 0:
                kernel.notify_closing(fd)
        self._sock.close()

    def detach(self) -> int:
        """Give up the fd without closing it and return it."""
        self._check_open()
        fd = self._sock.fileno()
        kernel = running_kernel()
        if kernel is not None:
            kernel.untrack_resource(self)
            if fd >= 0:
                kernel.notify_closing(fd)
        self._closed = True
        return self._sock.detach()

    async def __aenter__(self) -> SocketType:
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __enter__(self) -> SocketType:
        return self

    def __exit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._sock.fileno()}"
        return f"<yieldloop socket {state} family={self.family!r} type={self.type!r}>"

    # ----------------------------------------------------------- awaitables

    def _wait(self, kind: str) -> Generator[Any, Any, None]:
        # Wait for the fd; closing the socket meanwhile wakes us with
        # ClosedResourceError (from the kernel's notify_closing).
        yield (kind, self._sock.fileno(), self)  # (see Kernel._req_wait_fd)
        if self._closed:  # closed after the fd became ready, before we ran
            raise ClosedResourceError("this socket was closed while a task waited on it")

    def _check_usable(self) -> None:
        # The start of every operation: open, in a task, and not cancelled.
        if self._closed:
            raise ClosedResourceError("this socket was closed")
        kernel = local.kernel
        task = None if kernel is None else kernel.current_task
        if task is None:
            raise RuntimeError("socket operations must be called from inside a yieldloop task")
        if task._scope._eff:
            raise Cancelled()

    def _done_now(self) -> Generator[Any, Any, None]:
        # An operation completed without waiting. Every 16th time in a row,
        # let the other tasks run: a task whose socket never blocks must not
        # starve them. (A task that waits now and then yields there anyway;
        # a round trip through the ready queue on every call would cost a
        # request/response server about a tenth of its speed.)
        streak = self._streak + 1
        if streak >= _STREAK:
            self._streak = 0
            yield _RESCHEDULE
        else:
            self._streak = streak

    def _io(self, kind: str, fn: Callable[..., T], *args: Any) -> Generator[Any, Any, T]:
        # The common shape: check, try the call, wait only if it would block.
        if self._closed:
            raise ClosedResourceError("this socket was closed")
        _cancel_check()
        try:
            result = fn(*args)
        except BlockingIOError:
            pass
        else:
            yield from self._done_now()
            return result
        self._streak = 0
        while True:
            yield from self._wait(kind)
            try:
                return fn(*args)
            except BlockingIOError:
                continue

    def recv(self, bufsize: int, flags: int = 0) -> Generator[Any, Any, bytes]:
        """Receive up to ``bufsize`` bytes; ``b""`` means the peer closed."""
        return self._recv(bufsize, flags, None)

    @types.coroutine
    def _recv(self, bufsize: int, flags: int, stream: Any) -> Generator[Any, Any, bytes]:
        # recv() and SocketStream.receive_some(): _io() written out, in one
        # generator - the hot path of every server, where each generator
        # layer costs. ``stream`` (or None) marks itself busy while this
        # runs and turns OSError into its own errors (_busy, _broken).
        # BufferedReceiveStream.receive_until has a copy of this for a
        # SocketStream: keep the two in step.
        if stream is not None:
            if stream._receiving:
                raise stream._busy("receiving")
            stream._receiving = True
        try:
            # _check_usable()'s conditions, checked inline (it raises the error).
            kernel = local.kernel
            if (
                self._closed
                or kernel is None
                or (task := kernel.current_task) is None
                or task._scope._eff
            ):
                self._check_usable()
            # (self._sock.recv(...) called, not bound to a local: binding makes
            # a method object, which costs more than the second lookup.)
            if not self._drained:
                try:
                    # (without flags the call has one argument less to parse)
                    data = self._sock.recv(bufsize, flags) if flags else self._sock.recv(bufsize)
                except BlockingIOError:
                    pass
                else:
                    self._drained = len(data) < bufsize
                    streak = self._streak + 1
                    if streak >= _STREAK:
                        streak = 0
                        yield _RESCHEDULE
                    self._streak = streak
                    return data
            # The buffer was empty last time (a request/response peer waits
            # for our answer): wait for data first, saving a failing recv.
            self._streak = 0
            request = ("wait_readable", self._sock.fileno(), self)
            while True:
                yield request
                if self._closed:
                    raise ClosedResourceError("this socket was closed while a task waited on it")
                try:
                    data = self._sock.recv(bufsize, flags) if flags else self._sock.recv(bufsize)
                except BlockingIOError:
                    continue
                self._drained = len(data) < bufsize
                return data
        except OSError as exc:
            if stream is None:
                raise
            raise stream._broken(exc, "receiving") from exc
        finally:
            if stream is not None:
                stream._receiving = False

    @types.coroutine
    def recv_into(
        self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0
    ) -> Generator[Any, Any, int]:
        """Receive into ``buffer``; returns the number of bytes received."""
        return (yield from self._io("wait_readable", self._sock.recv_into, buffer, nbytes, flags))

    @types.coroutine
    def recvfrom(self, bufsize: int, flags: int = 0) -> Generator[Any, Any, tuple[bytes, Any]]:
        """Receive a datagram: ``(data, address)``."""
        return (yield from self._io("wait_readable", self._sock.recvfrom, bufsize, flags))

    @types.coroutine
    def send(self, data: Buffer, flags: int = 0) -> Generator[Any, Any, int]:
        """Send some of ``data``; returns how many bytes were sent."""
        return (yield from self._io("wait_writable", self._sock.send, data, flags))

    @types.coroutine
    def sendto(self, data: Buffer, address: Any) -> Generator[Any, Any, int]:
        """Send a datagram to ``address`` (a resolved address)."""
        return (yield from self._io("wait_writable", self._sock.sendto, data, address))

    def sendall(self, data: Buffer, flags: int = 0) -> Generator[Any, Any, None]:
        """Send all of ``data``, waiting as needed. If cancelled midway,
        an unknown part of it was sent: treat the connection as broken."""
        return self._sendall(data, flags, None)

    @types.coroutine
    def _sendall(self, data: Buffer, flags: int, stream: Any) -> Generator[Any, Any, None]:
        # sendall() and SocketStream.send_all(), like _recv().
        if stream is not None:
            if stream._sending:
                raise stream._busy("sending")
            stream._sending = True
        try:
            kernel = local.kernel  # _check_usable() inline, as in _recv()
            if (
                self._closed
                or kernel is None
                or (task := kernel.current_task) is None
                or task._scope._eff
            ):
                self._check_usable()
            cls = data.__class__
            total = len(data) if cls is bytes or cls is bytearray else memoryview(data).nbytes
            try:
                # (without flags the call has one argument less to parse)
                sent = self._sock.send(data, flags) if flags else self._sock.send(data)
            except BlockingIOError:
                sent = 0
            else:
                if sent == total:
                    streak = self._streak + 1
                    if streak >= _STREAK:
                        streak = 0
                        yield _RESCHEDULE
                    self._streak = streak
                    return
            self._streak = 0
            send = self._sock.send
            request = ("wait_writable", self._sock.fileno(), self)
            with memoryview(data) as view, view.cast("B") as mv:
                while sent < total:
                    yield request
                    if self._closed:
                        raise ClosedResourceError(
                            "this socket was closed while a task waited on it"
                        )
                    try:
                        sent += send(mv[sent:], flags)
                    except BlockingIOError:
                        pass
        except OSError as exc:
            if stream is None:
                raise
            raise stream._broken(exc, "sending") from exc
        finally:
            if stream is not None:
                stream._sending = False

    @types.coroutine
    def accept(self) -> Generator[Any, Any, tuple[SocketType, Any]]:
        """Accept a connection: ``(SocketType, address)``."""
        sock, addr = yield from self._io("wait_readable", self._sock.accept)
        return SocketType(sock), addr

    @types.coroutine
    def connect(self, address: Any) -> Generator[Any, Any, None]:
        """Connect to ``address``. A host name (not a numeric address) is
        resolved with :func:`getaddrinfo` first.

        If the connect fails or is cancelled (even before it started), the
        socket is closed: its state is unknown; make a new one to try again.
        """
        if self._closed:
            raise ClosedResourceError("this socket was closed")
        sock = self._sock
        try:
            _cancel_check()
            if self.family in (_stdlib_socket.AF_INET, _stdlib_socket.AF_INET6):
                address = yield from _resolve_address(self, address)
            try:
                sock.connect(address)
            except BlockingIOError:  # EINPROGRESS: finish it below
                pass
            else:
                yield _RESCHEDULE
                return
            yield from self._wait("wait_writable")
            err = sock.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ERROR)
            if err:
                raise OSError(err, f"Error connecting to {address!r}: {os.strerror(err)}")
        except BaseException:
            self.close()
            raise


@types.coroutine
def _resolve_address(sock: SocketType, address: Any) -> Generator[Any, Any, Any]:
    if not isinstance(address, tuple) or len(address) < 2:
        raise ValueError(f"address must be a (host, port, ...) tuple, got {address!r}")
    host, port, *rest = address
    if sock.family == _stdlib_socket.AF_INET6 and not rest:
        rest = [0, 0]
    infos = yield from getaddrinfo(host, port, sock.family, sock.type, sock.proto)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"no address found for {host!r}")
    resolved = infos[0][4]
    if sock.family == _stdlib_socket.AF_INET6:
        return (resolved[0], resolved[1], *rest[:2])
    return resolved


def socket(
    family: int = _stdlib_socket.AF_INET,
    type: int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
) -> SocketType:
    """A new non-blocking :class:`SocketType` (same arguments as :func:`socket.socket`)."""
    return SocketType(_stdlib_socket.socket(family, type, proto))


def from_stdlib_socket(sock: _stdlib_socket.socket) -> SocketType:
    """Wrap an existing stdlib socket (it is set non-blocking, and owned by
    the wrapper from now on)."""
    return SocketType(sock)


# ------------------------------------------------------------- getaddrinfo

AddrInfo = tuple[int, int, int, str, Any]


class _Lookup:
    """One getaddrinfo call running in its own thread.

    The thread hands its result to the loop with ``call_soon_threadsafe``;
    :meth:`deliver` runs on the loop thread and wakes the parked task, unless
    the task was cancelled meanwhile (then the result is dropped).
    """

    #: A task parked on this is woken from outside the loop (a thread, a
    #: signal): on virtual time, the kernel does not call it a deadlock.
    wakes_from_outside = True

    __slots__ = ("abandoned", "kernel", "task")

    def __init__(self, kernel: Any, task: Task[Any]) -> None:
        self.kernel = kernel
        self.task = task
        self.abandoned = False

    def run(self, args: tuple[Any, ...]) -> None:
        try:
            outcome: tuple[bool, Any] = (True, _stdlib_socket.getaddrinfo(*args))
        except BaseException as exc:
            outcome = (False, exc)
        try:
            self.kernel.call_soon_threadsafe(self.deliver, outcome)
        except RuntimeError:  # the run finished meanwhile: nobody is waiting
            pass

    def deliver(self, outcome: tuple[bool, Any]) -> None:
        if not self.abandoned:
            self.kernel.reschedule(self.task, outcome)

    def abort(self, task: Task[Any]) -> bool:
        self.abandoned = True
        return True

    def __repr__(self) -> str:
        return "<getaddrinfo in a thread>"


@types.coroutine
def getaddrinfo(
    host: str | bytes | None,
    port: str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> Generator[Any, Any, list[AddrInfo]]:
    """:func:`socket.getaddrinfo` without blocking the loop.

    Numeric hosts and ports (``"127.0.0.1"``, ``"::1"``, ``8080``) are
    resolved at once; anything else is looked up in a thread of its own. A
    cancelled lookup returns at once: the thread finishes in the background
    and its result is dropped. A checkpoint.
    """
    _cancel_check()
    try:
        numeric: list[AddrInfo] = _stdlib_socket.getaddrinfo(  # type: ignore[assignment]
            host,
            port,
            family,
            type,
            proto,
            flags | _stdlib_socket.AI_NUMERICHOST | _stdlib_socket.AI_NUMERICSERV,
        )
    except _stdlib_socket.gaierror:
        pass
    else:
        yield _RESCHEDULE
        return numeric
    kernel = current_kernel()
    task = kernel.current_task
    assert task is not None
    lookup = _Lookup(kernel, task)
    thread = threading.Thread(
        target=lookup.run,
        args=((host, port, family, type, proto, flags),),
        name=f"yieldloop getaddrinfo({host!r}, {port!r})",
        daemon=True,
    )
    thread.start()
    ok, value = yield ("park", lookup.abort, lookup)
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
