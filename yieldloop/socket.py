"""``yieldloop.socket``: the stdlib socket, made async.

:func:`socket` and :func:`from_stdlib_socket` give a :class:`SocketType`
whose blocking operations (``accept``, ``connect``, ``recv``, ``recv_into``,
``send``, ``sendall``, ``sendto``, ``recvfrom``) are awaitables that try the
system call first and wait for the file descriptor only when it would block.
:func:`getaddrinfo` resolves names in a worker thread, off the loop. The
stdlib's constants are re-exported, so ``yieldloop.socket.AF_INET`` works.
"""

from __future__ import annotations

import socket as _stdlib_socket
from typing import Any

from ._io._socket import SocketType, from_stdlib_socket, getaddrinfo, socket

__all__ = ["SocketType", "from_stdlib_socket", "getaddrinfo", "socket"]


def __getattr__(name: str) -> Any:
    # The stdlib's constants and helpers (AF_INET, SOCK_STREAM, inet_aton, ...).
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return getattr(_stdlib_socket, name)
    except AttributeError:
        raise AttributeError(f"module 'yieldloop.socket' has no attribute {name!r}") from None
