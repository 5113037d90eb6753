"""Running blocking functions in worker threads, and calling back into the loop.

Layer 4. :func:`to_thread` hands its function to a worker thread of the
run's pool. The task that called it parks; the thread hands its outcome back
with :meth:`Kernel.call_soon_threadsafe`, and a callback on the loop thread
reschedules the task.

The pool (one per run) keeps the threads that finished a job: such a thread
waits up to :data:`IDLE_TIMEOUT` seconds for its next job, then exits, so a
program that calls ``to_thread`` often pays for starting a thread only once
(starting one costs tens of microseconds, more than the rest of a call). A
thread puts itself back into the pool *before* it hands over its outcome, so
the task that gets the result and calls ``to_thread`` again finds it there.
When the run ends (:meth:`Kernel.call_at_close`), the idle threads are told to
exit and are joined: nothing the pool started outlives ``run``, except a
thread still busy with an abandoned job (below). Thread-locals that a
function sets survive into the next job of the same thread, as in any thread
pool; the thread's link to its job (what :func:`from_thread_run` uses) is
reset after every job, and each job runs in a copy of its own task's context.
With ``IDLE_TIMEOUT = 0`` no thread is kept: each job gets a new thread,
joined before ``to_thread`` returns.

Code running in such a worker thread can call back into the loop with
:func:`from_thread_run` (an async function) or :func:`from_thread_run_sync`
(a plain one). The request goes to the *parked task that started the job*:
it wakes up, runs the function in its own context and cancel scope, sends the
outcome back to the thread and parks again. So a cancelled ``to_thread`` call
cancels what its thread asked the loop to do, as in trio.

Cancellation of ``to_thread``:

* ``abandon_on_cancel=False`` (the default): the thread cannot be stopped, so
  the task keeps waiting for it; when it finishes, its result is returned (or
  its exception raised) and :class:`~yieldloop.Cancelled` comes at the task's
  next checkpoint, as in trio: what the thread made is never lost.
* ``abandon_on_cancel=True``: the task raises ``Cancelled`` at once and the
  thread is left to finish on its own; its result is discarded, its limiter
  token is returned when it finishes. The thread goes back to the pool only
  once the function returns. One that is still running when the run ends is
  left behind (the exit report names it); it exits when its function returns.

The pool's threads are daemon threads: one stuck in an abandoned job (a read
that never returns) cannot keep the process alive. Every other job is over
before its ``to_thread`` returns, so no job is cut short by a daemon thread
ending with the interpreter.
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
from .._kernel._scope import CancelScope
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

#: Seconds a worker thread that finished its job waits for the next one
#: before it exits. 0 keeps no thread: every job starts a new one.
IDLE_TIMEOUT = 10.0

_default_limiters: weakref.WeakKeyDictionary[Kernel, CapacityLimiter] = weakref.WeakKeyDictionary()
_pools: weakref.WeakKeyDictionary[Kernel, _Pool] = weakref.WeakKeyDictionary()

# (True, value) or (False, exception)
_Outcome = tuple[bool, Any]

_WAITING = 0  # the task is parked waiting for the thread
_ABANDONED = 1  # the task went away; the thread's result will be discarded
_DONE = 2  # the outcome was handed over

#: ``_worker.job``: the job the current worker thread runs (None between jobs).
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


class _Pool:
    """The worker threads of one run: the idle ones wait for a job.

    ``submit`` runs on the loop thread; ``park_idle``/``leave`` on the
    worker threads; ``shutdown`` on the loop thread when the run ends. The
    lock guards ``idle``, ``exiting`` and ``closed``.
    """

    __slots__ = ("closed", "exiting", "idle", "idle_timeout", "lock")

    def __init__(self, idle_timeout: float) -> None:
        self.lock = threading.Lock()
        #: Idle workers, most recently idle last (the next job takes it: the
        #: threads idle the longest are the ones that time out).
        self.idle: dict[_Worker, None] = {}
        #: Workers that timed out and are ending: joined at shutdown.
        self.exiting: list[threading.Thread] = []
        self.closed = False
        self.idle_timeout = idle_timeout

    def submit(self, job: _Job) -> None:
        """Hand ``job`` to an idle worker, or to a new one."""
        with self.lock:
            worker = self.idle.popitem()[0] if self.idle else None
        if worker is None:
            worker = _Worker(self, job)
            job.worker = worker
            worker.thread.start()
        else:
            job.worker = worker
            worker.job = job
            worker.wake.release()

    def shutdown(self) -> None:
        """The run is over: idle workers exit, and are joined. A worker busy
        with an abandoned job exits when the job ends."""
        with self.lock:
            self.closed = True
            idle = list(self.idle)
            self.idle.clear()
            exiting, self.exiting = self.exiting, []
        for worker in idle:
            worker.wake.release()  # with no job: exit
        for worker in idle:
            worker.thread.join()
        for thread in exiting:
            thread.join()

    def park_idle(self, worker: _Worker) -> bool:
        """Put ``worker`` back (it finished a job); False: it must exit."""
        if self.idle_timeout <= 0:
            return False
        with self.lock:
            if self.closed:
                return False
            self.idle[worker] = None
        return True

    def leave(self, worker: _Worker) -> bool:
        """``worker`` waited too long: True if it left the pool (it exits);
        False if it was handed a job (or told to exit) meanwhile."""
        with self.lock:
            if worker not in self.idle:
                return False
            del self.idle[worker]
            self.exiting = [t for t in self.exiting if t.is_alive()]
            self.exiting.append(worker.thread)
        return True


class _Worker:
    """One thread of a :class:`_Pool`: runs jobs one after the other.

    The loop thread hands over a job by setting ``job`` and releasing
    ``wake``; releasing it with no job tells the thread to exit.
    """

    __slots__ = ("job", "pool", "thread", "tracked_by", "wake")

    def __init__(self, pool: _Pool, job: _Job) -> None:
        self.pool = pool
        self.job: _Job | None = job
        self.wake = threading.Lock()
        self.wake.acquire()
        #: The abandoned job for which this thread is in the run's exit
        #: report (loop thread only).
        self.tracked_by: _Job | None = None
        self.thread = threading.Thread(target=self.main, name="yieldloop worker", daemon=True)

    def main(self) -> None:
        pool = self.pool
        thread = self.thread
        while True:
            job = self.job
            if job is None:
                return
            self.job = None
            thread.name = f"yieldloop worker: {_describe(job.fn)}"
            outcome = job.run()
            # Back into the pool first: the task woken by this outcome may
            # call to_thread again at once, and should find this thread.
            keep = pool.park_idle(self)
            job.post(outcome)
            del job, outcome
            if not keep:
                return
            thread.name = "yieldloop worker (idle)"
            if not self.wake.acquire(timeout=pool.idle_timeout):
                if pool.leave(self):
                    return
                self.wake.acquire()  # a job (or the order to exit) is on its way

    def __repr__(self) -> str:
        return f"<to_thread worker {self.thread.name!r}>"


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
        "calls",
        "context",
        "fn",
        "kernel",
        "limiter",
        "state",
        "task",
        "worker",
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
        self.worker: _Worker | None = None
        #: Cancel scopes of calls this job's thread made into the loop as
        #: tasks of their own (see watch_call): cancelled with the job's task
        #: unless the job is abandoned.
        self.calls: set[CancelScope] | None = None

    def __repr__(self) -> str:
        return f"<to_thread job {_describe(self.fn)} for {self.task.name!r}>"

    # ---------------------------------------------------------- worker thread

    def run(self) -> _Outcome:
        fn = self.fn
        assert fn is not None
        _worker.job = self
        try:
            return self.context.run(_capture, fn, self.args)
        finally:
            _worker.job = None
            self.fn = None
            self.args = ()

    def post(self, outcome: _Outcome) -> None:
        try:
            self.kernel.call_soon_threadsafe(self.deliver, outcome)
        except RuntimeError:  # the run has finished: only an abandoned job gets here
            pass

    # ------------------------------------------------------ loop thread only

    def watch_call(self, scope: CancelScope) -> None:
        """(Loop thread) ``scope`` wraps a call this job's thread made into
        the loop: cancel it if the job's task is cancelled (and the job is
        not abandoned); :meth:`unwatch_call` when the call is over."""
        if self.state == _WAITING and self.task._scope._eff:
            scope.cancel()
        if self.calls is None:
            self.calls = set()
        self.calls.add(scope)

    def unwatch_call(self, scope: CancelScope) -> None:
        """(Loop thread) the call ``scope`` wrapped is over."""
        if self.calls is not None:
            self.calls.discard(scope)

    def abort(self, task: Task[Any]) -> bool:
        if not self.abandon and self.calls:
            for scope in list(self.calls):
                scope.cancel()
        if self.abandon:
            self.state = _ABANDONED
            worker = self.worker
            if worker is not None:  # forgotten again in finish()
                worker.tracked_by = self
                self.kernel.track_resource(
                    worker.thread, f"a to_thread({_describe(self.fn)}) thread (abandoned)"
                )
            return True
        return False  # keep waiting for the thread (Cancelled comes after it)

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
        worker = self.worker
        if worker is not None:
            if worker.tracked_by is self:
                worker.tracked_by = None
                self.kernel.untrack_resource(worker.thread)
            if worker.pool.idle_timeout <= 0:
                worker.thread.join()  # it has handed over its outcome: it is ending now
        self.limiter.release_on_behalf_of(self)


def _describe(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


def _pool_of(kernel: Kernel) -> _Pool:
    pool = _pools.get(kernel)
    if pool is None:
        pool = _Pool(IDLE_TIMEOUT)
        kernel.call_at_close(pool.shutdown)
        _pools[kernel] = pool
    return pool


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
        _pool_of(kernel).submit(job)
    except BaseException:
        limiter.release_on_behalf_of(job)
        raise
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
    # Cancelled while the thread ran (and not abandoned): the call still
    # returns what the thread made (data read, a file or a connection
    # opened: dropping it could lose or leak it); the Cancelled comes at the
    # task's next checkpoint (as in trio).
    return value


def to_thread(
    fn: Callable[..., T],
    *args: Any,
    limiter: CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
) -> Awaitable[T]:
    """Call ``fn(*args)`` in a worker thread and return its result (or raise
    its exception), without blocking the other tasks. The threads are kept
    for the next calls (each waits up to :data:`IDLE_TIMEOUT` seconds for
    one) and are joined when the run ends.

    ``await to_thread(fn, ...)`` in async code, ``yield from to_thread(fn, ...)``
    in a generator coroutine. At most ``limiter.total`` calls run at once
    (default: :func:`current_default_thread_limiter`, 40 per run); the others
    wait for a token. ``fn`` runs in a copy of the calling task's
    :mod:`contextvars` context, and may call back into the loop with
    :func:`from_thread_run` / :func:`from_thread_run_sync`.

    On cancellation: by default the call waits until ``fn`` returns (a
    thread cannot be interrupted) and returns its result, so nothing the
    thread made is lost; :class:`~yieldloop.Cancelled` is raised at the
    task's next checkpoint. With ``abandon_on_cancel=True`` it raises
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
