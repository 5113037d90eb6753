"""Which kernel is running in this thread.

Layer 1 (kernel). A tiny module of its own so that the kernel, tasks and cancel
scopes can all find the running kernel without importing each other in a cycle.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = ["current_kernel", "enter_thread", "leave_thread", "running_kernel"]


class _Local(threading.local):
    kernel: Kernel | None = None


local = _Local()


def enter_thread(kernel: Kernel) -> str | None:
    """Make ``kernel`` the one running in this thread (and tell sniffio, if
    it is imported, that ``"yieldloop"`` runs: libraries that support several
    runtimes, such as anyio, ask it); returns what to hand to
    :func:`leave_thread`. sniffio is not imported here: a library that asks
    it has imported it already (anyio does, at import)."""
    local.kernel = kernel
    sniffio = sys.modules.get("sniffio")
    if sniffio is None:
        return _NO_SNIFFIO
    tl = sniffio.thread_local
    old: str | None = tl.name
    tl.name = "yieldloop"
    return old


#: What enter_thread returns when sniffio was not imported.
_NO_SNIFFIO = "\0no sniffio"


def leave_thread(token: str | None) -> None:
    """Undo :func:`enter_thread`."""
    local.kernel = None
    if token != _NO_SNIFFIO:
        sniffio = sys.modules.get("sniffio")
        if sniffio is not None:
            sniffio.thread_local.name = token


def current_kernel() -> Kernel:
    """The kernel running in this thread, or a clear ``RuntimeError``."""
    kernel = local.kernel
    if kernel is None:
        raise RuntimeError(
            "this must be called from inside yieldloop.run() (no yieldloop kernel is "
            "running in this thread)"
        )
    return kernel


def running_kernel() -> Kernel | None:
    """The kernel running in this thread, or None."""
    return local.kernel
