"""Running blocking functions in worker threads, and calling back into the loop.

Layer 4. :func:`to_thread` starts one thread per call (a thread costs tens of
microseconds; a pool would have to be shut down at the end of a run, which the
kernel offers no hook for). The task that called it parks; the thread hands its
outcome back with :meth:`Kernel.call_soon_threadsafe`, and a callback on the
loop thread reschedules the task, which then joins the (finishing) thread. So
when ``to_thread`` returns, its thread is gone: nothing outlives the run.

Code running in such a worker thread can call back into the loop with
:func:`from_thread_run` (an async function) or :func:`from_thread_run_sync`
(a plain one). The request goes to the *parked task that started the thread*:
it wakes up, runs the function in its own context and cancel scope, sends the
outcome back to the thread and parks again. So a cancelled ``to_thread`` call
cancels what its thread asked the loop to do, as in trio.

Cancellation of ``to_thread``:

* ``abandon_on_cancel=False`` (the default): the thread cannot be stopped, so
  the task keeps waiting for it; when it finishes its result is thrown away
  (an exception it raised is kept) and :class:`~yieldloop.Cancelled` is raised.
* ``abandon_on_cancel=True``: the task raises ``Cancelled`` at once and the
  thread is left to finish on its own; its result is discarded, its limiter
  token is returned when it finishes. Such threads are daemon threads, so one
  that never finishes (stuck in a read) cannot keep the process alive. If it
  finishes before the run ends it is joined; otherwise it may outlive ``run``.

Every other worker thread is a normal (non-daemon) thread.
"""

from __future__ import annotations

import threading
import types
import weakref
from collections.abc import Callable, Generator
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .._kernel._errors import Cancelled, RunFinishedError
from .._kernel._kernel import Kernel, coerce_coroutine
from .._kernel._requests import Awaitable
from .._kernel._state import current_kernel, running_kernel
from .._sync._lock import CapacityLimiter

if TYPE_CHECKING:
    from .._kernel._task import Task

__all__ = [
    "current_default_thread_limiter",
    "from_thread",
    "from_thread_run",
    "from_thread_run_sync",
    "to_thread",
]

T = TypeVar("T")

#: How many worker threads may run at once by default, in each run.
DEFAULT_THREAD_LIMIT = 40

_default_limiters: weakref.WeakKeyDictionary[Kernel, CapacityLimiter] = weakref.WeakKeyDictionary()

# (True, value) or (False, exception)
_Outcome = tuple[bool, Any]

_WAITING = 0  # the task is parked waiting for the thread
_ABANDONED = 1  # the task went away; the thread's result will be discarded
_DONE = 2  # the outcome was handed over

_worker = threading.local()


def current_default_thread_limiter() -> CapacityLimiter:
    """The :class:`~yieldloop.CapacityLimiter` that :func:`to_thread` uses
    when it is given none: one per run, with 40 tokens. Change its ``total``
    to allow more (or fewer) threads at once."""
    kernel = current_kernel()
    limiter = _default_limiters.get(kernel)
    if limiter is None:
        limiter = _default_limiters[kernel] = CapacityLimiter(DEFAULT_THREAD_LIMIT)
    return limiter


def _capture(fn: Callable[..., Any], args: tuple[Any, ...]) -> _Outcome:
    try:
        return (True, fn(*args))
    except BaseException as exc:
        return (False, exc)


class _Call:
    """A request from a worker thread to run something on the loop."""

    __slots__ = ("args", "done", "fn", "is_async", "outcome")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], is_async: bool) -> None:
        self.fn = fn
        self.args = args
        self.is_async = is_async
        self.done = threading.Event()
        self.outcome: _Outcome = (False, None)

    def reply(self, outcome: _Outcome) -> None:
        self.outcome = outcome
        self.done.set()


