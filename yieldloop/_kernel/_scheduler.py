"""The scheduling hook: who runs next when several tasks are ready.

Layer 1. By default the kernel runs ready tasks first-in, first-out, in
rounds (see :meth:`Kernel._loop_fast`). ``run(main, scheduler=s)`` hands that
choice to ``s``: before each step the kernel calls ``s.choose(ready)`` with
the ready queue (oldest first) and runs the task at the index it returns.
Tests use this to try other interleavings on purpose (random, PCT,
replayed from a token: see :mod:`yieldloop.testing`). Nothing else changes:
the same program, the same requests, only the order of the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._task import Task

__all__ = ["Scheduler"]


class Scheduler:
    """Chooses which ready task runs next. This base class is FIFO, the
    kernel's own order: it always returns 0 (the task that has been ready
    longest). Subclasses override :meth:`choose`."""

    __slots__ = ()

    #: The kernel ends a run that takes more steps than this with
    #: :class:`~yieldloop.testing.TooManySteps` (None: no limit).
    max_steps: int | None = None

    def choose(self, ready: Sequence[Task[Any]]) -> int:
        """Return the index in ``ready`` (never empty, oldest first) of the
        task to run now. Called before every step of the run."""
        return 0

    def after_step(self, task: Task[Any], request: Any) -> None:
        """Called after ``task`` ran a step, with the request it yielded
        (None if it finished, or for a bare ``yield``). Not called at all
        unless a subclass overrides it."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
