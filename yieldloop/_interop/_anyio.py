"""anyio's backend ``"yieldloop"``: anyio code running on yieldloop.

Layer 5 (tools around the runtime). With anyio installed, ``import
yieldloop`` makes ``anyio._backends._yieldloop`` importable, a module holding
this module's ``backend_class`` (anyio looks backends up by that name; it has
no public registry: see :mod:`yieldloop._interop`), so
``anyio.run(main, backend="yieldloop")`` works, and anyio code called from a
yieldloop task finds yieldloop through sniffio (the kernel names
``"yieldloop"`` while it runs). Supported anyio versions: :data:`SUPPORTED`.

Most of anyio maps one to one onto yieldloop (both follow trio's model:
level-triggered cancel scopes, task groups, capacity limiters); this module
wraps yieldloop's objects in anyio's classes. Sockets and DNS are in
:mod:`yieldloop._interop._anyio_net`. The pytest runner drives a guest run
(:meth:`Kernel.guest_start`) from the test thread, so fixtures and tests
share one run.
"""

from __future__ import annotations

import math
import os
import select
import weakref
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from concurrent.futures import Future
from contextlib import AbstractContextManager
from contextvars import Context, copy_context
from signal import Signals
from types import TracebackType
from typing import IO, Any, Literal, Never, TypeVar

import anyio
from anyio import TaskInfo, abc
from anyio._core._eventloop import claim_worker_thread, sniffio, threadlocals
from anyio._core._synchronization import CapacityLimiter as BaseCapacityLimiter
from anyio._core._synchronization import (
    CapacityLimiterStatistics,
    EventStatistics,
    LockStatistics,
    SemaphoreStatistics,
)
from anyio._core._synchronization import Event as BaseEvent
from anyio._core._synchronization import Lock as BaseLock
from anyio._core._synchronization import Semaphore as BaseSemaphore
from anyio._core._tasks import CancelScope as BaseCancelScope
from anyio._core._tasks import TaskHandle
from anyio.abc import AsyncBackend
from anyio.abc._tasks import call_for_coroutine, get_coro_name

from .._kernel._errors import BrokenResourceError as YLBroken
from .._kernel._errors import Cancelled
from .._kernel._errors import ClosedResourceError as YLClosed
from .._kernel._errors import WouldBlock as YLWouldBlock
from .._kernel._kernel import Kernel, run
from .._kernel._requests import checkpoint, sleep
from .._kernel._scope import CancelScope as YLCancelScope
from .._kernel._state import current_kernel, running_kernel
from .._kernel._task import Task, _TaskExtra
from .._os import _threads
from .._os._signals import open_signal_receiver
from .._os._subprocess import Process as YLProcess
from .._os._subprocess import open_process
from .._structured._group import TaskGroup as YLTaskGroup
from .._structured._group import TaskStatus as YLTaskStatus
from .._sync._event import Event as YLEvent
from .._sync._lock import CapacityLimiter as YLCapacityLimiter
from .._sync._lock import Lock as YLLock
from .._sync._lock import Semaphore as YLSemaphore
from . import _anyio_net as net

__all__ = ["SUPPORTED", "YieldloopBackend", "backend_class"]

#: The anyio versions this backend is written and tested for.
SUPPORTED = ">=4.16,<4.17"

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


# ============================================================ cancel scopes


class CancelScope(BaseCancelScope):
    """anyio's cancel scope over a :class:`yieldloop.CancelScope`."""

    __slots__ = ("_original",)

    def __new__(cls, original: YLCancelScope | None = None, **kwargs: Any) -> CancelScope:
        return object.__new__(cls)

    def __init__(self, original: YLCancelScope | None = None, **kwargs: Any) -> None:
        self._original = original if original is not None else YLCancelScope(**kwargs)

    def __enter__(self) -> CancelScope:
        self._original.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        return self._original.__exit__(exc_type, exc_val, exc_tb)

    def cancel(self, reason: str | None = None) -> None:
        self._original.cancel(reason)

    @property
    def deadline(self) -> float:
        return self._original.deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._original.deadline = value

    @property
    def cancel_called(self) -> bool:
        return self._original.cancel_called

    @property
    def cancelled_caught(self) -> bool:
        return self._original.cancelled_caught

    @property
    def shield(self) -> bool:
        return self._original.shield

    @shield.setter
    def shield(self, value: bool) -> None:
        self._original.shield = value


