"""The public awaitables of the kernel layer: ``sleep``, ``checkpoint``, ...

Layer 1. Each one is a generator function marked with :func:`types.coroutine`,
so the same object works as ``await sleep(1)`` in ``async def`` code and as
``yield from sleep(1)`` in a plain generator. A generator object that is never
started does not warn ("never awaited"), unlike an ``async def`` coroutine.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar

from ._kernel import CHECKPOINT
from ._state import current_kernel

if TYPE_CHECKING:
    from ._task import Task

__all__ = [
    "Awaitable",
    "sleep",
    "sleep_until",
    "sleep_forever",
    "checkpoint",
    "current_time",
    "current_task",
    "coroutine",
    "park",
    "wait_readable",
    "wait_writable",
    "dual",
]

T_co = TypeVar("T_co", covariant=True)
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
P = ParamSpec("P")


class Awaitable(Protocol[T_co]):
    """What yieldloop's awaitables are: usable as ``await x`` and ``yield from x``."""

    def __await__(self) -> Generator[Any, Any, T_co]: ...

    def __iter__(self) -> Generator[Any, Any, T_co]: ...


def _awaitable(fn: Callable[..., Generator[Any, Any, T_co]]) -> Callable[..., Awaitable[T_co]]:
    return types.coroutine(fn)  # type: ignore[return-value]


class _Checkpoint:
    """The awaitable returned by ``sleep(0)`` and ``checkpoint()``: one
    shared object that yields the ``("checkpoint",)`` request once.

    ``__await__``/``__iter__`` are the bound ``__iter__`` of a one-item tuple,
    so awaiting it makes a tuple iterator in C: no generator, no Python frame.
    The hot path of every busy program goes through here.
    """

    __slots__ = ()
    __await__ = (CHECKPOINT,).__iter__
    __iter__ = (CHECKPOINT,).__iter__

    def __repr__(self) -> str:
        return "<yieldloop checkpoint>"


_CHECKPOINT: Awaitable[None] = _Checkpoint()  # type: ignore[assignment]


@_awaitable
def _sleep(seconds: float) -> Generator[Any, Any, None]:
    yield ("sleep", seconds)


def sleep(seconds: float) -> Awaitable[None]:
    """Pause the current task for ``seconds`` (a checkpoint even when 0).

    ``await sleep(1)`` in async code, ``yield from sleep(1)`` in a generator
    (which is the same as the raw request ``yield ("sleep", 1)``). Raises
    ``TypeError``/``ValueError`` for a non-number or NaN; negative means 0.
    """
    if seconds == 0:
        return _CHECKPOINT
    return _sleep(seconds)


@_awaitable
def sleep_until(deadline: float) -> Generator[Any, Any, None]:
    """Pause the current task until :func:`current_time` reaches ``deadline``
    (a checkpoint even if it already has)."""
    yield ("sleep_until", deadline)


@_awaitable
def sleep_forever() -> Generator[Any, Any, None]:
    """Pause the current task until it is cancelled."""
    yield ("sleep_until", float("inf"))
    raise RuntimeError("sleep_forever() woke up without being cancelled")  # pragma: no cover


def checkpoint() -> Awaitable[None]:
    """Let other tasks run, and raise :class:`~yieldloop.Cancelled` here if
    the current task is inside a cancelled scope. ``yield`` alone does the
    same in a generator coroutine."""
    return _CHECKPOINT


def current_time() -> float:
    """The current time of the running kernel's clock, in seconds."""
    return current_kernel().now()


def current_task() -> Task[Any]:
    """The :class:`~yieldloop.Task` that is running now."""
    task = current_kernel().current_task
    if task is None:
        raise RuntimeError("current_task() must be called from inside a task")
    return task


def coroutine(fn: F) -> F:
    """Make a generator function awaitable from ``async def`` code.

    A plain generator coroutine (one that ``yield``s requests such as
    ``("sleep", 1)``) cannot be used with ``await``; decorated with
    ``@yieldloop.coroutine`` it can, and it still works with ``yield from``::

        @yieldloop.coroutine
        def get_page():
            yield ("sleep", 1)
            return "<html>Hello</html>"

        async def main():
            page = await get_page()
    """
    if not callable(fn):
        raise TypeError(f"@yieldloop.coroutine needs a function, got {fn!r}")
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_flags & 0x80:  # CO_COROUTINE: already async def
        return fn
    wrapped: Any = types.coroutine(fn)
    if wrapped is not fn:
        functools.update_wrapper(wrapped, fn)
    return wrapped  # type: ignore[no-any-return]


@_awaitable
def park(abort_fn: Callable[[Task[Any]], bool], info: Any = None) -> Generator[Any, Any, Any]:
    """Suspend the current task until another one calls
    :func:`~yieldloop.lowlevel.reschedule` on it; returns the value passed there.

    ``abort_fn(task)`` is called if the task is cancelled while parked: return
    True after undoing the wait (the kernel then raises
    :class:`~yieldloop.Cancelled` in the task), or False to keep waiting until
    you reschedule it yourself. ``info`` says what the task waits for (shown
    in reprs and reports). This is the one primitive every lock, queue and
    event in yieldloop is built from.
    """
    return (yield ("park", abort_fn, info))


@_awaitable
def wait_readable(fd: Any) -> Generator[Any, Any, None]:
    """Wait until ``fd`` (an int or an object with ``fileno()``) is readable."""
    yield ("wait_readable", fd)


@_awaitable
def wait_writable(fd: Any) -> Generator[Any, Any, None]:
    """Wait until ``fd`` (an int or an object with ``fileno()``) is writable."""
    yield ("wait_writable", fd)


class _Dual(Generic[T]):
    """What a function decorated with :func:`dual` returns: an awaitable that
    also works with ``yield from``. The coroutine is made only when it is
    awaited, so one that is never awaited does not warn."""

    __slots__ = ("_args", "_fn", "_kwargs")

    def __init__(
        self, fn: Callable[..., Coroutine[Any, Any, T]], args: Any, kwargs: Any
    ) -> None:
        self._fn: Callable[..., Coroutine[Any, Any, T]] | None = fn
        self._args = args
        self._kwargs = kwargs

    def __await__(self) -> Generator[Any, Any, T]:
        fn = self._fn
        if fn is None:
            raise RuntimeError("this awaitable was already awaited (it can be awaited once)")
        self._fn = None
        return fn(*self._args, **self._kwargs).__await__()

    __iter__ = __await__

    def __repr__(self) -> str:
        return f"<awaitable {getattr(self._fn, '__qualname__', 'already awaited')}()>"


def dual(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Awaitable[T]]:
    """Make an ``async def`` function usable with ``yield from`` too (the
    public awaitables of yieldloop work in both styles)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        return _Dual(fn, args, kwargs)

    return wrapper
