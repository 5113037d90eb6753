"""Running functions in a :class:`concurrent.futures.Executor`: :func:`run_in_executor`.

Layer 4. Any executor works: a :class:`~concurrent.futures.ThreadPoolExecutor`,
a :class:`~concurrent.futures.ProcessPoolExecutor`, or a third-party one such
as the executor of a ``dask.distributed`` client. The call is submitted with
``executor.submit(fn, *args, **kwargs)``; the calling task parks (it costs no
thread of its own), and the future's done-callback - which runs in whatever
thread finished the future - hands the news to the loop with
:meth:`Kernel.call_soon_threadsafe`. A callback on the loop thread then
reschedules the task, which takes the outcome from the future.

Cancellation, while the task waits:

* ``future.cancel()`` is tried first. If it succeeds the call never ran (or,
  for executors that can revoke running work, it was revoked) and
  :class:`~yieldloop.Cancelled` is raised at once.
* If the call is already running it cannot be stopped. By default
  (``abandon_on_cancel=False``) the task keeps waiting until it is done; then
  its result is returned (or its exception raised), so nothing is lost, and
  ``Cancelled`` comes at the task's next checkpoint, as with :func:`to_thread`.
* With ``abandon_on_cancel=True`` ``Cancelled`` is raised at once and the
  call is left to finish on its own; its outcome is discarded.

If the task is already cancelled when it calls :func:`run_in_executor`,
nothing is submitted and ``Cancelled`` is raised.
"""

from __future__ import annotations

import concurrent.futures
import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._kernel._kernel import CHECKPOINT
from .._kernel._requests import Awaitable
from .._kernel._state import current_kernel

if TYPE_CHECKING:
    from .._kernel._kernel import Kernel
    from .._kernel._task import Task

__all__ = ["run_in_executor"]

T = TypeVar("T")

_WAITING = 0  # the task is parked waiting for the future
_ABANDONED = 1  # the task went away; the future's outcome will be ignored
_DONE = 2  # the task was woken up


def _describe(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


class _Wait:
    """One :func:`run_in_executor` call: the parked task and its future.

    Only the loop thread changes ``state``; the future's done-callback (in
    any thread) only posts :meth:`deliver` to the loop.
    """

    #: A task parked on this is woken from outside the loop (another thread or
    #: process): on virtual time, the kernel does not call it a deadlock.
    wakes_from_outside = True

    __slots__ = ("abandon", "future", "kernel", "name", "state", "task")

    def __init__(
        self,
        kernel: Kernel,
        task: Task[Any],
        future: concurrent.futures.Future[Any],
        name: str,
        abandon: bool,
    ) -> None:
        self.kernel = kernel
        self.task: Task[Any] | None = task
        self.future = future
        self.name = name
        self.abandon = abandon
        self.state = _WAITING

    def __repr__(self) -> str:
        return f"<run_in_executor {self.name}>"

    # ----------------------------------------------------------- any thread

    def on_done(self, future: concurrent.futures.Future[Any]) -> None:
        try:
            self.kernel.call_soon_threadsafe(self.deliver)
        except RuntimeError:  # the run has finished: only an abandoned call gets here
            pass

    # ------------------------------------------------------ loop thread only

    def deliver(self) -> None:
        task = self.task
        self.task = None
        if self.state == _WAITING and task is not None:
            self.state = _DONE
            self.kernel.reschedule(task, None)

    def abort(self, task: Task[Any]) -> bool:
        if self.future.cancel():
            # The done-callback has posted deliver(); it finds the call abandoned.
            self.state = _ABANDONED
            self.task = None
            return True
        if self.abandon:
            self.state = _ABANDONED
            self.task = None
            return True
        return False  # keep waiting for the running call; then raise Cancelled


@types.coroutine
def _run_in_executor(
    executor: concurrent.futures.Executor,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    abandon: bool,
) -> Generator[Any, Any, Any]:
    if not isinstance(executor, concurrent.futures.Executor):
        raise TypeError(
            "run_in_executor() needs a concurrent.futures.Executor as its first "
            f"argument, got {executor!r} of type {type(executor).__name__}"
        )
    if not callable(fn):
        raise TypeError(
            "run_in_executor() needs a function to call as its second argument, "
            f"got {fn!r} of type {type(fn).__name__}"
        )
    kernel = current_kernel()
    task = kernel.current_task
    if task is None:
        raise RuntimeError("run_in_executor() must be called from inside a task")
    if task._scope._eff:
        yield CHECKPOINT  # raises Cancelled: nothing was submitted
    future = executor.submit(fn, *args, **kwargs)  # a shut-down executor raises here
    if not isinstance(future, concurrent.futures.Future):
        raise TypeError(
            f"{type(executor).__name__}.submit() returned {future!r}, "
            "not a concurrent.futures.Future"
        )
    wait = _Wait(kernel, task, future, _describe(fn), bool(abandon))
    future.add_done_callback(wait.on_done)  # runs now if the future is already done
    try:
        yield ("park", wait.abort, wait)
    except BaseException:
        # Cancelled (the call was revoked or abandoned), or the task is being
        # torn down: whatever the future brings is ignored.
        if wait.state == _WAITING:
            wait.state = _ABANDONED
            wait.task = None
            future.cancel()
        raise
    del wait
    # The future is done. Someone else cancelling it raises CancelledError here.
    exc = future.exception(timeout=0)
    if exc is not None:
        try:
            raise exc
        finally:
            del exc, future
    # Cancelled while the call ran to its end: its result is still returned
    # (as to_thread does); Cancelled comes at the next checkpoint.
    return future.result(timeout=0)


def run_in_executor(
    executor: concurrent.futures.Executor,
    fn: Callable[..., T],
    /,
    *args: Any,
    abandon_on_cancel: bool = False,
    **kwargs: Any,
) -> Awaitable[T]:
    """Run ``fn(*args, **kwargs)`` in ``executor`` (any
    :class:`concurrent.futures.Executor`) and return its result, or raise its
    exception, without blocking the other tasks.

    ``await run_in_executor(pool, fn, ...)`` in async code, ``yield from
    run_in_executor(pool, fn, ...)`` in a generator coroutine. The calling
    task waits without a thread of its own; the executor's workers do the
    work. For a process pool ``fn``, its arguments and its result must be
    picklable (a module-level function, not a lambda). ``fn`` does not see the
    task's :mod:`contextvars`.

    On cancellation the future is cancelled if it has not started, and
    :class:`~yieldloop.Cancelled` is raised at once. A call that is already
    running is waited for (its result is dropped, then ``Cancelled`` is
    raised; an exception it raised is raised instead), unless
    ``abandon_on_cancel`` is true: then ``Cancelled`` is raised at once and the
    call finishes unobserved.

    Raises ``TypeError`` if ``executor`` is not an ``Executor`` or ``fn`` is
    not callable, and whatever ``executor.submit`` raises (``RuntimeError``
    after ``shutdown()``). A future cancelled by someone else (for example
    ``executor.shutdown(cancel_futures=True)``) raises
    :class:`concurrent.futures.CancelledError`.
    """
    return cast("Awaitable[T]", _run_in_executor(executor, fn, args, kwargs, abandon_on_cancel))
