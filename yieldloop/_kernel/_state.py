"""Which kernel is running in this thread.

Layer 1 (kernel). A tiny module of its own so that the kernel, tasks and cancel
scopes can all find the running kernel without importing each other in a cycle.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = ["current_kernel", "enter_thread", "leave_thread", "running_kernel"]


class _Local(threading.local):
    kernel: Kernel | None = None


local = _Local()

#: sniffio's thread-local (``sniffio.thread_local``) once looked up; False
#: when sniffio is not installed. Libraries that support several runtimes
#: (anyio, httpx...) ask sniffio which one is running.
_sniffio_local: Any = None


def enter_thread(kernel: Kernel) -> str | None:
    """Make ``kernel`` the one running in this thread (and tell sniffio that
    ``"yieldloop"`` runs); returns what to hand to :func:`leave_thread`."""
    global _sniffio_local
    local.kernel = kernel
    tl = _sniffio_local
    if tl is None:
        try:
            import sniffio
        except ImportError:
            tl = _sniffio_local = False
        else:
            tl = _sniffio_local = sniffio.thread_local
    if tl is False:
        return None
    old: str | None = tl.name
    tl.name = "yieldloop"
    return old


def leave_thread(token: str | None) -> None:
    """Undo :func:`enter_thread`."""
    local.kernel = None
    if _sniffio_local:
        _sniffio_local.name = token


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
