"""Event: a one-shot flag that tasks can wait for.

Layer 3.
"""

from __future__ import annotations

import types
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .._kernel._errors import Cancelled
from .._kernel._state import local
from ._common import Bound, enter_slow, kernel_of

if TYPE_CHECKING:
    from .._kernel._task import Task

__all__ = ["Event"]


class Event(Bound):
    """A flag that starts false; :meth:`set` makes it true for good and wakes
    every task in :meth:`wait`.

    There is no ``clear()``, as in trio: a flag that can be cleared makes it
    easy to miss a wake-up (a task checks, the event is set and cleared, the
    task waits forever). For a repeating signal, make a new ``Event`` each
    round, or use a channel or a :class:`Condition`.
    """

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._kernel = local.kernel  # Bound.__init__, inlined: events are made often
        self._flag = False
        self._waiters: dict[Task[Any], None] = {}

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiting task (in the order they
        started waiting). Setting it again does nothing."""
        kernel = kernel_of(self)
        if self._flag:
            return
        self._flag = True
        waiters = self._waiters
        if waiters:
            reschedule = kernel.reschedule
            self._waiters = {}
            for task in waiters:
                reschedule(task)

    @types.coroutine
    def wait(self) -> Generator[Any, Any, None]:
        """Wait until the flag is set (return at once if it is). A
        cancellation point. ``await event.wait()`` / ``yield from event.wait()``."""
        kernel = self._kernel  # enter(self), inlined: a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(self)
        if task._scope._eff:
            raise Cancelled()
        if self._flag:
            return
        self._waiters[task] = None
        yield ("park", self._abort, self)

    @staticmethod
    def _abort(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._waiters[task]
        return True

    def statistics(self) -> dict[str, int]:
        """``{"tasks_waiting": n}``."""
        return {"tasks_waiting": len(self._waiters)}

    def __repr__(self) -> str:
        state = "set" if self._flag else "unset"
        return f"<Event {state}, {len(self._waiters)} waiting at {id(self):#x}>"
