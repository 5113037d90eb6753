"""The kernel's low-level interface, for building primitives and I/O.

Everything in yieldloop above the kernel - task groups, and later locks,
queues and sockets - is made from these few operations:

* :func:`park` suspends the current task until someone calls
  :func:`reschedule` (or :func:`reschedule_throw`) on it;
* :func:`wait_readable` / :func:`wait_writable` wait for a file descriptor;
* :func:`current_kernel` gives the running :class:`Kernel`.

The raw requests (``yield ("park", abort_fn)`` and friends) are listed in
:data:`KNOWN_REQUESTS` and documented in the kernel module.
"""

from __future__ import annotations

from typing import Any

from ._kernel._kernel import KNOWN_REQUESTS, Kernel
from ._kernel._requests import park, wait_readable, wait_writable
from ._kernel._state import current_kernel
from ._kernel._task import Task

__all__ = [
    "KNOWN_REQUESTS",
    "Kernel",
    "current_kernel",
    "park",
    "reschedule",
    "reschedule_throw",
    "wait_readable",
    "wait_writable",
]


def reschedule(task: Task[Any], value: Any = None) -> None:
    """Wake a task suspended in :func:`park`; ``park`` returns ``value``."""
    task._kernel.reschedule(task, value)


def reschedule_throw(task: Task[Any], exc: BaseException) -> None:
    """Wake a task suspended in :func:`park` by raising ``exc`` there."""
    task._kernel.reschedule_throw(task, exc)
