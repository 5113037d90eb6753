"""Instruments: objects the kernel tells what happens in a run.

Layer 1. ``run(main, instruments=[...])`` (or, during a run,
``current_kernel().add_instrument(i)``) installs an :class:`Instrument`; the
kernel calls the hooks it overrides. With no instrument the kernel runs its
plain loop and pays nothing; with one, it runs the loop that also serves
schedulers (:meth:`Kernel._loop_slow`), which calls the hooks around every
step. Traces, timelines and monitors are built on these hooks.

A hook that raises is logged (logger ``"yieldloop"``) and its instrument is
removed, so a broken instrument cannot break the program it watches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["HOOKS", "Instrument"]


class Instrument:
    """Override the hooks you need; the kernel calls only those.

    ``waker`` in :meth:`task_woken` is the task whose step made ``wakee``
    ready (it set an event, released a lock, spawned it), or None when I/O,
    a timer or another thread did.
    """

    def task_spawned(self, task: Task[Any]) -> None:
        """``task`` was created (it is about to be scheduled)."""

    def task_scheduled(self, task: Task[Any]) -> None:
        """``task`` became ready to run."""

    def task_woken(self, waker: Task[Any] | None, wakee: Task[Any]) -> None:
        """``wakee`` became ready because of ``waker`` (another task), or
        because of I/O, a timer or another thread (``waker`` None)."""

    def before_task_step(self, task: Task[Any]) -> None:
        """``task`` is about to run until its next request."""

    def after_task_step(self, task: Task[Any], request: Any) -> None:
        """``task`` ran; ``request`` is what it yielded (None if it finished)."""

    def task_exited(self, task: Task[Any]) -> None:
        """``task`` finished (returned, raised or was cancelled)."""

    def before_io_wait(self, timeout: float) -> None:
        """The kernel is about to wait up to ``timeout`` s for I/O (-1: forever)."""

    def after_io_wait(self, timeout: float) -> None:
        """The wait for I/O ended."""

    def run_finished(self) -> None:
        """The run is over (called once, also when it failed)."""


#: The hook names, in the order above.
HOOKS = (
    "task_spawned",
    "task_scheduled",
    "task_woken",
    "before_task_step",
    "after_task_step",
    "task_exited",
    "before_io_wait",
    "after_io_wait",
    "run_finished",
)