# ============================================================= task groups


_NOT_STARTED = object()


class _TaskStatus(abc.TaskStatus[Any]):
    """anyio's task status. ``started()`` called while the function is
    still making its coroutine (a plain function returning one) is held
    until the coroutine exists, so errors there reach ``start()``'s caller."""

    def __init__(self, original: Any) -> None:
        self._original = original
        self._early: Any = _NOT_STARTED
        self._linked = False
        self._called = False

    def started(self, value: Any = None) -> None:
        if self._called:
            raise RuntimeError("called 'started' twice on the same task status")
        self._called = True
        if self._linked:
            self._original.started(value)
        else:
            self._early = value

    def link(self) -> None:
        self._linked = True
        if self._early is not _NOT_STARTED:
            value, self._early = self._early, _NOT_STARTED
            self._original.started(value)


class TaskGroup(abc.TaskGroup):
    """anyio's task group over a :class:`yieldloop.TaskGroup`."""

    def __init__(self) -> None:
        self._group = YLTaskGroup()
        self.cancel_scope = CancelScope(self._group.cancel_scope)
        self._active = False
        self._entered = False

    async def __aenter__(self) -> TaskGroup:
        if self._entered:
            raise RuntimeError("TaskGroup cannot be entered more than once")
        self._entered = True
        await self._group.__aenter__()
        self._active = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool:
        try:
            try:
                suppressed = await self._group.__aexit__(exc_type, exc_val, exc_tb)
            except (KeyboardInterrupt, SystemExit) as exc:
                # anyio's groups wrap every error, these two as well
                raise BaseExceptionGroup("unhandled errors in a TaskGroup", [exc]) from None
            if not suppressed and isinstance(exc_val, (KeyboardInterrupt, SystemExit)):
                raise BaseExceptionGroup("unhandled errors in a TaskGroup", [exc_val]) from None
            return suppressed
        finally:
            self._active = False
            del exc_val, exc_tb

    def _check_active(self, coro: Any = None) -> None:
        if not self._active:
            if coro is not None and hasattr(coro, "close"):
                coro.close()
            raise RuntimeError("This task group is not active; no new tasks can be started.")

    def create_task(
        self,
        coro: Coroutine[Any, Any, T_co],
        *,
        name: object = None,
        context: Context | None = None,
    ) -> TaskHandle[T_co, Never]:
        if not isinstance(coro, Coroutine):
            raise TypeError(f"expected a coroutine, got {coro.__class__.__qualname__}")
        self._check_active(coro)
        handle: TaskHandle[T_co, Never] = TaskHandle(coro, get_coro_name(coro, name))
        if context is not None:
            context.run(self._group.spawn, handle._run_coro, name=handle.name)
        else:
            self._group.spawn(handle._run_coro, name=handle.name)
        return handle

    async def start(
        self,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
        name: object = None,
        return_handle: Literal[False, True] = False,
    ) -> Any:
        self._check_active()
        final_name = _callable_name(func, name)
        box: list[TaskHandle[Any, Any]] = []

        async def run_with_status(*, task_status: Any) -> None:
            status = _TaskStatus(task_status)
            coro = call_for_coroutine(func, args, task_status=status)
            handle: TaskHandle[Any, Any] = TaskHandle(coro, final_name)
            box.append(handle)
            status.link()
            await handle._run_coro()

        value = await self._group.start(run_with_status, name=final_name)
        if return_handle:
            if not box:  # it failed after started(), before it had a handle
                await checkpoint()  # the group is cancelled by that error
                raise RuntimeError(f"{final_name} failed right after it started")
            handle = box[0]
            handle._start_value = value
            return handle
        return value


