"""Timeouts: ``move_on_after``/``move_on_at`` and ``fail_after``/``fail_at``.

Layer 2. All four are cancel scopes with a deadline; the ``fail_`` forms turn
a caught deadline into the builtin :class:`TimeoutError`.
"""

from __future__ import annotations

import math
from types import TracebackType

from .._kernel._requests import current_time
from .._kernel._scope import CancelScope

__all__ = ["move_on_after", "move_on_at", "fail_after", "fail_at", "FailScope"]


def _check_seconds(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {seconds!r}")
    if math.isnan(seconds):
        raise ValueError("timeout must not be NaN")
    if seconds < 0:
        raise ValueError(f"timeout must be >= 0, got {seconds!r}")
    return float(seconds)


def move_on_at(deadline: float, *, shield: bool = False) -> CancelScope:
    """A :class:`CancelScope` that cancels its body at ``deadline``;
    check ``.cancelled_caught`` afterwards to know if it did."""
    return CancelScope(deadline=deadline, shield=shield)


def move_on_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """A :class:`CancelScope` that cancels its body ``seconds`` from now
    (the deadline is computed when this is called)::

        with move_on_after(5) as scope:
            await fetch()
        if scope.cancelled_caught:
            ...  # gave up
    """
    return CancelScope(deadline=current_time() + _check_seconds(seconds), shield=shield)


class FailScope:
    """Context manager returned by :func:`fail_after`/:func:`fail_at`: like a
    cancel scope, but when its deadline cancels the body it raises the builtin
    :class:`TimeoutError` instead of moving on."""

    __slots__ = ("_scope", "_timeout")

    def __init__(self, deadline: float, shield: bool, timeout: float | None) -> None:
        self._scope = CancelScope(deadline=deadline, shield=shield)
        self._timeout = timeout

    def __enter__(self) -> CancelScope:
        return self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        scope = self._scope
        caught = scope.__exit__(exc_type, exc, tb)
        if scope.cancelled_caught and scope._deadline_hit:
            if self._timeout is not None:
                msg = f"timed out after {self._timeout:g} seconds"
            else:
                msg = f"timed out at deadline {scope.deadline:g}"
            raise TimeoutError(msg) from None
        return caught


def fail_at(deadline: float, *, shield: bool = False) -> FailScope:
    """Like :func:`move_on_at`, but raise :class:`TimeoutError` when the
    deadline cancels the body."""
    return FailScope(deadline, shield, None)


def fail_after(seconds: float, *, shield: bool = False) -> FailScope:
    """Like :func:`move_on_after`, but raise :class:`TimeoutError` when the
    deadline cancels the body::

        with fail_after(5):
            await fetch()   # TimeoutError if it takes longer than 5 s
    """
    seconds = _check_seconds(seconds)
    return FailScope(current_time() + seconds, shield, seconds)
