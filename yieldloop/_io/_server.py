"""Servers: listeners (TCP and Unix-domain), and the accept loop that runs a
handler per connection.

Layer 4. :func:`serve_tcp` = :func:`open_tcp_listeners` +
:func:`serve_listeners`; :func:`serve_unix` = :func:`open_unix_listeners` +
:func:`serve_listeners`. Each connection gets a task of its own, in a
:class:`~yieldloop.TaskGroup` that belongs to the server; its stream is
closed when the handler returns or fails. A failing handler is logged
(logger ``"yieldloop.server"``) and never stops the server.

Stopping (cancelling) a server closes its listeners at once. Then, with no
``grace_period``, every handler is cancelled. With ``grace_period=s`` the
handlers run in a shielded cancel scope, so the cancellation that stops the
server does not reach them; that scope's deadline is set to now + ``s`` at
that moment, so they get ``s`` seconds to finish on their own, and are
cancelled when the deadline passes. Cancellation is level-triggered: the
server's task stays cancelled while it waits, but the wait is bounded by the
deadline, so stopping never hangs on a handler that does not end.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket as _stdlib_socket
import ssl
import stat
import types
from collections.abc import Callable, Generator
from types import CoroutineType, GeneratorType
from typing import Any

from .._kernel._errors import BrokenResourceError, ClosedResourceError
from .._kernel._kernel import coerce_coroutine
from .._kernel._requests import current_time, sleep, sleep_forever
from .._kernel._scope import CancelScope
from .._structured._group import TASK_STATUS_IGNORED, TaskGroup
from .._structured._timeouts import fail_after, move_on_after
from .._sync._common import AsyncResource
from .._sync._event import Event
from ._socket import SocketType, dual, getaddrinfo, socket
from ._streams import SocketStream
from ._tls import TLSStream

__all__ = [
    "SocketListener",
    "open_tcp_listeners",
    "open_unix_listeners",
    "serve_listeners",
    "serve_tcp",
    "serve_unix",
]

logger = logging.getLogger("yieldloop.server")

#: Seconds a TLS client gets to finish its handshake before it is dropped.
DEFAULT_HANDSHAKE_TIMEOUT = 60.0

# Seconds spent at most sending close_notify when a TLS connection ends.
_TLS_CLOSE_GRACE = 1.0

#: Errors from ``accept()`` that concern one connection that went away
#: before we took it (or a firewall refusing it): skip it and go on.
_IGNORED_ACCEPT_ERRNOS = {
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
}

#: Errors from ``accept()`` that mean "out of resources": the server waits
#: a little and tries again instead of spinning (or stopping).
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}

#: How long the accept loop sleeps after running out of file descriptors.
ACCEPT_BACKOFF = 0.1


class SocketListener(AsyncResource):
    """A listening :class:`~yieldloop.SocketType`: ``await accept()``
    returns a :class:`~yieldloop.SocketStream` for each new connection.
    ``async with listener:`` closes it. A listener made by
    :func:`open_unix_listeners` also removes its socket file when it closes
    (if the file is still the one it bound)."""

    __slots__ = ("_socket_file", "socket")

    def __init__(self, sock: SocketType) -> None:
        if not isinstance(sock, SocketType):
            raise TypeError(f"SocketListener needs a yieldloop SocketType, got {sock!r}")
        if sock.type != _stdlib_socket.SOCK_STREAM:
            raise ValueError("SocketListener needs a SOCK_STREAM socket")
        #: The listening :class:`SocketType`.
        self.socket = sock
        # (absolute path, st_dev, st_ino) of the Unix socket file to remove
        # on close; None for other listeners.
        self._socket_file: tuple[str | bytes, int, int] | None = None

    @types.coroutine
    def accept(self) -> Generator[Any, Any, SocketStream]:
        """Wait for a connection and return it as a :class:`SocketStream`.

        A connection that was reset before we accepted it is skipped. Running
        out of file descriptors raises :class:`OSError` (``EMFILE``/``ENFILE``).
        """
        while True:
            try:
                sock, _ = yield from self.socket.accept()
            except OSError as exc:
                if exc.errno in _IGNORED_ACCEPT_ERRNOS:
                    continue
                raise
            try:
                return SocketStream(sock)
            except BaseException:
                sock.close()
                raise

    @types.coroutine
    def aclose(self) -> Generator[Any, Any, None]:
        """Stop listening and close the socket (a checkpoint, after closing)."""
        self.close()
        yield ("checkpoint",)

    def close(self) -> None:
        """Close the listening socket at once (and remove its Unix socket
        file, if it has one). Closing twice does nothing."""
        self.socket.close()
        socket_file = self._socket_file
        if socket_file is not None:
            self._socket_file = None
            _remove_socket_file(*socket_file)

    def __repr__(self) -> str:
        return f"<SocketListener {self.socket!r}>"


def _check_backlog(backlog: int | None) -> int:
    if backlog is None:
        return 0xFFFF  # the system caps it at its own maximum
    if isinstance(backlog, bool) or not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int or None, got {backlog!r}")
    return backlog


@dual
async def open_tcp_listeners(
    port: int, *, host: str | bytes | None = None, backlog: int | None = None
) -> list[SocketListener]:
    """Listen for TCP connections on ``port`` and return the listeners.

    ``host=None`` listens on every interface: one listener per address
    family (IPv4 and IPv6, with ``IPV6_V6ONLY`` set). Port 0 picks a free
    port - a different one for each listener; read it from
    ``listener.socket.getsockname()``. ``backlog=None`` asks for the
    largest queue the system allows. ``SO_REUSEADDR`` is set.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {port!r}")
    backlog = _check_backlog(backlog)
    infos = await getaddrinfo(
        host, port, 0, _stdlib_socket.SOCK_STREAM, 0, _stdlib_socket.AI_PASSIVE
    )
    seen: set[tuple[int, Any]] = set()
    listeners: list[SocketListener] = []
    unsupported: list[OSError] = []
    try:
        for family, type_, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            try:
                sock = socket(family, type_, proto)
            except OSError as exc:
                if exc.errno == errno.EAFNOSUPPORT:  # e.g. IPv6 disabled
                    unsupported.append(exc)
                    continue
                raise
            try:
                sock.setsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_REUSEADDR, 1)
                if family == getattr(_stdlib_socket, "AF_INET6", None):
                    sock.setsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
                sock.listen(backlog)
                listeners.append(SocketListener(sock))
            except OSError as exc:
                sock.close()
                raise OSError(
                    exc.errno, f"cannot listen on {sockaddr!r}: {exc.strerror or exc}"
                ) from exc
            except BaseException:
                sock.close()
                raise
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    if not listeners:
        raise OSError(f"could not listen on port {port} of {host!r}: {unsupported}")
    return listeners