def _name_task(task: Task[Any], name: str) -> None:
    extra = task._extra
    if extra is None:
        task._extra = _TaskExtra(name)
    else:
        extra.name = name


def _callable_name(func: Any, name: object) -> str:
    if name is not None:
        return str(name)
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if module and qualname:
        return f"{module}.{qualname}"
    return qualname or repr(func)


# ============================================================== primitives


class Event(BaseEvent):
    """anyio's event over a :class:`yieldloop.Event`."""

    __slots__ = ("_original",)

    def __new__(cls) -> Event:
        return object.__new__(cls)

    def __init__(self) -> None:
        self._original = YLEvent()

    def is_set(self) -> bool:
        return self._original.is_set()

    async def wait(self) -> None:
        await self._original.wait()

    def statistics(self) -> EventStatistics:
        return EventStatistics(tasks_waiting=self._original.statistics()["tasks_waiting"])

    def set(self) -> None:
        self._original.set()


class Lock(BaseLock):
    """anyio's lock over a :class:`yieldloop.Lock`."""

    __slots__ = ("_fast_acquire", "_original")

    def __new__(cls, *, fast_acquire: bool = False) -> Lock:
        return object.__new__(cls)

    def __init__(self, *, fast_acquire: bool = False) -> None:
        self._fast_acquire = fast_acquire
        self._original = YLLock()

    async def acquire(self) -> None:
        if self._fast_acquire and not self._original.locked():
            await _checkpoint_if_cancelled()
            self.acquire_nowait()
            return
        try:
            await self._original.acquire()
        except RuntimeError as exc:
            raise RuntimeError("Attempted to acquire an already held Lock") from exc

    def acquire_nowait(self) -> None:
        try:
            self._original.acquire_nowait()
        except YLWouldBlock:
            raise anyio.WouldBlock from None
        except RuntimeError as exc:
            raise RuntimeError("Attempted to acquire an already held Lock") from exc

    def locked(self) -> bool:
        return self._original.locked()

    def release(self) -> None:
        self._original.release()

    def statistics(self) -> LockStatistics:
        stats = self._original.statistics()
        owner = self._original.owner
        return LockStatistics(
            stats["locked"], _TaskInfo(owner) if owner is not None else None,
            stats["tasks_waiting"],
        )


class Semaphore(BaseSemaphore):
    """anyio's semaphore over a :class:`yieldloop.Semaphore`."""

    __slots__ = ("_original",)

    def __new__(
        cls, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False
    ) -> Semaphore:
        return object.__new__(cls)

    def __init__(
        self, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False
    ) -> None:
        super().__init__(initial_value, max_value=max_value, fast_acquire=fast_acquire)
        self._original = YLSemaphore(initial_value, max_value=max_value)

    async def acquire(self) -> None:
        if self._fast_acquire and self._original.value > 0:
            await _checkpoint_if_cancelled()
            self.acquire_nowait()
            return
        await self._original.acquire()

    def acquire_nowait(self) -> None:
        try:
            self._original.acquire_nowait()
        except YLWouldBlock:
            raise anyio.WouldBlock from None

    @property
    def max_value(self) -> int | None:
        return self._original.max_value

    @property
    def value(self) -> int:
        return self._original.value

    def release(self) -> None:
        self._original.release()

    def statistics(self) -> SemaphoreStatistics:
        return SemaphoreStatistics(self._original.statistics()["tasks_waiting"])


