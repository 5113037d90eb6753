"""What every primitive shares: finding the running task, binding to one run.

Layer 3. A primitive belongs to the run it is first used in (or created in):
its waiters are tasks of that kernel, and waking them from another run would
corrupt both. Using it from another run raises :class:`RunFinishedError`.

Waiting tasks are kept in an :class:`collections.OrderedDict` keyed by task:
first-in first-out with ``popitem(last=False)``, and O(1) removal of a
cancelled waiter with ``del`` - no operation scans the waiters.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .._kernel._errors import Cancelled, RunFinishedError
from .._kernel._state import local

if TYPE_CHECKING:
    from .._kernel._kernel import Kernel
    from .._kernel._task import Task

__all__ = ["DONE", "AsyncResource", "Bound", "enter", "enter_slow", "kernel_of"]


class _Done:
    """An awaitable that completes at once with None (``__aexit__``, ``aclose``):
    awaiting it iterates an empty tuple, in C."""

    __slots__ = ()
    __await__ = ().__iter__
    __iter__ = ().__iter__

    def __repr__(self) -> str:
        return "<yieldloop done>"


DONE: Any = _Done()


class Bound:
    """Base of the primitives: remembers the kernel they belong to."""

    __slots__ = ("_kernel",)

    def __init__(self) -> None:
        self._kernel: Kernel | None = local.kernel

    def _describe(self) -> str:
        return type(self).__name__

    def _rebind(self, kernel: Kernel | None) -> Kernel:
        if kernel is None:
            raise RuntimeError(
                f"{self._describe()} must be used from inside yieldloop.run() "
                "(no yieldloop kernel is running in this thread)"
            )
        if self._kernel is not None:
            raise RunFinishedError(
                f"this {self._describe()} belongs to another yieldloop.run(); "
                "create primitives inside the run that uses them"
            )
        self._kernel = kernel
        return kernel


def enter(obj: Bound) -> tuple[Kernel, Task[Any]]:
    """The running kernel and task, checked against ``obj``'s run, raising
    :class:`Cancelled` if the task is in a cancelled scope: every operation
    that may block is a cancellation point, even when it need not wait.

    The fast path reads the current task from the kernel the primitive is
    bound to: it is None unless that kernel is running a task right now, so
    a primitive used from another run (or outside any) takes the slow path,
    which explains what went wrong. (Primitives are not thread-safe: using
    one from two threads at once is not detected.)
    """
    kernel = obj._kernel
    if kernel is None or (task := kernel.current_task) is None:
        kernel, task = enter_slow(obj)
    if task._scope._eff:
        raise Cancelled()
    return kernel, task


def enter_slow(obj: Bound) -> tuple[Kernel, Task[Any]]:
    """:func:`enter` when the primitive's own kernel is not running a task."""
    kernel = local.kernel
    if kernel is not obj._kernel or kernel is None:
        kernel = obj._rebind(kernel)
    task = kernel.current_task
    if task is None:
        raise RuntimeError(f"{type(obj).__name__} must be used from inside a task")
    return kernel, task


def kernel_of(obj: Bound) -> Kernel:
    """The running kernel, checked against ``obj``'s run (no cancel check):
    for operations that never block, like ``Event.set``."""
    kernel = obj._kernel
    if kernel is not None and kernel.current_task is not None:
        return kernel
    kernel = local.kernel
    if kernel is not obj._kernel or kernel is None:
        kernel = obj._rebind(kernel)
    return kernel


class AsyncResource:
    """Something with an awaitable ``aclose()``; ``async with`` closes it.

    Channel ends, streams and listeners all derive from it."""

    __slots__ = ()

    def aclose(self) -> Any:
        """Close the resource (awaitable). Closing twice does nothing."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
