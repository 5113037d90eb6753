"""Task groups, ``start`` with a task status, and ``gather``.

Layer 2. A :class:`TaskGroup` is the owner of the tasks spawned in it: each
child reports to :meth:`TaskGroup._child_done` when it finishes. The group's
body parks at ``__aexit__`` until the last child is done; the first error
cancels the group's scope, and every error is raised together at the end.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from types import CoroutineType, FunctionType, GeneratorType, TracebackType
from typing import Any, Generic, TypeVar

from .._kernel._errors import Cancelled, RunFinishedError
from .._kernel._kernel import RESCHEDULE, Kernel, coerce_coroutine, coerce_returned
from .._kernel._requests import park
from .._kernel._scope import CancelScope, reparent_task
from .._kernel._state import current_kernel, running_kernel
from .._kernel._task import Task

__all__ = ["TaskGroup", "TaskStatus", "TASK_STATUS_IGNORED", "gather"]

T = TypeVar("T")
_FATAL = (KeyboardInterrupt, SystemExit)


class TaskGroup:
    """A scope that owns concurrently running tasks (trio calls it a nursery).

    ::

        async with yieldloop.TaskGroup() as tg:
            tg.spawn(fetch, url1)
            tg.spawn(fetch, url2)
        # both fetches have finished here

    The ``async with`` block does not exit until every task spawned in the
    group has finished. If a task (or the body) raises, the group cancels
    everything else inside it and then raises an :class:`ExceptionGroup`
    (a :class:`BaseExceptionGroup` if it holds non-``Exception`` errors)
    with every error, in the order they happened. A lone
    ``KeyboardInterrupt``/``SystemExit`` is raised as itself.
    """

    __slots__ = (
        "cancel_scope",
        "_kernel",
        "_parent_task",
        "_nchildren",
        "_errors",
        "_state",
        "_waiting",
    )

    def __init__(self) -> None:
        #: The :class:`CancelScope` around the body and every child; cancel it
        #: to cancel the whole group.
        self.cancel_scope = CancelScope()
        self._kernel: Kernel | None = None
        self._parent_task: Task[Any] | None = None
        self._nchildren = 0
        # The errors so far, in order (a list made at the first one).
        self._errors: list[BaseException] | None = None
        self._state = 0  # 0 new, 1 open, 2 closed
        self._waiting = False

    async def __aenter__(self) -> TaskGroup:
        self._open()
        return self

    def _open(self) -> Kernel:
        # __aenter__'s work (shared with gather): bind to the running kernel
        # and the current task, enter the scope; returns the kernel.
        if self._state != 0:
            raise RuntimeError("a TaskGroup can only be entered once")
        kernel = current_kernel()
        self._kernel = kernel
        self._parent_task = kernel.current_task
        self.cancel_scope.__enter__()
        self._state = 1
        return kernel

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._exit_begin(exc):
            # Woken by _child_done when the last child finishes. If we are
            # cancelled meanwhile, so are the children (they are inside our
            # scope), and _abort_group_wait keeps us waiting for them: a group
            # never abandons its tasks. The Cancelled comes after, in _exit_end.
            await park(_abort_group_wait, self)
        elif exc is None and not self._errors:
            # A group that never had to wait still lets the others run once
            # (a schedule point, not a cancellation point, as in trio).
            await _reschedule()
            return self._exit_empty()
        return self._exit_end(exc_type, exc, tb)

    def _exit_begin(self, exc: BaseException | None) -> bool:
        # The first half of __aexit__ (shared with gather): record the body's
        # error; True when there are children to wait for.
        if self._state != 1:
            raise RuntimeError("this TaskGroup is not open")
        if exc is not None and not isinstance(exc, Cancelled):
            for e in self._errors or ():
                if e is exc:
                    break
            else:
                self._add_error(exc)
        if self._nchildren:
            self._waiting = True
            return True
        return False

    def _exit_empty(self) -> bool:
        # Close a group that had nothing to wait for and no error, after its
        # schedule point: not a cancellation point, so no Cancelled from here.
        self._state = 2
        self._parent_task = None
        return self.cancel_scope.__exit__(None, None, None)

    def _exit_end(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # The second half, once every child has finished: close the group and
        # its scope, and raise what it collected.
        self._state = 2
        # A closed group does not keep its task (nor, through it, the task's
        # outcome, an exception perhaps) alive.
        self._parent_task = None
        errors = self._errors
        if not errors:
            if exc is None and self.cancel_scope._eff:
                exc = Cancelled()
                if self.cancel_scope.__exit__(Cancelled, exc, None):
                    return True
                raise exc
            return self.cancel_scope.__exit__(exc_type, exc, tb)
        self._errors = None
        if len(errors) == 1 and isinstance(errors[0], _FATAL):
            err: BaseException = errors[0]
        else:
            err = BaseExceptionGroup(_describe(errors), errors)
            # The body's own error is one of the group's: not its context too.
            err.__suppress_context__ = True
        self.cancel_scope.__exit__(type(err), err, err.__traceback__)
        if err is exc:
            return False
        try:
            raise err
        finally:
            # This frame stays reachable from err's traceback: holding the
            # exceptions in its locals would make reference cycles.
            del err, exc, errors

    def _child_gone(self) -> None:
        # A child finished (or a start() ended before started()): the last
        # one wakes the group's task if it waits in __aexit__.
        self._nchildren -= 1
        if not self._nchildren and self._waiting:
            self._wake_parent()

    def _wake_parent(self) -> None:
        self._waiting = False
        assert self._kernel is not None and self._parent_task is not None
        self._kernel.reschedule(self._parent_task)

    def _child_done(self, task: Task[Any]) -> None:
        # (Hot: once per task. task._wait_info is task._exc, without the
        # property's call; _child_gone is inlined.)
        exc = task._wait_info
        if exc is not None and not isinstance(exc, Cancelled):
            self._add_error(exc)
        self._nchildren -= 1
        if not self._nchildren and self._waiting:
            self._wake_parent()

    def _add_error(self, exc: BaseException) -> None:
        # Record an error and cancel everything else in the group.
        errors = self._errors
        if errors is None:
            self._errors = [exc]
        else:
            errors.append(exc)
        self.cancel_scope.cancel()

    def _check_open(self, fn: Any) -> Kernel:
        if self._state != 1:
            if isinstance(fn, (CoroutineType, GeneratorType)):
                fn.close()
            state = "has not been entered" if self._state == 0 else "has already finished"
            raise RuntimeError(f"cannot spawn a task: this TaskGroup {state}")
        kernel = self._kernel
        if running_kernel() is not kernel:
            if isinstance(fn, (CoroutineType, GeneratorType)):
                fn.close()
            raise RunFinishedError("this TaskGroup belongs to another yieldloop.run()")
        assert kernel is not None
        return kernel

    def spawn(self, fn: Any, *args: Any, name: str | None = None) -> Task[Any]:
        """Start ``fn(*args)`` as a new task in this group and return its
        :class:`Task` at once (the task runs at the next scheduling round).

        ``fn`` is an async function or a generator function; an
        already-created coroutine or generator object is accepted too (with no
        ``args``). ``name`` defaults to the function's qualified name.
        """
        if self._state != 1:
            self._check_open(fn)
        if name is not None and name.__class__ is not str:
            if isinstance(fn, (CoroutineType, GeneratorType)):
                fn.close()
            raise TypeError(f"name must be a str, got {name!r}")
        if fn.__class__ is FunctionType:  # fast path: an async or generator function
            coro = fn(*args)
            cls = coro.__class__
            if cls is not CoroutineType and cls is not GeneratorType:
                coro = coerce_returned(fn, coro, "spawn")
        else:
            coro = coerce_coroutine(fn, args, "spawn")
        task = self._kernel.spawn(coro, name, self, self.cancel_scope)  # type: ignore[union-attr]
        self._nchildren += 1
        return task

    @types.coroutine
    def start(
        self, fn: Callable[..., Any], *args: Any, name: str | None = None
    ) -> Generator[Any, Any, Any]:
        """Start ``fn(*args, task_status=...)`` in this group and wait until it
        calls ``task_status.started(value)``; return ``value``.

        Until it reports readiness, the new task runs inside the *caller's*
        cancel scope: if the caller is cancelled, so is the task, and if the
        task fails (or exits without calling ``started()``), ``start`` raises
        that error in the caller. After ``started()`` it belongs to the group.
        This is how a server task says "I am listening now"::

            port = await tg.start(serve, 0)

        (``yield from tg.start(...)`` works too, in a generator coroutine.)
        """
        kernel = self._check_open(fn)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        caller = kernel.current_task
        assert caller is not None
        status: TaskStatus[Any] = TaskStatus(self, caller, kernel)
        if not callable(fn):
            if isinstance(fn, (CoroutineType, GeneratorType)):
                fn.close()
            raise TypeError(f"start() needs an async function, got {fn!r}")
        coro = coerce_coroutine(fn(*args, task_status=status), (), "start")
        status._task = kernel.spawn(coro, name, status, caller._scope)
        # A pending start counts as a child: the group waits for it before
        # it closes, so started() always finds it open.
        self._nchildren += 1
        return (yield from park(status._abort, status))

    def __repr__(self) -> str:
        state = ("new", "open", "closed")[self._state]
        return f"<TaskGroup {state}, {self._nchildren} running>"


@types.coroutine
def _reschedule() -> Generator[Any, Any, None]:
    yield RESCHEDULE


def _abort_group_wait(task: Task[Any]) -> bool:
    # A group's task cancelled while it waits for its children: they are
    # being cancelled too (they are inside its scope); keep waiting for them.
    return False


def _describe(errors: list[BaseException]) -> str:
    n = len(errors)
    return f"{n} error{'s' if n != 1 else ''} in a TaskGroup"


class TaskStatus(Generic[T]):
    """Passed as ``task_status`` to a function started with
    :meth:`TaskGroup.start`; call :meth:`started` once it is ready."""

    __slots__ = ("_group", "_caller", "_kernel", "_task", "_state")

    def __init__(self, group: TaskGroup, caller: Task[Any], kernel: Kernel) -> None:
        self._group = group
        self._caller = caller
        self._kernel = kernel
        self._task: Task[Any] | None = None
        self._state = 0  # 0 starting, 1 started, 2 exited before starting

    def started(self, value: T | None = None) -> None:
        """Report that the task is ready: ``await tg.start(...)`` returns
        ``value`` and the task moves into the group. Call it exactly once."""
        if self._state != 0:
            raise RuntimeError("task_status.started() can only be called once")
        group = self._group
        if group._state != 1:
            raise RuntimeError("cannot start: the TaskGroup has already finished")
        task = self._task
        assert task is not None
        self._state = 1
        reparent_task(task, group.cancel_scope)
        task._owner = group  # (counted in group._nchildren since start())
        self._kernel.reschedule(self._caller, value)

    def _abort(self, caller: Task[Any]) -> bool:
        # The caller was cancelled: the starting task is inside the caller's
        # scope, so it is being cancelled too. Wait for it to exit.
        return False

    def _child_done(self, task: Task[Any]) -> None:
        self._state = 2
        exc = task._exc
        if exc is None:
            exc = RuntimeError(
                f"child exited without calling task_status.started() (task {task.name!r})"
            )
        elif isinstance(exc, Cancelled):
            exc = Cancelled()
        self._kernel.reschedule_throw(self._caller, exc)
        self._group._child_gone()

    def spawn(self, fn: Any, *args: Any, name: str | None = None) -> Task[Any]:
        # The ("spawn", ...) request from a task that is still starting
        # starts a sibling in the group it is being started into.
        return self._group.spawn(fn, *args, name=name)

    def __repr__(self) -> str:
        return f"<TaskStatus of {self._task!r}>"


class _IgnoredStatus:
    """The default ``task_status``: ``started()`` does nothing."""

    __slots__ = ()

    def started(self, value: object = None) -> None:
        """Do nothing (the function was spawned, not started)."""

    def __repr__(self) -> str:
        return "TASK_STATUS_IGNORED"


#: Default for a ``task_status`` parameter, so the function can also be spawned
#: normally: ``async def serve(port, *, task_status=TASK_STATUS_IGNORED)``.
TASK_STATUS_IGNORED: Any = _IgnoredStatus()


class _Gather(TaskGroup, Generic[T]):
    """The awaitable returned by :func:`gather`: a task group of its own that
    opens, spawns the awaitables and closes in one generator (a gather is on
    the path of every fan-out, so it makes as few objects as it can)."""

    __slots__ = ("_coros",)

    def __init__(self, aws: tuple[Any, ...]) -> None:
        super().__init__()
        coros: list[Any] = list(aws)
        for i, aw in enumerate(aws):
            if aw.__class__ is CoroutineType:  # the common case, checked fast
                continue
            try:
                coros[i] = coerce_coroutine(aw, (), "gather")
            except BaseException:
                for c in coros[:i]:
                    c.close()
                for rest in aws[i + 1 :]:
                    if isinstance(rest, (CoroutineType, GeneratorType)):
                        rest.close()
                raise
        self._coros: list[Any] | None = coros

    def __await__(self) -> Generator[Any, Any, list[T]]:
        tasks = self._coros
        if tasks is None:
            raise RuntimeError("a gather() can only be awaited once")
        self._coros = None
        # __aenter__, then tg.spawn(coro) for each coroutine minus the checks
        # (these are coroutine objects already, and the group was just
        # opened), then __aexit__: the same steps, without their coroutines.
        kernel = self._open()
        scope = self.cancel_scope
        spawn = kernel.spawn
        for i, coro in enumerate(tasks):
            tasks[i] = spawn(coro, None, self, scope)
        del spawn  # (a bound method: one object less kept while we wait)
        self._nchildren = len(tasks)
        if not self._exit_begin(None):  # gather() of nothing
            yield RESCHEDULE
            self._exit_empty()
            return []
        yield ("park", _abort_group_wait, self)
        failure: BaseExceptionGroup[Any] | None = None
        try:
            self._exit_end(None, None, None)
        except BaseExceptionGroup as eg:
            failure = eg
        if failure is not None:
            # Raised out here, so a lone error does not get the group as context.
            if len(failure.exceptions) == 1:
                raise failure.exceptions[0]
            raise failure
        return [t._val for t in tasks]  # (each t._result, without the property)

    __iter__ = __await__

    def __repr__(self) -> str:
        # (Also what a deadlock report or the task monitor shows as the wait
        # of a task parked in the gather.)
        if self._coros is not None:
            return f"<gather of {len(self._coros)} awaitables, not awaited yet>"
        if self._state == 1:
            return f"<gather, {self._nchildren} still running>"
        return "<gather, finished>"


def gather(*aws: Any) -> _Gather[Any]:
    """Run awaitables (coroutines, generators, tasks, ...) concurrently and
    return their results as a list, in the order given.

    They run as tasks in a task group of their own: the first error cancels
    the others, and once they have all stopped it is raised as it is (several
    errors together come as an :class:`ExceptionGroup`, the first one first).
    Works as ``await gather(...)``, ``yield from gather(...)``, and directly
    as ``yieldloop.run(gather(...))``.
    """
    return _Gather(aws)
