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

from ._kernel._errors import RunFinishedError
from ._kernel._instruments import Instrument
from ._kernel._kernel import KNOWN_REQUESTS, Kernel
from ._kernel._requests import park, wait_readable, wait_writable
from ._kernel._state import current_kernel, running_kernel
from ._kernel._task import Task
from ._kernel._trace import TraceRecorder

__all__ = [
    "Instrument",
    "TraceRecorder",
    "KNOWN_REQUESTS",
    "Kernel",
    "current_kernel",
    "notify_closing",
    "park",
    "reschedule",
    "reschedule_throw",
    "wait_readable",
    "wait_writable",
]


def _kernel_of(task: Task[Any]) -> Kernel:
    kernel = task._kernel
    if kernel is None or kernel is not running_kernel():
        raise RunFinishedError(f"{task!r} does not belong to the yieldloop run in this thread")
    return kernel


def notify_closing(fd: int | Any) -> None:
    """Tell the kernel that ``fd`` (an int or an object with ``fileno()``) is
    about to be closed (outside a run this does nothing): tasks waiting on it
    are woken with
    :class:`~yieldloop.ClosedResourceError` and its poller registration is
    dropped. Anything that closes an fd it waited on must call this first."""
    if not isinstance(fd, int):
        fd = fd.fileno()
    kernel = running_kernel()
    if kernel is not None:  # outside a run nothing can be waiting on it
        kernel.notify_closing(fd)


def reschedule(task: Task[Any], value: Any = None) -> None:
    """Wake a task suspended in :func:`park`; ``park`` returns ``value``.
    Raises ``RuntimeError`` if the task is not parked."""
    _kernel_of(task).reschedule(task, value)


def reschedule_throw(task: Task[Any], exc: BaseException) -> None:
    """Wake a task suspended in :func:`park` by raising ``exc`` there.
    Raises ``RuntimeError`` if the task is not parked."""
    _kernel_of(task).reschedule_throw(task, exc)