class _Job:
    """One :func:`to_thread` call: shared by the task and its worker thread.

    Only the loop thread changes ``state``; the worker thread only reads
    ``kernel`` and posts callbacks.
    """

    #: A task parked on this is woken from outside the loop (a thread, a
    #: signal): on virtual time, the kernel does not call it a deadlock.
    wakes_from_outside = True

    __slots__ = (
        "abandon",
        "args",
        "context",
        "fn",
        "kernel",
        "limiter",
        "state",
        "task",
        "thread",
    )

    def __init__(
        self,
        kernel: Kernel,
        task: Task[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        limiter: CapacityLimiter,
        abandon: bool,
    ) -> None:
        self.kernel = kernel
        self.task = task
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] = args
        self.limiter = limiter
        self.abandon = abandon
        self.context: Context = copy_context()
        self.state = _WAITING
        self.thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<to_thread job {_describe(self.fn)} for {self.task.name!r}>"

    # ---------------------------------------------------------- worker thread

    def work(self) -> None:
        _worker.job = self
        fn = self.fn
        assert fn is not None
        outcome = self.context.run(_capture, fn, self.args)
        self.fn = None
        self.args = ()
        try:
            self.kernel.call_soon_threadsafe(self.deliver, outcome)
        except RuntimeError:  # the run has finished: only an abandoned job gets here
            pass
        del outcome

    # ------------------------------------------------------ loop thread only

    def abort(self, task: Task[Any]) -> bool:
        if self.abandon:
            self.state = _ABANDONED
            if self.thread is not None:  # forgotten again in finish()
                self.kernel.track_resource(
                    self.thread, f"a to_thread({_describe(self.fn)}) thread (abandoned)"
                )
            return True
        return False  # keep waiting for the thread; to_thread raises Cancelled then

    def deliver(self, outcome: _Outcome) -> None:
        if self.state == _WAITING:
            self.state = _DONE
            self.kernel.reschedule(self.task, outcome)
            return
        self.state = _DONE
        self.finish()

    def on_call(self, call: _Call) -> None:
        if self.state == _WAITING:
            self.kernel.reschedule(self.task, call)
        elif call.is_async:
            call.reply(
                (
                    False,
                    Cancelled(
                        "the to_thread() call that started this thread was cancelled "
                        "and abandoned it"
                    ),
                )
            )
        else:
            call.reply(_capture(call.fn, call.args))

    def finish(self) -> None:
        thread = self.thread
        if thread is not None:
            thread.join()  # it has handed over its outcome: it is ending now
            self.kernel.untrack_resource(thread)
        self.limiter.release_on_behalf_of(self)


