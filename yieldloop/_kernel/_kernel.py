"""The kernel: the run loop, and the requests a task can yield to it.

Layer 1. This file is meant to be read in one sitting. The whole scheduler is
:meth:`Kernel._loop_fast`: take the tasks that are ready, resume each one with
``send`` (or ``throw``), and look at the *request* it yields back:

=====================================  ==========================================
request                                meaning
=====================================  ==========================================
``None`` (a bare ``yield``)            checkpoint: let others run, then continue
``("checkpoint",)``                    the same
``("sleep", seconds)``                 wake me after ``seconds`` (<= 0: checkpoint)
``("sleep_until", deadline)``          wake me when the clock reaches ``deadline``
``("reschedule",)``                    go to the back of the queue; *not* a cancel point
``("park", abort_fn[, info])``         suspend me until someone calls
                                       ``kernel.reschedule(task, value)``;
                                       on cancellation the kernel calls
                                       ``abort_fn(task)``: True means "aborted,
                                       raise Cancelled in it", False means "I
                                       will reschedule it myself later"
``("wait_readable", fd)``              wake me when ``fd`` is readable
``("wait_writable", fd)``              wake me when ``fd`` is writable
                                       (also ``(kind, fd, owner)``: the fd
                                       of ``owner``, e.g. a socket, whose
                                       registration is kept between waits)
``("spawn", fn_or_coro, *args)``       start a sibling task; the request
                                       returns its :class:`Task`
``("current_task",)``                  returns the running :class:`Task`
``("current_time",)``                  returns the clock's time
=====================================  ==========================================

Everything else - locks, queues, task groups, sockets - is built from these
in higher layers. Timers live in a heap of ``(deadline, seq, obj)`` entries;
an entry is current only while ``obj._timer_seq == seq``, so cancelling a
sleep just clears the task's ``_timer_seq`` and the stale entry is skipped when
it comes up (or dropped when more than half of the heap is stale).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import select
import signal
import socket
import sys
import threading
import time
import types
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from contextvars import copy_context
from typing import Any

from ._clock import Clock, MonotonicClock
from ._errors import Cancelled, ClosedResourceError, Deadlock, TooManySteps
from ._instruments import HOOKS, Instrument
from ._monitor import Monitor
from ._scheduler import Scheduler
from ._scope import CancelScope, cancelled_error, detach_task, make_root_scope
from ._state import enter_thread, leave_thread, local
from ._task import ABORTING, AnyCoroutine, Task, TaskOwner
from ._trace import TraceRecorder
from ._watchdog import SlowStepWatchdog

__all__ = ["Kernel", "run", "coerce_coroutine", "CHECKPOINT", "KNOWN_REQUESTS", "RESCHEDULE"]

logger = logging.getLogger("yieldloop")

#: The request object yielded by :func:`~yieldloop.checkpoint` and
#: ``sleep(0)``; the kernel recognises it by identity, its fastest path.
CHECKPOINT = ("checkpoint",)
#: The ``("reschedule",)`` request: go to the back of the ready queue (not a
#: cancellation point). One shared tuple for every yield of it.
RESCHEDULE = ("reschedule",)

KNOWN_REQUESTS = (
    "checkpoint",
    "sleep",
    "sleep_until",
    "reschedule",
    "park",
    "wait_readable",
    "wait_writable",
    "spawn",
    "current_task",
    "current_time",
)

_EPOLLIN = 0x001
_EPOLLOUT = 0x004
_EPOLLERR = 0x008
_EPOLLHUP = 0x010
_READ_EVENTS = _EPOLLIN | _EPOLLERR | _EPOLLHUP
_WRITE_EVENTS = _EPOLLOUT | _EPOLLERR | _EPOLLHUP

_FATAL = (KeyboardInterrupt, SystemExit)
#: Numbers the runs, for the registration keys kept on sockets (_arm_base).
_RUN_IDS = itertools.count(1)
_THIS_FILE = __file__


class _SelectorPoller:
    """``select.epoll``'s interface over :mod:`selectors`, where epoll is missing."""

    def __init__(self) -> None:
        import selectors

        self._sel = selectors.DefaultSelector()
        self._selectors = selectors

    def _events(self, mask: int) -> int:
        s = self._selectors
        return (s.EVENT_READ if mask & _EPOLLIN else 0) | (s.EVENT_WRITE if mask & _EPOLLOUT else 0)

    def register(self, fd: int, mask: int) -> None:
        try:
            self._sel.register(fd, self._events(mask))
        except KeyError:
            raise FileExistsError(fd) from None

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._sel.modify(fd, self._events(mask))
        except KeyError:
            raise FileNotFoundError(fd) from None

    def unregister(self, fd: int) -> None:
        try:
            self._sel.unregister(fd)
        except KeyError:
            raise FileNotFoundError(fd) from None

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        s = self._selectors
        result = []
        for key, events in self._sel.select(None if timeout < 0 else timeout):
            mask = (_EPOLLIN if events & s.EVENT_READ else 0) | (
                _EPOLLOUT if events & s.EVENT_WRITE else 0
            )
            result.append((key.fd, mask))
        return result

    def fileno(self) -> int:
        return int(self._sel.fileno())

    def close(self) -> None:
        self._sel.close()


class _GuestSuspend(Exception):
    """Raised out of the loop in a guest run when its round is done."""


def _make_poller() -> Any:
    epoll = getattr(select, "epoll", None)
    if epoll is not None:
        return epoll()
    return _SelectorPoller()


class _RunOwner:
    """The owner of the main task and of tasks spawned beside it: the run
    itself behaves like a task group whose body is ``main``."""

    __slots__ = ("errors", "kernel", "main")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.main: Task[Any] | None = None
        self.errors: list[BaseException] = []

    def spawn(self, fn: Any, *args: Any, name: str | None = None) -> Task[Any]:
        kernel = self.kernel
        coro = coerce_coroutine(fn, args, "spawn")
        return kernel.spawn(coro, name, self, kernel.root_scope)

    def _child_done(self, task: Task[Any]) -> None:
        exc = task._exc
        if exc is not None and not isinstance(exc, Cancelled):
            if task is not self.main:
                self.errors.append(exc)
            self.kernel.root_scope.cancel()


class _SystemOwner:
    """Owner of housekeeping tasks (async generator finalizers): errors are
    logged, never lost, and never cancel the program."""

    __slots__ = ()

    def _child_done(self, task: Task[Any]) -> None:
        exc = task._exc
        if exc is not None and not isinstance(exc, Cancelled):
            logger.error("error in %s", task.name, exc_info=exc)


