"""Clocks: where the kernel reads the time from.

Layer 1 (kernel). The kernel never calls :func:`time.monotonic` directly; it asks
its clock, so tests can run whole programs on virtual time.
"""

from __future__ import annotations

import math
import time

__all__ = ["Clock", "MonotonicClock", "VirtualClock"]


class Clock:
    """The interface the kernel uses to read and wait for time.

    Subclass it to give :func:`~yieldloop.run` a clock of your own
    (``run(main, clock=my_clock)``). Times are floats in seconds; only
    differences between them mean anything.
    """

    __slots__ = ()

    def start_clock(self) -> None:
        """Called once by :func:`~yieldloop.run` before the first task runs."""

    def current_time(self) -> float:
        """Return the current time in seconds."""
        raise NotImplementedError

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Return how many *real* seconds the kernel may block waiting for I/O
        before ``deadline`` is reached (0 if it has passed)."""
        raise NotImplementedError

    def idle(self, deadline: float) -> None:
        """Called when every task is blocked, no I/O arrived during the wait
        that :meth:`deadline_to_sleep_time` allowed, and the earliest timer is
        at ``deadline`` (``math.inf`` if there is none). Real clocks do nothing;
        a virtual clock jumps forward here."""


class MonotonicClock(Clock):
    """The default clock: :func:`time.monotonic`."""

    __slots__ = ()

    def current_time(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Seconds from now until ``deadline``, never negative."""
        return max(0.0, deadline - time.monotonic())

    def __repr__(self) -> str:
        return "MonotonicClock()"


class VirtualClock(Clock):
    """A clock that only moves when told to, or when the program is idle.

    ``VirtualClock()`` starts at 0.0. With ``autojump_threshold=None`` time
    stands still until :meth:`jump` is called. With a threshold (seconds of
    real time, default 0.0), whenever every task has been blocked with no
    I/O for that long, the clock jumps straight to the next deadline: a program
    that sleeps for an hour finishes in microseconds, and its timeouts fire
    in the same order as they would on a real clock.
    """

    __slots__ = ("_now", "autojump_threshold", "jumps")

    def __init__(self, *, start: float = 0.0, autojump_threshold: float | None = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"VirtualClock start must be a finite number, got {start!r}")
        if autojump_threshold is not None and not autojump_threshold >= 0:
            raise ValueError(
                f"autojump_threshold must be None or a number >= 0, got {autojump_threshold!r}"
            )
        self._now = float(start)
        self.autojump_threshold = autojump_threshold
        #: How many times the clock jumped forward on its own.
        self.jumps = 0

    def current_time(self) -> float:
        """Return the virtual time."""
        return self._now

    def jump(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        if not seconds >= 0:
            raise ValueError(f"can only jump forward by a number >= 0, got {seconds!r}")
        self._now += seconds

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """0 if ``deadline`` passed; otherwise the autojump threshold (or
        forever, when autojump is off)."""
        if deadline <= self._now:
            return 0.0
        if self.autojump_threshold is None:
            return math.inf
        return self.autojump_threshold

    def idle(self, deadline: float) -> None:
        """Jump to ``deadline`` if autojump is on and there is a deadline."""
        if self.autojump_threshold is not None and deadline != math.inf and deadline > self._now:
            self._now = deadline
            self.jumps += 1

    def __repr__(self) -> str:
        return f"VirtualClock(time={self._now!r}, autojump_threshold={self.autojump_threshold!r})"
