"""Opening connections: :func:`open_tcp_stream` (Happy Eyeballs, optional
TLS), :func:`open_unix_stream` and :func:`open_udp_socket`.

Layer 4, above the stream classes (``_streams``) and TLS (``_tls``).
"""

from __future__ import annotations

import socket as _stdlib_socket
import ssl
from typing import Any, overload

from .._kernel._requests import Awaitable, _Dual
from .._structured._group import TaskGroup
from .._structured._timeouts import move_on_after
from .._sync._event import Event
from ._socket import SocketType, dual, getaddrinfo, socket
from ._streams import SocketStream
from ._tls import TLSStream

__all__ = ["open_tcp_stream", "open_udp_socket", "open_unix_stream"]


def _interleave(targets: list[Any]) -> list[Any]:
    """Order addresses for Happy Eyeballs (RFC 8305): alternate families,
    starting with the family of the first address."""
    if not targets:
        return []
    first = targets[0][0]
    a = [t for t in targets if t[0] == first]
    b = [t for t in targets if t[0] != first]
    out: list[Any] = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            out.append(a[i])
        if i < len(b):
            out.append(b[i])
    return out


def _format_addr(sockaddr: Any) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host = sockaddr[0]
        return f"[{host}]:{sockaddr[1]}" if ":" in str(host) else f"{host}:{sockaddr[1]}"
    return repr(sockaddr)


async def connect_happy_eyeballs(
    targets: list[tuple[int, int, int, str, Any]],
    happy_eyeballs_delay: float,
    what: str,
) -> SocketStream:
    """Connect to the first of ``targets`` (``getaddrinfo`` results) that
    answers, starting the next attempt after ``happy_eyeballs_delay`` seconds
    or as soon as the previous one fails. The first success wins; the other
    attempts are cancelled and their sockets closed."""
    if not targets:
        raise OSError(f"no addresses to connect to for {what}")
    winner: list[SocketType] = []
    errors: list[tuple[Any, OSError]] = []

    async def attempt(target: tuple[int, int, int, str, Any], failed: Event) -> None:
        family, type_, proto, _, sockaddr = target
        sock: SocketType | None = None
        try:
            sock = socket(family, type_, proto)  # may fail: e.g. no IPv6 here
            await sock.connect(sockaddr)
        except OSError as exc:
            if sock is not None:
                sock.close()
            errors.append((sockaddr, exc))
            failed.set()
            return
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        if winner:  # two connected in the same round: keep the first
            sock.close()
            return
        winner.append(sock)
        tg.cancel_scope.cancel()

    try:
        async with TaskGroup() as tg:
            for target in targets:
                failed = Event()
                tg.spawn(attempt, target, failed, name=f"connect to {_format_addr(target[4])}")
                with move_on_after(happy_eyeballs_delay):
                    await failed.wait()
    except BaseException:
        for sock in winner:
            sock.close()
        raise
    if not winner:
        details = "; ".join(f"{_format_addr(addr)}: {exc}" for addr, exc in errors)
        raise OSError(f"all attempts to connect to {what} failed: {details}") from (
            ExceptionGroup("connection errors", [exc for _, exc in errors])
        )
    sock = winner[0]
    try:
        return SocketStream(sock)
    except BaseException:
        sock.close()
        raise


async def _open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    https_compatible: bool = False,
    happy_eyeballs_delay: float = 0.25,
) -> SocketStream | TLSStream:
    if not isinstance(host, (str, bytes)):
        raise TypeError(f"host must be a str or bytes, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {port!r}")
    if happy_eyeballs_delay < 0:
        raise ValueError(f"happy_eyeballs_delay must be >= 0, got {happy_eyeballs_delay!r}")
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext or None, got {ssl_context!r}")
    targets = await getaddrinfo(host, port, type=_stdlib_socket.SOCK_STREAM)
    shown = host.decode() if isinstance(host, bytes) else host
    transport = await connect_happy_eyeballs(
        _interleave(targets), happy_eyeballs_delay, f"{shown}:{port}"
    )
    if ssl_context is None:
        return transport
    try:
        stream = TLSStream(
            transport, ssl_context, server_hostname=shown, https_compatible=https_compatible
        )
        await stream.do_handshake()
    except BaseException:
        transport.close()
        raise
    return stream


@overload
def open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    ssl_context: None = None,
    https_compatible: bool = False,
    happy_eyeballs_delay: float = 0.25,
) -> Awaitable[SocketStream]: ...


@overload
def open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    ssl_context: ssl.SSLContext,
    https_compatible: bool = False,
    happy_eyeballs_delay: float = 0.25,
) -> Awaitable[TLSStream]: ...


def open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    https_compatible: bool = False,
    happy_eyeballs_delay: float = 0.25,
) -> Awaitable[SocketStream] | Awaitable[TLSStream]:
    """Connect to ``host``:``port`` over TCP and return a :class:`SocketStream`
    (or, with ``ssl_context``, a :class:`TLSStream` whose handshake is done).

    ``host`` is resolved with :func:`getaddrinfo`; with several addresses
    (IPv6 and IPv4, say) the attempts are raced by Happy Eyeballs
    (RFC 8305): a new attempt starts every ``happy_eyeballs_delay`` seconds,
    or as soon as the one before it fails, and the first connection wins.
    If every attempt fails, the :class:`OSError` lists each address and its
    error (and its ``__cause__`` is an ``ExceptionGroup`` of them).

    With ``ssl_context`` (e.g. :func:`ssl.create_default_context`), TLS is
    run over the connection, with ``host`` as the SNI name and the name the
    server's certificate must match; a failed handshake raises
    :class:`~yieldloop.BrokenResourceError` (its ``__cause__`` is the
    :class:`ssl.SSLError`) and closes the connection. ``https_compatible``:
    see :class:`TLSStream`.
    """
    # The overloads above tell which: a TLSStream exactly when ssl_context is given.
    return _Dual(  # type: ignore[return-value]
        _open_tcp_stream,
        (host, port),
        {
            "ssl_context": ssl_context,
            "https_compatible": https_compatible,
            "happy_eyeballs_delay": happy_eyeballs_delay,
        },
    )


@dual
async def open_unix_stream(path: str | bytes) -> SocketStream:
    """Connect to the unix-domain socket at ``path``."""
    family = getattr(_stdlib_socket, "AF_UNIX", None)
    if family is None:  # pragma: no cover - not on this platform
        raise RuntimeError("unix sockets are not supported on this platform")
    sock = socket(family, _stdlib_socket.SOCK_STREAM)
    try:
        await sock.connect(path)
        return SocketStream(sock)
    except BaseException:
        sock.close()
        raise


def open_udp_socket(
    local_host: str | None = None,
    local_port: int = 0,
    *,
    family: int = _stdlib_socket.AF_INET,
) -> SocketType:
    """A UDP :class:`SocketType` bound to ``local_host``:``local_port``
    (``None``: every interface; port 0: any free port). Use
    ``await sock.sendto(data, address)`` and ``await sock.recvfrom(n)``.
    ``local_host`` must be a numeric address."""
    sock = socket(family, _stdlib_socket.SOCK_DGRAM)
    try:
        host = "" if local_host is None else local_host
        sock.bind((host, local_port))
    except BaseException:
        sock.close()
        raise
    return sock