class CapacityLimiter(BaseCapacityLimiter):
    """anyio's capacity limiter over a :class:`yieldloop.CapacityLimiter`."""

    __slots__ = ("_original",)

    def __new__(
        cls, total_tokens: float | None = None, *, original: YLCapacityLimiter | None = None
    ) -> CapacityLimiter:
        return object.__new__(cls)

    def __init__(
        self, total_tokens: float | None = None, *, original: YLCapacityLimiter | None = None
    ) -> None:
        if original is None:
            assert total_tokens is not None
            _check_total_tokens(total_tokens)
            original = YLCapacityLimiter(total_tokens)
        self._original = original

    async def __aenter__(self) -> None:
        await self._original.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._original.release()

    @property
    def total_tokens(self) -> float:
        return self._original.total

    @total_tokens.setter
    def total_tokens(self, value: float) -> None:
        _check_total_tokens(value)
        self._original.total = value

    @property
    def borrowed_tokens(self) -> int:
        return self._original.borrowed_tokens

    @property
    def available_tokens(self) -> float:
        return self._original.available_tokens

    def acquire_nowait(self) -> None:
        self.acquire_on_behalf_of_nowait(_current_task())

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        try:
            self._original.acquire_on_behalf_of_nowait(borrower)
        except YLWouldBlock:
            raise anyio.WouldBlock from None
        except RuntimeError as exc:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens"
            ) from exc

    async def acquire(self) -> None:
        await self.acquire_on_behalf_of(_current_task())

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        try:
            await self._original.acquire_on_behalf_of(borrower)
        except RuntimeError as exc:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens"
            ) from exc

    def release(self) -> None:
        self.release_on_behalf_of(_current_task())

    def release_on_behalf_of(self, borrower: object) -> None:
        try:
            self._original.release_on_behalf_of(borrower)
        except RuntimeError as exc:
            raise RuntimeError(
                "this borrower isn't holding any of this CapacityLimiter's tokens"
            ) from exc

    def statistics(self) -> CapacityLimiterStatistics:
        stats = self._original.statistics()
        return CapacityLimiterStatistics(
            borrowed_tokens=stats["borrowed_tokens"],
            total_tokens=stats["total_tokens"],
            borrowers=tuple(stats["borrowers"]),
            tasks_waiting=stats["tasks_waiting"],
        )


def _check_total_tokens(value: float) -> None:
    if not isinstance(value, int) and value != math.inf:
        raise TypeError("total_tokens must be an int or math.inf")
    if value < 0:
        raise ValueError("total_tokens must be >= 0")


def _current_task() -> Task[Any]:
    task = current_kernel().current_task
    if task is None:
        raise RuntimeError("must be called from inside a task")
    return task


async def _checkpoint_if_cancelled() -> None:
    task = _current_task()
    if task._scope._eff:
        await checkpoint()


