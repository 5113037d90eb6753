"""The Task: one coroutine being run by the kernel.

Layer 1 (kernel). A task holds its coroutine, the value it will be resumed
with, the innermost cancel scope it is in, and - while it is parked - the
callback that can abort its wait. Everything the hot loop touches is a slot.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._errors import Cancelled, RunFinishedError, TaskCancelled
from ._scope import cancel_task
from ._state import running_kernel

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._scope import CancelScope

__all__ = ["Task", "TaskOwner"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

#: The coroutine objects a task can run: native coroutines and generators.
AnyCoroutine = Coroutine[Any, Any, T] | Generator[Any, Any, T]


class TaskOwner(Protocol):
    """What a task reports to when it finishes (a task group, or the run)."""

    def _child_done(self, task: Task[Any]) -> None: ...


class _Aborting:
    """Marker in ``Task._abort`` while the kernel is calling an abort function."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<aborting>"


ABORTING: Any = _Aborting()


class Task(Generic[T_co]):
    """A coroutine running concurrently inside a task group.

    Tasks are made by :meth:`TaskGroup.spawn <yieldloop.TaskGroup.spawn>` and
    :func:`~yieldloop.gather`, never directly. ``await task`` (or ``yield from
    task`` in a generator) waits for it and returns its result or raises its
    exception. An exception raised by a task *also* always reaches the task
    group it belongs to: awaiting a task never hides an error from its group.
    """

    __slots__ = (
        "_extra",
        "context",
        "_coro",
        "_next",
        "_val",
        "_scope",
        "_abort",
        "_timer_seq",
        "_owner",
        "_wait_info",
    )

    def __init__(
        self,
        coro: AnyCoroutine[T_co],
        name: str | None,
        owner: TaskOwner,
        scope: CancelScope,
        context: contextvars.Context,
    ) -> None:
        # The rarely used parts (an explicit name, the task's own cancel
        # scope, the tasks awaiting it) live in one _TaskExtra made on demand:
        # every slot is 8 bytes on every task.
        self._extra: _TaskExtra | None = None if name is None else _TaskExtra(name)
        #: The :class:`contextvars.Context` the task runs in (a copy of its spawner's).
        self.context = context
        self._coro: AnyCoroutine[T_co] = coro
        # How the kernel resumes the coroutine: ``context.run(_next, coro, _val)``.
        # ``type(coro).send`` is shared by all tasks: no per-task bound method.
        self._next: Callable[[Any, Any], Any] | None = coro.__class__.send
        self._val: Any = None
        self._scope = scope
        self._abort: Any = None
        self._owner = owner
        # Set when first needed (kept out of __init__: spawning is a hot path):
        # _timer_seq (when a timer is armed), and
        # _wait_info (what the task is parked on, set with _abort).
        self._timer_seq: int
        self._wait_info: Any

    # A finished task keeps its outcome in two slots it no longer needs (no
    # value is sent to it, it waits on nothing): a parked task costs 16 bytes
    # less this way. _task_exit() fills them.

    @property
    def _result(self) -> Any:
        return self._val

    @property
    def _exc(self) -> BaseException | None:
        return self._wait_info  # type: ignore[no-any-return]

    @property
    def _done(self) -> bool:
        # A finished task has no way to be resumed: the kernel clears _next.
        return self._next is None

    @property
    def _kernel(self) -> Kernel | None:
        return self._scope._kernel

    # ------------------------------------------------------------ public API

    @property
    def name(self) -> str:
        """The task's name (for errors, reprs and traces); by default the
        qualified name of its function."""
        extra = self._extra
        if extra is not None and extra.name is not None:
            return extra.name
        return _coro_name(self._coro)

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a task name must be a str, got {value!r}")
        self._more().name = value

    def done(self) -> bool:
        """True once the task has finished (returned, raised or was cancelled)."""
        return self._done

    def cancelled(self) -> bool:
        """True if the task finished because it was cancelled."""
        return self._done and isinstance(self._exc, Cancelled)

    def result(self) -> T_co:
        """The task's return value.

        Raises the task's exception if it raised one, :class:`TaskCancelled`
        if it was cancelled, and ``RuntimeError`` if it has not finished.
        """
        if not self._done:
            raise RuntimeError(f"task {self.name!r} has not finished yet")
        exc = self._exc
        if exc is not None:
            if isinstance(exc, Cancelled):
                raise TaskCancelled(f"task {self.name!r} was cancelled") from exc
            raise exc
        return self._result  # type: ignore[no-any-return]

    def exception(self) -> BaseException | None:
        """The exception the task raised, or None if it returned normally.

        Raises :class:`TaskCancelled` if the task was cancelled and
        ``RuntimeError`` if it has not finished.
        """
        if not self._done:
            raise RuntimeError(f"task {self.name!r} has not finished yet")
        exc = self._exc
        if isinstance(exc, Cancelled):
            raise TaskCancelled(f"task {self.name!r} was cancelled") from exc
        return exc

    def cancel(self) -> None:
        """Cancel this task (and only it): its checkpoints raise
        :class:`~yieldloop.Cancelled` until it exits. The task still runs its
        ``finally`` blocks; ``await task`` then raises :class:`TaskCancelled`.
        A cancelled task is not an error for its group. No effect once done."""
        if self._done:
            return
        if running_kernel() is not self._kernel:
            raise RunFinishedError(
                f"task {self.name!r} belongs to another yieldloop.run() "
                "(or its run has finished)"
            )
        cancel_task(self)

    def __await__(self) -> Generator[Any, Any, T_co]:
        if not self._done:
            kernel = running_kernel()
            if kernel is not self._kernel or kernel is None:
                raise RunFinishedError(
                    f"task {self.name!r} belongs to another yieldloop.run() "
                    "(or its run has finished)"
                )
            waiter = kernel.current_task
            if waiter is self:
                raise RuntimeError(f"task {self.name!r} cannot await itself")
            extra = self._more()
            waiters = extra.waiters
            if waiters is None:
                waiters = extra.waiters = {}
            waiters[waiter] = None  # type: ignore[index]
            # The kernel resumes us when the task is done (or throws Cancelled).
            yield ("park", _abort_join, self)
        return self.result()

    __iter__ = __await__

    def __repr__(self) -> str:
        if self._done:
            if self._exc is None:
                state = "done"
            elif isinstance(self._exc, Cancelled):
                state = "cancelled"
            else:
                state = f"failed {type(self._exc).__name__}"
        elif self._abort is None:
            state = "runnable"
        else:
            state = "waiting"
            if self._wait_info is not None:
                state += f" on {self._wait_info!r}"
        return f"<Task {self.name!r} {state}>"

    # ------------------------------------------------------------ internal

    def _more(self) -> _TaskExtra:
        extra = self._extra
        if extra is None:
            extra = self._extra = _TaskExtra(None)
        return extra

    @property
    def _cancel_scope(self) -> CancelScope | None:
        extra = self._extra
        return None if extra is None else extra.cancel_scope

    @property
    def _waiters(self) -> dict[Task[Any], None] | None:
        extra = self._extra
        return None if extra is None else extra.waiters

    def _throw(self, coro: Any, exc: BaseException) -> Any:
        # Used as ``_next`` for one step: resume by raising ``exc`` at the await.
        self._next = coro.__class__.send
        self._val = None  # not kept: the exception refers to frames, frames to us
        return coro.throw(exc)


class _TaskExtra:
    """The parts of a :class:`Task` most tasks never use."""

    __slots__ = ("cancel_scope", "name", "waiters")

    def __init__(self, name: str | None) -> None:
        self.name = name
        #: The scope :meth:`Task.cancel` inserted (see ``cancel_task``).
        self.cancel_scope: CancelScope | None = None
        #: Tasks waiting in ``await task``.
        self.waiters: dict[Task[Any], None] | None = None


def _coro_name(coro: Any) -> str:
    name = getattr(coro, "__qualname__", None)
    return name if isinstance(name, str) else repr(coro)


def _abort_join(waiter: Task[Any]) -> bool:
    # ``await task`` was cancelled: stop waiting for that task.
    target: Task[Any] = waiter._wait_info
    waiters = target._waiters
    if waiters is not None:
        waiters.pop(waiter, None)
    return True