class Kernel:
    """One run of the scheduler. Made by :func:`run`; see the module docstring.

    Attributes the higher layers use: ``current_task``, ``root_scope``,
    :meth:`spawn`, :meth:`reschedule`, :meth:`reschedule_throw`,
    :meth:`try_abort`, :meth:`add_timer`, :meth:`now`,
    :meth:`call_soon_threadsafe`.
    """

    __slots__ = (
        "__weakref__",
        "_arm_base",
        "_asyncgens",
        "_at_close",
        "_abort_fd_fn",
        "_abort_sleep_fn",
        "_closed",
        "_attention",
        "_fd_masks",
        "_fd_owners",
        "_guest",
        "_guest_collected",
        "_guest_error",
        "_guest_over",
        "_handlers",
        "_hooks",
        "_instruments",
        "_idle",
        "_ki_count",
        "_ki_pending",
        "_owner",
        "_poller",
        "_readers",
        "_resources",
        "_seq",
        "_system_owner",
        "_thread",
        "_threadsafe",
        "_threadsafe_lock",
        "_wake_fd",
        "_wake_r",
        "_wake_w",
        "_writers",
        "clock",
        "current_task",
        "fatal",
        "now",
        "ntasks",
        "on_emit",
        "ready",
        "root_scope",
        "scheduler",
        "stale_timers",
        "timers",
    )

    def __init__(
        self,
        clock: Clock | None = None,
        on_emit: Callable[[Any], Any] | None = None,
        scheduler: Scheduler | None = None,
        instruments: Iterable[Instrument] = (),
    ) -> None:
        if clock is None:
            clock = MonotonicClock()
        elif not isinstance(clock, Clock):
            raise TypeError(f"clock must be a yieldloop Clock instance, got {clock!r}")
        self.clock = clock
        if type(clock) is MonotonicClock:
            self.now: Callable[[], float] = time.monotonic
            self._idle: Callable[[float], None] | None = None
        else:
            self.now = clock.current_time
            self._idle = clock.idle
        if on_emit is not None and not callable(on_emit):
            raise TypeError(f"on_emit must be callable, got {on_emit!r}")
        self.on_emit = on_emit
        if scheduler is not None and not isinstance(scheduler, Scheduler):
            raise TypeError(
                f"scheduler must be a yieldloop Scheduler instance or None, got {scheduler!r}"
            )
        self.scheduler = scheduler
        # Instruments, and per hook the bound methods to call (only the hooks
        # an instrument overrides). _attention tells the plain loop to look
        # up from its fast path: an instrument came or went, or Ctrl-C.
        self._instruments: list[Instrument] = []
        self._hooks: dict[str, list[Callable[..., Any]]] = {name: [] for name in HOOKS}
        self._attention = False
        for inst in instruments:
            self.add_instrument(inst)
        self.ready: deque[Task[Any]] = deque()
        self.timers: list[tuple[float, int, Any]] = []
        self.stale_timers = 0
        self._seq = itertools.count(1)
        self.current_task: Task[Any] | None = None
        self.root_scope = make_root_scope(self)
        self.ntasks = 0
        self.fatal: BaseException | None = None
        self._owner = _RunOwner(self)
        self._system_owner = _SystemOwner()
        self._ki_pending = False
        self._ki_count = 0
        self._readers: dict[int, Task[Any]] = {}
        self._writers: dict[int, Task[Any]] = {}
        self._fd_masks: dict[int, int] = {}
        # fd -> weak reference to the object that waited on it (a socket), so
        # a registration is known to still be that object's file (see _req_wait_fd).
        self._fd_owners: dict[int, weakref.ref[Any]] = {}
        # An owner that has an ``_armed`` attribute (SocketType) keeps there
        # ``_arm_base + mask`` while this run has its fd registered for mask:
        # one attribute read tells a wait that nothing needs doing.
        self._arm_base = next(_RUN_IDS) * 8
        self._poller: Any = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._threadsafe: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()
        # Resources opened in this run and not closed yet (see track_resource).
        self._resources: dict[int, tuple[weakref.ref[Any], str]] = {}
        self._closed = False
        self._at_close: list[Callable[[], Any]] = []
        # A guest run (guest_start) is driven one round per tick by a host loop.
        self._guest = False
        self._guest_collected = False
        self._guest_over = False
        self._guest_error: BaseException | None = None
        # Bound once: parking a task stores one of these, no new bound method.
        self._abort_sleep_fn = self._abort_sleep
        self._abort_fd_fn = self._abort_fd
        self._threadsafe_lock = threading.Lock()
        self._handlers: dict[str, Callable[[Task[Any], Any], None]] = {
            "checkpoint": self._req_checkpoint,
            "sleep": self._req_sleep,
            "sleep_until": self._req_sleep_until,
            "reschedule": self._req_reschedule,
            "park": self._req_park,
            "wait_readable": self._req_wait_fd,
            "wait_writable": self._req_wait_fd,
            "spawn": self._req_spawn,
            "current_task": self._req_current_task,
            "current_time": self._req_current_time,
        }

    # ================================================================ tasks

    def spawn(
        self,
        coro: AnyCoroutine[Any],
        name: str | None,
        owner: TaskOwner,
        scope: CancelScope,
    ) -> Task[Any]:
        """Create a task running ``coro`` inside ``scope``, reporting to ``owner``.

        The task starts at the back of the ready queue, in a copy of the
        current :mod:`contextvars` context.
        """
        if self._closed:
            coro.close()
            raise RuntimeError("this yieldloop run has finished; cannot spawn tasks into it")
        task: Task[Any] = Task(coro, name, owner, scope, copy_context())
        scope._tasks[task] = None
        self.ntasks += 1
        self.ready.append(task)
        if self._instruments:
            self._call_hooks("task_spawned", task)
        return task

    def reschedule(self, task: Task[Any], value: Any = None) -> None:
        """Wake a parked ``task``; its request returns ``value``."""
        if task._abort is None:
            raise RuntimeError(f"cannot reschedule {task!r}: it is not parked")
        task._abort = None
        task._wait_info = None
        task._val = value
        self.ready.append(task)

    def reschedule_throw(self, task: Task[Any], exc: BaseException) -> None:
        """Wake a parked ``task`` by raising ``exc`` at its request."""
        if task._abort is None:
            raise RuntimeError(f"cannot reschedule {task!r}: it is not parked")
        task._abort = None
        task._wait_info = None
        task._next = task._throw
        task._val = exc
        self.ready.append(task)

    def try_abort(self, task: Task[Any]) -> None:
        """Deliver cancellation to ``task`` now if it is parked and its wait
        can be aborted; otherwise it will see it at its next checkpoint."""
        fn = task._abort
        if fn is None or fn is ABORTING:
            return
        task._abort = ABORTING
        try:
            aborted = fn(task)
        except BaseException as exc:  # an abort function must not fail; tell the task
            task._abort = fn
            self.reschedule_throw(task, exc)
            return
        if task._abort is not ABORTING:
            return  # the abort function rescheduled the task itself
        if aborted:
            task._abort = None
            task._wait_info = None
            task._next = task._throw
            task._val = cancelled_error(task)
            self.ready.append(task)
        else:
            task._abort = fn

    def add_timer(self, deadline: float, obj: Any) -> None:
        """Call back ``obj`` (a parked Task or a CancelScope) at ``deadline``."""
        seq = next(self._seq)
        obj._timer_seq = seq
        heapq.heappush(self.timers, (deadline, seq, obj))

    def _abort_sleep(self, task: Task[Any]) -> bool:
        task._timer_seq = 0
        self.stale_timers += 1
        return True

    def _task_exit(self, task: Task[Any], result: Any, exc: BaseException | None) -> None:
        task._next = None  # marks it done (Task._done)
        task._val = result  # read as task._result
        task._wait_info = exc  # read as task._exc
        if exc is not None:
            tb = exc.__traceback__
            if tb is not None and tb.tb_frame.f_code.co_filename == _THIS_FILE:
                exc.__traceback__ = tb.tb_next  # hide the kernel's own frame
            if isinstance(exc, _FATAL):
                self.set_fatal(exc)
            elif type(exc) is RuntimeError and exc.args == ("no running event loop",):
                exc.add_note(
                    "(asyncio awaitables cannot be awaited inside yieldloop: "
                    "it is a different event loop)"
                )
        extra = task._extra
        if extra is None or extra.cancel_scope is None:
            del task._scope._tasks[task]
        else:
            detach_task(task)
        self.ntasks -= 1
        waiters = None if extra is None else extra.waiters
        if waiters:
            extra.waiters = None  # type: ignore[union-attr]
            ready = self.ready
            for w in waiters:
                w._abort = None
                w._wait_info = None
                w._val = None
                ready.append(w)
        task._owner._child_done(task)

    def set_fatal(self, exc: BaseException) -> None:
        """Record an error that ends the whole run (KeyboardInterrupt,
        SystemExit, a failing callback): cancel everything; ``run`` raises it
        once every task has finished."""
        if self.fatal is None:
            self.fatal = exc
        self.root_scope.cancel()

    # ============================================================= requests

    def _bad_request(self, task: Task[Any], req: Any) -> None:
        if self.on_emit is not None and not (
            type(req) is tuple and req and type(req[0]) is str and req[0] in self._handlers
        ):
            try:
                self.on_emit(req)
            except BaseException as exc:
                self.reschedule_throw_running(task, exc)
                return
            task._val = None
            self.ready.append(task)
            return
        hint = ""
        mod = type(req).__module__ or ""
        if mod.startswith(("asyncio", "_asyncio", "concurrent")) or (
            getattr(req, "_asyncio_future_blocking", None) is not None
        ):
            hint = (
                " (this looks like an asyncio object: asyncio awaitables cannot be "
                "awaited directly inside yieldloop)"
            )
        elif type(req) is tuple and req and type(req[0]) is str:
            hint = f" (unknown request {req[0]!r})"
        err = TypeError(
            f"task {task.name!r} yielded {req!r}, which is not a yieldloop request{hint}; "
            f"known requests are tuples starting with one of {', '.join(KNOWN_REQUESTS)}, "
            "or None for a checkpoint. Did you await something from another async library, "
            "or yield a value from a plain generator?"
        )
        self.reschedule_throw_running(task, err)

    def reschedule_throw_running(self, task: Task[Any], exc: BaseException) -> None:
        """Resume a task that just yielded (not parked) by raising ``exc`` in it."""
        task._next = task._throw
        task._val = exc
        self.ready.append(task)

    def _cancel_now(self, task: Task[Any]) -> None:
        task._next = task._throw
        task._val = cancelled_error(task)
        self.ready.append(task)

    def _req_checkpoint(self, task: Task[Any], req: Any) -> None:
        if task._scope._eff:
            self._cancel_now(task)
        else:
            task._val = None
            self.ready.append(task)

    def _req_reschedule(self, task: Task[Any], req: Any) -> None:
        task._val = None
        self.ready.append(task)

    def _req_sleep(self, task: Task[Any], req: Any) -> None:
        seconds = req[1] if len(req) == 2 else _req_arg(req, "sleep", "a number of seconds")
        cls = seconds.__class__
        if (cls is not float and cls is not int) and (  # the common cases, checked fast
            isinstance(seconds, bool) or not isinstance(seconds, (int, float))
        ):
            raise TypeError(f"sleep() needs a number of seconds, got {seconds!r}")
        if seconds != seconds:  # noqa: PLR0124 - NaN
            raise ValueError("sleep() got NaN seconds")
        if seconds <= 0:
            self._req_checkpoint(task, req)
            return
        if task._scope._eff:
            self._cancel_now(task)
            return
        task._abort = self._abort_sleep_fn
        task._wait_info = req
        if seconds != math.inf:
            seq = next(self._seq)
            task._timer_seq = seq
            heapq.heappush(self.timers, (self.now() + seconds, seq, task))

    def _req_sleep_until(self, task: Task[Any], req: Any) -> None:
        deadline = _req_arg(req, "sleep_until", "a deadline")
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
            raise TypeError(f"sleep_until() needs a deadline (a number), got {deadline!r}")
        if math.isnan(deadline):
            raise ValueError("sleep_until() got a NaN deadline")
        if deadline <= self.now():
            self._req_checkpoint(task, req)
        else:
            self._sleep_until(task, deadline, req)

    def _sleep_until(self, task: Task[Any], deadline: float, req: Any) -> None:
        if task._scope._eff:
            self._cancel_now(task)
            return
        task._abort = self._abort_sleep_fn
        task._wait_info = req
        if deadline != math.inf:
            self.add_timer(deadline, task)

    def _req_park(self, task: Task[Any], req: Any) -> None:
        if len(req) == 3:  # ("park", abort_fn, info): the common form
            abort = req[1]
            info = req[2]
        else:
            abort = _req_arg(req, "park", "an abort function")
            info = req[2] if len(req) > 2 else None
        if not callable(abort):
            raise TypeError(f"park needs an abort function, got {abort!r}")
        task._abort = abort
        task._wait_info = info
        if task._scope._eff:
            self.try_abort(task)

    def _req_spawn(self, task: Task[Any], req: Any) -> None:
        fn = _req_arg(req, "spawn", "an async function or generator")
        # Spawn inside the requesting task's context, so the child gets a copy of it.
        new = task.context.run(task._owner.spawn, fn, *req[2:])  # type: ignore[attr-defined]
        task._val = new
        self.ready.append(task)

    def _req_current_task(self, task: Task[Any], req: Any) -> None:
        task._val = task
        self.ready.append(task)

    def _req_current_time(self, task: Task[Any], req: Any) -> None:
        task._val = self.now()
        self.ready.append(task)

    # ================================================================== I/O

    def _req_wait_fd(self, task: Task[Any], req: Any) -> None:
        kind = req[0]
        reading = kind == "wait_readable"
        if len(req) == 3:
            # (kind, fd, owner): the socket layer's form, with the fd number
            # and the object it belongs to (see below).
            fd = req[1]
            owner = req[2]
            if fd.__class__ is not int or fd < 0:
                raise ValueError(f"{kind} needs a valid file descriptor, got {fd!r}")
            info = req
            try:
                key = owner._armed  # a SocketType's registration key
            except AttributeError:
                key = None
        else:
            key = None
            fd = owner = _req_arg(req, kind, "a file descriptor or an object with fileno()")
            if not isinstance(fd, int):
                try:
                    fd = fd.fileno()
                except AttributeError:
                    raise TypeError(
                        f"{kind} needs a file descriptor or an object with fileno(), got {fd!r}"
                    ) from None
            if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
                raise ValueError(f"{kind} needs a valid file descriptor, got {fd!r}")
            if owner is fd:
                owner = None
            info = (kind, fd)
        waiters = self._readers if reading else self._writers
        if fd in waiters:
            raise RuntimeError(
                f"another task ({waiters[fd].name!r}) is already waiting for fd {fd} "
                f"to become {'readable' if reading else 'writable'}"
            )
        if task._scope._eff:
            self._cancel_now(task)
            return
        waiters[fd] = task
        if reading:
            want = _EPOLLIN | (_EPOLLOUT if fd in self._writers else 0)
        else:
            want = _EPOLLOUT | (_EPOLLIN if fd in self._readers else 0)
        # A registration is kept after its wait ends, so a finished wait costs
        # no unregister syscall (an event that nobody waits for drops it),
        # and the same object (a socket) waiting for the same events again
        # costs no syscall either. A wait on a bare fd number re-arms it:
        # epoll forgets an fd when it is closed and a new file may reuse the
        # number, so a registration we remember may no longer exist. Objects
        # are told apart by a weak reference: a socket closed without
        # notify_closing and collected leaves a dead reference, so a new
        # socket reusing its number re-arms.
        # A socket carries the key of its registration (see _arm_fd), which
        # settles it with one attribute read.
        if key is not None:
            armed = key == self._arm_base + want
        else:
            armed = not (
                owner is None
                or self._fd_masks.get(fd) != want
                or (ref := self._fd_owners.get(fd)) is None
                or ref() is not owner
            )
        if not armed:
            try:
                self._arm_fd(fd, want, owner)
            except BaseException:
                del waiters[fd]
                raise
        task._abort = self._abort_fd_fn
        task._wait_info = info

    def _abort_fd(self, task: Task[Any]) -> bool:
        info = task._wait_info
        fd = info[1]
        waiters = self._readers if info[0] == "wait_readable" else self._writers
        if waiters.get(fd) is task:
            del waiters[fd]
        return True

    def _want(self, fd: int) -> int:
        return (_EPOLLIN if fd in self._readers else 0) | (_EPOLLOUT if fd in self._writers else 0)

    def _arm_fd(self, fd: int, want: int, owner: Any) -> None:
        """Register ``fd`` with the poller for ``want`` (or change its
        registration), and remember for which object (see _req_wait_fd)."""
        poller = self._poller
        if fd in self._fd_masks:
            try:
                poller.modify(fd, want)
            except FileNotFoundError:  # closed (and maybe reused) meanwhile
                poller.register(fd, want)
        else:
            try:
                poller.register(fd, want)
            except FileExistsError:  # a dup of an fd we registered earlier
                poller.modify(fd, want)
        self._fd_masks[fd] = want
        owners = self._fd_owners
        old = owners.get(fd)
        if old is not None and (previous := old()) is not None and previous is not owner:
            _set_armed(previous, 0)  # (a dead socket's number, reused)
        if owner is not None:
            try:
                owners[fd] = weakref.ref(owner)
            except TypeError:  # not weak-referenceable: re-armed every time
                owners.pop(fd, None)
            else:
                _set_armed(owner, self._arm_base + want)
        else:
            owners.pop(fd, None)

    def _forget_fd(self, fd: int) -> None:
        want = self._want(fd)
        poller = self._poller
        try:
            if want:
                poller.modify(fd, want)
            else:
                poller.unregister(fd)
        except OSError:
            want = 0
        ref = self._fd_owners.get(fd)
        owner = ref() if ref is not None else None
        if want:
            self._fd_masks[fd] = want
            if owner is not None:
                _set_armed(owner, self._arm_base + want)
        else:
            self._fd_masks.pop(fd, None)
            self._fd_owners.pop(fd, None)
            if owner is not None:
                _set_armed(owner, 0)

    def notify_closing(self, fd: int) -> None:
        """Call before closing ``fd``: tasks waiting on it get
        :class:`ClosedResourceError`, and its registration is dropped (so a
        new file that reuses the number starts clean)."""
        for waiters in (self._readers, self._writers):
            task = waiters.pop(fd, None)
            if task is not None:
                self.reschedule_throw(
                    task, ClosedResourceError(f"fd {fd} was closed while a task waited on it")
                )
        ref = self._fd_owners.pop(fd, None)
        if ref is not None and (owner := ref()) is not None:
            _set_armed(owner, 0)
        if self._fd_masks.pop(fd, None) is not None:
            try:
                self._poller.unregister(fd)
            except OSError:
                pass

    def _poll(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (-1: forever) for I/O; wake the
        tasks whose fds are ready. True if any event arrived."""
        events = self._poller.poll(timeout)
        if not events:
            return False
        wake_fd = self._wake_fd
        readers = self._readers
        writers = self._writers
        ready = self.ready
        for fd, ev in events:
            if fd == wake_fd:
                self._drain_wake()
                continue
            woke = False
            if ev & _READ_EVENTS:
                task = readers.pop(fd, None)
                if task is not None:
                    task._abort = None
                    task._wait_info = None
                    task._val = None
                    ready.append(task)
                    woke = True
            if ev & _WRITE_EVENTS:
                task = writers.pop(fd, None)
                if task is not None:
                    task._abort = None
                    task._wait_info = None
                    task._val = None
                    ready.append(task)
                    woke = True
            if not woke:
                self._forget_fd(fd)
        return True

    def _drain_wake(self) -> None:
        # One recv is enough: if more wake-up bytes than that are waiting (or
        # arrive meanwhile), the fd stays readable and the next poll (level-
        # triggered) reports it again. Draining to EAGAIN would cost a
        # second system call on every wake-up from another thread.
        assert self._wake_r is not None
        try:
            self._wake_r.recv(4096)
        except (BlockingIOError, InterruptedError):
            pass

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread soon; callable from any thread."""
        with self._threadsafe_lock:
            if self._closed:
                raise RuntimeError("this yieldloop run has finished")
            self._threadsafe.append((fn, args))
        self._wake()

    @property
    def closed(self) -> bool:
        """True once the run has finished (no more callbacks are accepted)."""
        return self._closed

    def _wake(self) -> None:
        w = self._wake_w
        if w is not None:
            try:
                w.send(b"\0")
            except OSError:  # full (a wake-up is pending anyway) or closing
                pass

    # ============================================================ resources

    def track_resource(self, obj: Any, what: str) -> None:
        """Remember that ``obj`` (a socket, a file, a child process, a
        thread; weakly referenced) was opened in this run. Unless
        :meth:`untrack_resource` is called first (when it is closed), the
        end of the run warns about it (:class:`ResourceWarning`)."""
        self._resources[id(obj)] = (weakref.ref(obj), what)

    def untrack_resource(self, obj: Any) -> None:
        """``obj`` was closed: forget it (no effect if it was not tracked)."""
        self._resources.pop(id(obj), None)

    def _report_unclosed(self) -> None:
        # The exit report: what this run opened and left open. Warnings only
        # (ResourceWarning is shown in development mode, -X dev, and tests).
        left = [(ref(), what) for ref, what in self._resources.values()]
        self._resources = {}
        for obj, what in left:
            if isinstance(obj, threading.Thread):
                obj.join(0.1)  # a thread that is just finishing is not left open
                if not obj.is_alive():
                    continue
            if obj is not None:
                warnings.warn(
                    f"{what} opened in this yieldloop run was left open when the run "
                    f"ended: {obj!r}",
                    ResourceWarning,
                    stacklevel=3,
                )

    # ============================================================== signals

    def _on_sigint(self, signum: int, frame: types.FrameType | None) -> None:
        # Runs in the main thread between two bytecodes. First Ctrl-C: ask the
        # loop to cancel everything at the next checkpoint. Another one before
        # the run has finished means "stop now": raise right here.
        self._ki_count += 1
        if self._ki_count > 1:
            raise KeyboardInterrupt
        self._ki_pending = True
        self._attention = True
        self._wake()

    # ========================================================= async gens

    def _asyncgen_firstiter(self, agen: Any) -> None:
        self._asyncgens.add(agen)

    def _asyncgen_finalizer(self, agen: Any) -> None:
        if threading.current_thread() is not self._thread:
            try:
                self.call_soon_threadsafe(self._finalize_agen, agen)
            except RuntimeError:
                pass
            return
        self._finalize_agen(agen)

    def _finalize_agen(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if self._closed:
            return
        self.spawn(
            agen.aclose(),
            f"finalize {getattr(agen, '__qualname__', agen)!r}",
            self._system_owner,
            self.root_scope,
        )

    # ================================================================ run

    def run(self, coro: AnyCoroutine[Any], name: str) -> Any:
        """Run ``coro`` as the main task until every task has finished."""
        if local.kernel is not None:
            coro.close()
            raise RuntimeError(
                "yieldloop.run() cannot be called while a yieldloop run is already "
                "active in this thread; await the coroutine (or spawn it in a "
                "TaskGroup) instead"
            )
        self._open_io()
        old_hooks = sys.get_asyncgen_hooks()
        old_sigint: Any = None
        old_wakeup_fd = -1
        installed_signals = False
        token = enter_thread(self)
        try:
            assert self._wake_w is not None
            if self._thread is threading.main_thread() and (
                signal.getsignal(signal.SIGINT) is signal.default_int_handler
            ):
                old_sigint = signal.signal(signal.SIGINT, self._on_sigint)
                installed_signals = True
                old_wakeup_fd = signal.set_wakeup_fd(
                    self._wake_w.fileno(), warn_on_full_buffer=False
                )
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter, finalizer=self._asyncgen_finalizer
            )
            self.clock.start_clock()
            main = self._owner.main = self.spawn(coro, name, self._owner, self.root_scope)
            try:
                self._loop()
                self._finalize_remaining_asyncgens()
            except BaseException:
                self._emergency_close()
                raise
        finally:
            self._mark_closed()
            leave_thread(token)
            sys.set_asyncgen_hooks(*old_hooks)
            if installed_signals:
                signal.set_wakeup_fd(old_wakeup_fd)
                signal.signal(signal.SIGINT, old_sigint)
            self._close_io()
        if self._resources:
            self._report_unclosed()
        return self._outcome(main)

    def _open_io(self) -> None:
        self._thread = threading.current_thread()
        self._poller = _make_poller()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_fd = self._wake_r.fileno()
        self._poller.register(self._wake_fd, _EPOLLIN)

    def _mark_closed(self) -> None:
        with self._threadsafe_lock:
            self._closed = True
        self.current_task = None
        if self._instruments:
            self._call_hooks("run_finished")
        while self._at_close:
            fn = self._at_close.pop()
            try:
                fn()
            except Exception as exc:
                logger.error("error in a callback at the end of the run", exc_info=exc)

    def call_at_close(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` when the run ends, after every task has finished (last
        registered, first called): for helpers that keep something running
        for the whole run, such as a thread, and must stop it."""
        if self._closed:
            raise RuntimeError("this yieldloop run has finished")
        self._at_close.append(fn)

    def _close_io(self) -> None:
        self._poller.close()
        assert self._wake_r is not None and self._wake_w is not None
        self._wake_r.close()
        self._wake_w.close()

    # ========================================================== guest runs

    def guest_start(self, coro: AnyCoroutine[Any], name: str) -> int:
        """Start a run driven by another event loop (the *host*), one round
        at a time: the host calls :meth:`guest_tick` when it is due and
        :meth:`guest_finish` once the run is over. Returns a file descriptor
        (the kernel's poller) that becomes readable whenever I/O, a timer-free
        wake-up from another thread, or a callback needs a tick; the host
        watches it (``loop.add_reader(fd, tick)``). The kernel never blocks in
        a guest run: waiting is the host's job. Needs real time and a poller
        with a file descriptor (epoll or kqueue)."""
        if local.kernel is not None:
            coro.close()
            raise RuntimeError("a yieldloop run is already active in this thread")
        if self._idle is not None:
            coro.close()
            raise ValueError("a guest run needs real time, not a virtual clock")
        self._open_io()
        try:
            fd: int = self._poller.fileno()
        except (AttributeError, OSError, ValueError):
            coro.close()
            self._mark_closed()
            self._close_io()
            raise NotImplementedError(
                "guest runs need a poller with a file descriptor (epoll or kqueue)"
            ) from None
        self._guest = True
        self.clock.start_clock()
        token = enter_thread(self)
        try:
            self._owner.main = self.spawn(coro, name, self._owner, self.root_scope)
        finally:
            leave_thread(token)
        return fd

    def guest_tick(self) -> float | None:
        """One round of a guest run: collect what became ready (without
        waiting), run the ready tasks once, and return how many seconds the
        host may wait before the next tick if the poller's fd stays quiet
        (0: tick again soon; ``inf``: only when the fd is readable). None
        once every task has finished: call :meth:`guest_finish`."""
        if self._guest_over:
            return None
        if local.kernel is not None:
            raise RuntimeError("a yieldloop run is already active in this thread")
        token = enter_thread(self)
        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter, finalizer=self._asyncgen_finalizer
        )
        self._guest_collected = False
        self._attention = True  # start the round in _collect
        try:
            self._loop()
            self._finalize_remaining_asyncgens()
        except _GuestSuspend:
            return self._guest_delay()
        except BaseException as exc:
            self._emergency_close()
            self._guest_error = exc
        finally:
            self.current_task = None
            leave_thread(token)
            sys.set_asyncgen_hooks(*old_hooks)
        self._guest_over = True
        return None

    def _guest_delay(self) -> float:
        if self.ready or self._threadsafe or self._attention or not self.ntasks:
            return 0.0
        deadline = self._next_deadline()
        if deadline == math.inf:
            return math.inf
        return max(0.0, self.clock.deadline_to_sleep_time(deadline))

    def _next_deadline(self) -> float:
        """The deadline of the first current timer (stale entries on top of
        the heap are dropped on the way), or ``inf``."""
        timers = self.timers
        while timers:
            entry = timers[0]
            if entry[2]._timer_seq == entry[1]:
                return entry[0]
            heapq.heappop(timers)
            self.stale_timers -= 1
        return math.inf

    def guest_finish(self) -> Any:
        """End a guest run whose :meth:`guest_tick` returned None (or that
        the host abandons: then tasks still running are closed) and return
        the main task's result, or raise its exception, like :func:`run`.
        Stop watching the poller's fd before calling this: it is closed."""
        if not self._guest_over:
            self._emergency_close()
            self._guest_over = True
        self._mark_closed()
        self._close_io()
        if self._resources:
            self._report_unclosed()
        if self._guest_error is not None:
            exc, self._guest_error = self._guest_error, None
            raise exc
        assert self._owner.main is not None
        return self._outcome(self._owner.main)

    def _outcome(self, main: Task[Any]) -> Any:
        errors = self._owner.errors
        main_exc = main._exc
        if self.fatal is not None:
            fatal = self.fatal
            if (
                main_exc is not None
                and main_exc is not fatal
                and fatal.__context__ is None
                and not isinstance(main_exc, Cancelled)
            ):
                fatal.__context__ = main_exc
            raise fatal
        if errors:
            if main_exc is not None and not isinstance(main_exc, Cancelled):
                errors.insert(0, main_exc)
            raise BaseExceptionGroup("errors in tasks spawned beside the main task", errors)
        if main_exc is not None:
            raise main_exc
        return main._result

    def _finalize_remaining_asyncgens(self) -> None:
        # Async generators still suspended when the program ends get aclose()d
        # on the loop, so their finally blocks run here and not in the GC.
        while True:
            agens = [a for a in list(self._asyncgens) if a.ag_frame is not None]
            self._asyncgens = weakref.WeakSet()
            if not agens:
                return
            for agen in agens:
                self.spawn(
                    agen.aclose(),
                    f"finalize {getattr(agen, '__qualname__', agen)!r}",
                    self._system_owner,
                    self.root_scope,
                )
            self._loop()

    def _emergency_close(self) -> None:
        # The loop itself was interrupted (a second Ctrl-C landing in kernel
        # code, or a bug). Close every coroutine so their finally blocks run.
        tasks: list[Task[Any]] = list(self.ready)
        tasks += [t for t in self._readers.values()]
        tasks += [t for t in self._writers.values()]
        tasks += [e[2] for e in self.timers if isinstance(e[2], Task)]
        seen: set[int] = set()

        def close_scope(scope: CancelScope) -> None:
            for t in list(scope._tasks):
                tasks.append(t)
            for child in list(scope._children):
                close_scope(child)

        close_scope(self.root_scope)
        for t in tasks:
            if id(t) in seen or t._done:
                continue
            seen.add(id(t))
            try:
                t._coro.close()
            except BaseException:
                pass

    def _collect(self) -> bool:
        """Step 1 of the loop: wait for something to do - I/O, timers, other
        threads - and move what became ready to the ready queue. Returns True
        when the run is over (no task left)."""
        if self._guest:
            # A guest run never blocks: one round per tick, then the host
            # loop waits (see guest_tick). _attention brings the loop back
            # here after this round.
            if self._guest_collected:
                raise _GuestSuspend
            self._guest_collected = True
            self._attention = True
        ready = self.ready
        timers = self.timers
        threadsafe = self._threadsafe
        if ready:
            if self._fd_masks:
                self._poll(0)
        else:
            if not self.ntasks and not threadsafe:
                return True
            deadline = self._next_deadline() if timers else math.inf
            if threadsafe or self._ki_pending:
                timeout = 0.0
            elif deadline == math.inf:
                timeout = -1.0
                if self._idle is not None and not (self._readers or self._writers):
                    # Virtual time and nothing that could ever wake a task?
                    timeout = self._check_deadlock()
            else:
                timeout = self.clock.deadline_to_sleep_time(deadline)
            if timeout == math.inf:
                timeout = -1.0
            if self._guest:
                timeout = 0.0
            if self._instruments:
                self._call_hooks("before_io_wait", timeout)
                got_io = self._poll(timeout)
                self._call_hooks("after_io_wait", timeout)
            else:
                got_io = self._poll(timeout)
            if not got_io and self._idle is not None and not threadsafe:
                self._idle(deadline)
        if timers:
            t = self.now()
            append = ready.append
            while timers:
                entry = timers[0]
                if entry[0] > t:
                    break
                heapq.heappop(timers)
                obj = entry[2]
                if obj._timer_seq != entry[1]:
                    self.stale_timers -= 1
                    continue
                if obj.__class__ is Task:
                    obj._timer_seq = 0
                    obj._abort = None
                    obj._wait_info = None
                    obj._val = None
                    append(obj)
                else:
                    obj._timer_fired()
            if self.stale_timers > 64 and self.stale_timers * 2 > len(timers):
                self._compact_timers()
        while threadsafe:
            fn, args = threadsafe.popleft()
            try:
                fn(*args)
            except BaseException as exc:
                logger.error("error in a callback from another thread", exc_info=exc)
                self.set_fatal(exc)
        if self._ki_pending:
            self._ki_pending = False
            self.set_fatal(KeyboardInterrupt())
        return False

    def _loop(self) -> None:
        """The scheduler. Read :meth:`_loop_fast` first: it is the whole idea.
        :meth:`_loop_slow` is the same loop with room for a scheduler that
        picks the order and instruments that watch every step."""
        while not (
            self._loop_slow() if self.scheduler is not None or self._instruments
            else self._loop_fast()
        ):
            pass

    def _loop_fast(self) -> bool:
        """Run until every task has finished (True), or until an instrument
        is added (False: the caller switches to :meth:`_loop_slow`)."""
        ready = self.ready
        popleft = ready.popleft
        append = ready.append
        handlers = self._handlers
        checkpoint = CHECKPOINT
        threadsafe = self._threadsafe
        io_waiting = self._fd_masks
        timers = self.timers
        task_exit = self._task_exit
        request_failed = self._request_failed

        while True:
            # ---- 1. wait for something to do: I/O, timers, other threads
            # (skipped while tasks are ready and nothing else can be pending)
            if not ready or io_waiting or timers or threadsafe or self._attention:
                if self._attention:
                    self._attention = False
                    if self._instruments:
                        return False
                if self._collect():
                    return True

            # ---- 2. run every task that is ready now (not the ones they wake):
            # resume it, then act on the request it yields. (_loop_slow
            # has the same step; tests check that both loops agree.)
            for _ in range(len(ready)):
                task = popleft()
                self.current_task = task
                try:
                    req = task.context.run(task._next, task._coro, task._val)  # type: ignore[arg-type]
                except StopIteration as exc:
                    task_exit(task, exc.value, None)
                    continue
                except BaseException as exc:
                    task_exit(task, None, exc)
                    continue
                if req is checkpoint or req is None:
                    if task._scope._eff:
                        self._cancel_now(task)
                    else:
                        task._val = None
                        append(task)
                else:
                    try:
                        handlers[req[0]](task, req)
                    except Exception as exc:
                        request_failed(task, req, exc)
            self.current_task = None

    def _loop_slow(self) -> bool:
        """The loop with a scheduler and/or instruments: the same rounds as
        :meth:`_loop_fast`, but before each step the scheduler (if any)
        chooses one task among *all* the ready ones (also those woken in this
        round), and the instruments (if any) hear about every step, every
        task that became ready and who woke it. Returns like
        :meth:`_loop_fast` (False: the last instrument went away)."""
        ready = self.ready
        scheduler = self.scheduler
        choose = scheduler.choose if scheduler is not None else None
        after = None
        if scheduler is not None and type(scheduler).after_step is not Scheduler.after_step:
            after = scheduler.after_step
        handlers = self._handlers
        task_exit = self._task_exit
        request_failed = self._request_failed
        append = ready.append
        checkpoint = CHECKPOINT
        limit: float = math.inf
        if scheduler is not None and scheduler.max_steps is not None:
            limit = scheduler.max_steps
        steps = 0
        while True:
            if self._attention:
                self._attention = False
                if scheduler is None and not self._instruments:
                    return False
            watched = bool(self._instruments)
            before = len(ready)
            if self._collect():
                return True
            if watched and len(ready) > before:
                self._report_ready(None, before)
            steps += len(ready)  # checked once a round, not at every step
            if steps > limit:
                raise TooManySteps(
                    f"the run took more than {limit:g} steps (the scheduler's max_steps); "
                    "is a task looping without ever waiting for the others?"
                )
            for _ in range(len(ready)):
                i = choose(ready) if choose is not None else 0
                if i:
                    task = ready[i]
                    del ready[i]
                else:
                    task = ready.popleft()
                if watched:  # (instruments added during a round join the next)
                    self._call_hooks("before_task_step", task)
                    before = len(ready)
                # The same step as in _loop_fast.
                self.current_task = task
                try:
                    req = task.context.run(task._next, task._coro, task._val)  # type: ignore[arg-type]
                except StopIteration as exc:
                    req = None
                    task_exit(task, exc.value, None)
                except BaseException as exc:
                    req = None
                    task_exit(task, None, exc)
                else:
                    if req is checkpoint or req is None:
                        if task._scope._eff:
                            self._cancel_now(task)
                        else:
                            task._val = None
                            append(task)
                    else:
                        try:
                            handlers[req[0]](task, req)
                        except Exception as exc:
                            request_failed(task, req, exc)
                self.current_task = None
                if after is not None:
                    after(task, req)
                if watched:
                    # Wake-ups first: they happened during the step.
                    if len(ready) > before:
                        self._report_ready(task, before)
                    self._call_hooks("after_task_step", task, req)
                    if task._next is None:
                        self._call_hooks("task_exited", task)

    # ========================================================== instruments

    def add_instrument(self, instrument: Instrument) -> None:
        """Start telling ``instrument`` what happens (see
        :class:`~yieldloop.lowlevel.Instrument`); adding it twice does nothing."""
        if not isinstance(instrument, Instrument):
            raise TypeError(f"instruments must be Instrument instances, got {instrument!r}")
        if instrument in self._instruments:
            return
        self._instruments.append(instrument)
        self._rebuild_hooks()

    def remove_instrument(self, instrument: Instrument) -> None:
        """Stop telling ``instrument``; ValueError if it is not installed."""
        try:
            self._instruments.remove(instrument)
        except ValueError:
            raise ValueError(f"{instrument!r} is not an instrument of this run") from None
        self._rebuild_hooks()

    def _rebuild_hooks(self) -> None:
        self._hooks = {
            name: [
                getattr(inst, name)
                for inst in self._instruments
                if getattr(type(inst), name) is not getattr(Instrument, name)
            ]
            for name in HOOKS
        }
        self._attention = True

    def _call_hooks(self, name: str, *args: Any) -> None:
        for hook in self._hooks[name]:
            try:
                hook(*args)
            except Exception as exc:
                inst = getattr(hook, "__self__", hook)
                logger.error(
                    "instrument %r failed in %s and was removed", inst, name, exc_info=exc
                )
                if inst in self._instruments:
                    self.remove_instrument(inst)

    def _report_ready(self, waker: Task[Any] | None, start: int) -> None:
        # Tasks appended to the ready queue since it had ``start`` entries.
        ready = self.ready
        for wakee in list(itertools.islice(ready, start, len(ready))):
            self._call_hooks("task_scheduled", wakee)
            if wakee is not waker:
                self._call_hooks("task_woken", waker, wakee)

    # ============================================================ deadlocks

    def _check_deadlock(self) -> float:
        """Called on virtual time when no task is ready, no timer is set and
        no task waits for I/O: unless a task waits for something outside the
        loop (a thread, a signal), nothing can ever wake the tasks. Then the
        run fails with :class:`Deadlock`, naming every task and what it waits
        on: first by cancelling everything (so ``finally`` blocks run); if
        that cannot end the waits either, at once. Returns the poll timeout:
        -1 (forever) while something outside may still wake a task."""
        tasks = self.all_tasks()
        for task in tasks:
            info = task._wait_info if task._abort is not None else None
            if getattr(info, "wakes_from_outside", False):
                return -1.0
        report = describe_deadlock(self, tasks)
        if self.fatal is not None and isinstance(self.fatal, Deadlock):
            self.fatal.add_note("cancelling every task did not end the deadlock:\n" + report)
            raise self.fatal
        self.set_fatal(Deadlock(report))
        return 0.0

    def all_tasks(self) -> list[Task[Any]]:
        """Every task of this run that has not finished, in spawn order
        within each cancel scope (a walk of the scope tree)."""
        out: list[Task[Any]] = []
        stack = [self.root_scope]
        while stack:
            scope = stack.pop()
            out.extend(t for t in scope._tasks if not t._done)
            stack.extend(reversed(scope._children))
        return out

    def _request_failed(self, task: Task[Any], req: Any, exc: Exception) -> None:
        # Either ``req`` is not a request at all (then ``exc`` came from looking
        # it up), or a known request's handler rejected its arguments.
        try:
            known = type(req) is tuple and len(req) > 0 and req[0] in self._handlers
        except TypeError:  # unhashable first item
            known = False
        if known:
            self.reschedule_throw_running(task, exc)
        else:
            self._bad_request(task, req)

    def _compact_timers(self) -> None:
        self.timers[:] = [e for e in self.timers if e[2]._timer_seq == e[1]]
        heapq.heapify(self.timers)
        self.stale_timers = 0


def _set_armed(owner: Any, key: int) -> None:
    """Store a registration key on ``owner`` if it has room for one."""
    try:
        owner._armed = key
    except AttributeError:
        pass


def describe_wait(kernel: Kernel, task: Task[Any]) -> str:
    """What ``task`` is doing, in words: for deadlock reports and task lists."""
    if task._done:
        return "finished"
    abort = task._abort
    if abort is None:
        return "ready to run" if task is not kernel.current_task else "running"
    info = task._wait_info
    if abort == kernel._abort_sleep_fn:
        if type(info) is tuple and len(info) == 2 and info[1] == math.inf:
            return "sleeping forever"
        return f"sleeping ({info!r})"
    if abort == kernel._abort_fd_fn:
        kind, fd = info[0], info[1]
        return f"waiting for fd {fd} to be {'readable' if kind == 'wait_readable' else 'writable'}"
    if isinstance(info, Task):
        return f"waiting for task {info.name!r} to finish"
    if info is None:
        return "parked"
    return f"waiting on {info!r}"


def describe_deadlock(kernel: Kernel, tasks: list[Task[Any]]) -> str:
    """The text of a :class:`Deadlock`: every task and what it waits on."""
    lines = [
        f"deadlock at time {kernel.now():g}: every task is waiting, and no timer, "
        f"I/O or thread can wake any of them ({len(tasks)} tasks):"
    ]
    lines += [f"  task {t.name!r}: {describe_wait(kernel, t)}" for t in tasks]
    return "\n".join(lines)


def _req_arg(req: tuple[Any, ...], name: str, what: str) -> Any:
    if len(req) < 2:
        raise TypeError(f"request {name!r} needs {what}: yield ({name!r}, ...)")
    return req[1]


def _name_of(fn: Any, coro: Any) -> str:
    name = getattr(fn, "__qualname__", None)
    if name is None and not callable(fn) and hasattr(fn, "__await__"):
        return repr(fn)  # e.g. run(gather(...)): "<gather 2 awaitables>"
    name = name or getattr(coro, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


async def _await_it(aw: Awaitable[Any]) -> Any:
    return await aw


def coerce_returned(fn: Any, obj: Any, what: str) -> AnyCoroutine[Any]:
    """The rest of :func:`coerce_coroutine`, once ``fn(*args)`` returned ``obj``
    and ``obj`` is not a coroutine or generator object."""
    if hasattr(obj, "__await__"):
        return _await_it(obj)
    raise TypeError(
        f"{what}() needs an async function or a generator function, but "
        f"{_name_of(fn, None)} returned {obj!r} (not a coroutine or generator). "
        "Did you pass a regular function?"
    )


def coerce_coroutine(fn: Any, args: tuple[Any, ...], what: str) -> AnyCoroutine[Any]:
    """Turn what the user passed to ``run``/``spawn``/``gather`` into a
    coroutine object the kernel can step, or raise a clear ``TypeError``.

    Accepted: an async function or generator function (called with
    ``args``), a coroutine object, a generator object, or any awaitable.
    """
    cls = fn.__class__
    if cls is types.FunctionType:  # the common case: an async or generator function
        obj = fn(*args)
        cls = obj.__class__
        if cls is types.CoroutineType or cls is types.GeneratorType:
            return obj  # type: ignore[no-any-return]
        return coerce_returned(fn, obj, what)
    if cls is types.CoroutineType or cls is types.GeneratorType:
        if args:
            fn.close()
            raise TypeError(
                f"{what}() got arguments, but {fn!r} is already a coroutine; pass the "
                f"async function and its arguments: {what}(fn, *args)"
            )
        return fn  # type: ignore[no-any-return]
    obj = fn
    if callable(fn) and not isinstance(fn, (types.CoroutineType, types.GeneratorType)) and not (
        hasattr(fn, "__await__")
    ):
        obj = fn(*args)
        args = ()
        if isinstance(obj, (types.CoroutineType, types.GeneratorType)):
            return obj
        if hasattr(obj, "__await__"):
            return _await_it(obj)
        raise TypeError(
            f"{what}() needs an async function or a generator function, but "
            f"{_name_of(fn, None)} returned {obj!r} (not a coroutine or generator). "
            "Did you pass a regular function?"
        )
    if args:
        if isinstance(obj, (types.CoroutineType, types.GeneratorType)):
            obj.close()
        raise TypeError(
            f"{what}() got arguments, but {obj!r} is not callable; pass the async "
            f"function and its arguments: {what}(fn, *args)"
        )
    if isinstance(obj, (types.CoroutineType, types.GeneratorType)):
        return obj
    if isinstance(obj, (Coroutine, Generator)):
        return obj
    if hasattr(obj, "__await__"):
        return _await_it(obj)
    raise TypeError(
        f"{what}() needs an async function, a coroutine, a generator or an "
        f"awaitable, got {obj!r}"
    )


def run(
    main: Any,
    *args: Any,
    clock: Clock | None = None,
    on_emit: Callable[[Any], Any] | None = None,
    scheduler: Scheduler | None = None,
    instruments: Iterable[Instrument] = (),
    trace: str | os.PathLike[str] | None = None,
    monitor: bool | None = None,
    slow_step: float | None = None,
) -> Any:
    """Run ``main`` on a new yieldloop kernel and return its result.

    ``main`` may be an async function or a generator function (called with
    ``args``), a coroutine or generator object, or any awaitable such as
    ``gather(...)``. ``run`` returns when ``main`` *and every task spawned
    beside it* have finished, and raises ``main``'s exception if it raised
    one.

    Ctrl-C (SIGINT, when ``run`` is in the main thread and the default
    handler is installed) cancels every task at its next checkpoint; once
    all ``finally`` blocks ran, ``run`` raises :class:`KeyboardInterrupt`. A
    second Ctrl-C raises at once. ``SystemExit`` or ``KeyboardInterrupt``
    raised inside any task work the same way.

    Keyword arguments:

    * ``clock`` - where time comes from (default :class:`MonotonicClock`);
      pass :class:`~yieldloop.testing.VirtualClock` to run on virtual time.
    * ``on_emit`` - called with every value a task yields that is not a
      request, instead of raising ``TypeError`` in that task. The task is
      resumed with None. (This is how the first scheduler of the tutorial
      printed ``Got: ...`` for the values a generator produced.)
    * ``scheduler`` - a :class:`~yieldloop.testing.Scheduler` that picks
      which ready task runs next (default: first in, first out). For tests:
      :class:`~yieldloop.testing.RandomScheduler` tries other interleavings.
    * ``instruments`` - :class:`~yieldloop.lowlevel.Instrument` objects told
      about every task and step (tracing, monitoring); none costs nothing.
    * ``trace`` - write a Chrome Trace Event / Perfetto JSON file of the run
      to this path (also: the environment variable ``YIELDLOOP_TRACE``);
      ``python -m yieldloop trace FILE`` draws it.
    * ``monitor`` - serve the live task list on a local Unix socket (from
      a thread of its own), for ``python -m yieldloop ps PID`` and
      ``pstree PID``; also with the environment variable ``YIELDLOOP_MONITOR=1``.
    * ``slow_step`` - report (logger ``"yieldloop"``, warning), while it
      happens, every task step that runs longer than this many seconds,
      with the stack it is stuck in: a blocking call in async code.

    On virtual time (a clock like :class:`~yieldloop.testing.VirtualClock`),
    a run in which every task waits for something nothing can bring raises
    :class:`~yieldloop.testing.Deadlock` naming each task and its wait.
    """
    if local.kernel is not None:
        if isinstance(main, (types.CoroutineType, types.GeneratorType)):
            main.close()
        raise RuntimeError(
            "yieldloop.run() cannot be called while a yieldloop run is already active in "
            "this thread; await the coroutine (or spawn it in a TaskGroup) instead"
        )
    try:
        if trace is None:
            trace = os.environ.get("YIELDLOOP_TRACE") or None
        if trace is not None:
            instruments = [*instruments, TraceRecorder(trace)]
        if monitor is None:
            monitor = os.environ.get("YIELDLOOP_MONITOR", "") not in ("", "0")
        if monitor:
            instruments = [*instruments, Monitor()]
        if slow_step is not None:
            instruments = [*instruments, SlowStepWatchdog(slow_step)]
        kernel = Kernel(clock, on_emit, scheduler, instruments)
    except BaseException:
        if isinstance(main, (types.CoroutineType, types.GeneratorType)):
            main.close()
        raise
    coro = coerce_coroutine(main, args, "run")
    return kernel.run(coro, _name_of(main, coro))

