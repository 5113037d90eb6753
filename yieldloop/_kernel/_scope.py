"""Cancel scopes: where cancellation and deadlines live.

Layer 1 (kernel). Scopes form a tree. Each task points at its innermost scope
(``task._scope``); each scope knows its parent, its child scopes and the tasks
whose innermost scope it is. A scope is *effectively cancelled* (``_eff``) when
it was cancelled itself, or when its parent is effectively cancelled and it is
not shielded. ``_eff`` is kept up to date eagerly when anything changes, so the
kernel's check at a checkpoint is one attribute read: ``task._scope._eff``.

When a scope becomes effectively cancelled, every task inside it that is
parked gets its wait aborted (see ``Kernel.try_abort``); tasks that are
running will see ``Cancelled`` at their next checkpoint. That is the only
place where cancellation costs O(tasks inside the scope), which is the work
it has to do anyway.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._errors import Cancelled
from ._state import current_kernel, running_kernel

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._task import Task

__all__ = ["CancelScope"]

_INF = math.inf


class CancelScope:
    """A region of code that can be cancelled, with an optional deadline.

    Use it as a context manager::

        with CancelScope(deadline=current_time() + 5) as scope:
            await something_slow()
        if scope.cancelled_caught:
            print("gave up after 5 seconds")

    Calling :meth:`cancel` (or reaching the ``deadline``) makes every
    checkpoint inside the scope raise :class:`Cancelled`; the scope catches
    that exception again when the ``with`` block exits and sets
    :attr:`cancelled_caught`. A scope with ``shield=True`` hides the
    cancellation of the scopes around it from the code inside it (used for
    cleanup that must await). A scope can be entered only once.
    """

    __slots__ = (
        "_deadline",
        "_shield",
        "_cancel_called",
        "cancelled_caught",
        "_eff",
        "_parent",
        "_children",
        "_tasks",
        "_task",
        "_kernel",
        "_timer_seq",
        "_state",
        "_deadline_hit",
        "_reason",
        "__weakref__",
    )

    # _state: 0 = new, 1 = entered, 2 = exited.  (A root scope of a run is
    # created entered and has no task.)

    def __init__(self, *, deadline: float = _INF, shield: bool = False) -> None:
        if deadline is not _INF:  # (every task group makes a scope with the defaults)
            _check_deadline(deadline)
            deadline = float(deadline)
        self._deadline = deadline
        self._shield = shield if shield is False else bool(shield)
        self._cancel_called = False
        #: True once the ``with`` block exited by catching the scope's own :class:`Cancelled`.
        self.cancelled_caught = False
        self._eff = False
        self._parent: CancelScope | None = None
        self._children: dict[CancelScope, None] = {}
        self._tasks: dict[Task[Any], None] = {}
        self._task: Task[Any] | None = None
        self._kernel: Kernel | None = None
        self._timer_seq = 0
        self._state = 0
        self._deadline_hit = False
        self._reason: str | None = None

    # ------------------------------------------------------------------ public

    @property
    def deadline(self) -> float:
        """The time (in :func:`~yieldloop.current_time` terms) at which the scope
        cancels itself; ``math.inf`` for none. Settable, also while entered."""
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        _check_deadline(value)
        self._deadline = float(value)
        if self._state == 1:
            self._arm_deadline()

    @property
    def shield(self) -> bool:
        """When True, cancellation from outside the scope does not reach inside.
        Settable, also while entered."""
        return self._shield

    @shield.setter
    def shield(self, value: bool) -> None:
        value = bool(value)
        if value != self._shield:
            self._shield = value
            if self._state == 1:
                _update(self)

    @property
    def cancel_called(self) -> bool:
        """True once :meth:`cancel` was called or the deadline passed."""
        return self._cancel_called

    def cancel(self, reason: str | None = None) -> None:
        """Cancel the scope: every checkpoint inside it raises :class:`Cancelled`
        from now on. Safe to call many times, before or after entering, and
        from any task of the same run. ``reason`` (the first one given) is
        part of the message of the :class:`Cancelled` exceptions."""
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"reason must be a str or None, got {reason!r}")
        if reason is not None and self._reason is None:
            kernel = running_kernel()
            task = kernel.current_task if kernel is not None else None
            self._reason = reason if task is None else f"{reason} (by task {task.name!r})"
        if self._cancel_called:
            return
        self._cancel_called = True
        if self._state == 1:
            self._disarm_deadline()
            _update(self)

    def __enter__(self) -> CancelScope:
        kernel = current_kernel()
        task = kernel.current_task
        if task is None:  # pragma: no cover - only reachable from kernel internals
            raise RuntimeError("CancelScope must be entered from inside a task")
        if self._state != 0:
            raise RuntimeError("a CancelScope can only be entered once")
        self._state = 1
        self._kernel = kernel
        self._task = task
        parent = task._scope
        self._parent = parent
        parent._children[self] = None
        del parent._tasks[task]
        self._tasks[task] = None
        task._scope = self
        self._eff = self._cancel_called or (not self._shield and parent._eff)
        if self._deadline != _INF and not self._cancel_called:
            self._arm_deadline()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        task = self._task
        if self._state != 1 or task is None:
            raise RuntimeError("this CancelScope was not entered (or was already exited)")
        kernel = self._kernel
        if kernel is not None and kernel.current_task is not task:
            raise RuntimeError(
                f"a cancel scope entered in task {task.name!r} must be exited in that task"
            )
        if task._scope is not self:
            raise RuntimeError(
                f"cancel scopes exited out of order in task {task.name!r}: "
                "exiting a scope that is not the innermost one "
                "(did a scope get exited in another task, or a generator hold one open?)"
            )
        self._state = 2
        self._disarm_deadline()
        parent = self._parent
        assert parent is not None
        del self._tasks[task]
        parent._tasks[task] = None
        task._scope = parent
        del parent._children[self]
        self._task = None
        if exc is None or not self._cancel_called:
            return False
        if parent._eff and not self._shield:
            # A scope around this one is cancelled too: the Cancelled goes on
            # to the outermost cancelled scope (as in trio), so no code runs
            # between this exit and that one as if nothing had been cancelled.
            return False
        if isinstance(exc, Cancelled):
            self.cancelled_caught = True
            return True
        if isinstance(exc, BaseExceptionGroup):
            matched, rest = exc.split(Cancelled)
            if matched is not None:
                self.cancelled_caught = True
                if rest is None:
                    return True
                # split() copied the group's __cause__, __context__ and
                # __suppress_context__ to ``rest``; raising it here would set
                # its __context__ to the group itself, so put that back.
                context = rest.__context__
                try:
                    raise rest
                finally:
                    rest.__context__ = context
                    del context, rest
        return False

    def __repr__(self) -> str:
        state = ("new", "active", "exited")[self._state]
        parts = [state]
        if self._cancel_called:
            parts.append("cancelled")
        if self._deadline != _INF:
            parts.append(f"deadline={self._deadline:.6g}")
        if self._shield:
            parts.append("shield")
        return f"<CancelScope {' '.join(parts)} at {id(self):#x}>"

    # ---------------------------------------------------------------- internal

    def _arm_deadline(self) -> None:
        kernel = self._kernel
        assert kernel is not None
        if self._cancel_called:
            return
        if self._timer_seq:
            kernel.stale_timers += 1
            self._timer_seq = 0
        if self._deadline == _INF:
            return
        if self._deadline <= kernel.now():
            self._deadline_hit = True
            self.cancel()
        else:
            kernel.add_timer(self._deadline, self)

    def _disarm_deadline(self) -> None:
        if self._timer_seq:
            self._timer_seq = 0
            kernel = self._kernel
            assert kernel is not None
            kernel.stale_timers += 1

    def _timer_fired(self) -> None:
        # Called by the kernel when our deadline entry comes up and is current.
        self._timer_seq = 0
        self._deadline_hit = True
        self.cancel()


def cancelled_error(task: Task[Any]) -> Cancelled:
    """The :class:`Cancelled` to raise in ``task``, saying why: the reason
    given to the innermost cancelled scope it can see, or that the scope's
    deadline passed."""
    scope: CancelScope | None = task._scope
    while scope is not None:
        if scope._cancel_called:
            if scope._reason is not None:
                return Cancelled(f"cancelled: {scope._reason}")
            if scope._deadline_hit:
                return Cancelled("cancelled: a cancel scope's deadline was exceeded")
            return Cancelled()
        if scope._shield:
            break
        scope = scope._parent
    return Cancelled()


def _check_deadline(deadline: float) -> None:
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError(f"deadline must be a number, got {deadline!r}")
    if math.isnan(deadline):
        raise ValueError("deadline must not be NaN")


def _update(scope: CancelScope) -> None:
    """Recompute ``_eff`` for ``scope`` and everything under it, aborting the
    waits of tasks that just became cancelled."""
    stack = [scope]
    pop = stack.pop
    while stack:
        s = pop()
        parent = s._parent
        new = s._cancel_called or (
            not s._shield and parent is not None and parent._eff
        )
        if new == s._eff:
            continue
        s._eff = new
        if new and s._tasks:
            kernel = s._kernel
            assert kernel is not None
            for t in list(s._tasks):
                kernel.try_abort(t)
        stack.extend(s._children)


def make_root_scope(kernel: Kernel) -> CancelScope:
    """The scope at the root of a run's tree (cancelled by Ctrl-C)."""
    scope = CancelScope()
    scope._state = 1
    scope._kernel = kernel
    return scope


