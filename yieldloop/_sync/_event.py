"""Event: a one-shot flag that tasks can wait for.

Layer 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._kernel._errors import Cancelled
from .._kernel._requests import Awaitable
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

    __slots__ = ("_flag", "_park", "_stale", "_waiter", "_waiters")

    def __init__(self) -> None:
        self._kernel = local.kernel  # Bound.__init__, inlined: events are made often
        self._flag = False
        # Waiting tasks in arrival order. A cancelled wait is not removed
        # (that would be O(n) in a list): it is counted in _stale and skipped
        # when the event is set; the list is compacted when mostly stale. A
        # list entry is 8 bytes where a dict entry is ~50.
        self._waiters: list[Task[Any]] = []
        self._stale = 0
        self._waiter: _Wait | None = None  # what wait() returns, made once
        # What every waiter yields: a one-item tuple holding the park request.
        self._park = (("park", Event._abort, self),)

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
            self._waiters = []
            self._stale = 0
            abort = Event._abort
            for task in waiters:
                # Skip cancelled waits (and a task listed twice: it waited,
                # was cancelled and waits again - rescheduled once).
                if task._abort is abort and task._wait_info is self:
                    reschedule(task)

    def wait(self) -> Awaitable[None]:
        """Wait until the flag is set (return at once if it is). A
        cancellation point. ``await event.wait()`` / ``yield from event.wait()``."""
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = _Wait(self)
        return waiter  # type: ignore[return-value]

    @staticmethod
    def _abort(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        event: Event = task._wait_info
        event._stale = stale = event._stale + 1
        if stale > 32 and stale * 2 > len(event._waiters):
            event._waiters = event._live()
            event._stale = 0
        return True

    def _live(self) -> list[Task[Any]]:
        # The tasks still waiting, once each, in order. (The task being
        # aborted is marked ABORTING by the kernel: it is not among them.)
        abort = Event._abort
        return list(
            dict.fromkeys(t for t in self._waiters if t._abort is abort and t._wait_info is self)
        )

    def _live_waiters(self) -> int:
        return len(self._live())

    def statistics(self) -> dict[str, int]:
        """``{"tasks_waiting": n}``."""
        return {"tasks_waiting": self._live_waiters()}

    def __repr__(self) -> str:
        state = "set" if self._flag else "unset"
        return f"<Event {state}, {self._live_waiters()} waiting at {id(self):#x}>"


#: An exhausted iterator: what awaiting a set event iterates (nothing to yield).
_DONE_ITER: Iterator[Any] = iter(())


class _Wait:
    """The awaitable :meth:`Event.wait` returns (one per event, reused).

    Awaiting it runs :meth:`__await__`, which registers the task and hands
    back an iterator over the event's one-item ``("park", ...)`` tuple: a
    C tuple iterator, not a generator with a Python frame. A parked waiter
    costs that much less memory, and waking it is cheaper: the kernel resumes
    it with None (the iterator ends: ``await`` returns) or throws Cancelled
    into it (raised at the ``await``).
    """

    __slots__ = ("_event",)

    def __init__(self, event: Event) -> None:
        self._event = event

    def __await__(self) -> Iterator[Any]:
        event = self._event
        kernel = event._kernel  # enter(event), inlined: a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(event)
        if task._scope._eff:
            raise Cancelled()
        if event._flag:
            return _DONE_ITER
        event._waiters.append(task)
        return iter(event._park)

    __iter__ = __await__

    def __repr__(self) -> str:
        return f"<wait for {self._event!r}>"