#: ``connect()`` results that mean "a server is listening there": it
#: accepted, or its queue is full.
_LIVE_ERRNOS = {0, errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS}

# What a Unix socket path may be given as.
_UnixPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]


def _remove_socket_file(path: str | bytes, dev: int, ino: int) -> None:
    """Remove the socket file at ``path`` if it is still the one a listener
    bound (same device and inode): not a file someone else put there since."""
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == (dev, ino):
            os.unlink(path)
    except OSError:
        pass


def _clear_stale_socket(path: str | bytes) -> None:
    """Make way for binding ``path``: nothing there, or a stale socket file
    (nobody listens on it: its server died) that is removed. A socket a
    server listens on, or a file that is not a socket, raises."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError:
        return  # e.g. no permission to look: bind() will say what is wrong
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(
            errno.EEXIST,
            f"cannot listen on {path!r}: the path exists and is not a socket "
            "(it is left alone; remove it or choose another path)",
        )
    probe = _stdlib_socket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        err = probe.connect_ex(path)
    finally:
        probe.close()
    if err in _LIVE_ERRNOS:
        raise OSError(
            errno.EADDRINUSE, f"cannot listen on {path!r}: a server is listening on that socket"
        )
    if err == errno.ENOENT:
        return  # removed meanwhile
    if err != errno.ECONNREFUSED:
        raise OSError(
            err,
            f"cannot listen on {path!r}: cannot tell whether the socket there is in use: "
            f"{os.strerror(err)}",
        )
    try:  # nobody listens: a leftover of a server that is gone
        os.unlink(path)
    except FileNotFoundError:
        pass


def _check_mode(mode: int | None) -> None:
    if mode is None:
        return
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int (such as 0o660) or None, got {mode!r}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"mode must be between 0 and 0o7777, got {mode:#o}")


@dual
async def open_unix_listeners(
    path: _UnixPath, *, mode: int | None = None, backlog: int | None = None
) -> list[SocketListener]:
    """Listen for connections on the Unix-domain socket ``path`` and return
    the listener (a list of one, as :func:`open_tcp_listeners` returns).

    If ``path`` exists: a stale socket file - one nobody listens on any more,
    left by a server that died - is replaced; a socket a server is listening
    on raises :class:`OSError` (``EADDRINUSE``), and anything that is not a
    socket raises :class:`FileExistsError` and is left alone. (Telling the
    two kinds of socket apart means connecting to it: a live server sees one
    connection that closes at once.)

    ``mode`` (e.g. ``0o600``) is applied to the socket file before the
    socket starts listening; connecting needs write permission on it. The
    directory should not be writable by untrusted users: the file is made
    with the process's umask and changed after. ``backlog=None`` asks for the
    largest queue the system allows.

    Closing the listener removes the socket file, unless it was replaced
    meanwhile (another file at the same path is left alone). A path that
    starts with a NUL byte is a Linux abstract socket: no file, no ``mode``.
    """
    family = getattr(_stdlib_socket, "AF_UNIX", None)
    if family is None:  # pragma: no cover - not on this platform
        raise RuntimeError("unix sockets are not supported on this platform")
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a str, bytes or os.PathLike, got {path!r}")
    path = os.fspath(path)
    if not path:
        raise ValueError("path must not be empty")
    _check_mode(mode)
    backlog = _check_backlog(backlog)
    abstract = path[:1] == ("\0" if isinstance(path, str) else b"\0")
    if abstract and mode is not None:
        raise ValueError("mode does not apply to an abstract socket (a path starting with NUL)")
    if not abstract:
        _clear_stale_socket(path)
    sock = socket(family, _stdlib_socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {path!r}: {exc.strerror or exc}") from exc
        socket_file: tuple[str | bytes, int, int] | None = None
        try:
            if not abstract:
                st = os.lstat(path)
                socket_file = (os.path.abspath(path), st.st_dev, st.st_ino)
                if mode is not None:
                    os.chmod(path, mode)
            sock.listen(backlog)
        except BaseException:
            if socket_file is not None:
                _remove_socket_file(*socket_file)
            raise
        listener = SocketListener(sock)
        listener._socket_file = socket_file
    except BaseException:
        sock.close()
        raise
    return [listener]


@types.coroutine
def _drive(coro: Any) -> Generator[Any, Any, Any]:
    if isinstance(coro, GeneratorType):
        return (yield from coro)
    return (yield from coro.__await__())


def _peer_of(stream: SocketStream) -> str:
    try:
        peer = stream.socket.getpeername()
    except (OSError, ClosedResourceError):
        return "(unknown peer)"
    if not peer:  # a Unix client whose socket has no name
        return "a unix-socket client"
    return str(peer)


class _TLSOptions:
    """How a server wraps each connection in TLS."""

    __slots__ = ("context", "handshake_timeout", "https_compatible")

    def __init__(
        self, context: ssl.SSLContext, https_compatible: bool, handshake_timeout: float
    ) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"ssl_context must be an ssl.SSLContext or None, got {context!r}")
        if not handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be > 0, got {handshake_timeout!r}")
        self.context = context
        self.https_compatible = https_compatible
        self.handshake_timeout = handshake_timeout


def _tls_options(
    context: ssl.SSLContext | None, https_compatible: bool, handshake_timeout: float
) -> _TLSOptions | None:
    return None if context is None else _TLSOptions(context, https_compatible, handshake_timeout)


async def _run_handler(
    handler: Callable[..., Any],
    stream: SocketStream,
    peer: str,
    tls: _TLSOptions | None,
    what: str,
) -> None:
    conn: SocketStream | TLSStream = stream
    try:
        if tls is not None:
            conn = TLSStream(
                stream, tls.context, server_side=True, https_compatible=tls.https_compatible
            )
            try:
                with fail_after(tls.handshake_timeout):
                    await conn.do_handshake()
            except (BrokenResourceError, ClosedResourceError, TimeoutError) as exc:
                logger.warning("TLS handshake with %s failed: %s", peer, exc.__cause__ or exc)
                return
        coro = coerce_coroutine(handler, (conn,), what)
        if coro.__class__ is CoroutineType:
            await coro  # one frame less between the kernel and the handler
        else:
            await _drive(coro)
    except Exception as exc:
        logger.error(
            "error in connection handler %s for %s",
            getattr(handler, "__qualname__", handler),
            peer,
            exc_info=exc,
        )
    finally:
        if conn is not stream:
            with move_on_after(_TLS_CLOSE_GRACE) as scope:
                scope.shield = True
                try:
                    await conn.aclose()  # close_notify, best effort
                except Exception:
                    pass
        stream.close()


async def _serve_one_listener(
    listener: SocketListener,
    tg: TaskGroup,
    handler: Callable[..., Any],
    tls: _TLSOptions | None,
    what: str,
    stopping: Event | None,
) -> None:
    async with listener:
        out_of_fds = False
        while True:
            try:
                stream = await listener.accept()
            except ClosedResourceError:
                if stopping is not None and stopping.is_set():
                    return  # the server closed it: it is stopping
                raise
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                if not out_of_fds:
                    out_of_fds = True
                    logger.error(
                        "accept() on %r failed: %s; retrying every %s s until it works",
                        listener,
                        exc,
                        ACCEPT_BACKOFF,
                    )
                await sleep(ACCEPT_BACKOFF)
                continue
            if out_of_fds:
                out_of_fds = False
                logger.info("accept() on %r works again", listener)
            peer = _peer_of(stream)
            try:
                tg.spawn(
                    _run_handler, handler, stream, peer, tls, what, name=f"handler for {peer}"
                )
            except BaseException:
                stream.close()
                raise


def _check_handler(handler: Any, what: str) -> None:
    if not callable(handler):
        raise TypeError(
            f"{what}() needs a handler: an async function (or a generator function) "
            f"taking the stream, got {handler!r}"
        )


def _check_grace_period(grace_period: float | None) -> float:
    """0.0 for "cancel the handlers at once", else the number of seconds."""
    if grace_period is None:
        return 0.0
    if isinstance(grace_period, bool) or not isinstance(grace_period, (int, float)):
        raise TypeError(f"grace_period must be a number of seconds or None, got {grace_period!r}")
    if not (grace_period >= 0 and math.isfinite(grace_period)):
        raise ValueError(
            f"grace_period must be a finite number of seconds >= 0, got {grace_period!r}"
        )
    return float(grace_period)


@dual
async def serve_listeners(
    handler: Callable[..., Any],
    listeners: list[SocketListener],
    *,
    ssl_context: ssl.SSLContext | None = None,
    https_compatible: bool = False,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    grace_period: float | None = None,
    task_status: Any = TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on every listener and run ``handler(stream)`` for
    each in a task of its own; never returns (cancel it to stop).

    With ``ssl_context`` each connection is a server-side
    :class:`~yieldloop.TLSStream`: its handshake runs (in the connection's
    task) before the handler is called; a client whose handshake fails or
    takes longer than ``handshake_timeout`` seconds is logged (warning) and
    dropped, and the server goes on. After the handler, the TLS session is
    closed with ``close_notify`` (best effort, at most 1 s).

    ``task_status.started(listeners)`` is called once the accept loops are
    running, so ``await tg.start(serve_listeners, handler, listeners)``
    returns the listeners. The stream is closed after the handler returns or
    fails. An exception from a handler is logged, with its traceback, to the
    ``"yieldloop.server"`` logger; the server goes on. Running out of file
    descriptors makes the accept loop wait 0.1 s between tries (logged once).

    Cancelling the server closes the listeners at once: new connections are
    refused. Then the running handlers are cancelled - at once with
    ``grace_period=None`` (or 0), or after up to ``grace_period`` seconds in
    which they may finish on their own (they do not see the cancellation of
    the server meanwhile). The server returns (raises ``Cancelled``) when
    the last handler has ended.
    """
    listeners = list(listeners)
    if not listeners:
        raise ValueError("serve_listeners() needs at least one listener")
    for listener in listeners:
        if not isinstance(listener, SocketListener):
            raise TypeError(f"serve_listeners() needs SocketListener objects, got {listener!r}")
    tls = _tls_options(ssl_context, https_compatible, handshake_timeout)
    grace = _check_grace_period(grace_period)
    await _serve(handler, listeners, tls, task_status, grace, "serve_listeners")