def own_bottom_scope(task: Task[Any]) -> CancelScope | None:
    """The outermost scope that ``task`` entered itself (None if it entered none)."""
    scope: CancelScope | None = task._scope
    bottom = None
    while scope is not None and scope._task is task:
        bottom = scope
        scope = scope._parent
    return bottom


def reparent_task(task: Task[Any], new_parent: CancelScope) -> None:
    """Move ``task`` (with the scopes it entered) under ``new_parent``."""
    bottom = own_bottom_scope(task)
    if bottom is None:
        old = task._scope
        del old._tasks[task]
        new_parent._tasks[task] = None
        task._scope = new_parent
    else:
        old_parent = bottom._parent
        assert old_parent is not None
        del old_parent._children[bottom]
        new_parent._children[bottom] = None
        bottom._parent = new_parent
        _update(bottom)
        return
    if new_parent._eff:
        new_parent._kernel.try_abort(task)  # type: ignore[union-attr]


def cancel_task(task: Task[Any]) -> None:
    """Cancel one task: insert a private scope at the bottom of its scope
    stack (once) and cancel it."""
    root = task._cancel_scope
    if root is None:
        outer = task._scope
        bottom = own_bottom_scope(task)
        if bottom is not None:
            outer_parent = bottom._parent
            assert outer_parent is not None
            outer = outer_parent
        root = CancelScope()
        root._state = 1
        root._kernel = task._kernel
        root._task = task  # so own_bottom_scope() sees it as the task's own
        root._parent = outer
        outer._children[root] = None
        root._eff = outer._eff
        if bottom is None:
            del outer._tasks[task]
            root._tasks[task] = None
            task._scope = root
        else:
            del outer._children[bottom]
            root._children[bottom] = None
            bottom._parent = root
        task._more().cancel_scope = root
    root.cancel()


def detach_task(task: Task[Any]) -> None:
    """Remove a finished task from the scope tree."""
    scope = task._scope
    del scope._tasks[task]
    root = task._cancel_scope
    if root is not None:
        parent = root._parent
        if parent is not None:
            parent._children.pop(root, None)
        root._state = 2