def _describe(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


@types.coroutine
def _run_call(call: _Call) -> Generator[Any, Any, None]:
    """Run a worker thread's request inside the task that started the thread."""
    if call.is_async:
        try:
            coro = coerce_coroutine(call.fn, call.args, "from_thread_run")
            result = yield from cast("Generator[Any, Any, Any]", coro)
        except BaseException as exc:
            call.reply((False, exc))
            if isinstance(exc, GeneratorExit):
                raise
        else:
            call.reply((True, result))
    else:
        call.reply(_capture(call.fn, call.args))


@types.coroutine
def _to_thread(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    limiter: CapacityLimiter | None,
    abandon: bool,
) -> Generator[Any, Any, Any]:
    if not callable(fn):
        raise TypeError(f"to_thread() needs a function to call, got {fn!r}")
    kernel = current_kernel()
    task = kernel.current_task
    if task is None:
        raise RuntimeError("to_thread() must be called from inside a task")
    if limiter is None:
        limiter = current_default_thread_limiter()
    elif not isinstance(limiter, CapacityLimiter):
        raise TypeError(f"limiter must be a CapacityLimiter, got {limiter!r}")
    job = _Job(kernel, task, fn, args, limiter, bool(abandon))
    yield from limiter.acquire_on_behalf_of(job)  # a cancellation point
    try:
        thread = threading.Thread(
            target=job.work,
            name=f"yieldloop worker: {_describe(fn)}",
            daemon=job.abandon,
        )
        thread.start()
    except BaseException:
        limiter.release_on_behalf_of(job)
        raise
    job.thread = thread
    while True:
        try:
            msg = yield ("park", job.abort, job)
        except BaseException:
            # Abandoned on cancellation (or the task is being torn down): the
            # thread's outcome will be discarded when it arrives.
            if job.state == _WAITING:
                job.state = _ABANDONED
            raise
        if msg.__class__ is _Call:
            yield from _run_call(msg)
            continue
        break
    job.finish()
    ok, value = msg
    del msg
    if not ok:
        try:
            raise value
        finally:
            del value
    if task._scope._eff:
        raise Cancelled()
    return value


def to_thread(
    fn: Callable[..., T],
    *args: Any,
    limiter: CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
) -> Awaitable[T]:
    """Call ``fn(*args)`` in a worker thread and return its result (or raise
    its exception), without blocking the other tasks.

    ``await to_thread(fn, ...)`` in async code, ``yield from to_thread(fn, ...)``
    in a generator coroutine. At most ``limiter.total`` calls run at once
    (default: :func:`current_default_thread_limiter`, 40 per run); the others
    wait for a token. ``fn`` runs in a copy of the calling task's
    :mod:`contextvars` context, and may call back into the loop with
    :func:`from_thread_run` / :func:`from_thread_run_sync`.

    On cancellation: by default the call waits until ``fn`` returns (a
    thread cannot be interrupted), then raises :class:`~yieldloop.Cancelled`
    and drops the result. With ``abandon_on_cancel=True`` it raises
    ``Cancelled`` at once and the thread runs on unsupervised; its result is
    discarded.
    """
    return cast("Awaitable[T]", _to_thread(fn, args, limiter, abandon_on_cancel))


def _from_thread(fn: Callable[..., Any], args: tuple[Any, ...], is_async: bool, what: str) -> Any:
    if running_kernel() is not None:
        raise RuntimeError(
            f"{what}() was called from the yieldloop loop thread; it is for code "
            "running in a worker thread started by to_thread(). In a task, "
            + ("await the function directly" if is_async else "call the function directly")
        )
    job: _Job | None = getattr(_worker, "job", None)
    if job is None:
        raise RuntimeError(
            f"{what}() can only be called from a worker thread started by yieldloop.to_thread()"
        )
    if not callable(fn):
        raise TypeError(f"{what}() needs a function to call, got {fn!r}")
    kernel = job.kernel
    call = _Call(fn, args, is_async)
    try:
        kernel.call_soon_threadsafe(job.on_call, call)
    except RuntimeError:
        raise RunFinishedError("the yieldloop run that started this thread has finished") from None
    # A callback queued just as the run ends is never run; notice that rather
    # than wait forever.
    while not call.done.wait(0.25):
        if kernel.closed:
            if call.done.is_set():
                break
            raise RunFinishedError("the yieldloop run that started this thread has finished")
    ok, value = call.outcome
    call.outcome = (False, None)
    if not ok:
        try:
            raise value
        finally:
            del value
    return value


def from_thread_run(async_fn: Callable[..., Any], *args: Any) -> Any:
    """From a worker thread started by :func:`to_thread`: run
    ``await async_fn(*args)`` on the loop and block until it is done; return
    its result or raise its exception.

    It runs inside the task that called ``to_thread`` (its context and cancel
    scope): if that call is cancelled, so is ``async_fn``, and the
    :class:`~yieldloop.Cancelled` comes out here. If the call was abandoned,
    this raises ``Cancelled``; if the run has finished,
    :class:`~yieldloop.RunFinishedError`. Calling it from the loop thread
    raises ``RuntimeError``.
    """
    return _from_thread(async_fn, args, True, "from_thread_run")


def from_thread_run_sync(fn: Callable[..., T], *args: Any) -> T:
    """From a worker thread started by :func:`to_thread`: call ``fn(*args)``
    on the loop thread and block until it returns; return its result or raise
    its exception. Use it to touch loop objects (``event.set()``,
    ``channel.send_nowait(x)``) safely from a thread."""
    return cast(T, _from_thread(fn, args, False, "from_thread_run_sync"))


#: The name used in the "I/O and the OS" issue; the same as :func:`from_thread_run`.
from_thread = from_thread_run
