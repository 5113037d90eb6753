"""TCP servers: listeners, and the accept loop that runs a handler per
connection.

Layer 4. :func:`serve_tcp` = :func:`open_tcp_listeners` +
:func:`serve_listeners`. Each connection gets a task of its own, in a
:class:`~yieldloop.TaskGroup` that belongs to the server; its stream is
closed when the handler returns or fails. A failing handler is logged
(logger ``"yieldloop.server"``) and never stops the server; cancelling the
server closes the listeners and cancels every handler.
"""

from __future__ import annotations

import errno
import logging
import socket as _stdlib_socket
import ssl
import types
from collections.abc import Callable, Generator
from types import CoroutineType, GeneratorType
from typing import Any

from .._kernel._errors import BrokenResourceError, ClosedResourceError
from .._kernel._kernel import coerce_coroutine
from .._kernel._requests import sleep
from .._structured._group import TASK_STATUS_IGNORED, TaskGroup
from .._structured._timeouts import fail_after, move_on_after
from .._sync._common import AsyncResource
from ._socket import SocketType, dual, getaddrinfo, socket
from ._streams import SocketStream
from ._tls import TLSStream

__all__ = ["SocketListener", "open_tcp_listeners", "serve_listeners", "serve_tcp"]

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
    ``async with listener:`` closes it."""

    __slots__ = ("socket",)

    def __init__(self, sock: SocketType) -> None:
        if not isinstance(sock, SocketType):
            raise TypeError(f"SocketListener needs a yieldloop SocketType, got {sock!r}")
        if sock.type != _stdlib_socket.SOCK_STREAM:
            raise ValueError("SocketListener needs a SOCK_STREAM socket")
        #: The listening :class:`SocketType`.
        self.socket = sock

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
        self.socket.close()
        yield ("checkpoint",)

    def close(self) -> None:
        """Close the listening socket at once."""
        self.socket.close()


    def __repr__(self) -> str:
        return f"<SocketListener {self.socket!r}>"


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
    if backlog is None:
        backlog = 0xFFFF  # the system caps it at its own maximum
    elif isinstance(backlog, bool) or not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int or None, got {backlog!r}")
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


@types.coroutine
def _drive(coro: Any) -> Generator[Any, Any, Any]:
    if isinstance(coro, GeneratorType):
        return (yield from coro)
    return (yield from coro.__await__())


def _peer_of(stream: SocketStream) -> str:
    try:
        return str(stream.socket.getpeername())
    except (OSError, ClosedResourceError):
        return "(unknown peer)"


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
    handler: Callable[..., Any], stream: SocketStream, peer: str, tls: _TLSOptions | None
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
        coro = coerce_coroutine(handler, (conn,), "serve_tcp")
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
) -> None:
    async with listener:
        out_of_fds = False
        while True:
            try:
                stream = await listener.accept()
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
                tg.spawn(_run_handler, handler, stream, peer, tls, name=f"handler for {peer}")
            except BaseException:
                stream.close()
                raise


@dual
async def serve_listeners(
    handler: Callable[..., Any],
    listeners: list[SocketListener],
    *,
    ssl_context: ssl.SSLContext | None = None,
    https_compatible: bool = False,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
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
    Cancelling the server closes the listeners and cancels the handlers.
    """
    listeners = list(listeners)
    if not listeners:
        raise ValueError("serve_listeners() needs at least one listener")
    tls = _tls_options(ssl_context, https_compatible, handshake_timeout)
    await _serve(handler, listeners, tls, task_status)


async def _serve(
    handler: Callable[..., Any],
    listeners: list[SocketListener],
    tls: _TLSOptions | None,
    task_status: Any,
) -> None:
    try:
        async with TaskGroup() as tg:
            for listener in listeners:
                tg.spawn(
                    _serve_one_listener, listener, tg, handler, tls, name=f"accept on {listener}"
                )
            task_status.started(listeners)
    finally:
        for listener in listeners:
            listener.close()


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
    task_status: Any = TASK_STATUS_IGNORED,
) -> None:
    """Serve TCP on ``port``: :func:`open_tcp_listeners` then
    :func:`serve_listeners` (with ``ssl_context``: TLS on every
    connection, see there). ``task_status.started()`` gets the list of
    listeners::

        listeners = await tg.start(functools.partial(serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
    """
    tls = _tls_options(ssl_context, https_compatible, handshake_timeout)
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    await _serve(handler, listeners, tls, task_status)