#: Per run: anyio's wrapper of the run's default thread limiter.
_default_limiters: weakref.WeakKeyDictionary[Kernel, CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


# ============================================================ subprocesses


class _ReceiveStream(abc.ByteReceiveStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        try:
            data = await self._stream.receive_some(max_bytes)
        except YLClosed as exc:
            raise anyio.ClosedResourceError from exc
        except YLBroken as exc:
            raise anyio.BrokenResourceError from exc
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def aclose(self) -> None:
        await self._stream.aclose()


class _SendStream(abc.ByteSendStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def send(self, item: bytes) -> None:
        try:
            await self._stream.send_all(item)
        except YLClosed as exc:
            raise anyio.ClosedResourceError from exc
        except YLBroken as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        await self._stream.aclose()


class Process(abc.Process):
    """anyio's process over a :class:`yieldloop.Process`."""

    def __init__(self, process: YLProcess) -> None:
        self._process = process
        self._stdin = _SendStream(process.stdin) if process.stdin is not None else None
        self._stdout = _ReceiveStream(process.stdout) if process.stdout is not None else None
        self._stderr = _ReceiveStream(process.stderr) if process.stderr is not None else None

    async def aclose(self) -> None:
        with YLCancelScope(shield=True):
            for stream in (self._stdin, self._stdout, self._stderr):
                if stream is not None:
                    await stream.aclose()
        try:
            await self.wait()
        except BaseException:
            self.kill()
            with YLCancelScope(shield=True):
                await self.wait()
            raise

    async def wait(self) -> int:
        return await self._process.wait()

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def send_signal(self, signal: Signals) -> None:
        self._process.send_signal(signal)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def stdin(self) -> abc.ByteSendStream | None:
        return self._stdin

    @property
    def stdout(self) -> abc.ByteReceiveStream | None:
        return self._stdout

    @property
    def stderr(self) -> abc.ByteReceiveStream | None:
        return self._stderr


# ================================================================= signals


class _SignalReceiver:
    def __init__(self, signals: tuple[Signals, ...]) -> None:
        self._signals = signals
        self._cm: Any = None
        self._receiver: Any = None

    def __enter__(self) -> _SignalReceiver:
        self._cm = open_signal_receiver(*self._signals)
        self._receiver = self._cm.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        result: bool | None = self._cm.__exit__(exc_type, exc_val, exc_tb)
        return result

    def __aiter__(self) -> _SignalReceiver:
        return self

    async def __anext__(self) -> Signals:
        return Signals(await self._receiver.receive())


# =================================================================== tasks


class _TaskInfo(TaskInfo):
    def __init__(self, task: Task[Any]) -> None:
        owner = task._owner
        parent: Task[Any] | None
        if isinstance(owner, YLTaskStatus):  # still starting: its parent is the starter
            parent = owner._caller
        else:
            parent = getattr(owner, "_parent_task", None)
        super().__init__(id(task), id(parent) if parent is not None else None, task.name,
                         task._coro)
        self._task = task

    def has_pending_cancellation(self) -> bool:
        task = self._task
        return bool(not task._done and task._scope._eff)


# ============================================================= test runner


class TestRunner(abc.TestRunner):
    """Runs anyio's pytest fixtures and tests in one yieldloop run, a guest
    run driven from the test thread (so fixtures and tests share it)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._kernel: Kernel | None = None
        self._fd = -1
        self._jobs: deque[tuple[Callable[[], Awaitable[Any]], list[tuple[bool, Any]]]] = deque()
        self._job_ready: YLEvent | None = None
        self._closing = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        kernel = self._kernel
        if kernel is None:
            return
        self._closing = True
        kernel.call_soon_threadsafe(self._poke)
        self._drive(lambda: False)
        self._kernel = None
        kernel.guest_finish()

    def is_running(self) -> bool:
        kernel = self._kernel
        return kernel is not None and running_kernel() is kernel

    def _poke(self) -> None:
        if self._job_ready is not None:
            self._job_ready.set()

    async def _serve(self) -> None:
        # The run's main task: runs each fixture or test handed over by
        # _call, one at a time, then sleeps until _poke brings the next.
        while True:
            while self._jobs:
                make, holder = self._jobs.popleft()
                try:
                    holder.append((True, await make()))
                except BaseException as exc:
                    holder.append((False, exc))
            if self._closing:
                return
            self._job_ready = YLEvent()
            await self._job_ready.wait()
            self._job_ready = None

    def _drive(self, until: Callable[[], bool]) -> bool:
        """Tick the run until ``until()`` is true (True) or the run is over
        (False); between ticks, wait on the poller's fd as long as the run
        allows, so nothing spins."""
        kernel = self._kernel
        assert kernel is not None
        while True:
            delay = kernel.guest_tick()
            if delay is None:
                return False
            if until():
                return True
            if delay > 0:
                select.select([self._fd], [], [], None if delay == math.inf else delay)

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        if self._kernel is None:
            kernel = Kernel(
                scheduler=self._options.get("scheduler"),
                instruments=self._options.get("instruments", ()),
            )
            self._fd = kernel.guest_start(self._serve(), "anyio test runner")
            self._kernel = kernel
        holder: list[tuple[bool, Any]] = []
        self._jobs.append((make, holder))
        self._kernel.call_soon_threadsafe(self._poke)
        if not self._drive(lambda: bool(holder)):
            kernel, self._kernel = self._kernel, None
            kernel.guest_finish()  # raises what ended the run
            raise RuntimeError("the test runner's run ended before the test did")
        ok, value = holder[0]
        if not ok:
            try:
                raise value
            finally:
                del value, holder
        return value  # type: ignore[no-any-return]

    def run_asyncgen_fixture(
        self,
        fixture_func: Callable[..., AsyncGenerator[T, Any]],
        kwargs: dict[str, Any],
    ) -> Iterable[T]:
        asyncgen = fixture_func(**kwargs)
        value: T = self._call(lambda: asyncgen.asend(None))
        yield value
        try:
            self._call(lambda: asyncgen.asend(None))
        except StopAsyncIteration:
            pass
        else:
            self._call(asyncgen.aclose)
            raise RuntimeError("Async generator fixture did not stop")

    def run_fixture(
        self,
        fixture_func: Callable[..., Coroutine[Any, Any, T]],
        kwargs: dict[str, Any],
    ) -> T:
        return self._call(lambda: fixture_func(**kwargs))

    def run_test(
        self, test_func: Callable[..., Coroutine[Any, Any, Any]], kwargs: dict[str, Any]
    ) -> None:
        self._call(lambda: test_func(**kwargs))


# ================================================================= backend


def _token_kernel(token: object) -> Kernel:
    if token is None:  # a worker thread: ours, or one that anyio claimed
        job = getattr(_threads._worker, "job", None)
        if job is not None:
            return job.kernel  # type: ignore[no-any-return]
        claimed = getattr(threadlocals, "current_token", None)
        if claimed is not None:
            token = claimed.native_token
    if not isinstance(token, Kernel):
        raise RuntimeError("this must be called with a yieldloop event loop token")
    return token


def _call_into_run(
    kernel: Kernel, fn: Callable[..., Any], args: tuple[Any, ...], is_async: bool
) -> Any:
    """From a thread that is not ``kernel``'s: run ``fn(*args)`` on the loop,
    in (a copy of) this thread's context, and wait for the outcome. A
    coroutine function runs as a task of its own (a system task: cancelling
    the task that started this thread does not cancel it)."""
    if running_kernel() is kernel:
        raise RuntimeError("This function must be called from a worker thread, not the loop")
    future: Future[Any] = Future()
    context = copy_context()
    if sniffio is not None:
        context.run(sniffio.current_async_library_cvar.set, "yieldloop")

    # A call from a to_thread() worker of this run is cancelled with the
    # task waiting for that thread (unless the thread was abandoned).
    job = getattr(_threads._worker, "job", None)
    if job is not None and job.kernel is not kernel:
        job = None
    scope = YLCancelScope()

    async def as_task() -> None:
        try:
            with scope:
                future.set_result(await fn(*args))
            if scope.cancelled_caught and not future.done():
                future.set_exception(Cancelled())
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            if job is not None:
                job.unwatch_call(scope)

    def on_loop() -> None:
        if is_async:
            name = getattr(fn, "__qualname__", None) or repr(fn)
            if job is not None:
                job.watch_call(scope)
            context.run(kernel.spawn, as_task(), name, kernel._system_owner, kernel.root_scope)
        else:
            try:
                future.set_result(context.run(fn, *args))
            except BaseException as exc:
                future.set_exception(exc)

    try:
        kernel.call_soon_threadsafe(on_loop)
    except RuntimeError:
        raise anyio.RunFinishedError from None
    while True:
        try:
            return future.result(0.25)
        except TimeoutError:
            if kernel.closed and not future.done():
                raise anyio.RunFinishedError from None


class YieldloopBackend(AsyncBackend):
    """anyio's ``AsyncBackend`` for yieldloop (``backend="yieldloop"``)."""

    @classmethod
    def run(
        cls,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> T:
        name = _callable_name(func, None)

        async def main() -> T:
            _name_task(_current_task(), name)
            return await func(*args, **kwargs)

        result: T = run(main, **options)
        return result

    @classmethod
    def current_token(cls) -> object:
        return current_kernel()

    @classmethod
    def current_time(cls) -> float:
        return current_kernel().now()

    @classmethod
    def cancelled_exception_class(cls) -> type[BaseException]:
        return Cancelled

    @classmethod
    async def checkpoint(cls) -> None:
        await checkpoint()

    @classmethod
    async def checkpoint_if_cancelled(cls) -> None:
        await _checkpoint_if_cancelled()

    @classmethod
    async def cancel_shielded_checkpoint(cls) -> None:
        with YLCancelScope(shield=True):
            await checkpoint()

    @classmethod
    async def sleep(cls, delay: float) -> None:
        await sleep(delay)

    @classmethod
    def create_cancel_scope(
        cls, *, deadline: float = math.inf, shield: bool = False
    ) -> BaseCancelScope:
        return CancelScope(deadline=deadline, shield=shield)

    @classmethod
    def current_effective_deadline(cls) -> float:
        task = _current_task()
        scope: YLCancelScope | None = task._scope
        deadline = math.inf
        while scope is not None:
            if scope._cancel_called:
                return -math.inf
            deadline = min(deadline, scope._deadline)
            if scope._shield:
                break
            scope = scope._parent
        return deadline

    @classmethod
    def create_task_group(cls) -> abc.TaskGroup:
        return TaskGroup()

    @classmethod
    def create_event(cls) -> BaseEvent:
        return Event()

    @classmethod
    def create_lock(cls, *, fast_acquire: bool) -> BaseLock:
        return Lock(fast_acquire=fast_acquire)

    @classmethod
    def create_semaphore(
        cls, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False
    ) -> BaseSemaphore:
        return Semaphore(initial_value, max_value=max_value, fast_acquire=fast_acquire)

    @classmethod
    def create_capacity_limiter(cls, total_tokens: float) -> BaseCapacityLimiter:
        return CapacityLimiter(total_tokens)

    @classmethod
    async def run_sync_in_worker_thread(
        cls,
        func: Callable[..., T],
        args: tuple[Any, ...],
        abandon_on_cancel: bool = False,
        limiter: BaseCapacityLimiter | None = None,
    ) -> T:
        token = current_kernel()

        def wrapper() -> T:
            # No async library runs in a worker thread: sniffio says so.
            if sniffio is not None:
                sniffio.current_async_library_cvar.set(None)
            with claim_worker_thread(YieldloopBackend, token):
                try:
                    return func(*args)
                except StopIteration as exc:
                    # (it cannot travel through the coroutine that waits)
                    raise RuntimeError("coroutine raised StopIteration") from exc

        original = None
        if limiter is not None:
            original = limiter._original if isinstance(limiter, CapacityLimiter) else None
            if original is None:
                raise TypeError(f"not a yieldloop capacity limiter: {limiter!r}")
        result: T = await _threads.to_thread(
            wrapper, limiter=original, abandon_on_cancel=abandon_on_cancel
        )
        return result

    @classmethod
    def check_cancelled(cls) -> None:
        job = getattr(_threads._worker, "job", None)
        if job is not None and job.task._scope._eff:
            raise Cancelled()

    @classmethod
    def run_async_from_thread(
        cls,
        func: Callable[..., Coroutine[Any, Any, T_co]],
        args: tuple[Any, ...],
        token: object,
    ) -> T_co:
        result: T_co = _call_into_run(_token_kernel(token), func, args, True)
        return result

    @classmethod
    def run_sync_from_thread(
        cls,
        func: Callable[..., T],
        args: tuple[Any, ...],
        token: object,
    ) -> T:
        result: T = _call_into_run(_token_kernel(token), func, args, False)
        return result

    @classmethod
    def run_sync_soon(
        cls, func: Callable[..., object], args: tuple[Any, ...], token: object
    ) -> None:
        kernel = _token_kernel(token)
        context = copy_context()
        try:
            kernel.call_soon_threadsafe(context.run, func, *args)
        except RuntimeError:
            raise anyio.RunFinishedError from None

    @classmethod
    async def open_process(
        cls,
        command: Any,
        *,
        stdin: int | IO[Any] | None,
        stdout: int | IO[Any] | None,
        stderr: int | IO[Any] | None,
        **kwargs: Any,
    ) -> Process:
        if isinstance(command, (str, bytes, os.PathLike)):
            cmd: Any = os.fsdecode(command)
            kwargs["shell"] = True
        else:
            cmd = [os.fsdecode(item) for item in command]
        process = await open_process(cmd, stdin=stdin, stdout=stdout, stderr=stderr, **kwargs)
        return Process(process)

    @classmethod
    def setup_process_pool_exit_at_shutdown(cls, workers: set[abc.Process]) -> None:
        def kill_workers() -> None:
            for process in workers:
                if process.returncode is None:
                    process.kill()
            for process in workers:
                if isinstance(process, Process):
                    process._process._popen.wait()
                    kernel.untrack_resource(process._process)

        kernel = current_kernel()
        kernel.call_at_close(kill_workers)

    # ---- networking: the functions of _anyio_net, with the same parameters
    connect_tcp = staticmethod(net.connect_tcp)
    connect_unix = staticmethod(net.connect_unix)
    create_tcp_listener = staticmethod(net.create_tcp_listener)
    create_unix_listener = staticmethod(net.create_unix_listener)
    create_udp_socket = staticmethod(net.create_udp_socket)
    create_unix_datagram_socket = staticmethod(net.create_unix_datagram_socket)  # type: ignore[assignment]
    getaddrinfo = staticmethod(net.getaddrinfo)
    getnameinfo = staticmethod(net.getnameinfo)
    wait_readable = staticmethod(net.wait_readable)
    wait_writable = staticmethod(net.wait_writable)
    notify_closing = staticmethod(net.notify_closing)
    wrap_listener_socket = staticmethod(net.wrap_listener_socket)
    wrap_stream_socket = staticmethod(net.wrap_stream_socket)
    wrap_unix_stream_socket = staticmethod(net.wrap_unix_stream_socket)
    wrap_udp_socket = staticmethod(net.wrap_udp_socket)
    wrap_connected_udp_socket = staticmethod(net.wrap_connected_udp_socket)
    wrap_unix_datagram_socket = staticmethod(net.wrap_unix_datagram_socket)
    wrap_connected_unix_datagram_socket = staticmethod(net.wrap_connected_unix_datagram_socket)

    # ---- the rest
    @classmethod
    def current_default_thread_limiter(cls) -> BaseCapacityLimiter:
        kernel = current_kernel()
        limiter = _default_limiters.get(kernel)
        if limiter is None:
            limiter = _default_limiters[kernel] = CapacityLimiter(
                original=_threads.current_default_thread_limiter()
            )
        return limiter

    @classmethod
    def open_signal_receiver(
        cls, *signals: Signals
    ) -> AbstractContextManager[AsyncIterator[Signals]]:
        return _SignalReceiver(signals)

    @classmethod
    def get_current_task(cls) -> TaskInfo:
        return _TaskInfo(_current_task())

    @classmethod
    def get_running_tasks(cls) -> Sequence[TaskInfo]:
        return [_TaskInfo(task) for task in current_kernel().all_tasks()]

    @classmethod
    async def wait_all_tasks_blocked(cls) -> None:
        kernel = current_kernel()
        while True:
            await checkpoint()
            if not kernel.ready and not kernel._threadsafe:
                return

    @classmethod
    def create_test_runner(cls, options: dict[str, Any]) -> TestRunner:
        return TestRunner(**options)


backend_class = YieldloopBackend