async def _serve(
    handler: Callable[..., Any],
    listeners: list[SocketListener],
    tls: _TLSOptions | None,
    task_status: Any,
    grace: float,
    what: str,
) -> None:
    try:
        _check_handler(handler, what)
        if grace:
            await _serve_with_grace(handler, listeners, tls, task_status, grace, what)
            return
        async with TaskGroup() as tg:
            _spawn_accept_loops(tg, listeners, tg, handler, tls, what, None)
            task_status.started(listeners)
    finally:
        for listener in listeners:
            listener.close()


def _spawn_accept_loops(
    tg: TaskGroup,
    listeners: list[SocketListener],
    handlers: TaskGroup,
    handler: Callable[..., Any],
    tls: _TLSOptions | None,
    what: str,
    stopping: Event | None,
) -> None:
    """One accept loop per listener in ``tg``, each starting the connection
    handlers in ``handlers``."""
    for listener in listeners:
        tg.spawn(
            _serve_one_listener,
            listener,
            handlers,
            handler,
            tls,
            what,
            stopping,
            name=f"accept on {listener}",
        )


async def _host_handlers(
    scope: CancelScope, stopping: Event, task_status: Any = TASK_STATUS_IGNORED
) -> None:
    """The task the handlers of a server with a grace period live under: a
    shielded scope around their task group, open until the server stops."""
    with scope:
        async with TaskGroup() as handlers:
            task_status.started(handlers)
            await stopping.wait()  # shielded: only the server's stop ends it


