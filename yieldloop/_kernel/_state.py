"""Which kernel is running in this thread.

Layer 1 (kernel). A tiny module of its own so that the kernel, tasks and cancel
scopes can all find the running kernel without importing each other in a cycle.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = ["current_kernel", "running_kernel"]


class _Local(threading.local):
    kernel: Kernel | None = None


local = _Local()


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
