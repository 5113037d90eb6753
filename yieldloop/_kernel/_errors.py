"""Exceptions raised by the kernel and the structured-concurrency layer.

Layer 1 (kernel). Nothing here imports any other yieldloop module.
"""

from __future__ import annotations

__all__ = [
    "BrokenResourceError",
    "Cancelled",
    "ClosedResourceError",
    "Deadlock",
    "EndOfChannel",
    "QueueEmpty",
    "QueueFull",
    "RunFinishedError",
    "TaskCancelled",
    "TooManySteps",
    "WouldBlock",
]


class Cancelled(BaseException):
    """Raised at a checkpoint inside a cancelled :class:`~yieldloop.CancelScope`.

    ``Cancelled`` derives from :class:`BaseException` (like ``KeyboardInterrupt``)
    so that ``except Exception:`` does not swallow it by accident. The cancel
    scope that was cancelled catches it again when the ``with`` block exits, so
    you should let it propagate: catch it only to re-raise it.

    Cancellation is *level-triggered*: while a task is inside a cancelled
    scope, every checkpoint raises a new ``Cancelled``. Cleanup code that must
    await something should run inside ``CancelScope(shield=True)``.
    """

    def __str__(self) -> str:
        return self.args[0] if self.args else "Cancelled"


class TaskCancelled(Exception):
    """Raised by ``await task`` / ``task.result()`` for a task that was cancelled.

    A task that ends because it was cancelled (through ``task.cancel()`` or a
    cancel scope around it) did not produce a result. Awaiting it raises this
    ordinary exception rather than :class:`Cancelled`, so the awaiting task is
    not mistaken for one that is being cancelled itself.
    """


class RunFinishedError(RuntimeError):
    """An object that belongs to a finished (or different) :func:`~yieldloop.run` was used."""


class ClosedResourceError(Exception):
    """A resource (channel end, socket, stream) was used after *this side*
    closed it, or closed while a task was waiting on it."""


class BrokenResourceError(Exception):
    """The other side of a resource went away: e.g. sending on a channel
    whose receiving ends are all closed."""


class EndOfChannel(Exception):
    """Receiving from a channel whose sending ends are all closed and whose
    buffer is empty. ``async for`` over a channel ends on it."""


class WouldBlock(Exception):
    """A ``*_nowait`` operation could not complete without waiting."""


class QueueEmpty(WouldBlock):
    """``Queue.get_nowait()`` on an empty queue."""


class QueueFull(WouldBlock):
    """``Queue.put_nowait()`` on a full queue."""


class Deadlock(RuntimeError):
    """Raised by :func:`~yieldloop.run` on virtual time when every task
    waits for something that no task, timer, I/O or thread can ever bring:
    two tasks each waiting for a lock the other holds, a task waiting for an
    event nobody will set. The message names every task and what it waits
    on (a lock and its holder, a queue, an event, a child task)."""


class TooManySteps(RuntimeError):
    """A run under a scheduler took more steps than its ``max_steps`` (a
    livelock, or a test too long to explore)."""
