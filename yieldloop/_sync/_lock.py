"""Lock, Semaphore, Condition and CapacityLimiter.

Layer 3. Each keeps its waiting tasks in an ``OrderedDict`` (first in, first
out; O(1) removal when a waiter is cancelled) and hands the resource directly
to the next waiter on release, so a task that arrives later cannot barge in
ahead of one that has been waiting.
"""

from __future__ import annotations

import math
import types
from collections import OrderedDict
from collections.abc import Generator, Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._kernel._errors import Cancelled, WouldBlock
from ._common import DONE as _DONE
from ._common import Bound, enter_slow, kernel_of

if TYPE_CHECKING:
    from .._kernel._task import Task

__all__ = ["CapacityLimiter", "Condition", "Lock", "Semaphore"]


def _never_abort(task: Task[Any]) -> bool:
    return False


class _AsyncContext:
    """``async with x:`` for the classes here: acquire, then release."""

    __slots__ = ()

    def acquire(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __aenter__(self) -> Any:
        return self.acquire()

    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        self.release()
        return _DONE


class Lock(_AsyncContext, Bound):
    """A mutual-exclusion lock that knows its owner.

    ``async with lock:`` (or ``await lock.acquire()`` ... ``lock.release()``).
    Only the task that holds the lock may release it; acquiring a lock you
    already hold is a ``RuntimeError`` (not a silent deadlock). Waiters get the
    lock in the order they asked for it.
    """

    __slots__ = ("_owner", "_waiters")

    def __init__(self) -> None:
        Bound.__init__(self)
        self._owner: Task[Any] | None = None
        self._waiters: OrderedDict[Task[Any], None] = OrderedDict()

    def locked(self) -> bool:
        """True while some task holds the lock."""
        return self._owner is not None

    @property
    def owner(self) -> Task[Any] | None:
        """The task holding the lock, or None."""
        return self._owner

    @types.coroutine
    def acquire(self) -> Generator[Any, Any, None]:
        """Wait until the lock is free and take it. A cancellation point; a
        cancelled ``acquire`` never leaves the lock held."""
        kernel = self._kernel  # enter(self), inlined: a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(self)
        if task._scope._eff:
            raise Cancelled()
        owner = self._owner
        if owner is None:
            self._owner = task
            return
        if owner is task:
            raise RuntimeError(f"task {task.name!r} already holds this lock (it is not reentrant)")
        self._waiters[task] = None
        # release() makes us the owner before waking us.
        yield ("park", self._abort, self)

    def acquire_nowait(self) -> None:
        """Take the lock if it is free, else raise :class:`WouldBlock`."""
        task = kernel_of(self).current_task
        if self._owner is None:
            self._owner = task
            return
        if self._owner is task:
            raise RuntimeError("this task already holds this lock (it is not reentrant)")
        raise WouldBlock("the lock is held by another task")

    def release(self) -> None:
        """Release the lock; the longest-waiting task gets it next."""
        task = kernel_of(self).current_task
        owner = self._owner
        if owner is not task:
            who = "nobody" if owner is None else f"task {owner.name!r}"
            raise RuntimeError(
                f"cannot release a lock held by {who} "
                f"from {'outside a task' if task is None else f'task {task.name!r}'}"
            )
        waiters = self._waiters
        if waiters:
            nxt, _ = waiters.popitem(last=False)
            self._owner = nxt
            self._kernel.reschedule(nxt)  # type: ignore[union-attr]
        else:
            self._owner = None

    @types.coroutine
    def _reacquire(self, task: Task[Any]) -> Generator[Any, Any, None]:
        # For Condition.wait: take the lock back, and do not let cancellation
        # interrupt that (the caller must hold the lock when wait() exits).
        if self._owner is None:
            self._owner = task
            return
        self._waiters[task] = None
        yield ("park", _never_abort, self)

    @staticmethod
    def _abort(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._waiters[task]
        return True

    def statistics(self) -> dict[str, Any]:
        """``{"locked": bool, "owner": task or None, "tasks_waiting": n}``."""
        return {"locked": self._owner is not None, "owner": self._owner,
                "tasks_waiting": len(self._waiters)}

    def __repr__(self) -> str:
        if self._owner is None:
            return f"<Lock unlocked at {id(self):#x}>"
        return (
            f"<Lock held by {self._owner.name!r}, {len(self._waiters)} waiting at {id(self):#x}>"
        )


class Semaphore(_AsyncContext, Bound):
    """A counter of available slots: ``acquire`` takes one (waiting if there
    are none), ``release`` gives one back.

    With ``max_value``, releasing beyond it is a ``ValueError`` (it catches a
    release without an acquire).
    """

    __slots__ = ("_max_value", "_value", "_waiters")

    def __init__(self, initial_value: int, *, max_value: int | None = None) -> None:
        if isinstance(initial_value, bool) or not isinstance(initial_value, int):
            raise TypeError(f"initial_value must be an int, got {initial_value!r}")
        if initial_value < 0:
            raise ValueError(f"initial_value must be >= 0, got {initial_value}")
        if max_value is not None:
            if isinstance(max_value, bool) or not isinstance(max_value, int):
                raise TypeError(f"max_value must be an int or None, got {max_value!r}")
            if max_value < initial_value:
                raise ValueError(
                    f"max_value ({max_value}) must be >= initial_value ({initial_value})"
                )
        Bound.__init__(self)
        self._value = initial_value
        self._max_value = max_value
        self._waiters: OrderedDict[Task[Any], None] = OrderedDict()

    @property
    def value(self) -> int:
        """The number of slots available now."""
        return self._value

    @property
    def max_value(self) -> int | None:
        """The largest value allowed, or None."""
        return self._max_value

    @types.coroutine
    def acquire(self) -> Generator[Any, Any, None]:
        """Take a slot, waiting for one if needed. A cancellation point."""
        kernel = self._kernel  # enter(self), inlined: a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(self)
        if task._scope._eff:
            raise Cancelled()
        if self._value > 0:
            self._value -= 1
            return
        self._waiters[task] = None
        yield ("park", self._abort, self)

    def acquire_nowait(self) -> None:
        """Take a slot if one is free, else raise :class:`WouldBlock`."""
        kernel_of(self)
        if self._value > 0:
            self._value -= 1
            return
        raise WouldBlock("no slot is free")

    def release(self) -> None:
        """Give a slot back (to the longest-waiting task, if any)."""
        kernel = kernel_of(self)
        waiters = self._waiters
        if waiters:
            nxt, _ = waiters.popitem(last=False)
            kernel.reschedule(nxt)
            return
        if self._max_value is not None and self._value >= self._max_value:
            raise ValueError(
                f"semaphore released too many times (max_value is {self._max_value})"
            )
        self._value += 1

    @staticmethod
    def _abort(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._waiters[task]
        return True

    def statistics(self) -> dict[str, Any]:
        """``{"value": n, "max_value": m, "tasks_waiting": n}``."""
        return {"value": self._value, "max_value": self._max_value,
                "tasks_waiting": len(self._waiters)}

    def __repr__(self) -> str:
        mx = "" if self._max_value is None else f"/{self._max_value}"
        return f"<Semaphore {self._value}{mx}, {len(self._waiters)} waiting at {id(self):#x}>"


class Condition(_AsyncContext, Bound):
    """Wait until notified, while holding a :class:`Lock`.

    ::

        async with cond:
            while not ready():
                await cond.wait()

    :meth:`wait` releases the lock, waits for :meth:`notify` or
    :meth:`notify_all`, and takes the lock back before returning - also when
    it is cancelled, so code after ``wait`` always holds the lock.
    """

    __slots__ = ("_lock", "_waiters")

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is None:
            lock = Lock()
        elif not isinstance(lock, Lock):
            raise TypeError(f"Condition needs a yieldloop Lock, got {lock!r}")
        Bound.__init__(self)
        self._lock = lock
        self._waiters: OrderedDict[Task[Any], None] = OrderedDict()

    @property
    def lock(self) -> Lock:
        """The underlying lock."""
        return self._lock

    def acquire(self) -> Any:
        """Acquire the underlying lock (awaitable)."""
        return self._lock.acquire()

    def acquire_nowait(self) -> None:
        """Acquire the underlying lock or raise :class:`WouldBlock`."""
        self._lock.acquire_nowait()

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def locked(self) -> bool:
        """True while the underlying lock is held."""
        return self._lock.locked()

    @types.coroutine
    def wait(self) -> Generator[Any, Any, None]:
        """Release the lock, wait to be notified, take the lock back.
        Must be called with the lock held. A cancellation point."""
        kernel = self._kernel  # enter(self), inlined: a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(self)
        if task._scope._eff:
            raise Cancelled()
        lock = self._lock
        if lock._owner is not task:
            raise RuntimeError("Condition.wait() must be called with the lock held")
        self._waiters[task] = None
        lock.release()
        try:
            yield ("park", self._abort, self)
        except GeneratorExit:
            raise
        except BaseException:
            yield from lock._reacquire(task)
            raise
        yield from lock._reacquire(task)

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiting tasks (the longest-waiting first)."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {n!r}")
        if n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        kernel = kernel_of(self)
        self._check_held(kernel)
        waiters = self._waiters
        for _ in range(min(n, len(waiters))):
            task, _ = waiters.popitem(last=False)
            kernel.reschedule(task)

    def notify_all(self) -> None:
        """Wake every waiting task."""
        kernel = kernel_of(self)
        self._check_held(kernel)
        waiters = self._waiters
        self._waiters = OrderedDict()
        for task in waiters:
            kernel.reschedule(task)

    def _check_held(self, kernel: Any) -> None:
        if self._lock._owner is not kernel.current_task:
            raise RuntimeError("Condition.notify() must be called with the lock held")

    @staticmethod
    def _abort(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._waiters[task]
        return True

    def statistics(self) -> dict[str, Any]:
        """``{"tasks_waiting": n, "lock": lock statistics}``."""
        return {"tasks_waiting": len(self._waiters), "lock": self._lock.statistics()}

    def __repr__(self) -> str:
        return f"<Condition {len(self._waiters)} waiting, {self._lock!r}>"


class CapacityLimiter(_AsyncContext, Bound):
    """At most ``total`` borrowers at a time (a semaphore that knows who
    holds each token). ``total`` may be changed while in use.

    ``async with limiter:`` borrows a token for the current task;
    :meth:`acquire_on_behalf_of` borrows one for any hashable object (e.g. a
    thread job). A borrower can hold only one token at a time.
    """

    __slots__ = ("_borrowers", "_total", "_waiting_borrowers", "_waiters")

    def __init__(self, total: float) -> None:
        Bound.__init__(self)
        self._total: float = _check_total(total)
        self._borrowers: dict[Hashable, None] = {}
        self._waiters: OrderedDict[Task[Any], Hashable] = OrderedDict()
        self._waiting_borrowers: dict[Hashable, Task[Any]] = {}

    @property
    def total(self) -> float:
        """The number of tokens (an int >= 0, or ``math.inf``; with 0, every
        acquire waits until it is raised). Settable:
        raising it wakes waiters at once; lowering it takes effect as tokens
        are returned."""
        return self._total

    @total.setter
    def total(self, value: float) -> None:
        self._total = _check_total(value)
        self._wake()

    @property
    def borrowed_tokens(self) -> int:
        """Tokens borrowed now."""
        return len(self._borrowers)

    @property
    def available_tokens(self) -> float:
        """Tokens free now (never negative)."""
        return max(0, self._total - len(self._borrowers))

    def acquire(self) -> Any:
        """Borrow a token for the current task (awaitable)."""
        return self.acquire_on_behalf_of(None)

    @types.coroutine
    def acquire_on_behalf_of(self, borrower: Hashable) -> Generator[Any, Any, None]:
        """Borrow a token for ``borrower`` (None: the current task), waiting
        for one if needed. A cancellation point."""
        kernel = self._kernel  # enter(self), inlined: a hot path
        if kernel is None or (task := kernel.current_task) is None:
            kernel, task = enter_slow(self)
        if task._scope._eff:
            raise Cancelled()
        if borrower is None:
            borrower = task
        self._check_new(borrower)
        if len(self._borrowers) < self._total and not self._waiters:
            self._borrowers[borrower] = None
            return
        self._waiters[task] = borrower
        self._waiting_borrowers[borrower] = task
        yield ("park", self._abort, self)

    def acquire_nowait(self) -> None:
        """Borrow a token for the current task or raise :class:`WouldBlock`."""
        self.acquire_on_behalf_of_nowait(None)

    def acquire_on_behalf_of_nowait(self, borrower: Hashable) -> None:
        """Borrow a token for ``borrower`` or raise :class:`WouldBlock`."""
        kernel = kernel_of(self)
        if borrower is None:
            borrower = kernel.current_task
        self._check_new(borrower)
        if len(self._borrowers) < self._total and not self._waiters:
            self._borrowers[borrower] = None
            return
        raise WouldBlock("no token is available")

    def release(self) -> None:
        """Return the current task's token."""
        self.release_on_behalf_of(kernel_of(self).current_task)

    def release_on_behalf_of(self, borrower: Hashable) -> None:
        """Return ``borrower``'s token (waking the longest waiter)."""
        kernel_of(self)
        try:
            del self._borrowers[borrower]
        except KeyError:
            raise RuntimeError(
                f"{borrower!r} is not holding a token of this CapacityLimiter"
            ) from None
        self._wake()

    def _check_new(self, borrower: Hashable) -> None:
        if borrower in self._borrowers:
            raise RuntimeError(
                f"{borrower!r} already holds a token of this CapacityLimiter "
                "(a borrower can hold only one)"
            )
        if borrower in self._waiting_borrowers:
            raise RuntimeError(
                f"{borrower!r} is already waiting for a token of this CapacityLimiter "
                "(a borrower can hold only one)"
            )

    def _wake(self) -> None:
        waiters = self._waiters
        if not waiters:
            return
        kernel = kernel_of(self)
        while waiters and len(self._borrowers) < self._total:
            task, borrower = waiters.popitem(last=False)
            del self._waiting_borrowers[borrower]
            self._borrowers[borrower] = None
            kernel.reschedule(task)

    @staticmethod
    def _abort(task: Task[Any]) -> bool:
        # A plain function (no bound method to allocate per wait); the
        # primitive is the ``info`` the task parked with.
        owner = task._wait_info
        del owner._waiting_borrowers[owner._waiters.pop(task)]
        return True

    def statistics(self) -> dict[str, Any]:
        """Tokens borrowed, total, the borrowers, and how many tasks wait."""
        return {"borrowed_tokens": len(self._borrowers), "total_tokens": self._total,
                "borrowers": list(self._borrowers), "tasks_waiting": len(self._waiters)}

    def __repr__(self) -> str:
        return (
            f"<CapacityLimiter {len(self._borrowers)}/{self._total} borrowed, "
            f"{len(self._waiters)} waiting at {id(self):#x}>"
        )


def _check_total(total: float) -> float:
    if isinstance(total, bool) or not (
        isinstance(total, int) or (isinstance(total, float) and total == math.inf)
    ):
        raise TypeError(f"total must be an int or math.inf, got {total!r}")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total!r}")
    return total