async def _serve_with_grace(
    handler: Callable[..., Any],
    listeners: list[SocketListener],
    tls: _TLSOptions | None,
    task_status: Any,
    grace: float,
    what: str,
) -> None:
    # The accept loops run in ``tg``, which sees the cancellation that stops
    # the server; the handlers run in a task group inside ``scope``, which
    # does not (shield=True) until its deadline, set when the server stops.
    scope = CancelScope(shield=True)
    stopping = Event()
    async with TaskGroup() as tg:
        handlers = await tg.start(_host_handlers, scope, stopping, name="connection handlers")
        try:
            _spawn_accept_loops(tg, listeners, handlers, handler, tls, what, stopping)
            task_status.started(listeners)
            await sleep_forever()
        finally:
            # Stopping (cancelled, or an accept loop failed): refuse new
            # connections now, and give the handlers ``grace`` seconds.
            stopping.set()
            for listener in listeners:
                listener.close()
            scope.deadline = current_time() + grace


@dual
async def serve_tcp(
    handler: Callable[..., Any],
    port: int,
    *,
    host: str | bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
    https_compatible: bool = False,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    backlog: int | None = None,
    grace_period: float | None = None,
    task_status: Any = TASK_STATUS_IGNORED,
) -> None:
    """Serve TCP on ``port``: :func:`open_tcp_listeners` then
    :func:`serve_listeners` (with ``ssl_context``: TLS on every
    connection; ``grace_period``: how long running handlers may go on after
    the server is cancelled; see there). ``task_status.started()`` gets the
    list of listeners::

        listeners = await tg.start(functools.partial(serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
    """
    tls = _tls_options(ssl_context, https_compatible, handshake_timeout)
    _check_handler(handler, "serve_tcp")
    grace = _check_grace_period(grace_period)
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    await _serve(handler, listeners, tls, task_status, grace, "serve_tcp")


@dual
async def serve_unix(
    handler: Callable[..., Any],
    path: _UnixPath,
    *,
    mode: int | None = None,
    backlog: int | None = None,
    grace_period: float | None = None,
    task_status: Any = TASK_STATUS_IGNORED,
) -> None:
    """Serve on the Unix-domain socket ``path``: :func:`open_unix_listeners`
    (a stale socket file is replaced, a live one or a non-socket file is an
    error; ``mode`` sets the file's permissions) then
    :func:`serve_listeners` (a task per connection, handler errors logged,
    ``grace_period`` on shutdown). The socket file is removed when the
    server stops. ``task_status.started()`` gets the list of listeners::

        await tg.start(functools.partial(serve_unix, handler, "/run/app.sock", mode=0o660))
    """
    _check_handler(handler, "serve_unix")
    grace = _check_grace_period(grace_period)
    listeners = await open_unix_listeners(path, mode=mode, backlog=backlog)
    await _serve(handler, listeners, None, task_status, grace, "serve_unix")
